"""The launched session: which launch a request belongs to, its token (renewed when
needed), its FHIR client and its report. Tokens live only in the server-side store.

A browser session (the ``ivig_sid`` cookie: an opaque random id) may hold several
launches, one per EHR tab or window. Each launch has its own random handle, carried in
the URL or form of every page it shows (``?ctx=…``), and is bound to the browser session
that completed it: a page always shows, and acts on, the patient it was opened for. A
handle without its browser session, or one that ended, gets a clear page, never another
patient.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from flask import Response, redirect, request

from fhir_mappings import PatientRecord

from ..attestation import RTYPE as RESPONSE, read_back
from ..fhir_client import FhirAuthError, FhirClient, FhirError, FhirUnreachable
from ..letter import patient_name
from ..payers import load_payer_map
from ..report import evaluate_record
from ..retrieval import fetch_report as retrieve
from ..runtime import Runtime, cfg, rt
from ..sessions import Store
from ..smart import (SmartError, can_attest, can_read_responses, can_write_documents, can_write_tasks,
                     readable_types, refresh)
from .common import SESSION_ENDED, AppError, now_iso, wants_json

log = logging.getLogger(__name__)

COOKIE = "ivig_sid"
CONTEXT = "ctx"  # the query or form field holding a launch's handle
MAX_LAUNCHES = 20  # launches one browser session keeps; the oldest ends first
REFRESH_LEEWAY = 30  # seconds before expiry at which a token is renewed ahead of use
TOUCH_EVERY = 60  # seconds between renewals of a browser session's expiry while it is used
_HANDLE = re.compile(r"^[A-Za-z0-9_\-]{32,64}$")
_SID = re.compile(r"^[A-Za-z0-9_\-]{32,64}$")


@dataclass
class Launch:
    """One launch: its handle (in the pages' URLs) and its data (in the store). Usable from
    the search threads too (no request context needed)."""

    handle: str
    data: dict[str, Any]
    store: Store

    @property
    def key(self) -> str:
        return launch_key(self.handle)

    def save(self) -> None:
        self.store.save(self.key, self.data)

    def end(self) -> None:
        self.store.delete(self.key)


def launch_key(handle: str) -> str:
    return f"launch:{handle}"


def _browser_key(sid: str) -> str:
    return f"browser:{sid}"


# --- the cookie and the browser session -------------------------------------------------------
def set_cookie(resp: Response, sid: str) -> Response:
    secure = not cfg().local_development
    # Inside an EHR iframe the app is a third party: only SameSite=None cookies reach it,
    # and browsers accept those only with Secure. Plain-http local development uses Lax.
    resp.set_cookie(COOKIE, sid, httponly=True, secure=secure,
                    samesite="None" if secure else "Lax", path="/")
    return resp


def cookie_sid() -> str | None:
    sid = request.cookies.get(COOKIE)
    return sid if sid and _SID.match(sid) else None


def browser_binding() -> str:
    """The id a pending authorisation is bound to: the cookie's, or a fresh one (set by the
    caller). Nothing is stored for an anonymous browser until a launch completes."""
    return cookie_sid() or secrets.token_urlsafe(32)


def begin(data: dict[str, Any], old_sid: str | None) -> tuple[str, Launch]:
    """Store a completed launch; returns (the browser session's new cookie id, the launch).

    The cookie id changes at every login (a planted id is worthless: no fixation), while
    the browser session's other launches (other tabs) carry over to the new id.
    """
    store = rt().store
    store.purge_expired()
    browser = store.get(_browser_key(old_sid)) if old_sid else None
    if browser is None or not isinstance(browser.get("bid"), str):
        browser = {"bid": secrets.token_urlsafe(32), "launches": []}
    if old_sid:
        store.delete(_browser_key(old_sid))
    launch = Launch(secrets.token_urlsafe(32), {**data, "browser": browser["bid"],
                                               "csrf": secrets.token_urlsafe(32)}, store)
    launch.save()
    handles = [h for h in browser.get("launches") or [] if isinstance(h, str)] + [launch.handle]
    for ended in handles[:-MAX_LAUNCHES]:
        store.delete(launch_key(ended))
    browser["launches"] = handles[-MAX_LAUNCHES:]
    browser["touched"] = time.time()
    sid = secrets.token_urlsafe(32)
    store.save(_browser_key(sid), browser)
    return sid, launch


def launched() -> Launch:
    """The launch this request names (``ctx``), if it belongs to this browser session."""
    store = rt().store
    sid = cookie_sid()
    browser = store.get(_browser_key(sid)) if sid else None
    if browser is None:
        raise AppError(401, "There is no active launch in this browser session.", SESSION_ENDED)
    handle = request.args.get(CONTEXT) or request.form.get(CONTEXT) or ""
    if not handle:
        raise AppError(400, "This page does not say which launch it belongs to.",
                       "Open the app from the EHR again (or from the launch page).")
    data = store.get(launch_key(handle)) if _HANDLE.match(handle) else None
    if data is None or "patient" not in data \
            or not secrets.compare_digest(str(data.get("browser", "")), browser["bid"]):
        raise AppError(401, "This launch has ended, or it belongs to another browser session. The app "
                       "shows no other patient in its place.", SESSION_ENDED)
    if time.time() - float(browser.get("touched") or 0) > TOUCH_EVERY:
        browser["touched"] = time.time()
        store.save(_browser_key(sid), browser)
    return Launch(handle, data, store)


# --- FHIR access for a launched session ---------------------------------------------------------
def fhir_client(launch: Launch) -> FhirClient:
    runtime = rt()
    data = launch.data
    token = data.get("token")
    if token is None:  # open server
        return runtime.fhir_client(data["iss"])
    if token.get("expires_at") and token["expires_at"] - REFRESH_LEEWAY < time.time():
        _refresh(runtime, launch, stale=token["access_token"])
    lock = threading.Lock()

    def on_unauthorized(refused: str | None) -> str | None:
        # Called from the search threads: one refresh for all of them.
        with lock:
            return _refresh(runtime, launch, stale=refused)

    return runtime.fhir_client(data["iss"], token=data["token"]["access_token"],
                               on_unauthorized=on_unauthorized)


def _refresh(runtime: Runtime, launch: Launch, stale: str | None) -> str:
    """Renew the access token with the refresh token; the session ends if that fails.

    ``stale`` is the token that was refused or is expiring: if the session already holds
    another one (a parallel search or request renewed it), that one is used instead.
    """
    data = launch.data
    current = data["token"]["access_token"]
    if stale is not None and current != stale:
        return current
    stored = runtime.store.get(launch.key)
    if stored and stored.get("token") and stored["token"]["access_token"] not in (stale, None):
        data["token"] = stored["token"]
        return data["token"]["access_token"]
    token = data["token"]
    if not token.get("refresh_token"):
        launch.end()
        raise AppError(401, "The access token expired and the EHR gave no refresh token.", SESSION_ENDED)
    try:
        data["token"] = refresh(runtime.http, data["token_endpoint"], runtime.credentials(data["client_id"]),
                                refresh_token=token["refresh_token"], scope=token["scope"],
                                timeout=runtime.config.fhir_timeout)
    except SmartError:
        launch.end()
        raise AppError(401, "The session expired and could not be renewed.", SESSION_ENDED) from None
    launch.save()
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


def may(data: dict[str, Any], what: str) -> bool:
    """The launch's scopes allow ``what`` (``attest``, ``read-responses``, ``write-document``);
    an open server allows everything."""
    token = data.get("token")
    if token is None:
        return True
    check = {"attest": can_attest, "read-responses": can_read_responses,
             "write-document": can_write_documents}[what]
    return check(token["scope"])


def _as_of() -> date:
    return cfg().as_of or date.today()


def evaluate(launch: Launch, *, fresh: bool = False
             ) -> tuple[dict[str, Any], dict[str, Any] | None, FhirClient | None]:
    """The launched patient's report: (report, banner fields, client or None if cached).

    A report fetched less than ``IVIG_REPORT_CACHE_SECONDS`` ago in this session is reused
    (the JSON view after the page, the page after a Task write); ``fresh`` always fetches.
    The cache lives in the encrypted server-side session, never in the browser.
    """
    data = launch.data
    ttl = cfg().report_cache_seconds
    cached = data.get("cache")
    if not fresh and cached and time.time() - cached["at"] < ttl:
        return cached["report"], cached["banner"], None
    client = fhir_client(launch)
    record, report = fetch_report(launch, client)
    banner = patient_banner(record.patient)
    data["fetched_at"] = now_iso()
    if ttl > 0:
        data["cache"] = {"at": time.time(), "report": report, "banner": banner}
    launch.save()
    return report, banner, client


def fetch_report(launch: Launch, client: FhirClient) -> tuple[PatientRecord, dict[str, Any]]:
    """The launched patient's record and report, fresh from the FHIR server, with the
    clinician's attestations read back (attestation.read_back)."""
    data = launch.data
    config = cfg()
    with _fhir_errors(launch):
        # Planned retrieval (retrieval.py): coded searches first, category searches only
        # when the report still misses an item an Observation could supply.
        record, report = retrieve(client, data["patient"], data.get("ruleset"), _as_of(),
                                  readable=_readable(data), capabilities=rt().capabilities(data["iss"]),
                                  default_ruleset=config.ruleset, payer_map=load_payer_map(config.payer_map),
                                  canonical_base=config.canonical_base)
        if may(data, "read-responses"):
            return read_back(record, report, lambda ids: client.read_existing(RESPONSE, ids),
                             lambda rec: report_of(data, rec))
    if (report.get("attestation") or {}).get("items"):
        report["warnings"].append(UNREAD_ATTESTATIONS)
    return record, report


UNREAD_ATTESTATIONS = ("The EHR did not let the app read clinician attestations (QuestionnaireResponse): "
                       "an attestation recorded earlier is not shown, and the items it answers are listed as missing.")


def report_of(data: dict[str, Any], record: PatientRecord) -> dict[str, Any]:
    """The report of a record (pure). data["ruleset"] None: the patient's Coverage chooses
    (payer map), else IVIG_RULESET."""
    config = cfg()
    return evaluate_record(record, data.get("ruleset"), _as_of(), default_ruleset=config.ruleset,
                           payer_map=load_payer_map(config.payer_map), canonical_base=config.canonical_base)


@contextmanager
def _fhir_errors(launch: Launch) -> Iterator[None]:
    """FHIR client errors as the pages' errors (an auth failure ends the launch)."""
    try:
        yield
    except FhirAuthError:
        launch.end()
        raise auth_refused(launch.data) from None
    except FhirUnreachable as exc:
        raise AppError(504, f"{exc}.", "Try again in a moment.") from None
    except FhirError as exc:
        raise AppError(502, f"The FHIR server refused a request: {exc}.") from None


def write_or_back(launch: Launch, write: Callable[[], Any], *, failure: str, back: str, busy: str,
                  flash: str = "flash") -> tuple[Any, Response | None]:
    """Run a write to the FHIR server: (its result, None), or (None, the redirect back to the
    page, whose flash says why) when the server refused it. JSON callers get the error as
    502; an ended authorization ends the launch; a writer still holding the store's lock for
    the resource is a 503 (``busy``)."""
    try:
        return write(), None
    except TimeoutError:
        raise AppError(503, busy, "Try again in a moment.") from None
    except FhirAuthError:
        launch.end()
        raise auth_refused(launch.data) from None
    except FhirError as exc:
        message = f"{failure}: {exc}."
        if wants_json():
            raise AppError(502, message) from None
        launch.data[flash] = {"error": message}
        launch.save()
        return None, redirect(back, code=303)


def patient_banner(patient: dict[str, Any]) -> dict[str, Any]:
    """Name, birth date, sex and first identifier for the banner the EHR asked for (pure)."""
    name = patient_name(patient)
    ident = next((i.get("value") for i in patient.get("identifier") or []
                  if isinstance(i, dict) and isinstance(i.get("value"), str)), None)
    return {"name": name or None, "birth_date": patient.get("birthDate"),
            "gender": patient.get("gender"), "identifier": ident}
