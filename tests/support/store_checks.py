"""Checks every session store's lock must pass (SQLite in tests/web, Redis in
tests/integration): holders exclude each other, and a held key times a second holder out."""

from __future__ import annotations

import threading
import time

import pytest


def assert_holders_exclude_each_other(store, holders: int, hold_seconds: float, key: str = "task|x") -> None:
    """``holders`` threads take ``store.lock(key)`` at once: never two inside together."""
    inside: list[int] = []
    overlaps: list[int] = []

    def hold() -> None:
        with store.lock(key):
            inside.append(1)
            if len(inside) > 1:
                overlaps.append(1)
            time.sleep(hold_seconds)
            inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(holders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps


def assert_held_key_times_out(store, other, key: str = "task|z") -> None:
    """While ``store`` holds ``key``, ``other`` (another store object on the same data)
    cannot take it within its wait."""
    with store.lock(key, ttl=60):
        with pytest.raises(TimeoutError):
            with other.lock(key, wait=0.1):
                pass
