"""Report page, Task write-back, FHIR faults and what users and logs get to see."""

from __future__ import annotations

import json
import logging
import threading

import requests
import responses
from web_helpers import complete_launch, csrf_of, make_app, nothing_missing
from fake_ehr import ISS, FakeEhr


def _post_task(client, *, json_accept=True, token=None):
    if token is None:
        token = csrf_of(client.get("/report").data)
    headers = {"Accept": "application/json"} if json_accept else {}
    return client.post("/task", data={"csrf_token": token}, headers=headers)


def test_report_page_shows_criteria_evidence_links_dose_and_checklist(client, launched):
    page = client.get("/report").data.decode()
    assert 'action="/task"' in page and 'method="post"' in page
    assert 'name="csrf_token"' in page
    # evidence links to its source, in this launch
    assert f'href="/source/Observation/ex01-igg-1?ctx={client.ctx}"' in page
    assert "Missing documentation" in page
    assert "body-weight" in page or "body weight" in page.lower()


def test_task_is_created_then_updated_never_duplicated(client, launched):
    first = _post_task(client)
    assert first.status_code == 200
    body = first.get_json()
    assert body["created"] is True
    task = body["task"]
    assert task["status"] == "requested" and task["intent"] == "order"
    assert task["for"]["reference"] == f"Patient/{launched.patient_id}"
    report = client.get("/api/report").get_json()
    assert [i["type"]["coding"][0]["code"] for i in task["input"]] == \
        [m["code"] for m in report["missing_documentation"]]
    # Same record, same content: the stored Task is found and left as it is.
    second = _post_task(client).get_json()
    assert second["created"] is False
    assert second["task"]["id"] == task["id"]
    assert len(launched.tasks) == 1
    assert not [c for c in launched.fhir_calls if c[0] == "PUT"]
    # The record changes (one item documented): the same Task is updated with If-Match.
    launched.resources.append({"resourceType": "Observation", "id": "new-weight", "status": "final",
                               "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                               "subject": {"reference": f"Patient/{launched.patient_id}"},
                               "effectiveDateTime": "2025-06-20",
                               "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org",
                                                 "code": "kg"}})
    third = _post_task(client).get_json()
    assert third["created"] is False and third["task"]["id"] == task["id"]
    assert len(launched.tasks) == 1
    assert launched.tasks[task["id"]]["meta"]["versionId"] == "2"
    assert "body-weight" not in {i["type"]["coding"][0]["code"] for i in third["task"]["input"]}
    assert len([c for c in launched.fhir_calls if c[0] == "PUT"]) == 1


def test_task_becomes_completed_when_nothing_is_missing_any_more(client, launched, monkeypatch):
    task = _post_task(client).get_json()["task"]
    # The chart is completed: from now on the evaluation finds nothing missing.
    nothing_missing(monkeypatch)
    body = _post_task(client).get_json()
    assert body["created"] is False
    assert body["task"]["id"] == task["id"]
    assert body["task"]["status"] == "completed"
    assert "input" not in body["task"]


def test_html_post_redirects_to_report_with_confirmation(client, launched):
    resp = _post_task(client, json_accept=False)
    assert resp.status_code == 303 and resp.headers["Location"].endswith(f"/report?ctx={client.ctx}")
    page = client.get("/report").data.decode()
    assert "Task created" in page
    again = client.get("/report").data.decode()
    assert "Task created" not in again  # the confirmation shows once


def test_missing_csrf_token_writes_nothing(client, launched):
    resp = client.post("/task", data={}, headers={"Accept": "application/json"})
    assert resp.status_code == 403
    assert "security token" in resp.get_json()["error"]
    assert not launched.tasks


def test_wrong_csrf_token_writes_nothing(client, launched):
    resp = _post_task(client, token="x" * 43)
    assert resp.status_code == 403 and not launched.tasks


def test_post_task_without_a_launch_is_401(client):
    assert client.post("/task", data={"csrf_token": "x"}).status_code == 401


def test_two_concurrent_writes_make_one_task(app, client, launched):
    token = csrf_of(client.get("/report").data)
    sid = client.get_cookie("ivig_sid").value
    results = []

    def write():
        c = app.test_client()
        c.set_cookie("ivig_sid", sid)
        c.ctx = client.ctx
        results.append(c.post("/task", data={"csrf_token": token}, headers={"Accept": "application/json"}))

    threads = [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 200 for r in results)
    assert len(launched.tasks) == 1
    assert sorted(r.get_json()["created"] for r in results) == [False, True]


def test_server_500_is_retried_then_reported(client, launched):
    launched.fail_next = [(500, {}, "{}")] * 2
    assert client.get("/api/report").status_code == 200  # two failures, third attempt works
    launched.fail_next = [(500, {}, "{}")] * 200
    resp = client.get("/api/report")
    assert resp.status_code == 504
    assert "500" in resp.get_json()["error"]


def test_429_with_retry_after_is_retried(client, launched):
    launched.fail_next = [(429, {"Retry-After": "0"}, "{}")]
    assert client.get("/api/report").status_code == 200


