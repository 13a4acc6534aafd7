"""``ivig-check serve``: the app under gunicorn (threaded workers), never Flask's dev server."""

from __future__ import annotations

import errno
import os
import socket

from gunicorn.app.base import BaseApplication

from .config import Config
from .startup import warm_and_freeze


class PortInUse(OSError):
    pass


def check_port(host: str, port: int) -> None:
    """Fail early, with a way out, when something already listens on host:port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse(f"port {port} on {host} is already in use; choose another with --port") from None
            raise


class _Gunicorn(BaseApplication):
    def __init__(self, app, options: dict[str, object]):
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings:  # settings newer than the installed gunicorn are skipped
                self.cfg.set(key, value)

    def load(self):
        return self._app


def gunicorn_options(host: str, port: int) -> dict[str, object]:
    workers = int(os.environ.get("IVIG_WORKERS", "2"))
    threads = int(os.environ.get("IVIG_THREADS", "8"))
    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": max(1, workers),
        "worker_class": "gthread",
        "threads": max(1, threads),
        "timeout": 90,
        "graceful_timeout": 5,
        # The app logs each request itself (route pattern only, no ids or query strings).
        "accesslog": None,
        "errorlog": "-",
        # gunicorn's DEBUG lines carry each request's path (resource and patient ids): its
        # log stays at INFO or above whatever IVIG_LOG_LEVEL says.
        "loglevel": _gunicorn_level(os.environ.get("IVIG_LOG_LEVEL", "info")),
        "forwarded_allow_ips": os.environ.get("IVIG_FORWARDED_ALLOW_IPS", "127.0.0.1"),
        "proc_name": "ivig-check",
        # gunicorn >= 27 opens a control socket under $HOME by default; the app needs none.
        "control_socket_disable": True,
    }


def _gunicorn_level(level: str) -> str:
    level = level.strip().lower()
    return "info" if level == "debug" else level


def run(config: Config, host: str, port: int) -> None:
    """Serve until interrupted. The app (and its session store and secret) is built once in
    the master, so every worker shares them."""
    from .web import create_app

    check_port(host, port)
    app = create_app(config)
    warm_and_freeze()  # after the app is built, before the workers fork
    _Gunicorn(app, {**gunicorn_options(host, port), "preload_app": True}).run()
