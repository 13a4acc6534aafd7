"""The CDS Hooks service against the real FHIR server (sekmet-fhir behind the SMART stub):
without prefetch it fetches with ``fhirServer`` + ``fhirAuthorization``; under gunicorn a
replayed JWT is refused whichever worker answers."""

from __future__ import annotations

from datetime import date

import pytest
import requests

from smart_app.config import load_config
from smart_app.fhir_client import FhirClient
from smart_app.report import evaluate_record
from smart_app.web import create_app
from tests.support.app_server import run_app
from tests.support.cds_client import CdsTestClient, hook_request

BASE = "http://127.0.0.1:8000"
SERVICE = f"{BASE}/cds-services/ivig-coverage"
AS_OF = date(2025, 6, 30)
SCOPE = ("patient/Patient.rs patient/Observation.rs patient/Condition.rs patient/MedicationRequest.rs "
         "patient/Medication.rs patient/MedicationAdministration.rs patient/MedicationDispense.rs "
         "patient/MedicationStatement.rs patient/Immunization.rs patient/Procedure.rs "
         "patient/DiagnosticReport.rs patient/AllergyIntolerance.rs patient/Coverage.rs")


@pytest.fixture
def cds_app(tmp_path, smart_stub):
    ehr = CdsTestClient()
    with ehr.serve_jwks() as jwks_url:
        app = create_app(load_config({
            "IVIG_PUBLIC_BASE_URL": BASE, "IVIG_ALLOWED_ISSUERS": smart_stub.base_url,
            "IVIG_CDS_CLIENTS": f"{ehr.iss}|{jwks_url}", "IVIG_AS_OF": AS_OF.isoformat(),
            "IVIG_SECRET_KEY": "cds-integration-0123456789", "IVIG_SESSION_DB": str(tmp_path / "s.sqlite")}))
        yield app.test_client(), ehr


def _authorization(stub, patient: str, scope: str = SCOPE) -> dict:
    token = stub.issue_token("ivig-cds-service", scope, patient)
    return {"access_token": token["access_token"], "token_type": "Bearer", "expires_in": token["expires_in"],
            "scope": token["scope"], "subject": "ivig-cds-service", "patient": patient}


@pytest.mark.parametrize("example,patient", [
    ("01-cvid-seed-002.json", "ex01-patient"),
    ("03-xla-new-start-si-units.json", "ex03-patient"),  # medicationReference -> Medication
    ("07-cidp-missing-diagnostics.json", "ex07-patient"),
    ("10-experimental-alzheimers.json", "ex10-patient"),
])
def test_without_prefetch_the_service_reads_the_fhir_server_with_the_hooks_token(cds_app, smart_stub, example, patient):
    client, ehr = cds_app
    auth = _authorization(smart_stub, patient)
    body = hook_request(example, prefetch=False, fhirServer=smart_stub.base_url, fhirAuthorization=auth)
    before = len(smart_stub.fhir_requests)
    resp = client.post("/cds-services/ivig-coverage", json=body,
                       headers={"Authorization": f"Bearer {ehr.token(SERVICE)}"})
    assert resp.status_code == 200, resp.get_json()
    card = resp.get_json()["cards"][0]
    # The same patient read by the app's own client with the same token, as the report does.
    record = FhirClient(smart_stub.base_url, token=auth["access_token"]).patient_record(patient)
    report = evaluate_record(record, None, AS_OF)
    ext = card["extension"]["ivig-coverage-check"]
    assert ext["missing_documentation"] == [m["code"] for m in report["missing_documentation"]]
    assert (ext["determination"], ext["ruleset"], ext["chosen_by"]) == (
        report["determination"], report["ruleset"]["id"], "coverage")
    fetched = smart_stub.fhir_requests[before:]
    assert ("GET", f"Patient/{patient}") in fetched
    assert ("GET", f"Coverage?patient={patient}&_include=Coverage:payor&_count=200") in fetched
    assert not smart_stub.rejected_requests  # every request carried the hook's valid token


def test_a_token_that_stopped_working_is_a_412(cds_app, smart_stub):
    client, ehr = cds_app
    auth = _authorization(smart_stub, "ex01-patient")
    smart_stub.expire_access_tokens()
    body = hook_request("01-cvid-seed-002.json", prefetch=False, fhirServer=smart_stub.base_url, fhirAuthorization=auth)
    resp = client.post("/cds-services/ivig-coverage", json=body,
                       headers={"Authorization": f"Bearer {ehr.token(SERVICE)}"})
    assert resp.status_code == 412 and "refused" in resp.get_json()["error"]


def test_under_gunicorn_a_card_then_the_same_jwt_is_refused(tmp_path):
    ehr = CdsTestClient(alg="RS384", kid="rsa-key")
    with ehr.serve_jwks() as jwks_url:
        env = {"IVIG_CDS_CLIENTS": f"{ehr.iss}|{jwks_url}", "IVIG_AS_OF": "2025-06-30",
               "IVIG_SECRET_KEY": "cds-gunicorn-0123456789", "IVIG_SESSION_DB": str(tmp_path / "s.sqlite"),
               "IVIG_WORKERS": "2"}
        with run_app(env) as app:
            discovery = requests.get(f"{app}/cds-services", timeout=10).json()
            assert {s["id"] for s in discovery["services"]} == {"ivig-coverage", "ivig-coverage-select"}
            token = ehr.token(f"{app}/cds-services/ivig-coverage")
            headers = {"Authorization": f"Bearer {token}"}
            first = requests.post(f"{app}/cds-services/ivig-coverage", json=hook_request("16-cidp-complete.json"),
                                  headers=headers, timeout=30)
            assert first.status_code == 200
            assert first.json()["cards"][0]["summary"] == "IVIG (BCBS MT): coverage criteria met"
            assert first.json()["cards"][0]["indicator"] == "info"
            replays = [requests.post(f"{app}/cds-services/ivig-coverage", json=hook_request("16-cidp-complete.json"),
                                     headers=headers, timeout=30) for _ in range(4)]
            assert [r.status_code for r in replays] == [401] * 4
