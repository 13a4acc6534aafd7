"""A real ``redis-server`` (Debian's package) on 127.0.0.1, on a free port, for tests and
benchmarks: no persistence, stopped on exit."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.fhir_server import free_port


class RedisMissing(RuntimeError):
    pass


@contextmanager
def run_redis(timeout: float = 15) -> Iterator[str]:
    """Start redis-server; yield its ``redis://127.0.0.1:PORT/0`` URL; stop it."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisMissing("redis-server not found: install Debian's redis-server (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no",
                             "--loglevel", "warning"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {proc.stdout.read().decode()[-2000:]}")
            time.sleep(0.05)
        client.close()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
