"""SMART App Launch: ``/launch`` (EHR and standalone) and ``/callback`` (CONTRACT §5)."""

from __future__ import annotations

import logging
import re

from flask import Blueprint, redirect, request, url_for

from ..engine.model import RulesetError, get_ruleset
from ..runtime import cfg, rt
from ..smart import SmartError, authorization_request, exchange_code, readable_types, requested_scopes
from .common import FHIR_ID, SESSION_ENDED, AppError, now_iso
from .launched import COOKIE, new_session, set_cookie

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)


@bp.get("/launch")
def launch():
    config = cfg()
    iss = (request.args.get("iss") or "").strip()
    if not iss:
        raise AppError(400, "The launch did not say which FHIR server to use (iss is missing).",
                       "Launch from the EHR, or enter a FHIR base URL on the launch page.")
    # The allow-list is checked before anything is fetched or any redirect is sent.
    if not config.issuer_allowed(iss):
        log.warning("launch refused: issuer not on the allow-list")
        raise AppError(403, "This FHIR server is not on the app's list of allowed servers.",
                       "An administrator can add it to IVIG_ALLOWED_ISSUERS.")
    ruleset = (request.args.get("ruleset") or "").strip() or None  # None: chosen by Coverage
    try:
        if ruleset:
            get_ruleset(ruleset)
    except RulesetError as exc:
        raise AppError(400, str(exc)) from None
    iss = iss.rstrip("/")
    try:
        smart = rt().discover(iss)
    except SmartError as exc:
        raise AppError(502, f"The app could not start: {exc}.") from None
    old_sid = request.cookies.get(COOKIE)
    if smart is None:
        patient = (request.args.get("patient") or "").strip()
        if not FHIR_ID.match(patient):
            raise AppError(400, "This FHIR server has no authorization; give a patient id to open.",
                           "Use the launch page's form with the patient id.")
        sid = new_session({"iss": iss, "patient": patient, "ruleset": ruleset, "token": None,
                           "standalone": True, "launched_at": now_iso()}, old_sid)
        log.info("open-server launch")
        return set_cookie(redirect(url_for("report.report_page")), sid)
    creds = rt().credentials((request.args.get("client_id") or "").strip() or None)
    launch_id = request.args.get("launch")
    scope = config.scopes or requested_scopes(smart, standalone=not launch_id)
    pending = authorization_request(smart, creds, iss=iss, redirect_uri=config.redirect_uri,
                                    scope=scope, launch=launch_id)
    sid = old_sid if old_sid and rt().store.get(old_sid) is not None else rt().store.create({})
    rt().store.put_state(pending.state, sid, {
        "iss": iss, "verifier": pending.code_verifier, "token_endpoint": smart.token_endpoint,
        "scope": scope, "client_id": creds.client_id, "ruleset": ruleset,
        "standalone": not launch_id,
    })
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
    old_sid = request.cookies.get(COOKIE)
    pending = rt().store.take_state(state, old_sid)
    if pending is None:
        log.warning("callback refused: unknown, replayed or foreign state")
        raise AppError(400, "This sign-in answer is not valid for this browser session, or was already used.",
                       SESSION_ENDED)
    try:
        token, context = exchange_code(rt().http, pending["token_endpoint"],
                                       rt().credentials(pending["client_id"]), code=code,
                                       code_verifier=pending["verifier"],
                                       redirect_uri=cfg().redirect_uri,
                                       requested_scope=pending["scope"], timeout=cfg().fhir_timeout)
    except SmartError as exc:
        raise AppError(502, f"Sign-in failed: {exc}.", SESSION_ENDED) from None
    patient = context.pop("patient")
    if not patient or not FHIR_ID.match(patient):
        raise AppError(400, "The EHR did not say which patient the app is for.",
                       "Launch the app from a patient's chart.")
    data = {"iss": pending["iss"], "patient": patient, "ruleset": pending["ruleset"], "token": token,
            "token_endpoint": pending["token_endpoint"], "client_id": pending["client_id"],
            "standalone": pending["standalone"], "launched_at": now_iso(), **context}
    sid = new_session(data, old_sid)
    log.info("launch authorized; %d resource types readable", len(readable_types(token["scope"])))
    return set_cookie(redirect(url_for("report.report_page")), sid)
