"""Attestation and the letter against the mocked EHR: the form on the report, CSRF and
validation before any write, the read-back of a stored response (only when an answer could
change something), scopes that do not allow it, the letter page and its PDF."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from fake_ehr import FakeEhr
from web_helpers import complete_launch, csrf_of, start_launch

from smart_app.attestation import build_response
from smart_app.engine.model import get_ruleset
from smart_app.questionnaire import DEFAULT_CANONICAL_BASE

MS = "09-ms-off-label-missing-failure.json"


@pytest.fixture
def ms(app, client, rsps):
    app.extensions["ivig"].client_options = {"backoff": 0}
    ehr = FakeEhr(rsps, example=MS)
    assert complete_launch(client, ehr).status_code == 302
    return ehr


def writes(ehr: FakeEhr) -> list:
    return [c for c in ehr.fhir_calls if c[0] != "GET"]


def test_the_scopes_asked_for_cover_attestation_and_the_letter(client, rsps):
    FakeEhr(rsps)
    scopes = parse_qs(urlsplit(start_launch(client)).query)["scope"][0].split()
    assert {"patient/QuestionnaireResponse.cru", "patient/DocumentReference.c"} <= set(scopes)


def test_the_report_offers_the_open_attestable_item(client, ms):
    page = client.get("/report").data.decode()
    assert 'action="/attest"' in page and 'name="indication" value="multiple-sclerosis"' in page
    assert '<legend>Has other therapy (e.g., interferon beta, glatiramer) failed' in page
    assert 'id="answer-ms-other-therapy-failed-yes"' in page and 'for="answer-ms-other-therapy-failed-yes"' in page
    assert 'for="justification-ms-other-therapy-failed"' in page
    assert f'href="/letter?ctx={client.ctx}"' in page
    assert 'href="/fhir/Questionnaire/bcbsmt-ig-2013.multiple-sclerosis"' in page
    # The read-back asked for the one response an answer could change, by id, and found none.
    assert ("GET", "QuestionnaireResponse/" + client.get("/api/report").get_json()["attestation"]["response_id"]) \
        in ms.fhir_calls


def test_nothing_is_asked_when_no_answer_could_change_anything(client, rsps):
    ehr = FakeEhr(rsps, example="02-cvid-complete.json")
    assert complete_launch(client, ehr).status_code == 302
    report = client.get("/api/report").get_json()
    assert report["determination"] == "criteria-met" and report["attestation"]["items"] == []
    assert not [c for c in ehr.fhir_calls if c[1].startswith("QuestionnaireResponse")]
    assert 'action="/attest"' not in client.get("/report").data.decode()


def test_a_stored_response_is_read_back(client, rsps):
    ehr = FakeEhr(rsps, example=MS)
    ehr.resources.append(build_response(
        ruleset=get_ruleset("bcbsmt-ig-2013"), indication_id="multiple-sclerosis", patient_ref="Patient/ex09-patient",
        canonical_base=DEFAULT_CANONICAL_BASE, answers={"ms-other-therapy-failed": (True, "Relapsed on interferon.")},
        author="Practitioner/dr-7", now=datetime(2025, 6, 29, 8, 0, tzinfo=timezone.utc)))
    assert complete_launch(client, ehr).status_code == 302
    report = client.get("/api/report").get_json()
    assert report["determination"] == "criteria-met"
    page = client.get("/report").data.decode()
    assert "Clinician attestation</span>" in page
    assert "attested by Practitioner/dr-7 on 2025-06-29: Relapsed on interferon." in page
    assert "Attested: Yes" in page  # the form shows the answer, which may be changed
    assert "1 of 5 criteria rests on clinician attestation" in page


def test_without_the_csrf_token_nothing_is_written(client, ms):
    resp = client.post("/attest", data={"indication": "multiple-sclerosis", "answer-ms-other-therapy-failed": "yes",
                                        "justification-ms-other-therapy-failed": "x"},
                       headers={"Accept": "application/json"})
    assert resp.status_code == 403 and "security token" in resp.get_json()["error"]
    assert writes(ms) == []


@pytest.mark.parametrize("form,message", [
    ({"answer-ms-other-therapy-failed": "yes", "justification-ms-other-therapy-failed": "  "}, "A Yes needs a justification"),
    ({"answer-ms-other-therapy-failed": "maybe"}, "Yes or No"),
    ({}, "at least one item"),
    ({"answer-ms-other-therapy-failed": "yes", "justification-ms-other-therapy-failed": "x" * 1001}, "at most 1000"),
    ({"indication": "gbs", "answer-ms-other-therapy-failed": "no"}, "not in this patient's report"),
    ({"answer-igg-pretreatment": "yes", "justification-igg-pretreatment": "IgG 150 mg/dL"}, "at least one item"),
])
def test_an_answer_the_questions_do_not_allow_is_refused(client, ms, form, message):
    token = csrf_of(client.get("/report").data)
    data = {"csrf_token": token, "indication": "multiple-sclerosis", **form}
    resp = client.post("/attest", data=data, headers={"Accept": "application/json"})
    assert resp.status_code == 400 and message in resp.get_json()["error"]
    # In the browser: back to the report, which says what to fix.
    resp = client.post("/attest", data=data)
    assert resp.status_code == 303
    assert message in html.unescape(client.get("/report").data.decode())
    assert writes(ms) == []


def test_without_the_scope_the_form_is_a_notice(app, client, rsps):
    app.extensions["ivig"].client_options = {"backoff": 0}
    ehr = FakeEhr(rsps, example=MS, grant="launch openid fhirUser patient/*.rs patient/Task.crus")
    assert complete_launch(client, ehr).status_code == 302
    page = client.get("/report").data.decode()
    assert 'action="/attest"' not in page and "did not grant this app permission to record attestations" in page
    token = csrf_of(page.encode())
    resp = client.post("/attest", data={"csrf_token": token, "indication": "multiple-sclerosis",
                                        "answer-ms-other-therapy-failed": "no"}, headers={"Accept": "application/json"})
    assert resp.status_code == 403 and writes(ehr) == []
    letter = client.get("/letter").data.decode()
    assert 'action="/letter/document"' not in letter and "download the PDF instead" in letter


def test_the_letter_page_and_its_pdf(client, ms):
    page = client.get("/letter")
    assert page.status_code == 200
    text = page.data.decode()
    assert "Letter of medical necessity" in text and "Still missing from the record" in text
    assert 'action="/letter/document"' in text and 'name="csrf_token"' in text
    assert f'href="/letter.pdf?ctx={client.ctx}"' in text
    pdf = client.get("/letter.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF-")
    disposition = pdf.headers["Content-Disposition"]
    assert "ex09" not in disposition and "Patient" not in disposition  # no PHI in the file name
    resp = client.post("/letter/document", data={}, headers={"Accept": "application/json"})
    assert resp.status_code == 403 and writes(ms) == []
