"""The Task written back (CONTRACT §3): shape, R4 validity, idempotent write-back."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import responses
from fhir.resources.R4B.task import Task

from fhir_mappings import extract_facts, load_record
from smart_app.engine.evaluate import evaluate
from smart_app.engine.model import get_ruleset
from smart_app.fhir_client import FhirClient, FhirRefused
from smart_app.report import build_report
from smart_app.task import DEFAULT_TASK_IDENTIFIER_SYSTEM, build_task, codesystem_url, task_identifier

ROOT = Path(__file__).resolve().parent.parent
BASE = "https://ivig.example.org"


def report_for(name: str, ruleset: str = "aaaai-pi") -> dict:
    record = load_record((ROOT / "examples" / name).read_bytes())
    return build_report(evaluate(extract_facts(record), get_ruleset(ruleset), date(2025, 6, 30)))


@pytest.fixture
def seed_report():
    return report_for("01-cvid-seed-002.json")


def test_task_shape(seed_report):
    task = build_task(seed_report, BASE, now=datetime(2025, 6, 30, 12, tzinfo=timezone.utc),
                      requester="Practitioner/dr-1")
    Task.model_validate(task)  # valid FHIR R4
    assert task["status"] == "requested"
    assert task["intent"] == "order" and task["priority"] == "routine"
    assert task["code"]["coding"][0] == {
        "system": codesystem_url(BASE), "code": "documentation-request",
        "display": "Request for documentation supporting IVIG coverage"}
    assert task["for"] == {"reference": seed_report["patient"]["reference"]}
    assert task["focus"] == {"reference": seed_report["order"]["reference"]}
    assert task["requester"] == {"reference": "Practitioner/dr-1"}
    assert task["description"] == "IVIG coverage (aaaai-pi): 4 documentation items missing"
    assert task["reasonCode"]["coding"][0]["code"] == "primary-humoral-immunodeficiency"
    codes = [i["type"]["coding"][0]["code"] for i in task["input"]]
    assert codes == [m["code"] for m in seed_report["missing_documentation"]]
    assert all(i["type"]["coding"][0]["system"] == codesystem_url(BASE) for i in task["input"])
    assert all(i["valueString"] for i in task["input"])
    # The note is for people: the determination in words and the policy by its title; the
    # determination's code is in businessStatus.
    note = task["note"][0]["text"]
    assert note.startswith("Determination: documentation missing as of 2025-06-30.")
    assert seed_report["ruleset"]["title"] in note and "documentation-missing" not in note
    assert task["businessStatus"]["coding"][0]["code"] == "documentation-missing"
    assert task["businessStatus"]["text"] == "Documentation missing"
    assert task["authoredOn"] == task["lastModified"] == "2025-06-30T12:00:00+00:00"


def test_identifier_is_deterministic_and_carries_no_patient_id(seed_report):
    first = task_identifier(seed_report)
    assert first == task_identifier(report_for("01-cvid-seed-002.json"))
    assert "ex01" not in first["value"]
    other_ruleset = task_identifier(report_for("01-cvid-seed-002.json", "bcbsmt-ig-2013"))
    assert other_ruleset != first


def test_identifier_system_is_fixed_and_not_the_public_base_url(seed_report):
    assert task_identifier(seed_report)["system"] == DEFAULT_TASK_IDENTIFIER_SYSTEM
    for base in (BASE, "https://ivig.example.org", "http://other-host:9000"):
        assert build_task(seed_report, base)["identifier"][0]["system"] == DEFAULT_TASK_IDENTIFIER_SYSTEM
    custom = build_task(seed_report, BASE, identifier_system="https://hospital.example/ids/ivig")
    assert custom["identifier"] == [task_identifier(seed_report, system="https://hospital.example/ids/ivig")]


def test_no_task_when_nothing_missing():
    assert build_task(report_for("02-cvid-complete.json"), BASE) is None


def test_existing_task_completes_when_nothing_missing():
    report = report_for("02-cvid-complete.json")
    existing = {"resourceType": "Task", "id": "t1", "authoredOn": "2025-01-01", "status": "requested"}
    task = build_task(report, BASE, existing=existing)
    assert task["status"] == "completed" and task["id"] == "t1"
    assert task["authoredOn"] == "2025-01-01" and "input" not in task


def test_task_without_order_or_indication_is_valid():
    task = build_task(report_for("12-no-indication.json", "bcbsmt-ig-2013"), BASE)
    Task.model_validate(task)
    assert "focus" not in task
    assert [i["type"]["coding"][0]["code"] for i in task["input"]] == ["indication"]


# --- write-back against a mocked server: conditional create, update, 412 -------------------
FHIR = "http://fhir.test/r4"


def _client():
    return FhirClient(FHIR, sleep=lambda s: None)


@responses.activate
def test_conditional_create_then_update_never_duplicates(seed_report):
    task = build_task(seed_report, BASE)
    # first evaluation: no Task yet -> POST with If-None-Exist
    responses.get(f"{FHIR}/Task", json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    stored = {**task, "id": "t1", "meta": {"versionId": "1"}}
    responses.post(f"{FHIR}/Task", json=stored, status=201)
    result, created = _client().upsert_task(task, lambda existing: build_task(seed_report, BASE, existing=existing))
    assert created and result["id"] == "t1"
    post = responses.calls[1].request
    ident = task["identifier"][0]
    assert post.headers["If-None-Exist"].startswith("identifier=")
    assert ident["value"] in post.headers["If-None-Exist"]

    # second evaluation, the record changed: the Task exists -> PUT with If-Match, same id
    responses.reset()
    stored = {**stored, "description": "an earlier evaluation"}
    responses.get(f"{FHIR}/Task", json={"resourceType": "Bundle", "type": "searchset",
                                        "entry": [{"resource": stored}]})
    responses.put(f"{FHIR}/Task/t1", json={**stored, "meta": {"versionId": "2"}})
    result, created = _client().upsert_task(task, lambda existing: build_task(seed_report, BASE, existing=existing))
    assert not created and result["id"] == "t1"
    put = responses.calls[1].request
    assert put.headers["If-Match"] == 'W/"1"'
    assert json.loads(put.body)["id"] == "t1"


@responses.activate
def test_identical_content_is_not_rewritten(seed_report):
    task = build_task(seed_report, BASE)
    stored = {**task, "id": "t1", "meta": {"versionId": "4"}, "lastModified": "2020-01-01"}
    responses.get(f"{FHIR}/Task", json={"resourceType": "Bundle", "type": "searchset",
                                        "entry": [{"resource": stored}]})
    result, created = _client().upsert_task(task, lambda existing: build_task(seed_report, BASE, existing=existing))
    assert not created and result["meta"]["versionId"] == "4"
    assert [c.request.method for c in responses.calls] == ["GET"]


@responses.activate
def test_stale_version_412_rereads_and_retries(seed_report):
    task = build_task(seed_report, BASE)
    v1 = {**task, "id": "t1", "meta": {"versionId": "1"}, "description": "older"}
    v2 = {**task, "id": "t1", "meta": {"versionId": "2"}, "description": "older still"}
    responses.get(f"{FHIR}/Task", json={"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": v1}]})
    responses.get(f"{FHIR}/Task", json={"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": v2}]})
    responses.put(f"{FHIR}/Task/t1", status=412, json={"resourceType": "OperationOutcome", "issue": []})
    responses.put(f"{FHIR}/Task/t1", json={**v2, "meta": {"versionId": "3"}})
    result, created = _client().upsert_task(task, lambda existing: build_task(seed_report, BASE, existing=existing))
    assert not created and result["meta"]["versionId"] == "3"
    puts = [c.request for c in responses.calls if c.request.method == "PUT"]
    assert [p.headers["If-Match"] for p in puts] == ['W/"1"', 'W/"2"']


@responses.activate
def test_concurrent_create_race_updates_instead_of_duplicating(seed_report):
    """Another writer created the Task between our search and our POST: the server answers
    the conditional create with 200 and the existing Task, and we update that one."""
    task = build_task(seed_report, BASE)
    theirs = {**task, "id": "t9", "meta": {"versionId": "1"}}
    responses.get(f"{FHIR}/Task", json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    responses.post(f"{FHIR}/Task", json=theirs, status=200)
    responses.get(f"{FHIR}/Task", json={"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": theirs}]})
    responses.put(f"{FHIR}/Task/t9", json={**theirs, "meta": {"versionId": "2"}})
    result, created = _client().upsert_task(task, lambda existing: build_task(seed_report, BASE, existing=existing))
    assert not created and result["id"] == "t9"
    assert sum(1 for c in responses.calls if c.request.method == "POST") == 1


@responses.activate
def test_write_refused_is_a_clear_error(seed_report):
    task = build_task(seed_report, BASE)
    responses.get(f"{FHIR}/Task", json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    responses.post(f"{FHIR}/Task", status=422, json={"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "invalid", "diagnostics": "Task.for is required"}]})
    with pytest.raises(FhirRefused, match="422: error: Task.for is required"):
        _client().upsert_task(task, lambda existing: build_task(seed_report, BASE, existing=existing))
