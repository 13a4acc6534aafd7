"""The Flask app: SMART launch, report page, report JSON, Task write-back (CONTRACT §5).

Views do the I/O (FHIR server, authorization server, session store) and hand data to the
pure core (``report.evaluate_record``, ``task.build_task``). Tokens live only in the
server-side session store; the browser holds an opaque session id. Error pages carry one
plain sentence, never a stack trace, a token or patient data, and nothing with PHI is
logged.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from datetime import date, datetime, timezone
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from flask import (Blueprint, Flask, Response, abort, current_app, jsonify, redirect,
                   render_template, request, url_for)
from werkzeug.exceptions import HTTPException


from .config import Config, load_config
from .engine.model import RulesetError, available_rulesets, get_ruleset
from .fhir_client import FhirAuthError, FhirClient, FhirError, FhirUnreachable
from .payers import load_payer_map
from .report import evaluate_record
from .sessions import SessionStore
from .smart import (READ_TYPES, ClientCredentials, SmartError, authorization_request,
                    can_write_tasks, discover, exchange_code, load_private_key, public_jwks,
                    readable_types, refresh, requested_scopes)
from .task import build_task, documentation_codesystem, task_identifier

log = logging.getLogger(__name__)
bp = Blueprint("web", __name__)

COOKIE = "ivig_sid"
REFRESH_LEEWAY = 30  # seconds before expiry at which a token is renewed ahead of use
DISCOVERY_TTL = 300  # seconds a server's SMART configuration is reused
SOURCE_TYPES = set(READ_TYPES) | {"Task"}
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class AppError(Exception):
    """An error for the user: HTTP status, one safe sentence, and what to do next."""

    def __init__(self, status: int, message: str, hint: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.hint = hint


SESSION_ENDED = "Launch the app again from the EHR (or from the launch page)."


# --- app factory -----------------------------------------------------------------------------
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


def create_app(config: Config | None = None) -> Flask:
    app = Flask(__name__)
    config = config or load_config()
    app.config["IVIG"] = config
    app.config["SECRET_KEY"] = config.secret_key
    app.extensions["ivig"] = Runtime(config)
    app.register_blueprint(bp)
    from .cds_hooks import register_cds_hooks  # CDS Hooks service (+ the demo's CDS client)
    register_cds_hooks(app)
    app.before_request(_start_timer)
    app.after_request(_security_headers)
    app.after_request(_access_log)
    app.register_error_handler(AppError, _app_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def rt() -> Runtime:
    return current_app.extensions["ivig"]


def cfg() -> Config:
    return rt().config


# --- headers, access log, errors ----------------------------------------------------------------
access_log = logging.getLogger("smart_app.access")


def _start_timer() -> None:
    request.environ["ivig.start"] = time.perf_counter()


def _access_log(resp: Response) -> Response:
    """Method, route pattern (never the concrete path or query: ids, codes), status, time."""
    rule = request.url_rule.rule if request.url_rule else "(no route)"
    started = request.environ.get("ivig.start", time.perf_counter())
    access_log.info("%s %s %d %.0fms", request.method, rule, resp.status_code,
                    (time.perf_counter() - started) * 1000)
    return resp


def _security_headers(resp: Response) -> Response:
    config = cfg()
    form_targets = "'self' https:"
    if config.local_development:
        form_targets += " http://127.0.0.1:* http://localhost:*"
    resp.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"object-src 'none'; base-uri 'none'; form-action {form_targets}; "
        f"frame-ancestors {config.csp_frame_ancestors}"
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint not in ("static", "web.launch_page", "web.jwks", "web.codesystem"):
        resp.headers["Cache-Control"] = "no-store"
    if config.public_base_url.startswith("https://"):
        resp.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return resp


def _wants_json() -> bool:
    """JSON for /api/* and for a POST that prefers JSON (``Accept: application/json``);
    HTML for browsers and for ``*/*``."""
    accept = request.accept_mimetypes
    return request.path.startswith("/api/") or (
        request.method == "POST" and accept["application/json"] > accept["text/html"]
    )


def _error_response(status: int, message: str, hint: str | None = None) -> tuple[Any, int]:
    if _wants_json():
        body: dict[str, Any] = {"error": message}
        if hint:
            body["hint"] = hint
        return jsonify(body), status
    return render_template("error.html", title=_TITLES.get(status, "Something went wrong"),
                           message=message, status=status, hint=hint,
                           relaunch_href=url_for("web.launch_page")), status


_TITLES = {400: "The request could not be used", 401: "Your session has ended",
           403: "Not allowed", 404: "Not found", 502: "The FHIR server could not be used",
           504: "The FHIR server did not answer"}


def _app_error(exc: AppError):
    log.info("request refused: %s %s -> %d", request.method, request.path, exc.status)
    return _error_response(exc.status, exc.message, exc.hint)


def _http_error(exc: HTTPException):
    return _error_response(exc.code or 500, exc.description or exc.name)


def _unexpected_error(exc: Exception):
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
    # The type and place only: exception messages may quote record data.
    log.error("unexpected %s at %s on %s %s", type(exc).__name__, where, request.method, request.path)
    return _error_response(500, "The app hit an unexpected error. Nothing was written to the EHR.",
                           SESSION_ENDED)


# --- sessions --------------------------------------------------------------------------------
def _set_cookie(resp: Response, sid: str) -> Response:
    secure = not cfg().local_development
    # Inside an EHR iframe the app is a third party: only SameSite=None cookies reach it,
    # and browsers accept those only with Secure. Plain-http local development uses Lax.
    resp.set_cookie(COOKIE, sid, httponly=True, secure=secure,
                    samesite="None" if secure else "Lax", path="/")
    return resp


def _new_session(data: dict[str, Any], old_sid: str | None = None) -> str:
    """A fresh session id for a fresh login (the old id, if any, is dropped: no fixation)."""
    store = rt().store
    store.delete(old_sid)
    store.purge_expired()
    data["csrf"] = secrets.token_urlsafe(32)
    return store.create(data)


def _launched() -> tuple[str, dict[str, Any]]:
    sid = request.cookies.get(COOKIE)
    data = rt().store.get(sid)
    if not sid or not data or "patient" not in data:
        raise AppError(401, "There is no active launch in this browser session.", SESSION_ENDED)
    return sid, data


# --- FHIR access for a launched session ---------------------------------------------------------
def _client(sid: str, data: dict[str, Any]) -> FhirClient:
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


def _auth_refused(data: dict[str, Any]) -> AppError:
    if data.get("token") is None:
        return AppError(502, "The FHIR server requires authorization but offers no SMART App Launch.",
                        "Ask its administrator for a SMART configuration, or use another server.")
    return AppError(401, "The EHR no longer accepts this session's access token.", SESSION_ENDED)


def _readable(data: dict[str, Any]) -> set[str] | None:
    token = data.get("token")
    return None if token is None else readable_types(token["scope"])


def _can_write(data: dict[str, Any]) -> bool:
    token = data.get("token")
    return True if token is None else can_write_tasks(token["scope"])


def _as_of() -> date:
    return cfg().as_of or date.today()


def _evaluate(sid: str, data: dict[str, Any], *, fresh: bool = False
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
    client = _client(sid, data)
    try:
        record = client.patient_record(data["patient"], readable=_readable(data))
    except FhirAuthError:
        rt().store.delete(sid)
        raise _auth_refused(data) from None
    except FhirUnreachable as exc:
        raise AppError(504, f"The FHIR server could not be reached: {exc}.",
                       "Try again in a moment.") from None
    except FhirError as exc:
        raise AppError(502, f"The FHIR server refused a request: {exc}.") from None
    # data["ruleset"] None: the patient's Coverage chooses (payer map), else IVIG_RULESET.
    report = evaluate_record(record, data.get("ruleset"), _as_of(), default_ruleset=cfg().ruleset,
                             payer_map=load_payer_map(cfg().payer_map))
    banner = patient_banner(record.patient)
    data["fetched_at"] = _now()
    if ttl > 0:
        data["cache"] = {"at": time.time(), "report": report, "banner": banner}
    rt().store.save(sid, data)
    return report, banner, client


# --- routes: launch --------------------------------------------------------------------------
@bp.get("/")
def index():
    return redirect(url_for("web.launch_page"))


@bp.get("/launch.html")
def launch_page():
    config = cfg()
    demo = None
    if config.demo_iss:
        demo = {"iss": config.demo_iss,
                "patients": [{"id": p.id, "label": p.label, "ruleset": p.ruleset,
                              "determination_hint": p.determination} for p in config.demo_patients]}
    return render_template("launch.html", public_base_url=config.public_base_url,
                           allowed_issuers=list(config.allowed_issuers),
                           default_client_id=config.client_id, demo=demo)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/.well-known/jwks.json")
def jwks():
    keys = rt().jwks
    if keys is None:
        abort(404, "This app authenticates without a key pair (no IVIG_PRIVATE_KEY_FILE).")
    return jsonify(keys)


@bp.get("/fhir/CodeSystem/ivig-documentation")
def codesystem():
    """The app's CodeSystem of documentation items (CONTRACT §3), as FHIR R4 JSON."""
    return jsonify(documentation_codesystem(cfg().public_base_url))


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
        if not _ID.match(patient):
            raise AppError(400, "This FHIR server has no authorization; give a patient id to open.",
                           "Use the launch page's form with the patient id.")
        sid = _new_session({"iss": iss, "patient": patient, "ruleset": ruleset, "token": None,
                            "standalone": True, "launched_at": _now()}, old_sid)
        log.info("open-server launch")
        return _set_cookie(redirect(url_for("web.report_page")), sid)
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
    return _set_cookie(redirect(pending.authorize_url), sid)


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
    if not patient or not _ID.match(patient):
        raise AppError(400, "The EHR did not say which patient the app is for.",
                       "Launch the app from a patient's chart.")
    data = {"iss": pending["iss"], "patient": patient, "ruleset": pending["ruleset"], "token": token,
            "token_endpoint": pending["token_endpoint"], "client_id": pending["client_id"],
            "standalone": pending["standalone"], "launched_at": _now(), **context}
    sid = _new_session(data, old_sid)
    log.info("launch authorized; %d resource types readable", len(readable_types(token["scope"])))
    return _set_cookie(redirect(url_for("web.report_page")), sid)


