"""Server-side session store: tokens and launch context never leave the server.

The browser's cookie holds only an opaque random id. Every value is encrypted (Fernet, key
derived from ``IVIG_SECRET_KEY``) and bound to its key, and kept either in SQLite (the
default: every gunicorn worker on one host sees the same sessions) or in Redis
(``IVIG_SESSION_URL=redis://…``: several app hosts share them).

Three things live in a store:

* sessions: key -> data, each with an expiry (refreshed on every save);
* pending authorisations, keyed by their ``state``: taken once (atomically), only for the
  browser session that started them, only until they expire, and bounded in number so
  anonymous ``/launch`` requests cannot fill the store;
* locks shared by every worker and host (around Task writes);
* use-once keys (the ``jti`` of CDS Hooks client JWTs: a token works once).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sqlite3
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken

STATE_TTL = 600  # seconds a user may spend on the EHR's authorize screen
MAX_PENDING = 10_000  # pending authorisations at once, all browsers together
PURGE_EVERY = 60  # seconds between purges of expired rows (SQLite)


class StoreFull(Exception):
    """Too many sign-ins are in progress; a new one is refused until some finish or expire."""


class Store(ABC):
    """Sessions, single-use states and locks, encrypted at rest."""

    def __init__(self, secret_key: str, ttl: int = 3600):
        self.ttl = ttl
        self.max_pending = MAX_PENDING
        digest = hashlib.sha256(b"ivig-session-store|" + secret_key.encode("utf-8")).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def _seal(self, key: str, data: dict[str, Any]) -> bytes:
        # The key is sealed with the value: a value copied under another key does not open.
        return self._fernet.encrypt(json.dumps({"k": key, "v": data}, separators=(",", ":")).encode("utf-8"))

    def _open(self, key: str, blob: bytes) -> dict[str, Any] | None:
        try:
            box = json.loads(self._fernet.decrypt(blob))
        except (InvalidToken, ValueError):
            return None  # another secret key wrote it: as good as absent
        if not isinstance(box, dict) or box.get("k") != key or not isinstance(box.get("v"), dict):
            return None
        return box["v"]

    # --- sessions -----------------------------------------------------------------------
    def create(self, data: dict[str, Any] | None = None, ttl: int | None = None) -> str:
        key = secrets.token_urlsafe(32)
        self.save(key, data or {}, ttl)
        return key

    @abstractmethod
    def get(self, key: str | None) -> dict[str, Any] | None: ...

    @abstractmethod
    def save(self, key: str, data: dict[str, Any], ttl: int | None = None) -> None: ...

    @abstractmethod
    def delete(self, key: str | None) -> None: ...

    def purge_expired(self) -> None:
        """Drop expired rows (a store whose entries expire by themselves has nothing to do)."""

    # --- single-use authorisation state -------------------------------------------------
    @abstractmethod
    def put_state(self, state: str, sid: str, data: dict[str, Any]) -> None:
        """Keep a pending authorisation; ``StoreFull`` when ``max_pending`` are pending."""

    @abstractmethod
    def take_state(self, state: str, sid: str | None) -> dict[str, Any] | None:
        """The pending authorisation for ``state``, removed so it can never be used again.

        None when the state is unknown, already used, expired, or belongs to another
        browser session (it is consumed all the same: a leaked state is dead either way).
        """

    # --- use-once keys (replay protection) --------------------------------------------------
    @abstractmethod
    def claim_once(self, key: str, ttl: float) -> bool:
        """True the first time ``key`` is claimed (by any thread, worker or host) within
        ``ttl`` seconds, False on every later claim. Only a digest of the key is stored."""

    # --- a lock shared by every worker ----------------------------------------------------
    @abstractmethod
    @contextmanager
    def lock(self, key: str, *, wait: float = 30.0, ttl: float = 60.0) -> Iterator[None]:
        """Hold ``key`` across threads, workers and hosts. Used around Task writes: not every
        FHIR server makes a conditional create atomic, so the app never sends two writes
        for the same Task at once. A holder that died frees the key after ``ttl`` seconds;
        ``TimeoutError`` after ``wait`` seconds."""


def open_store(url: str | None, db_path: str | None, secret_key: str, ttl: int = 3600) -> Store:
    """The store ``IVIG_SESSION_URL`` (or the SQLite file ``IVIG_SESSION_DB``) names.

    ``sqlite:///abs/path.sqlite`` (``sqlite://`` alone: a private temporary file),
    ``redis://[:password@]host:port/db`` or ``rediss://…`` (TLS).
    """
    if url is None:
        return SqliteStore(db_path, secret_key, ttl)
    if url.startswith("sqlite://"):
        return SqliteStore(url[len("sqlite://"):] or None, secret_key, ttl)
    if url.startswith(("redis://", "rediss://")):
        return RedisStore(url, secret_key, ttl)
    raise ValueError("the session store URL must start with sqlite://, redis:// or rediss://")


class SqliteStore(Store):
    """One SQLite file (WAL) shared by the workers of one host."""

    def __init__(self, path: str | None, secret_key: str, ttl: int = 3600):
        super().__init__(secret_key, ttl)
        if path is None:
            fd, path = tempfile.mkstemp(prefix="ivig-sessions-", suffix=".sqlite")
            os.close(fd)
        self.path = path
        self._local = threading.local()
        self._purged = 0.0
        setup = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            setup.execute("PRAGMA journal_mode=WAL")
            setup.execute("CREATE TABLE IF NOT EXISTS sessions "
                          "(sid TEXT PRIMARY KEY, data BLOB NOT NULL, expires REAL NOT NULL)")
            setup.execute("CREATE TABLE IF NOT EXISTS states "
                          "(state TEXT PRIMARY KEY, sid TEXT NOT NULL, data BLOB NOT NULL, expires REAL NOT NULL)")
            setup.execute("CREATE TABLE IF NOT EXISTS locks "
                          "(key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL)")
            setup.execute("CREATE TABLE IF NOT EXISTS once "
                          "(key TEXT PRIMARY KEY, expires REAL NOT NULL)")
        finally:
            setup.close()
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass

    def _db(self) -> sqlite3.Connection:
        """One connection per thread and process (a connection never crosses a fork)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def get(self, key: str | None) -> dict[str, Any] | None:
        if not key:
            return None
        row = self._db().execute("SELECT data, expires FROM sessions WHERE sid = ?", (key,)).fetchone()
        if row is None or row[1] < time.time():
            return None
        return self._open(key, row[0])

    def save(self, key: str, data: dict[str, Any], ttl: int | None = None) -> None:
        self._db().execute(
            "INSERT INTO sessions (sid, data, expires) VALUES (?, ?, ?) "
            "ON CONFLICT(sid) DO UPDATE SET data = excluded.data, expires = excluded.expires",
            (key, self._seal(key, data), time.time() + (ttl or self.ttl)),
        )

    def delete(self, key: str | None) -> None:
        if key:
            self._db().execute("DELETE FROM sessions WHERE sid = ?", (key,))

    def purge_expired(self) -> None:
        """Drop expired sessions, states and locks; at most once every PURGE_EVERY seconds."""
        now = time.time()
        if now - self._purged < PURGE_EVERY:
            return
        self._purged = now
        db = self._db()
        for table in ("sessions", "states", "locks", "once"):
            db.execute(f"DELETE FROM {table} WHERE expires < ?", (now,))

    def claim_once(self, key: str, ttl: float) -> bool:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        now = time.time()
        db = self._db()
        db.execute("DELETE FROM once WHERE expires < ?", (now,))
        try:
            db.execute("INSERT INTO once (key, expires) VALUES (?, ?)", (digest, now + max(ttl, 1.0)))
        except sqlite3.IntegrityError:
            return False
        return True

    def put_state(self, state: str, sid: str, data: dict[str, Any]) -> None:
        db = self._db()
        now = time.time()
        (pending,) = db.execute("SELECT COUNT(*) FROM states WHERE expires >= ?", (now,)).fetchone()
        if pending >= self.max_pending:
            db.execute("DELETE FROM states WHERE expires < ?", (now,))
            raise StoreFull("too many sign-ins are in progress")
        db.execute("INSERT INTO states (state, sid, data, expires) VALUES (?, ?, ?, ?)",
                   (state, sid, self._seal(state, data), now + STATE_TTL))

    def take_state(self, state: str, sid: str | None) -> dict[str, Any] | None:
        row = self._db().execute("DELETE FROM states WHERE state = ? RETURNING sid, data, expires",
                                 (state,)).fetchone()
        if row is None or not sid or not secrets.compare_digest(row[0], sid) or row[2] < time.time():
            return None
        return self._open(state, row[1])

    @contextmanager
    def lock(self, key: str, *, wait: float = 30.0, ttl: float = 60.0) -> Iterator[None]:
        owner = secrets.token_hex(8)
        deadline = time.monotonic() + wait
        db = self._db()
        while True:
            now = time.time()
            db.execute("DELETE FROM locks WHERE key = ? AND expires < ?", (key, now))
            try:
                db.execute("INSERT INTO locks (key, owner, expires) VALUES (?, ?, ?)", (key, owner, now + ttl))
                break
            except sqlite3.IntegrityError:
                if time.monotonic() > deadline:
                    raise TimeoutError("another request is still writing this Task") from None
                time.sleep(0.02)
        try:
            yield
        finally:
            db.execute("DELETE FROM locks WHERE key = ? AND owner = ?", (key, owner))


