"""What every view shares: the user-facing error and JSON-or-HTML. (FHIR ids are checked
with ``fhir_client.is_fhir_id``.)"""

from __future__ import annotations

from datetime import datetime, timezone

from flask import request

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