# --- routes: report --------------------------------------------------------------------------
@bp.get("/report")
def report_page():
    sid, data = _launched()
    if "ruleset" in request.args:  # the clinician switches policy (GET form); "" = the payer's
        chosen = request.args["ruleset"].strip() or None
        if chosen is not None and chosen not in available_rulesets():
            raise AppError(400, "That ruleset is not available.", "Choose one from the list on the report.")
        data["ruleset"] = chosen
        data.pop("cache", None)
        rt().store.save(sid, data)
        return redirect(url_for("web.report_page"), code=303)
    report, banner, _ = _evaluate(sid, data, fresh=request.args.get("refresh") == "1")
    flash = data.pop("flash", None)
    if flash is not None:
        rt().store.save(sid, data)
    show_banner = data.get("need_patient_banner") or data.get("standalone")
    return render_template(
        "report.html", report=report, banner=banner if show_banner else None,
        source_href=lambda ref: _source_href(data, ref), csrf_token=data["csrf"],
        can_write_task=_can_write(data), task_result=(flash or {}).get("task_result"),
        error=(flash or {}).get("error"), fhir_base=data["iss"],
        launched_at=data.get("fetched_at") or data["launched_at"],
        rulesets=[(r.id, r.title) for r in available_rulesets().values()],
        ruleset_requested=data.get("ruleset"),
        # The stylesheet link only; the EHR's style document is fetched when the browser
        # asks for /smart-style.css, off the report's critical path.
        style_vars=bool(data.get("smart_style_url") or data.get("style")),
    )