class RedisStore(Store):
    """Redis, shared by several app hosts: entries expire by themselves (``EX``), a state is
    taken with ``GETDEL``, locks are redis-py's token locks (``SET NX PX``, released only
    by their owner)."""

    PREFIX = "ivig:"

    def __init__(self, url: str, secret_key: str, ttl: int = 3600):
        import redis  # the optional multi-host store; a declared dependency

        super().__init__(secret_key, ttl)
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                           health_check_interval=30)
        self._lock_error = redis.exceptions.LockError
        where = urlsplit(url)
        self.description = f"redis://{where.hostname}:{where.port or 6379}{where.path or '/0'}"

    def _k(self, kind: str, key: str) -> str:
        return f"{self.PREFIX}{kind}:{key}"

    def get(self, key: str | None) -> dict[str, Any] | None:
        if not key:
            return None
        blob = self._redis.get(self._k("s", key))
        return None if blob is None else self._open(key, blob)

    def save(self, key: str, data: dict[str, Any], ttl: int | None = None) -> None:
        self._redis.set(self._k("s", key), self._seal(key, data), ex=int(ttl or self.ttl))

    def delete(self, key: str | None) -> None:
        if key:
            self._redis.delete(self._k("s", key))

    def claim_once(self, key: str, ttl: float) -> bool:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return bool(self._redis.set(self._k("once", digest), b"1", nx=True, px=int(max(ttl, 1.0) * 1000)))

    def put_state(self, state: str, sid: str, data: dict[str, Any]) -> None:
        now = time.time()
        index = self._k("states", "pending")
        pipe = self._redis.pipeline()
        pipe.zremrangebyscore(index, "-inf", now)
        pipe.zcard(index)
        _, pending = pipe.execute()
        if pending >= self.max_pending:
            raise StoreFull("too many sign-ins are in progress")
        pipe = self._redis.pipeline()
        pipe.set(self._k("st", state), self._seal(state, {"sid": sid, "data": data}), ex=STATE_TTL)
        pipe.zadd(index, {state: now + STATE_TTL})
        pipe.execute()

    def take_state(self, state: str, sid: str | None) -> dict[str, Any] | None:
        pipe = self._redis.pipeline()
        pipe.getdel(self._k("st", state))
        pipe.zrem(self._k("states", "pending"), state)
        blob, _ = pipe.execute()
        box = None if blob is None else self._open(state, blob)
        if box is None or not sid or not secrets.compare_digest(str(box.get("sid", "")), sid):
            return None
        return box.get("data")

    @contextmanager
    def lock(self, key: str, *, wait: float = 30.0, ttl: float = 60.0) -> Iterator[None]:
        held = self._redis.lock(self._k("lock", hashlib.sha256(key.encode()).hexdigest()),
                                timeout=ttl, sleep=0.02, blocking_timeout=wait)
        if not held.acquire():
            raise TimeoutError("another request is still writing this Task")
        try:
            yield
        finally:
            try:
                held.release()
            except self._lock_error:  # expired after ttl and maybe taken by another: not ours
                pass
