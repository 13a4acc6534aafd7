"""Run the app as users run it, ``ivig-check serve`` (gunicorn), in a subprocess on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.support.fhir_server import free_port


@contextmanager
def run_app(env: dict[str, str], *, port: int | None = None, timeout: float = 30) -> Iterator[str]:
    """Start ``ivig-check serve``; yield its base URL; stop it (and its workers) on exit."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="ivig-serve-", suffix=".log", delete=False)
    full_env = {**os.environ, "IVIG_PUBLIC_BASE_URL": base, **env}
    proc = subprocess.Popen([sys.executable, "-m", "smart_app.cli", "serve", "--port", str(port)],
                            env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    run_app.pid = proc.pid  # type: ignore[attr-defined]  # the gunicorn master, for memory figures
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ivig-check serve exited ({proc.returncode}):\n{log_tail(log.name)}")
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"ivig-check serve did not start in {timeout:g} s:\n{log_tail(log.name)}")
            time.sleep(0.1)
        yield base
    finally:
        stop(proc)
        log.close()
        run_app.last_log = Path(log.name).read_text(errors="replace")  # type: ignore[attr-defined]
        os.unlink(log.name)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (gunicorn master and workers), SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)


def log_tail(path: str, lines: int = 40) -> str:
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