def test_timeout_gives_a_clear_message(client, launched):
    launched.fail_next = [requests.exceptions.ReadTimeout("timed out")] * 200
    resp = client.get("/report")
    assert resp.status_code == 504
    assert b"did not answer" in resp.data
    assert b"Traceback" not in resp.data


def test_operation_outcome_becomes_a_clear_error(client, launched):
    oo = {"resourceType": "OperationOutcome",
          "issue": [{"severity": "error", "code": "processing", "diagnostics": "Search parameter not supported"}]}
    launched.fail_next = [(400, {"Content-Type": "application/fhir+json"}, json.dumps(oo))] * 20
    resp = client.get("/api/report")
    assert resp.status_code == 502
    assert "Search parameter not supported" in resp.get_json()["error"]


def test_task_write_failure_is_shown_on_the_report(client, launched, rsps):
    token = csrf_of(client.get("/report").data)
    rsps.replace(responses.POST, f"{ISS}/Task", status=422,
                 json={"resourceType": "OperationOutcome",
                       "issue": [{"severity": "error", "code": "invalid", "diagnostics": "Task.code is required"}]})
    resp = client.post("/task", data={"csrf_token": token})
    assert resp.status_code == 303
    page = client.get("/report").data.decode()
    assert "could not be written" in page and "Task.code is required" in page


def test_unexpected_error_page_has_no_traceback_or_record_data(client, launched, monkeypatch):
    def boom(*_a, **_k):
        raise ValueError("Jane Q. Doe, MRN 12345, IgG 380")

    monkeypatch.setattr("smart_app.retrieval.evaluate_record", boom)
    resp = client.get("/report")
    assert resp.status_code == 500
    assert b"Jane" not in resp.data and b"Traceback" not in resp.data and b"12345" not in resp.data


def test_logs_hold_no_token_code_or_patient_data(app, rsps, caplog):
    caplog.set_level(logging.DEBUG)
    app.extensions["ivig"].client_options = {"backoff": 0}
    client = app.test_client()
    ehr = FakeEhr(rsps)
    complete_launch(client, ehr)
    client.get("/report")
    _post_task(client)
    ehr.expire_tokens()
    client.get("/api/report")  # refresh path
    text = "\n".join(r.getMessage() for r in caplog.records)
    patient = next(r for r in ehr.resources if r["resourceType"] == "Patient")
    secrets_seen = set(ehr.tokens) | set(ehr.refresh_tokens) | {ehr.patient_id, patient["name"][0]["family"]}
    for secret in secrets_seen:
        assert secret not in text
    assert "code=" not in text and "state=" not in text
    assert "GET /report 200" in text  # the access log is there, by route pattern


def test_security_headers_and_configurable_frame_ancestors(tmp_path):
    app = make_app(tmp_path, IVIG_FRAME_ANCESTORS="https://ehr.example.org")
    resp = app.test_client().get("/launch.html")
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors https://ehr.example.org" in csp
    assert "script-src 'self'" in csp and "object-src 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"


def test_default_frame_ancestors_are_self_and_allowed_ehrs(client):
    csp = client.get("/healthz").headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://ehr.example.org" in csp


def test_source_view_shows_the_resource_and_refuses_other_types(client, launched):
    resp = client.get("/source/Observation/ex01-igg-1")
    assert resp.status_code == 200 and b"ex01-igg-1" in resp.data
    assert client.get("/source/Binary/x").status_code == 404


def test_launch_page_and_healthz(client):
    page = client.get("/launch.html")
    assert page.status_code == 200
    assert b'action="/launch"' in page.data
    assert b"launch.smarthealthit.org" in page.data
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_codesystem_lists_every_documentation_code(client):
    from smart_app.engine.model import documentation_codes

    cs = client.get("/fhir/CodeSystem/ivig-documentation").get_json()
    assert cs["resourceType"] == "CodeSystem"
    assert cs["url"] == "http://127.0.0.1:8000/fhir/CodeSystem/ivig-documentation"
    codes = {c["code"] for c in cs["concept"]}
    assert codes >= set(documentation_codes()) | {"documentation-request"}


def test_report_is_reused_briefly_within_a_session_but_task_writes_fetch_fresh(tmp_path, rsps):
    app = make_app(tmp_path, IVIG_REPORT_CACHE_SECONDS="30")
    client = app.test_client()
    ehr = FakeEhr(rsps)
    complete_launch(client, ehr)
    reads = lambda: sum(1 for m, p in ehr.fhir_calls if m == "GET" and p.startswith("Patient/"))  # noqa: E731
    client.get("/report")
    client.get("/api/report")
    assert reads() == 1  # the JSON view reused the page's fetch
    client.get("/report", query_string={"refresh": "1"})
    assert reads() == 2  # an explicit refresh fetches
    _post_task(client)
    assert reads() == 3  # a Task write always evaluates the record as it is now
    client.get("/report")
    assert reads() == 3  # ... and the page after it shows that evaluation
    stored = app.extensions["ivig"].store.get(f"launch:{client.ctx}")
    assert stored["cache"]["report"]["determination"]  # cached server-side, encrypted at rest