@bp.get("/api/report")
def api_report():
    sid, data = _launched()
    report, _, _ = _evaluate(sid, data)
    return jsonify(report)


@bp.get("/smart-style.css")
def smart_style_css():
    sid, data = _launched()
    style = _style_vars(sid, data)
    body = ":root {\n" + "".join(f"  {k}: {v};\n" for k, v in style.items()) + "}\n"
    return Response(body, mimetype="text/css")


@bp.get("/source/<rtype>/<rid>")
def source(rtype: str, rid: str):
    sid, data = _launched()
    if rtype not in SOURCE_TYPES or not _ID.match(rid):
        raise AppError(404, "The app does not show that kind of resource.")
    try:
        resource = _client(sid, data).read(rtype, rid)
    except FhirAuthError:
        raise _auth_refused(data) from None
    except FhirError as exc:
        raise AppError(502, f"The FHIR server could not return {rtype}/{rid}: {exc}.") from None
    return render_template("source.html", reference=f"{rtype}/{rid}",
                           server_url=f"{data['iss']}/{rtype}/{quote(rid, safe='')}",
                           resource_json=json.dumps(resource, indent=2, ensure_ascii=False),
                           back_href=url_for("web.report_page"),
                           style_vars=bool(data.get("smart_style_url") or data.get("style")))


