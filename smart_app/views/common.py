"""What every view shares: the user-facing error and JSON-or-HTML. (FHIR ids are checked
with ``fhir_client.is_fhir_id``.)"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timezone
from typing import Any

from flask import request

log = logging.getLogger(__name__)

SESSION_ENDED = "Launch the app again from the EHR (or from the launch page)."


class AppError(Exception):
    """An error for the user: HTTP status, one safe sentence, and what to do next."""

    def __init__(self, status: int, message: str, hint: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.hint = hint


def wants_json() -> bool:
    """JSON for /api/* and for a POST that prefers JSON (``Accept: application/json``);
    HTML for browsers and for ``*/*``."""
    accept = request.accept_mimetypes
    return request.path.startswith("/api/") or (
        request.method == "POST" and accept["application/json"] > accept["text/html"]
    )


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def require_csrf(data: dict[str, Any]) -> None:
    """The form's (or header's) CSRF token is the launch's, else 403 before anything is done."""
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if not secrets.compare_digest(sent.encode(), data["csrf"].encode()):
        log.warning("write refused: CSRF token missing or wrong")
        raise AppError(403, "The form's security token is missing or wrong; nothing was written.",
                       "Reload the report and press the button again.")


def write_lock_key(rtype: str, ident: dict[str, str]) -> str:
    """The store lock one resource's writers share (across the app's instances)."""
    return f"{rtype.lower()}|{ident['system']}|{ident['value']}"
