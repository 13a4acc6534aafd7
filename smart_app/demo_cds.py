"""The demo's CDS client: what an EHR does at order signing, played by ``ivig-check demo``.

Registered only when the app runs as the demo (``Config.demo_iss`` is set by ``run_demo``;
no environment variable sets it), so production has neither the key nor the routes.

``POST /demo/order-sign`` (form field ``patient``) plays the EHR: it takes the example
patient's IVIG order as the draft being signed (a non-IVIG draft for a patient without one),
runs the service's prefetch templates against the demo FHIR server, signs a JWT with the
demo client's own key (ES384, 60 s, a fresh ``jti``), posts the hook request to
``/cds-services/ivig-coverage`` over HTTP like any CDS client, and shows the card. The
service verifies that JWT exactly as it verifies an EHR's: the demo client is configured
in ``Config.cds_clients`` with the JWK Set it publishes at ``/demo/cds-client/jwks.json``.
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from typing import Any

import requests
from flask import Blueprint, Flask, abort, current_app, jsonify, render_template, request, url_for
from joserfc import jwt
from joserfc.jwk import ECKey

from fhir_mappings import PatientRecord, extract_facts

from .cds_hooks import PATIENT_TOKEN, PREFETCH, SERVICE_ID, service_url
from .config import CdsClient, Config
from .engine.timeline import choose_order
from .fhir_client import FhirClient, FhirError

bp = Blueprint("demo_cds", __name__)
KID = "ivig-demo-cds-client"
JWKS_PATH = "/demo/cds-client/jwks.json"
_ID = re.compile(r"^[A-Za-z0-9\-]{1,64}$")


def demo_cds_client(base_url: str) -> CdsClient:
    """The demo EHR as a registered CDS client (for ``Config.cds_clients``)."""
    return CdsClient(iss=f"{base_url}/demo/ehr", jwks_url=f"{base_url}{JWKS_PATH}")


def register_demo_cds_client(app: Flask) -> None:
    # With gunicorn's preload_app the key is made once, in the master, and shared by the workers.
    app.extensions["ivig_demo_cds_key"] = ECKey.generate_key("P-384", parameters={"kid": KID})
    app.register_blueprint(bp)


def _config() -> Config:
    return current_app.config["IVIG"]


@bp.get(JWKS_PATH)
def jwks():
    key: ECKey = current_app.extensions["ivig_demo_cds_key"]
    public = {k: v for k, v in key.as_dict(private=False).items() if k in {"kty", "crv", "x", "y"}}
    return jsonify({"keys": [{**public, "kid": KID, "alg": "ES384", "use": "sig"}]})


def client_jwt(key: ECKey, iss: str, audience: str) -> str:
    now = int(time.time())
    claims = {"iss": iss, "aud": audience, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
    return jwt.encode({"alg": "ES384", "typ": "JWT", "kid": KID}, claims, key, algorithms=["ES384"])


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not resources:
        return None  # CDS Hooks: no data for a template is null, not an empty Bundle
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"resource": r} for r in resources]}


NON_IG_DRAFT = {  # for a patient without an IVIG order: the service must answer no card
    "resourceType": "MedicationRequest", "status": "draft", "intent": "order",
    "medicationCodeableConcept": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076",
                    "display": "lisinopril 10 MG Oral Tablet"}],
        "text": "lisinopril 10 mg oral tablet"},
    "dosageInstruction": [{"text": "10 mg by mouth once daily"}],
}


def demo_hook_request(fhir_base: str, patient_id: str, *, user: str = "Practitioner/demo-clinician"
                      ) -> dict[str, Any]:
    """An order-sign request as an EHR sends it: the draft order, every prefetch template
    satisfied from the FHIR server (all pages, no next link), ``fhirServer``, no token."""
    fhir = FhirClient(fhir_base)
    prefetch: dict[str, Any] = {}
    for key, template in PREFETCH.items():
        path = template.replace(PATIENT_TOKEN, patient_id)
        prefetch[key] = fhir.read("Patient", patient_id) if key == "patient" else _searchset(fhir.search_all(path))
    resources = [e["resource"] for key, b in prefetch.items() if key != "patient" and b for e in b["entry"]]
    order = choose_order(extract_facts(PatientRecord(patient=prefetch["patient"], resources=resources)))
    if order is not None:
        stored = next(r for r in resources if f"{r['resourceType']}/{r['id']}" == order.ref)
        draft = {k: v for k, v in copy.deepcopy(stored).items() if k != "meta"}
        draft["status"] = "draft"  # the order as it sits on the order-entry screen
    else:
        draft = {**copy.deepcopy(NON_IG_DRAFT), "id": f"{patient_id}-draft-lisinopril",
                 "subject": {"reference": f"Patient/{patient_id}"}}
    return {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_base,
        "context": {"userId": user, "patientId": patient_id,
                    "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"resource": draft}]}},
        "prefetch": prefetch,
    }


def markdown_blocks(text: str) -> list[dict[str, Any]]:
    """The little Markdown the card's detail uses (paragraphs, ``- `` items, ``**bold**``)
    as blocks for the template (which escapes all text): no HTML is built from input."""
    blocks: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            blocks.append({"type": "break"})
            continue
        item = line.startswith("- ")
        parts = []
        for n, piece in enumerate(re.split(r"(?<!\\)\*\*", line[2:] if item else line)):
            if piece:
                parts.append({"bold": n % 2 == 1, "text": re.sub(r"\\(.)", r"\1", piece)})
        if item:
            if not blocks or blocks[-1]["type"] != "list":
                blocks.append({"type": "list", "items": []})
            blocks[-1]["items"].append(parts)
        else:
            blocks.append({"type": "p", "parts": parts})
    return [b for b in blocks if b["type"] != "break"]


@bp.post("/demo/order-sign")
def order_sign():
    config = _config()
    patient = (request.form.get("patient") or "").strip()
    if not _ID.match(patient) or patient not in {p.id for p in config.demo_patients}:
        abort(404, "That is not one of the demo patients.")
    assert config.demo_iss is not None
    try:
        hook_request = demo_hook_request(config.demo_iss, patient)
    except FhirError as exc:
        abort(502, f"The demo FHIR server could not be read: {exc}.")
    url = service_url(config, SERVICE_ID)
    # Signed as the demo client; the service trusts it only because run_demo registered it.
    token = client_jwt(current_app.extensions["ivig_demo_cds_key"], demo_cds_client(config.public_base_url).iss, url)
    started = time.perf_counter()
    try:
        resp = requests.post(url, json=hook_request, timeout=15,
                             headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        answer = resp.json()
    except (requests.RequestException, ValueError):
        abort(502, "The CDS service did not answer.")
    elapsed_ms = (time.perf_counter() - started) * 1000
    cards = answer.get("cards") if resp.status_code == 200 and isinstance(answer, dict) else None
    draft = hook_request["context"]["draftOrders"]["entry"][0]["resource"]
    shown_request = {**hook_request, "prefetch": {k: (None if v is None else f"<{v['resourceType']}"
                                                      + (f", {len(v.get('entry', []))} entries>" if v["resourceType"] == "Bundle" else ">"))
                                                  for k, v in hook_request["prefetch"].items()}}
    return render_template(
        "cds_card.html", patient=patient, status=resp.status_code, cards=cards or [],
        error=None if cards is not None else (answer.get("error") if isinstance(answer, dict) else None),
        elapsed_ms=elapsed_ms, service_url=url,
        draft_text=(draft.get("medicationCodeableConcept") or {}).get("text") or draft.get("id"),
        blocks=[markdown_blocks(c.get("detail") or "") for c in cards or []],
        launch_href=url_for("auth.launch", iss=config.demo_iss, patient=patient),
        request_json=json.dumps(shown_request, indent=2, ensure_ascii=False),
        response_json=json.dumps(answer, indent=2, ensure_ascii=False),
    )