def _source_href(data: dict[str, Any], reference: str) -> str:
    rtype, _, rid = reference.partition("/")
    if rtype in SOURCE_TYPES and _ID.match(rid):
        return url_for("web.source", rtype=rtype, rid=rid)
    return url_for("web.report_page")


# --- routes: Task write-back -----------------------------------------------------------------
@bp.post("/task")
def post_task():
    sid, data = _launched()
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if not secrets.compare_digest(sent.encode(), data["csrf"].encode()):
        log.warning("Task write refused: CSRF token missing or wrong")
        raise AppError(403, "The form's security token is missing or wrong; nothing was written.",
                       "Reload the report and press the button again.")
    if not _can_write(data):
        raise AppError(403, "The EHR did not grant this app permission to write Tasks.")
    report, _, client = _evaluate(sid, data, fresh=True)  # the Task reflects the record as it is now
    assert client is not None
    base = cfg().public_base_url
    now = datetime.now(timezone.utc)
    requester = data.get("fhir_user")
    ident = task_identifier(report, base)
    try:
        with rt().store.lock(f"task|{ident['system']}|{ident['value']}"):
            stored, created = client.upsert_task(
                build_task(report, base, now=now, requester=requester) or {"identifier": [ident]},
                lambda existing: build_task(report, base, now=now, requester=requester, existing=existing),
            )
    except TimeoutError:
        raise AppError(503, "Another request is still writing this Task; nothing was written.",
                       "Try again in a moment.") from None
    except FhirAuthError:
        rt().store.delete(sid)
        raise _auth_refused(data) from None
    except FhirError as exc:
        message = f"The Task could not be written: {exc}."
        if _wants_json():
            raise AppError(502, message) from None
        data["flash"] = {"error": message}
        rt().store.save(sid, data)
        return redirect(url_for("web.report_page"), code=303)
    log.info("Task %s (status %s)", "created" if created else "updated" if stored else "not needed",
             stored.get("status") if stored else "-")
    if _wants_json():
        return jsonify({"task": stored, "created": created})
    result = None
    if stored:
        ref = f"Task/{stored.get('id')}"
        result = {"reference": ref, "status": stored.get("status"), "created": created,
                  "href": _task_href(stored)}
    data["flash"] = {"task_result": result} if result else {"error": None, "task_result": None}
    rt().store.save(sid, data)
    return redirect(url_for("web.report_page"), code=303)


def _task_href(task: dict[str, Any]) -> str | None:
    """The app's view of the stored Task: fetched live from the FHIR server, readable in
    the browser (a raw FHIR URL would download as a file, and needs the token)."""
    tid = task.get("id")
    if not isinstance(tid, str) or not _ID.match(tid):
        return None
    return url_for("web.source", rtype="Task", rid=tid)


# --- presentation helpers (pure) ---------------------------------------------------------------
def patient_banner(patient: dict[str, Any]) -> dict[str, Any]:
    """Name, birth date, sex and first identifier for the banner the EHR asked for."""
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


_COLOR = re.compile(r"^#[0-9A-Fa-f]{3,8}$|^rgba?\([0-9., %]{5,40}\)$")
_FONT = re.compile(r"^[A-Za-z0-9 ,\-\"']{1,120}$")
_STYLE_KEYS = {"color_background": ("--smart-bg", _COLOR), "color_text": ("--smart-text", _COLOR),
               "color_highlight": ("--smart-accent", _COLOR), "font_family_body": ("--smart-font", _FONT)}


def style_vars(style: Any) -> dict[str, str]:
    """CSS custom properties from a SMART style document; anything unexpected is dropped."""
    out: dict[str, str] = {}
    if not isinstance(style, dict):
        return out
    for key, (var, pattern) in _STYLE_KEYS.items():
        value = style.get(key)
        if isinstance(value, str) and pattern.match(value.strip()):
            out[var] = value.strip()
    return out


def _style_vars(sid: str, data: dict[str, Any]) -> dict[str, str]:
    """The EHR's ``smart_style_url`` styles, fetched once per session (best effort)."""
    if "style" in data:
        return data["style"]
    url = data.get("smart_style_url")
    style: dict[str, str] = {}
    if url and (urlsplit(url).scheme == "https" or cfg().local_development):
        try:
            resp = rt().http.get(url, timeout=3, headers={"Accept": "application/json"})
            if resp.status_code == 200:
                style = style_vars(resp.json())
        except (requests.RequestException, ValueError):
            log.info("smart_style_url could not be read; default styles used")
    data["style"] = style
    rt().store.save(sid, data)
    return style


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
