"""The launched session: its cookie, its token (renewed when needed), its FHIR client and
its report. Tokens live only in the server-side session store; the browser holds an
opaque session id.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from datetime import date
from typing import Any

from flask import Response, request

from ..fhir_client import FhirAuthError, FhirClient, FhirError, FhirUnreachable
from ..payers import load_payer_map
from ..report import evaluate_record
from ..runtime import Runtime, cfg, rt
from ..smart import SmartError, can_write_tasks, readable_types, refresh
from .common import SESSION_ENDED, AppError, now_iso

log = logging.getLogger(__name__)

COOKIE = "ivig_sid"
REFRESH_LEEWAY = 30  # seconds before expiry at which a token is renewed ahead of use


# --- the cookie and the session ----------------------------------------------------------------
def set_cookie(resp: Response, sid: str) -> Response:
    secure = not cfg().local_development
    # Inside an EHR iframe the app is a third party: only SameSite=None cookies reach it,
    # and browsers accept those only with Secure. Plain-http local development uses Lax.
    resp.set_cookie(COOKIE, sid, httponly=True, secure=secure,
                    samesite="None" if secure else "Lax", path="/")
    return resp


def new_session(data: dict[str, Any], old_sid: str | None = None) -> str:
    """A fresh session id for a fresh login (the old id, if any, is dropped: no fixation)."""
    store = rt().store
    store.delete(old_sid)
    store.purge_expired()
    data["csrf"] = secrets.token_urlsafe(32)
    return store.create(data)


def launched() -> tuple[str, dict[str, Any]]:
    sid = request.cookies.get(COOKIE)
    data = rt().store.get(sid)
    if not sid or not data or "patient" not in data:
        raise AppError(401, "There is no active launch in this browser session.", SESSION_ENDED)
    return sid, data


# --- FHIR access for a launched session ---------------------------------------------------------
def fhir_client(sid: str, data: dict[str, Any]) -> FhirClient:
    runtime = rt()
    token = data.get("token")
    if token is None:  # open server
        return runtime.fhir_client(data["iss"])
    if token.get("expires_at") and token["expires_at"] - REFRESH_LEEWAY < time.time():
        _refresh(runtime, sid, data, stale=token["access_token"])
    lock = threading.Lock()

    def on_unauthorized(refused: str | None) -> str | None:
        # Called from the search threads: one refresh for all of them.
        with lock:
            return _refresh(runtime, sid, data, stale=refused)

    return runtime.fhir_client(data["iss"], token=data["token"]["access_token"],
                               on_unauthorized=on_unauthorized)


def _refresh(runtime: Runtime, sid: str, data: dict[str, Any], stale: str | None) -> str:
    """Renew the access token with the refresh token; the session ends if that fails.

    ``stale`` is the token that was refused or is expiring: if the session already holds
    another one (a parallel search or request renewed it), that one is used instead.
    """
    current = data["token"]["access_token"]
    if stale is not None and current != stale:
        return current
    stored = runtime.store.get(sid)
    if stored and stored.get("token") and stored["token"]["access_token"] not in (stale, None):
        data["token"] = stored["token"]
        return data["token"]["access_token"]
    token = data["token"]
    if not token.get("refresh_token"):
        runtime.store.delete(sid)
        raise AppError(401, "The access token expired and the EHR gave no refresh token.", SESSION_ENDED)
    try:
        data["token"] = refresh(runtime.http, data["token_endpoint"], runtime.credentials(data["client_id"]),
                                refresh_token=token["refresh_token"], scope=token["scope"],
                                timeout=runtime.config.fhir_timeout)
    except SmartError:
        runtime.store.delete(sid)
        raise AppError(401, "The session expired and could not be renewed.", SESSION_ENDED) from None
    runtime.store.save(sid, data)
    log.info("access token renewed")
    return data["token"]["access_token"]


def auth_refused(data: dict[str, Any]) -> AppError:
    if data.get("token") is None:
        return AppError(502, "The FHIR server requires authorization but offers no SMART App Launch.",
                        "Ask its administrator for a SMART configuration, or use another server.")
    return AppError(401, "The EHR no longer accepts this session's access token.", SESSION_ENDED)


def _readable(data: dict[str, Any]) -> set[str] | None:
    token = data.get("token")
    return None if token is None else readable_types(token["scope"])


def can_write(data: dict[str, Any]) -> bool:
    token = data.get("token")
    return True if token is None else can_write_tasks(token["scope"])


def _as_of() -> date:
    return cfg().as_of or date.today()


def evaluate(sid: str, data: dict[str, Any], *, fresh: bool = False
             ) -> tuple[dict[str, Any], dict[str, Any] | None, FhirClient | None]:
    """The launched patient's report: (report, banner fields, client or None if cached).

    A report fetched less than ``IVIG_REPORT_CACHE_SECONDS`` ago in this session is reused
    (the JSON view after the page, the page after a Task write); ``fresh`` always fetches.
    The cache lives in the encrypted server-side session, never in the browser.
    """
    ttl = cfg().report_cache_seconds
    cached = data.get("cache")
    if not fresh and cached and time.time() - cached["at"] < ttl:
        return cached["report"], cached["banner"], None
    client = fhir_client(sid, data)
    try:
        record = client.patient_record(data["patient"], readable=_readable(data))
    except FhirAuthError:
        rt().store.delete(sid)
        raise auth_refused(data) from None
    except FhirUnreachable as exc:
        raise AppError(504, f"The FHIR server could not be reached: {exc}.",
                       "Try again in a moment.") from None
    except FhirError as exc:
        raise AppError(502, f"The FHIR server refused a request: {exc}.") from None
    # data["ruleset"] None: the patient's Coverage chooses (payer map), else IVIG_RULESET.
    report = evaluate_record(record, data.get("ruleset"), _as_of(), default_ruleset=cfg().ruleset,
                             payer_map=load_payer_map(cfg().payer_map))
    banner = patient_banner(record.patient)
    data["fetched_at"] = now_iso()
    if ttl > 0:
        data["cache"] = {"at": time.time(), "report": report, "banner": banner}
    rt().store.save(sid, data)
    return report, banner, client


def patient_banner(patient: dict[str, Any]) -> dict[str, Any]:
    """Name, birth date, sex and first identifier for the banner the EHR asked for (pure)."""
    name = None
    for hn in patient.get("name") or []:
        if not isinstance(hn, dict) or hn.get("use") == "old":
            continue
        name = hn.get("text") or " ".join(
            [*[g for g in hn.get("given") or [] if isinstance(g, str)], hn.get("family") or ""]).strip()
        if name:
            break
    ident = next((i.get("value") for i in patient.get("identifier") or []
                  if isinstance(i, dict) and isinstance(i.get("value"), str)), None)
    return {"name": name or None, "birth_date": patient.get("birthDate"),
            "gender": patient.get("gender"), "identifier": ident}
