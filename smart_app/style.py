"""The EHR's SMART style document (``smart_style_url``), read safely.

The authorization server chooses the URL, so it is fetched only from the FHIR server's
origin (or an origin listed in ``IVIG_STYLE_ORIGINS``), over https (plain http only on
loopback), without cookies or credentials, with a short timeout and a size limit, and
redirects are followed only on the same allowed origins. Anything unexpected in the
document is dropped (``style_vars`` is pure).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urljoin

import requests

from .config import is_loopback
from .origins import same_origin

log = logging.getLogger(__name__)

MAX_BYTES = 32 * 1024
TIMEOUT = 3.0  # seconds, connect and read, for the whole fetch
MAX_REDIRECTS = 3

_COLOR = re.compile(r"^#[0-9A-Fa-f]{3,8}$|^rgba?\([0-9., %]{5,40}\)$")
_FONT = re.compile(r"^[A-Za-z0-9 ,\-\"']{1,120}$")
_STYLE_KEYS = {"color_background": ("--smart-bg", _COLOR), "color_text": ("--smart-text", _COLOR),
               "color_highlight": ("--smart-accent", _COLOR), "font_family_body": ("--smart-font", _FONT)}


# WCAG 2 AA for text: the EHR's colours are used only where they keep this contrast (the
# app's own defaults, and white button text, otherwise).
MIN_CONTRAST = 4.5
DEFAULT_BG, DEFAULT_TEXT, BUTTON_TEXT = "#ffffff", "#1b1f24", "#ffffff"


def style_vars(style: Any) -> dict[str, str]:
    """CSS custom properties from a SMART style document; anything unexpected is dropped, and
    so is a colour that would make text too faint to read (below 4.5:1 contrast)."""
    out: dict[str, str] = {}
    if not isinstance(style, dict):
        return out
    for key, (var, pattern) in _STYLE_KEYS.items():
        value = style.get(key)
        if isinstance(value, str) and pattern.match(value.strip()):
            out[var] = value.strip()
    bg, text = out.get("--smart-bg", DEFAULT_BG), out.get("--smart-text", DEFAULT_TEXT)
    if not _readable(text, bg):
        out.pop("--smart-bg", None)
        out.pop("--smart-text", None)
        bg = DEFAULT_BG
    accent = out.get("--smart-accent")
    if accent is not None and not (_readable(accent, bg) and _readable(BUTTON_TEXT, accent)):
        del out["--smart-accent"]  # links on the page and button labels on the accent
    return out


def _rgb(color: str) -> tuple[float, float, float] | None:
    """An opaque colour's channels (0-1); None for a transparent or unreadable one."""
    color = color.strip().lower()
    if color.startswith("#"):
        digits = color[1:]
        if len(digits) in (3, 4):
            digits = "".join(d * 2 for d in digits)
        if len(digits) == 8 and digits[6:] != "ff":
            return None
        if len(digits) not in (6, 8):
            return None
        return tuple(int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]
    m = re.fullmatch(r"rgba?\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*(?:,\s*(1|1\.0+)\s*)?\)", color)
    if m:
        return tuple(min(int(v), 255) / 255 for v in m.groups()[:3])  # type: ignore[return-value]
    return None


def _luminance(rgb: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _readable(fg: str, bg: str) -> bool:
    a, b = _rgb(fg), _rgb(bg)
    if a is None or b is None:
        return False
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05) >= MIN_CONTRAST


def style_url_allowed(url: str, origins: Iterable[str]) -> bool:
    """On one of ``origins`` (the issuer's, configured ones), and https unless on loopback."""
    if not url.startswith("https://") and not (url.startswith("http://") and is_loopback(url)):
        return False
    return any(same_origin(url, o) for o in origins)


def _read_bounded(resp: requests.Response, deadline: float) -> bytes | None:
    """The body, or None past MAX_BYTES or the deadline (a slow drip cannot hold a worker)."""
    body = b""
    for chunk in resp.iter_content(4096):
        body += chunk
        if len(body) > MAX_BYTES or time.monotonic() > deadline:
            return None
    return body


def fetch_style(http: requests.Session, url: str, origins: Iterable[str]) -> dict[str, str]:
    """The style variables of ``url``, or ``{}`` when it may not or could not be read."""
    origins = tuple(origins)
    deadline = time.monotonic() + TIMEOUT
    for _ in range(MAX_REDIRECTS + 1):
        if not style_url_allowed(url, origins):
            log.warning("smart_style_url is not on the FHIR server's origin; not fetched")
            return {}
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with http.get(url, headers={"Accept": "application/json"}, timeout=min(left, TIMEOUT),
                          stream=True, allow_redirects=False) as resp:
                if resp.status_code in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                    url = urljoin(url, resp.headers["Location"])
                    continue
                if resp.status_code != 200:
                    break
                body = _read_bounded(resp, deadline)
        except requests.RequestException:
            break
        if body is None:
            log.info("smart_style_url is larger than %d KiB or too slow; default styles used",
                     MAX_BYTES // 1024)
            return {}
        try:
            return style_vars(json.loads(body))
        except (ValueError, RecursionError):
            break
    log.info("smart_style_url could not be read; default styles used")
    return {}
