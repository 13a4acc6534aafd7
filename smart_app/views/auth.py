"""SMART App Launch: ``/launch`` (EHR and standalone) and ``/callback`` (CONTRACT §5).

One normalised issuer (``config.normalize_base``) is used for the allow-list check, the
discovery, ``aud`` and the session. Servers used without authorization are the configured
open issuers only; a failed discovery is an error (and is not cached), never an open
server.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, redirect, request, url_for

from ..config import normalize_base
from ..engine.model import RulesetError, get_ruleset
from ..fhir_client import is_fhir_id
from ..runtime import cfg, rt
from ..sessions import StoreFull
from ..smart import (SmartError, authorization_request, exchange_code, fhir_user, jwks_location,
                     readable_types, requested_scopes, verify_id_token)
from .common import SESSION_ENDED, AppError, now_iso
from .launched import CONTEXT, begin, browser_binding, cookie_sid, set_cookie

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)


def _issuer() -> str:
    """The launch's ``iss``, normalised, once it is on the allow-list (before any request)."""
    raw = (request.args.get("iss") or "").strip()
    if not raw:
        raise AppError(400, "The launch did not say which FHIR server to use (iss is missing).",
                       "Launch from the EHR, or enter a FHIR base URL on the launch page.")
    try:
        iss = normalize_base(raw)
    except ValueError:
        iss = ""
    if not iss or not cfg().issuer_allowed(iss):
        log.warning("launch refused: issuer not on the allow-list")
        raise AppError(403, "This FHIR server is not on the app's list of allowed servers.",
                       "An administrator can add it to IVIG_ALLOWED_ISSUERS.")
    return iss


def _to_report(sid: str, handle: str):
    return set_cookie(redirect(url_for("report.report_page", **{CONTEXT: handle})), sid)


@bp.get("/launch")
def launch():
    config = cfg()
    iss = _issuer()
    ruleset = (request.args.get("ruleset") or "").strip() or None  # None: chosen by Coverage
    try:
        if ruleset:
            get_ruleset(ruleset)
    except RulesetError as exc:
        raise AppError(400, str(exc)) from None
    if config.issuer_open(iss):
        patient = (request.args.get("patient") or "").strip()
        if not is_fhir_id(patient):
            raise AppError(400, "This FHIR server is used without authorization; give a patient id to open.",
                           "Use the launch page's form with the patient id.")
        sid, opened = begin({"iss": iss, "patient": patient, "ruleset": ruleset, "token": None,
                             "standalone": True, "launched_at": now_iso()}, cookie_sid())
        log.info("open-server launch")
        return _to_report(sid, opened.handle)
    try:
        smart = rt().discover(iss)
    except SmartError as exc:
        raise AppError(502, f"The app could not start: {exc}.") from None
    launch_id = request.args.get("launch")
    # Only a sandbox deployment's launch form (a standalone launch) may name the client.
    form_client = None if launch_id else (request.args.get("client_id") or "").strip() or None
    creds = rt().credentials(form_client)
    scope = config.scopes or requested_scopes(smart, standalone=not launch_id)
    pending = authorization_request(smart, creds, iss=iss, redirect_uri=config.redirect_uri,
                                    scope=scope, launch=launch_id)
    sid = browser_binding()
    store = rt().store
    store.purge_expired()
    try:
        store.put_state(pending.state, sid, {
            "iss": iss, "verifier": pending.code_verifier, "token_endpoint": smart.token_endpoint,
            "scope": scope, "client_id": creds.client_id, "ruleset": ruleset,
            "standalone": not launch_id, "redirect_uri": config.redirect_uri, "nonce": pending.nonce,
            "oidc_issuer": smart.issuer or iss, "jwks_uri": smart.jwks_uri,
        })
    except StoreFull:
        log.warning("launch refused: too many sign-ins in progress")
        raise AppError(503, "Too many sign-ins are in progress; nothing was started.",
                       "Try again in a few minutes.") from None
    log.info("%s launch: redirecting to the authorization server", "standalone" if not launch_id else "EHR")
    return set_cookie(redirect(pending.authorize_url), sid)


@bp.get("/callback")
def callback():
    if request.args.get("error"):
        error = request.args["error"]
        safe = error if re.fullmatch(r"[a-z_]{1,40}", error) else "error"
        raise AppError(403, f"The EHR did not authorize the app ({safe}).", SESSION_ENDED)
    state, code = request.args.get("state"), request.args.get("code")
    if not state or not code:
        raise AppError(400, "The sign-in answer is incomplete (code or state missing).", SESSION_ENDED)
    old_sid = cookie_sid()
    pending = rt().store.take_state(state, old_sid)
    if pending is None:
        log.warning("callback refused: unknown, replayed or foreign state")
        raise AppError(400, "This sign-in answer is not valid for this browser session, or was already used.",
                       SESSION_ENDED)
    redirect_uri = pending.get("redirect_uri") or cfg().redirect_uri
    try:
        token, context = exchange_code(rt().http, pending["token_endpoint"],
                                       rt().credentials(pending["client_id"]), code=code,
                                       code_verifier=pending["verifier"], redirect_uri=redirect_uri,
                                       requested_scope=pending["scope"], timeout=cfg().fhir_timeout)
    except SmartError as exc:
        raise AppError(502, f"Sign-in failed: {exc}.", SESSION_ENDED) from None
    patient = context.pop("patient")
    if not is_fhir_id(patient):
        raise AppError(400, "The EHR did not say which patient the app is for.",
                       "Launch the app from a patient's chart.")
    id_token = context.pop("id_token", None)
    requester, unverified = _requester(pending, id_token)
    data = {"iss": pending["iss"], "patient": patient, "ruleset": pending["ruleset"], "token": token,
            "token_endpoint": pending["token_endpoint"], "client_id": pending["client_id"],
            "standalone": pending["standalone"], "launched_at": now_iso(), "fhir_user": requester,
            "identity_unverified": unverified, **context}
    sid, opened = begin(data, old_sid)
    log.info("launch authorized; %d resource types readable", len(readable_types(token["scope"])))
    return _to_report(sid, opened.handle)


def _requester(pending: dict[str, Any], id_token: str | None) -> tuple[str | None, bool]:
    """(``fhirUser`` of a verified id_token, whether an id_token was refused). A token that
    does not verify names no requester: a forged ``fhirUser`` never reaches a Task."""
    if not id_token:
        return None, False
    issuer = pending.get("oidc_issuer") or pending["iss"]
    runtime = rt()
    try:
        jwks_uri = pending.get("jwks_uri") or runtime.discovered.get(
            f"openid-configuration|{issuer}",
            lambda: jwks_location(runtime.http, issuer, runtime.config.fhir_timeout))
        try:
            claims = verify_id_token(id_token, runtime.signing_keys(jwks_uri), issuer=issuer,
                                     client_id=pending["client_id"], nonce=pending.get("nonce"))
        except SmartError:  # perhaps a new signing key: read the key set again, once
            claims = verify_id_token(id_token, runtime.signing_keys(jwks_uri, fresh=True), issuer=issuer,
                                     client_id=pending["client_id"], nonce=pending.get("nonce"))
    except SmartError as exc:
        log.warning("id_token not accepted, the Task will name no requester: %s", exc)
        return None, True
    return fhir_user(claims), False
