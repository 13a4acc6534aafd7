"""Per-app objects built once from the Config, and how views reach them.

``Runtime`` holds the session store, the HTTP session used for discovery, token, JWKS and
style requests, the discovery, CapabilityStatement and JWKS caches, the private key and the client
credentials. One is made by ``web.create_app`` and kept in ``app.extensions["ivig"]``;
views use ``rt()`` and ``cfg()``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from functools import cached_property
from typing import Any

import requests
from flask import current_app

from .config import Config
from .fhir_client import FhirClient
from .search_plan import ServerCapabilities
from .sessions import Store, open_store
from .smart import (ClientCredentials, SmartConfiguration, discover, get_json_document, load_private_key,
                    public_jwks)
from .views.common import AppError

DISCOVERY_TTL = 300  # seconds a server's SMART configuration is reused
JWKS_TTL = 300  # seconds an authorization server's signing keys are reused
CACHE_ENTRIES = 64  # per cache; keys are normalised issuers (allow-listed) and JWKS URLs


class TtlCache:
    """A small thread-safe cache: at most ``size`` entries, each kept ``ttl`` seconds, the
    oldest dropped first. Only successful answers go in (a failure is never cached)."""

    def __init__(self, ttl: float, size: int = CACHE_ENTRIES):
        self.ttl, self.size = ttl, size
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit and now - hit[0] < self.ttl:
                return hit[1]
        value = make()  # raises: nothing is stored
        with self._lock:
            self._items[key] = (now, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)


class Runtime:
    """Per-app objects built once from the Config."""

    def __init__(self, config: Config):
        self.config = config
        self.store: Store = open_store(config.session_url, config.session_db, config.secret_key,
                                       config.session_ttl)
        self.http = requests.Session()  # discovery, token, JWKS and style requests
        self.private_key = load_private_key(config.private_key_file) if config.private_key_file else None
        self.client_options: dict[str, Any] = {}  # extra FhirClient settings (retries, backoff)
        self.discovered = TtlCache(DISCOVERY_TTL)
        self.capability_cache = TtlCache(DISCOVERY_TTL)
        self.jwks_cache = TtlCache(JWKS_TTL)

    def discover(self, iss: str) -> SmartConfiguration:
        """SMART discovery for the normalised issuer ``iss``, remembered DISCOVERY_TTL seconds
        per worker; a failure (``SmartError``) is not remembered. The server's
        CapabilityStatement (which searches it offers) is read at the same time, in parallel,
        and cached with it: a launch still costs one round trip."""
        def both() -> SmartConfiguration:
            with ThreadPoolExecutor(max_workers=1) as pool:
                caps = pool.submit(self.capabilities, iss)
                smart = discover(self.http, iss, self.config.fhir_timeout)
                caps.result()
            return smart

        return self.discovered.get(iss, both)

    def capabilities(self, iss: str) -> ServerCapabilities:
        """What ``iss`` offers (search_plan.ServerCapabilities from its CapabilityStatement),
        remembered like discovery; an unreadable one is UNKNOWN (every search is tried)."""
        return self.capability_cache.get(iss, lambda: self.fhir_client(iss).capabilities())

    def signing_keys(self, jwks_uri: str, *, fresh: bool = False) -> dict[str, Any]:
        """The authorization server's JWKS (``fresh``: fetched again, e.g. for a new kid)."""
        if fresh:
            self.jwks_cache.drop(jwks_uri)
        return self.jwks_cache.get(jwks_uri, lambda: get_json_document(
            self.http, jwks_uri, self.config.fhir_timeout, "authorization server's key set (JWKS)"))

    def fhir_client(self, base_url: str, **kw: Any) -> FhirClient:
        return FhirClient(base_url, timeout=self.config.fhir_timeout, **{**self.client_options, **kw})

    @cached_property
    def jwks(self) -> dict[str, Any] | None:
        if self.private_key is None:
            return None
        return public_jwks(self.private_key, self.config.key_id or "")

    def credentials(self, form_client_id: str | None = None) -> ClientCredentials:
        """The configured client. Only a sandbox deployment's launch form may name another
        client id (a public client, for testing against a sandbox)."""
        cfg = self.config
        if form_client_id and cfg.sandbox and form_client_id != cfg.client_id:
            return ClientCredentials(form_client_id)
        if not cfg.client_id:
            raise AppError(400, "No client id is configured for this app.",
                           "Set IVIG_CLIENT_ID (or, in a sandbox deployment, enter one on the launch page).")
        return ClientCredentials(cfg.client_id, secret=cfg.client_secret, private_key=self.private_key,
                                 key_id=cfg.key_id)


def rt() -> Runtime:
    return current_app.extensions["ivig"]


def cfg() -> Config:
    return rt().config
