"""Per-app objects built once from the Config, and how views reach them.

``Runtime`` holds the session store, the HTTP session used for discovery, token and
style requests, the discovery cache, the private key and the client credentials. One is
made by ``web.create_app`` and kept in ``app.extensions["ivig"]``; views use ``rt()`` and
``cfg()``.
"""

from __future__ import annotations

import threading
import time
from functools import cached_property
from typing import Any

import requests
from flask import current_app

from .config import Config
from .fhir_client import FhirClient
from .sessions import SessionStore
from .smart import ClientCredentials, discover, load_private_key, public_jwks
from .views.common import AppError

DISCOVERY_TTL = 300  # seconds a server's SMART configuration is reused


class Runtime:
    """Per-app objects built once from the Config."""

    def __init__(self, config: Config):
        self.config = config
        self.store = SessionStore(config.session_db, config.secret_key, config.session_ttl)
        self.http = requests.Session()  # discovery, token and style requests
        self.private_key = load_private_key(config.private_key_file) if config.private_key_file else None
        self.client_options: dict[str, Any] = {}  # extra FhirClient settings (retries, backoff)
        self._discovered: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def discover(self, iss: str) -> Any:
        """SMART discovery for ``iss``, remembered for DISCOVERY_TTL seconds per worker."""
        now = time.monotonic()
        with self._lock:
            hit = self._discovered.get(iss)
        if hit and now - hit[0] < DISCOVERY_TTL:
            return hit[1]
        smart = discover(self.http, iss, self.config.fhir_timeout)
        with self._lock:
            self._discovered[iss] = (now, smart)
        return smart

    def fhir_client(self, base_url: str, **kw: Any) -> FhirClient:
        return FhirClient(base_url, timeout=self.config.fhir_timeout, **{**self.client_options, **kw})

    @cached_property
    def jwks(self) -> dict[str, Any] | None:
        if self.private_key is None:
            return None
        return public_jwks(self.private_key, self.config.key_id or "")

    def credentials(self, client_id: str | None) -> ClientCredentials:
        """The configured client, or a public client for an id typed into the launch form."""
        cfg = self.config
        if client_id and client_id != cfg.client_id:
            return ClientCredentials(client_id)
        if not cfg.client_id:
            raise AppError(400, "No client id is configured for this app.",
                           "Set IVIG_CLIENT_ID, or enter the client id on the launch page.")
        return ClientCredentials(cfg.client_id, secret=cfg.client_secret, private_key=self.private_key,
                                 key_id=cfg.key_id)


def rt() -> Runtime:
    return current_app.extensions["ivig"]


def cfg() -> Config:
    return rt().config
