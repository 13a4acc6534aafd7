"""Origins (scheme, host, port) of URLs: credentials and requests stay on the origin they
belong to (RFC 6454). Pure functions."""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an absolute http(s) URL, lower-cased, the default port
    filled in; None for anything else (relative, ``//host``, other schemes, bad ports)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else DEFAULT_PORTS[scheme]


def same_origin(url: str, other: str) -> bool:
    """True when both are absolute http(s) URLs on one scheme, host and port."""
    mine = origin(url)
    return mine is not None and mine == origin(other)


def origin_text(url: str) -> str:
    """``scheme://host:port`` of ``url`` (for configuration and CSP), or ``""``."""
    o = origin(url)
    return f"{o[0]}://{o[1]}:{o[2]}" if o else ""
