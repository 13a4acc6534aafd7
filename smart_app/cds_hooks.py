"""CDS Hooks 2.0 service: the coverage check at order entry (``order-sign``, ``order-select``).

Routes (CONTRACT §6): ``GET /cds-services`` (discovery) and ``POST /cds-services/ivig-coverage``
(order-sign and order-select; ``ivig-coverage-select`` is the same service registered for
order-select, since a discovery entry names one hook).

A call is answered in this order:
1. The CDS client's JWT (``Authorization: Bearer``) is verified: its ``iss`` must be a client
   configured in ``IVIG_CDS_CLIENTS`` (with the URL of its JWK Set), signed with an asymmetric
   algorithm by a key of that set, ``aud`` = this service's URL, ``exp`` in the future and at
   most ``MAX_JWT_LIFETIME`` away, ``iat`` not in the future, and a ``jti`` never seen before
   (claimed once in the shared session store). Anything else: 401.
2. The request is checked field by field against the specification (400 otherwise).
3. The IVIG/SCIG ``MedicationRequest`` among ``context.draftOrders`` (for order-select: among
   ``context.selections``) is the order evaluated. None: ``{"cards": []}``, and nothing more is read.
4. The record comes from ``prefetch``; a key that is absent (or carries a paging link) is
   fetched from ``fhirServer`` with ``fhirAuthorization`` — only when ``fhirServer`` is on
   ``IVIG_ALLOWED_ISSUERS`` (403 otherwise; no request is sent to it). Without a way to fetch
   it: 412, as the specification says.
5. The same pure pipeline as the report (payer choice from Coverage, facts, criteria) gives
   one card: ``info`` criteria met, ``warning`` documentation missing (or no indication),
   ``critical`` not covered / criteria not met; the summary under 140 characters, the missing
   items in ``detail``, the policy as ``source``, and a ``smart`` link that launches this app.

Discovery needs no JWT (it holds no patient data); every service call does. Nothing that
identifies the patient, and no token, is logged.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import quote

import requests
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from werkzeug.exceptions import HTTPException

from fhir_mappings import PatientRecord, extract_facts

from .config import CdsClient, Config
from .fhir_client import FhirAuthError, FhirClient, FhirError
from .payers import load_payer_map
from .report import evaluate_record
from .smart import readable_types

log = logging.getLogger(__name__)
bp = Blueprint("cds", __name__)

SERVICE_ID = "ivig-coverage"
SELECT_SERVICE_ID = "ivig-coverage-select"
HOOKS = ("order-sign", "order-select")
PATIENT_TOKEN = "{{context.patientId}}"
# What the engine reads (the types of search_plan.PATIENT_TYPES and OPTIONAL_TYPES), as prefetch templates.
PREFETCH: dict[str, str] = {
    "patient": f"Patient/{PATIENT_TOKEN}",
    "observations": f"Observation?patient={PATIENT_TOKEN}",
    "conditions": f"Condition?patient={PATIENT_TOKEN}",
    "medicationRequests": f"MedicationRequest?patient={PATIENT_TOKEN}&_include=MedicationRequest:medication",
    "medicationAdministrations": f"MedicationAdministration?patient={PATIENT_TOKEN}",
    "medicationDispenses": f"MedicationDispense?patient={PATIENT_TOKEN}",
    "medicationStatements": f"MedicationStatement?patient={PATIENT_TOKEN}",
    "immunizations": f"Immunization?patient={PATIENT_TOKEN}",
    "procedures": f"Procedure?patient={PATIENT_TOKEN}",
    "diagnosticReports": f"DiagnosticReport?patient={PATIENT_TOKEN}",
    "allergyIntolerances": f"AllergyIntolerance?patient={PATIENT_TOKEN}",
    "coverages": f"Coverage?patient={PATIENT_TOKEN}&_include=Coverage:payor",
}
PREFETCH_TYPE = {key: re.split(r"[/?]", template, maxsplit=1)[0] for key, template in PREFETCH.items()}
DESCRIPTION = ("Checks a draft immune globulin (IVIG/SCIG) order against the patient's payer's "
               "coverage policy (chosen from Coverage) and returns one card: criteria met, the "
               "documentation still missing, or not covered, with a link to the full check.")
USAGE = ("Calls need a JWT signed by a registered CDS client (iss and JWK Set URL configured by the "
         "service). Send the prefetch; without it, fhirServer (on the service's allow-list) and "
         "fhirAuthorization with patient read scopes for the prefetch types are needed.")
SERVICES: dict[str, dict[str, Any]] = {
    SERVICE_ID: {"hook": "order-sign", "title": "IVIG/SCIG coverage check at signing"},
    SELECT_SERVICE_ID: {"hook": "order-select", "title": "IVIG/SCIG coverage check at order selection"},
}

ALLOWED_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
LEEWAY = 30  # seconds of clock skew tolerated on exp / iat
MAX_JWT_LIFETIME = 600  # seconds: a JWT that stays valid longer is refused (bounds the jti memory)
JWKS_TTL = 300.0  # seconds a client's JWK Set is reused
JWKS_MIN_REFETCH = 30.0  # an unknown kid refetches the set at most this often
JWKS_MAX_BYTES = 64 * 1024
SUMMARY_LIMIT = 139  # "<140-character summary"
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_FHIR_ID_REF = re.compile(r"^(?:.*/)?([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")


class CdsError(Exception):
    """An answer other than 200: HTTP status and one sentence (no PHI, no token)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --- registration -----------------------------------------------------------------------------
