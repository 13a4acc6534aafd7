"""Server-side sessions: tokens and launch context never leave the server.

The browser's cookie holds only an opaque random id. Session data is encrypted
(Fernet, key derived from ``IVIG_SECRET_KEY``) and kept in SQLite, so every gunicorn
worker sees the same sessions. Pending authorisations are keyed by their ``state`` in a
separate table and taken with one ``DELETE … RETURNING``: a state works once, only for
the browser session that started it, and only until it expires.
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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

STATE_TTL = 600  # seconds a user may spend on the EHR's authorize screen


class SessionStore:
    def __init__(self, path: str | None, secret_key: str, ttl: int = 3600):
        if path is None:
            fd, path = tempfile.mkstemp(prefix="ivig-sessions-", suffix=".sqlite")
            os.close(fd)
        self.path = path
        self.ttl = ttl
        digest = hashlib.sha256(b"ivig-session-store|" + secret_key.encode("utf-8")).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._local = threading.local()
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

    def _seal(self, data: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(data, separators=(",", ":")).encode("utf-8"))

    def _open(self, blob: bytes) -> dict[str, Any] | None:
        try:
            return json.loads(self._fernet.decrypt(blob))
        except (InvalidToken, ValueError):
            return None  # another secret key wrote it: as good as absent

    # --- sessions -----------------------------------------------------------------------
    def create(self, data: dict[str, Any] | None = None) -> str:
        sid = secrets.token_urlsafe(32)
        self.save(sid, data or {})
        return sid

    def get(self, sid: str | None) -> dict[str, Any] | None:
        if not sid:
            return None
        row = self._db().execute("SELECT data, expires FROM sessions WHERE sid = ?", (sid,)).fetchone()
        if row is None or row[1] < time.time():
            return None
        return self._open(row[0])

    def save(self, sid: str, data: dict[str, Any]) -> None:
        self._db().execute(
            "INSERT INTO sessions (sid, data, expires) VALUES (?, ?, ?) "
            "ON CONFLICT(sid) DO UPDATE SET data = excluded.data, expires = excluded.expires",
            (sid, self._seal(data), time.time() + self.ttl),
        )

    def delete(self, sid: str | None) -> None:
        if sid:
            db = self._db()
            db.execute("DELETE FROM sessions WHERE sid = ?", (sid,))
            db.execute("DELETE FROM states WHERE sid = ?", (sid,))

    def purge_expired(self) -> None:
        now = time.time()
        db = self._db()
        db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
        db.execute("DELETE FROM states WHERE expires < ?", (now,))

    # --- a lock shared by every worker ----------------------------------------------------
    @contextmanager
    def lock(self, key: str, *, wait: float = 30.0, ttl: float = 60.0) -> Iterator[None]:
        """Hold ``key`` across threads and gunicorn workers (one SQLite row). Used around
        Task writes: not every FHIR server makes a conditional create atomic, so the app
        never sends two writes for the same Task at once. A holder that died frees the
        key after ``ttl`` seconds."""
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

    # --- use-once keys (replay protection) --------------------------------------------------
    def claim_once(self, key: str, ttl: float) -> bool:
        """True the first time ``key`` is claimed (by any thread or worker) within ``ttl``
        seconds, False on every later claim. Used for the ``jti`` of CDS Hooks client JWTs:
        a token works once. Only a digest of the key is stored."""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        now = time.time()
        db = self._db()
        db.execute("DELETE FROM once WHERE expires < ?", (now,))
        try:
            db.execute("INSERT INTO once (key, expires) VALUES (?, ?)", (digest, now + max(ttl, 1.0)))
        except sqlite3.IntegrityError:
            return False
        return True

    # --- single-use authorisation state -------------------------------------------------
    def put_state(self, state: str, sid: str, data: dict[str, Any]) -> None:
        self._db().execute("INSERT INTO states (state, sid, data, expires) VALUES (?, ?, ?, ?)",
                           (state, sid, self._seal(data), time.time() + STATE_TTL))

    def take_state(self, state: str, sid: str | None) -> dict[str, Any] | None:
        """The pending authorisation for ``state``, removed so it can never be used again.

        None when the state is unknown, already used, expired, or belongs to another
        browser session (it is consumed all the same: a leaked state is dead either way).
        """
        row = self._db().execute("DELETE FROM states WHERE state = ? RETURNING sid, data, expires",
                                 (state,)).fetchone()
        if row is None or not sid or not secrets.compare_digest(row[0], sid) or row[2] < time.time():
            return None
        return self._open(row[1])