@dataclass
class CdsRuntime:
    """Per-app state of the service: the clients' JWK Sets (cached) and the HTTP session."""

    http: requests.Session = field(default_factory=requests.Session)
    timeout: float = 5.0
    _jwks: dict[str, tuple[float, KeySet, set[str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def key_set(self, client: CdsClient, kid: str) -> KeySet:
        """The client's JWK Set, holding ``kid`` if the client publishes it."""
        now = time.monotonic()
        with self._lock:
            hit = self._jwks.get(client.jwks_url)
        if hit and now - hit[0] < JWKS_TTL and (kid in hit[2] or now - hit[0] < JWKS_MIN_REFETCH):
            return hit[1]
        try:
            resp = self.http.get(client.jwks_url, timeout=self.timeout, allow_redirects=False,
                                 headers={"Accept": "application/json"})
            if resp.status_code != 200 or len(resp.content) > JWKS_MAX_BYTES:
                raise ValueError(f"answered {resp.status_code}")
            data = resp.json()
            keys = [k for k in data.get("keys", []) if isinstance(k, dict) and k.get("kty") in ("RSA", "EC")
                    and "d" not in k]  # public asymmetric keys only
            key_set = KeySet.import_key_set({"keys": keys})
        except (requests.RequestException, ValueError, TypeError, AttributeError, JoseError) as exc:
            log.warning("CDS client JWKS could not be read (%s)", type(exc).__name__)
            if hit:  # keep verifying with the last good set
                return hit[1]
            raise CdsError(401, "The CDS client's JWK Set could not be read.") from None
        kids = {k.get("kid") for k in keys if isinstance(k.get("kid"), str)}
        with self._lock:
            self._jwks[client.jwks_url] = (now, key_set, kids)
        return key_set


def register_cds_hooks(app: Flask) -> None:
    """Register the service (and, in ``ivig-check demo`` only, the demo's CDS client)."""
    app.extensions["ivig_cds"] = CdsRuntime()
    app.register_blueprint(bp)
    config: Config = app.config["IVIG"]
    if config.demo_iss:
        from .demo_cds import register_demo_cds_client

        register_demo_cds_client(app)


def _config() -> Config:
    return current_app.config["IVIG"]


def _runtime() -> CdsRuntime:
    return current_app.extensions["ivig_cds"]


def service_url(config: Config, service_id: str) -> str:
    return f"{config.public_base_url}/cds-services/{service_id}"


# --- errors --------------------------------------------------------------------------------
@bp.errorhandler(CdsError)
def _cds_error(exc: CdsError):
    log.info("CDS call refused -> %d", exc.status)
    resp = jsonify({"error": exc.message})
    resp.status_code = exc.status
    if exc.status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return resp


@bp.errorhandler(HTTPException)
def _cds_http_error(exc: HTTPException):
    resp = jsonify({"error": exc.description or exc.name})
    resp.status_code = exc.code or 500
    return resp


@bp.errorhandler(Exception)
def _cds_unexpected(exc: Exception):
    log.error("CDS service: unexpected %s", type(exc).__name__)
    resp = jsonify({"error": "The service hit an unexpected error."})
    resp.status_code = 500
    return resp


# --- discovery -----------------------------------------------------------------------------
def discovery_document() -> dict[str, Any]:
    return {"services": [
        {"hook": spec["hook"], "title": spec["title"], "description": DESCRIPTION, "id": sid,
         "prefetch": dict(PREFETCH), "usageRequirements": USAGE}
        for sid, spec in SERVICES.items()
    ]}


@bp.get("/cds-services")
def discovery() -> Response:
    return jsonify(discovery_document())


# --- the client's JWT ----------------------------------------------------------------------
def verify_client_jwt(authorization: str | None, *, config: Config, runtime: CdsRuntime, store: Any,
                      audience: str, now: float | None = None) -> dict[str, Any]:
    """The verified claims of the CDS client's JWT, or CdsError(401) saying what is wrong."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise CdsError(401, "The request carries no Authorization: Bearer JWT.")
    try:
        compact = jws.extract_compact(token.encode("ascii"))
        header = compact.headers()
        unverified = json.loads(compact.payload)
    except (JoseError, ValueError, UnicodeError, TypeError):
        raise CdsError(401, "The Authorization token is not a JWT.") from None
    if not isinstance(unverified, dict):
        raise CdsError(401, "The JWT payload is not a JSON object.")
    iss = unverified.get("iss")
    client = config.cds_client(iss) if isinstance(iss, str) else None
    if client is None:
        log.warning("CDS call refused: JWT issuer is not a registered CDS client")
        raise CdsError(401, "The JWT's issuer is not a CDS client registered with this service.")
    alg = header.get("alg")
    if alg not in ALLOWED_ALGS:
        raise CdsError(401, "The JWT must be signed with an asymmetric algorithm (e.g. ES384 or RS384).")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise CdsError(401, "The JWT header has no kid.")
    if header.get("typ") is not None and str(header.get("typ")).upper() != "JWT":
        raise CdsError(401, "The JWT header typ must be JWT.")
    if header.get("jku") is not None and header.get("jku") != client.jwks_url:
        raise CdsError(401, "The JWT's jku is not the JWK Set registered for this client.")
    key_set = runtime.key_set(client, kid)
    try:
        verified = jwt.decode(token, key_set, algorithms=[alg])
    except (JoseError, ValueError, TypeError):
        raise CdsError(401, "The JWT signature does not verify with the client's registered keys.") from None
    claims = verified.claims
    clock = int(now if now is not None else time.time())
    registry = jwt.JWTClaimsRegistry(
        now=clock, leeway=LEEWAY, iss={"essential": True, "value": client.iss},
        aud={"essential": True, "value": audience}, exp={"essential": True}, iat={"essential": True},
        jti={"essential": True})
    try:
        registry.validate(claims)
    except JoseError as exc:
        name = getattr(exc, "claim", None) or type(exc).__name__
        raise CdsError(401, f"The JWT was refused ({_claim_problem(exc, name, audience)}).") from None
    if claims["exp"] - clock > MAX_JWT_LIFETIME:
        raise CdsError(401, f"The JWT is valid for more than {MAX_JWT_LIFETIME} seconds.")
    if not store.claim_once(f"cds-jti|{client.iss}|{claims['jti']}", ttl=claims["exp"] - clock + LEEWAY):
        log.warning("CDS call refused: JWT replayed")
        raise CdsError(401, "The JWT was already used (jti replayed).")
    return claims


def _claim_problem(exc: JoseError, name: str, audience: str) -> str:
    error = getattr(exc, "error", "") or ""
    if error == "expired_token" or type(exc).__name__ == "ExpiredTokenError":
        return "expired"
    if type(exc).__name__ == "MissingClaimError":
        return f"missing claim {exc.description}" if getattr(exc, "description", None) else "a claim is missing"
    if name == "aud":
        return f"aud must be {audience}"
    return f"claim {name} is not valid"


# --- the request -----------------------------------------------------------------------------
@dataclass(frozen=True)
class HookRequest:
    hook: str
    hook_instance: str
    patient_id: str
    user_id: str
    draft_orders: list[dict[str, Any]]
    selections: list[str] | None
    fhir_server: str | None
    authorization: dict[str, Any] | None
    prefetch: dict[str, Any] | None


def parse_hook_request(body: Any, service_id: str) -> HookRequest:
    """The request's fields, checked against CDS Hooks 2.0 (CdsError 400 on the first problem)."""
    if not isinstance(body, dict):
        raise CdsError(400, "The request body must be a JSON object.")
    hook = body.get("hook")
    if hook not in HOOKS or (service_id == SELECT_SERVICE_ID and hook != "order-select"):
        accepted = "order-select" if service_id == SELECT_SERVICE_ID else "order-sign or order-select"
        raise CdsError(400, f"hook must be {accepted}.")
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not instance.strip():
        raise CdsError(400, "hookInstance (a UUID string) is required.")
    context = body.get("context")
    if not isinstance(context, dict):
        raise CdsError(400, "context (an object) is required.")
    patient_id, user_id = context.get("patientId"), context.get("userId")
    if not isinstance(patient_id, str) or not _ID.match(patient_id) or patient_id in (".", ".."):
        raise CdsError(400, "context.patientId must be a FHIR id.")
    if not isinstance(user_id, str) or not user_id.strip():
        raise CdsError(400, "context.userId is required.")
    if "encounterId" in context and not isinstance(context["encounterId"], str):
        raise CdsError(400, "context.encounterId must be a string.")
    drafts = context.get("draftOrders")
    if not isinstance(drafts, dict) or drafts.get("resourceType") != "Bundle":
        raise CdsError(400, "context.draftOrders must be a FHIR Bundle.")
    entries = drafts.get("entry", [])
    if not isinstance(entries, list):
        raise CdsError(400, "context.draftOrders.entry must be a list.")
    orders = [e["resource"] for e in entries
              if isinstance(e, dict) and isinstance(e.get("resource"), dict)
              and isinstance(e["resource"].get("resourceType"), str)]
    selections = None
    if hook == "order-select":
        selections = context.get("selections")
        if not isinstance(selections, list) or not selections or not all(isinstance(s, str) for s in selections):
            raise CdsError(400, "context.selections (a list of references) is required for order-select.")
    fhir_server = body.get("fhirServer")
    authorization = body.get("fhirAuthorization")
    if fhir_server is not None and (not isinstance(fhir_server, str) or not fhir_server.startswith(("http://", "https://"))):
        raise CdsError(400, "fhirServer must be an http(s) URL.")
    if authorization is not None:
        if fhir_server is None:
            raise CdsError(400, "fhirServer is required with fhirAuthorization.")
        _check_authorization(authorization, patient_id)
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        raise CdsError(400, "prefetch must be an object.")
    return HookRequest(hook=hook, hook_instance=instance, patient_id=patient_id, user_id=user_id,
                       draft_orders=orders, selections=selections, fhir_server=fhir_server,
                       authorization=authorization, prefetch=prefetch)


def _check_authorization(auth: Any, patient_id: str) -> None:
    if not isinstance(auth, dict):
        raise CdsError(400, "fhirAuthorization must be an object.")
    for name in ("access_token", "scope", "subject"):
        if not isinstance(auth.get(name), str) or not auth[name].strip():
            raise CdsError(400, f"fhirAuthorization.{name} is required.")
    if not isinstance(auth.get("token_type"), str) or auth["token_type"].lower() != "bearer":
        raise CdsError(400, "fhirAuthorization.token_type must be Bearer.")
    expires = auth.get("expires_in")
    if not isinstance(expires, int) or isinstance(expires, bool) or expires <= 0:
        raise CdsError(400, "fhirAuthorization.expires_in must be a positive integer.")
    if "patient" in auth and auth["patient"] != patient_id:
        raise CdsError(400, "fhirAuthorization.patient is not context.patientId.")


# --- the order ---------------------------------------------------------------------------------
def draft_candidates(req: HookRequest) -> list[dict[str, Any]]:
    """The MedicationRequests the hook is about (order-select: the selected ones), with ids."""
    out = []
    for n, res in enumerate(req.draft_orders):
        if res.get("resourceType") != "MedicationRequest":
            continue
        if not isinstance(res.get("id"), str) or not _ID.match(res["id"]):
            res = {**res, "id": f"draft-{n + 1}"}
        if req.selections is not None and f"MedicationRequest/{res['id']}" not in req.selections:
            continue
        out.append(res)
    return out


def immune_globulin_order(patient_id: str, candidates: list[dict[str, Any]],
                          medications: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first candidate the normaliser reads as an IVIG/SCIG order (same value sets as the report)."""
    if not candidates:
        return None
    record = PatientRecord(patient={"resourceType": "Patient", "id": patient_id},
                           resources=[*candidates, *medications])
    ig = {o.ref for o in extract_facts(record).ig_orders}
    return next((c for c in candidates if f"MedicationRequest/{c['id']}" in ig), None)


def _medication_refs(orders: list[dict[str, Any]], known: set[str]) -> list[str]:
    """Medication ids the orders reference that are neither contained nor known."""
    out = []
    for order in orders:
        ref = (order.get("medicationReference") or {}).get("reference") if isinstance(
            order.get("medicationReference"), dict) else None
        if isinstance(ref, str) and not ref.startswith("#"):
            m = _FHIR_ID_REF.match(ref)
            if m and m.group(1) == "Medication" and f"Medication/{m.group(2)}" not in known:
                out.append(m.group(2))
    return list(dict.fromkeys(out))


# --- the record ----------------------------------------------------------------------------
@dataclass
class Gathered:
    patient: dict[str, Any] | None = None
    resources: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # prefetch keys to fetch


def read_prefetch(req: HookRequest) -> Gathered:
    """What the prefetch holds; keys absent, unusable or paged are left to fetch."""
    out = Gathered()
    prefetch = req.prefetch or {}
    for key in PREFETCH:
        if key not in prefetch:
            out.missing.append(key)
            continue
        value = prefetch[key]
        if value is None:  # the client has no data for this template
            continue
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            raise CdsError(400, f"prefetch.{key} must be a FHIR resource or null.")
        if value["resourceType"] == "OperationOutcome":
            out.missing.append(key)
            continue
        if key == "patient":
            if value["resourceType"] != "Patient" or value.get("id") != req.patient_id:
                raise CdsError(400, "prefetch.patient is not the Patient of context.patientId.")
            out.patient = value
            continue
        if value["resourceType"] != "Bundle":
            raise CdsError(400, f"prefetch.{key} must be a Bundle (searchset).")
        if any(isinstance(lk, dict) and lk.get("relation") == "next" for lk in value.get("link") or []):
            out.missing.append(key)  # a page, not the whole answer (the spec forbids next links)
            continue
        for entry in value.get("entry") or []:
            res = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(res, dict) and isinstance(res.get("resourceType"), str) and res["resourceType"] != "OperationOutcome":
                out.resources.append(res)
    return out


def _fhir_client(req: HookRequest) -> FhirClient | None:
    """A client for ``fhirServer`` with the hook's token; None when the request gives no way to fetch."""
    if not req.fhir_server or not req.authorization:
        return None
    config = _config()
    if not config.issuer_allowed(req.fhir_server):
        log.warning("CDS call refused: fhirServer is not on the allow-list")
        raise CdsError(403, "fhirServer is not on this service's list of allowed FHIR servers; "
                            "nothing was fetched. Send the prefetch, or ask for the server to be allowed.")
    runtime = current_app.extensions["ivig"]
    return runtime.fhir_client(req.fhir_server.rstrip("/"), token=req.authorization["access_token"])


def fetch_missing(req: HookRequest, got: Gathered, client: FhirClient) -> set[str]:
    """Fetch the missing prefetch keys concurrently; returns the types the token may not read."""
    readable = readable_types(req.authorization["scope"]) if req.authorization else None
    pid = quote(req.patient_id, safe="")
    not_accessible: set[str] = set()
    todo = []
    for key in got.missing:
        rtype = PREFETCH_TYPE[key]
        if readable is not None and rtype not in readable:
            not_accessible.add(rtype)
        else:
            todo.append(key)
    if "patient" in not_accessible:
        raise CdsError(412, "The token does not allow reading the Patient, and the prefetch has none.")

    def run(key: str) -> tuple[str, Any]:
        path = PREFETCH[key].replace(PATIENT_TOKEN, pid) + "&_count=200"  # fewer pages; all are followed
        if key == "patient":
            return key, client.read("Patient", req.patient_id)
        try:
            return key, client.search_all(path)
        except FhirError as exc:
            if exc.status == 403 and not isinstance(exc, FhirAuthError):
                return key, None
            raise

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(todo)))) as pool:
            results = list(pool.map(run, todo))
    except FhirAuthError:
        raise CdsError(412, "The FHIR server refused fhirAuthorization's access token.") from None
    except FhirError as exc:
        raise CdsError(412, f"The data could not be fetched from fhirServer: {exc}.") from None
    for key, found in results:
        if key == "patient":
            got.patient = found
        elif found is None:
            not_accessible.add(PREFETCH_TYPE[key])
        else:
            got.resources.extend(found)
    return not_accessible


def gather_record(req: HookRequest, order: dict[str, Any], order_meds: list[dict[str, Any]],
                  got: Gathered, client: FhirClient | None) -> PatientRecord:
    """The patient's record with the draft order in it (replacing a stored version of it)."""
    not_accessible: set[str] = set()
    if got.missing:
        if client is None:
            raise CdsError(412, "The prefetch is incomplete (" + ", ".join(got.missing) + ") and the request "
                                "gives no fhirServer and fhirAuthorization to fetch the rest.")
        not_accessible = fetch_missing(req, got, client)
    if got.patient is None:
        raise CdsError(412, "The Patient could not be read.")
    seen: set[str] = set()
    resources = []
    draft_ref = f"MedicationRequest/{order['id']}"
    for res in [order, *order_meds, *got.resources]:
        key = f"{res.get('resourceType')}/{res.get('id')}"
        if key in seen or (res is not order and key == draft_ref) or res.get("resourceType") == "Patient":
            continue
        seen.add(key)
        resources.append(res)
    if client is not None:
        resources += client.payors_not_included(resources, seen)
    return PatientRecord(patient=got.patient, resources=resources, not_accessible=not_accessible)


# --- the card (pure) -------------------------------------------------------------------------
INDICATOR = {"criteria-met": "info", "documentation-missing": "warning", "no-indication": "warning",
             "criteria-not-met": "critical", "not-covered": "critical"}
# Enough to keep record text from becoming emphasis, links, HTML or tables; parentheses and
# the like stay readable for clients that show the detail as plain text.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def md(text: Any) -> str:
    """Plain text for GitHub-flavoured Markdown: special characters escaped, one line."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def policy_label(report: dict[str, Any]) -> str:
    payer = report.get("payer") or {}
    if payer.get("chosen_by") == "coverage" and payer.get("short_label"):
        return payer["short_label"]
    if payer.get("chosen_by") == "default":
        return f"{report['ruleset']['id']}, default policy"
    return report["ruleset"]["id"]


def card_summary(report: dict[str, Any]) -> str:
    label = policy_label(report)
    det = report["determination"]
    missing = report.get("missing_documentation") or []
    unchecked = report.get("not_checked") or []
    ind = report.get("indication") or {}
    if det == "criteria-met":
        text = "coverage criteria met"
    elif det == "documentation-missing" and missing:
        text = f"{len(missing)} documentation item{'s' if len(missing) != 1 else ''} missing"
    elif det == "documentation-missing":
        text = f"{len(unchecked)} item{'s' if len(unchecked) != 1 else ''} could not be checked"
    elif det == "criteria-not-met":
        text = "criteria not met as documented"
    elif det == "not-covered":
        why = "experimental under this policy" if ind.get("coverage") == "experimental" else "not listed by this policy"
        text = f"not covered ({why})"
    else:
        text = "no covered indication documented"
    if unchecked and det != "documentation-missing":
        text += ", provisional"
    summary = f"IVIG ({label}): {text}"
    return summary if len(summary) <= SUMMARY_LIMIT else summary[: SUMMARY_LIMIT - 1] + "…"


def card_detail(report: dict[str, Any]) -> str:
    rs = report["ruleset"]
    payer = report.get("payer") or {}
    ind = report.get("indication")
    lines = [f"**Policy:** {md(rs['title'])} ({md(rs['id'])}, version {md(rs['version'])})"]
    if payer.get("detail"):
        lines.append(f"**Why this policy:** {md(payer['detail'])}")
    if ind:
        lines.append(f"**Indication:** {md(ind['label'])} ({md(ind['coverage'])})")
    missing = report.get("missing_documentation") or []
    if missing:
        lines += ["", f"**Missing documentation ({len(missing)}):**"]
        lines += [f"- **{md(m['display'])}**: {md(m['detail'])}" if m.get("detail") else f"- **{md(m['display'])}**"
                  for m in missing]
    not_met = [c for c in report.get("criteria") or [] if c.get("status") == "not-met"]
    if not_met:
        lines += ["", "**Not met as documented:**"]
        lines += [f"- {md(c['description'])}" + (f": {md(c['detail'])}" if c.get("detail") else "") for c in not_met]
    unchecked = report.get("not_checked") or []
    if unchecked:
        lines += ["", "**Could not be checked** (the service was not allowed to read their sources):"]
        lines += [f"- {md(m['display'])}" for m in unchecked]
    if report["determination"] == "criteria-met":
        lines += ["", "Every required criterion is documented."]
    lines += ["", "Open the app for the evidence behind each criterion and to send the missing items to the work list."]
    return "\n".join(lines)


def build_card(report: dict[str, Any], base_url: str) -> dict[str, Any]:
    """One CDS Hooks card for the report (CDS Hooks 2.0 Card attributes)."""
    return {
        "uuid": str(uuid.uuid4()),
        "summary": card_summary(report),
        "detail": card_detail(report),
        "indicator": INDICATOR.get(report["determination"], "warning"),
        "source": {"label": report["ruleset"]["title"]},
        "links": [{"label": "Open IVIG Coverage Check: criteria, evidence and the missing-items Task",
                   "url": f"{base_url}/launch", "type": "smart"}],
        # Machine-readable outcome (CDS Hooks reserves `extension` for this).
        "extension": {"ivig-coverage-check": {
            "determination": report["determination"],
            "ruleset": report["ruleset"]["id"],
            "chosen_by": (report.get("payer") or {}).get("chosen_by"),
            "order": (report.get("order") or {}).get("reference"),
            "missing_documentation": [m["code"] for m in report.get("missing_documentation") or []],
            "not_checked": [m["code"] for m in report.get("not_checked") or []],
        }},
    }


# --- the service -----------------------------------------------------------------------------
def _as_of(config: Config) -> date:
    return config.as_of or date.today()


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    if service_id not in SERVICES:
        raise CdsError(404, "No such CDS service.")
    config = _config()
    started = time.perf_counter()
    verify_client_jwt(request.headers.get("Authorization"), config=config, runtime=_runtime(),
                      store=current_app.extensions["ivig"].store, audience=service_url(config, service_id))
    req = parse_hook_request(request.get_json(silent=True), service_id)
    candidates = draft_candidates(req)
    got = read_prefetch(req)
    meds = [r for r in req.draft_orders if r.get("resourceType") == "Medication"]
    meds += [r for r in got.resources if r.get("resourceType") == "Medication"]
    client = None
    unresolved = _medication_refs(candidates, {f"Medication/{m.get('id')}" for m in meds})
    if unresolved and req.fhir_server and req.authorization and config.issuer_allowed(req.fhir_server):
        client = _fhir_client(req)
        for mid in unresolved[:4]:
            try:
                meds.append(client.read("Medication", mid))
            except FhirError:
                continue
    order = immune_globulin_order(req.patient_id, candidates, meds)
    if order is None:
        log.info("CDS %s: no immune globulin order; no card", req.hook)
        return jsonify({"cards": []})
    if got.missing and client is None:
        client = _fhir_client(req)
    order_meds = [m for m in meds if f"Medication/{m.get('id')}" in _order_medication(order)]
    record = gather_record(req, order, order_meds, got, client)
    report = evaluate_record(record, None, _as_of(config), default_ruleset=config.ruleset,
                             payer_map=load_payer_map(config.payer_map),
                             order_ref=f"MedicationRequest/{order['id']}")
    card = build_card(report, config.public_base_url)
    log.info("CDS %s: %s card (%s, %s) in %.0f ms", req.hook, card["indicator"], report["determination"],
             report["ruleset"]["id"], (time.perf_counter() - started) * 1000)
    return jsonify({"cards": [card]})


def _order_medication(order: dict[str, Any]) -> set[str]:
    ref = (order.get("medicationReference") or {}).get("reference") if isinstance(
        order.get("medicationReference"), dict) else None
    m = _FHIR_ID_REF.match(ref) if isinstance(ref, str) else None
    return {f"Medication/{m.group(2)}"} if m else set()

