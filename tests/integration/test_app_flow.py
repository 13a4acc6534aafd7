"""The whole product against a real FHIR server (sekmet-fhir) behind the test-only SMART
stub: launch -> report -> Task -> relaunch -> the same Task."""

from __future__ import annotations

import json
import threading
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from fhir_mappings import load_record
from smart_app.config import load_config
from smart_app.report import evaluate_record
from smart_app.task import DEFAULT_TASK_IDENTIFIER_SYSTEM, task_identifier
from smart_app.web import create_app
from tests.support.launch_client import LaunchClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BASE = "http://127.0.0.1:8000"


def make_app(tmp_path, issuers: str, **env):
    environ = {"IVIG_ALLOWED_ISSUERS": issuers, "IVIG_CLIENT_ID": "ivig-test", "IVIG_PUBLIC_BASE_URL": BASE,
               "IVIG_SECRET_KEY": "integration-secret-0123456789", "IVIG_AS_OF": "2025-06-30",
               "IVIG_SESSION_DB": str(tmp_path / "sessions.sqlite"), "IVIG_REPORT_CACHE_SECONDS": "0", **env}
    app = create_app(load_config(environ))
    app.test_client_class = LaunchClient
    return app


def ehr_launch(app, stub, patient_id: str):
    """A browser's EHR launch, with the stub's authorize endpoint approving it."""
    client = app.test_client()
    resp = client.get("/launch", query_string={"iss": stub.base_url, "launch": stub.new_launch(patient_id)})
    assert resp.status_code == 302, resp.data[:300]
    answer = requests.get(resp.headers["Location"], allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text[:300]
    target = urlsplit(answer.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{BASE}/callback"
    q = {k: v[0] for k, v in parse_qs(target.query).items()}
    back = client.get("/callback", query_string=q)
    assert back.status_code == 302 and urlsplit(back.headers["Location"]).path == "/report", back.data[:300]
    return client


def tasks_for(sekmet_base: str, ident: dict[str, str]) -> list[dict]:
    bundle = requests.get(f"{sekmet_base}/Task", params={"identifier": f"{ident['system']}|{ident['value']}"},
                          headers={"Accept": "application/fhir+json"}, timeout=10).json()
    return [e["resource"] for e in bundle.get("entry") or [] if e.get("search", {}).get("mode", "match") == "match"]


def post_task(client) -> dict:
    page = client.get("/report").data.decode()
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    resp = client.post("/task", data={"csrf_token": token}, headers={"Accept": "application/json"})
    assert resp.status_code == 200, resp.data[:300]
    return resp.get_json()


def cli_report(example: str) -> dict:
    record = load_record((EXAMPLES / example).read_text(), example)
    return evaluate_record(record, "bcbsmt-ig-2013", date(2025, 6, 30))


def test_launch_report_task_relaunch_same_task(tmp_path, smart_stub, sekmet_base):
    app = make_app(tmp_path, smart_stub.base_url)
    client = ehr_launch(app, smart_stub, "ex01-patient")
    report = client.get("/api/report").get_json()
    expected = cli_report("01-cvid-seed-002.json")
    assert report["determination"] == expected["determination"]
    assert [m["code"] for m in report["missing_documentation"]] == \
        [m["code"] for m in expected["missing_documentation"]]
    page = client.get("/report")
    assert page.status_code == 200 and b"Missing documentation" in page.data

    first = post_task(client)
    assert first["created"] is True
    ident = task_identifier(report)
    stored = tasks_for(sekmet_base, ident)
    assert len(stored) == 1 and stored[0]["id"] == first["task"]["id"]
    assert stored[0]["status"] == "requested"
    assert stored[0]["for"]["reference"] == "Patient/ex01-patient"
    assert {i["type"]["coding"][0]["code"] for i in stored[0]["input"]} == \
        {m["code"] for m in report["missing_documentation"]}

    # A later launch (new browser session, new token) finds and updates the same Task.
    again = ehr_launch(app, smart_stub, "ex01-patient")
    second = post_task(again)
    assert second["created"] is False
    assert second["task"]["id"] == first["task"]["id"]
    stored = tasks_for(sekmet_base, ident)
    assert len(stored) == 1
    # Nothing changed in the record, so the stored Task was found and not rewritten.
    assert stored[0]["meta"]["versionId"] == first["task"]["meta"]["versionId"]
    # The token exchange used PKCE and the authorize request carried aud = iss.
    assert smart_stub.authorize_requests[0]["aud"] == smart_stub.base_url
    # Every search went through the stub with a token; none was refused.
    assert not smart_stub.rejected_requests


def test_open_server_mode_against_the_real_server(tmp_path, sekmet_base):
    app = make_app(tmp_path, "", IVIG_OPEN_ISSUERS=sekmet_base)
    client = app.test_client()
    resp = client.get("/launch", query_string={"iss": sekmet_base, "patient": "ex05-patient"})
    assert resp.status_code == 302
    report = client.get("/api/report").get_json()
    assert "determination" in report, report
    assert report["determination"] == cli_report("05-cll-comparator.json")["determination"]


def test_medication_is_included_and_paging_followed(tmp_path, smart_stub):
    app = make_app(tmp_path, smart_stub.base_url)
    client = ehr_launch(app, smart_stub, "ex03-patient")
    assert client.get("/api/report").status_code == 200
    searches = [p for m, p in smart_stub.fhir_requests if m == "GET" and "?" in p]
    assert any("_include=MedicationRequest:medication" in p or "_include=MedicationRequest%3Amedication" in p
               for p in searches)


def test_reduced_scopes_against_the_real_server(tmp_path, sekmet_base):
    from tests.support.smart_stub import SmartStub

    def grant(requested: str) -> str:
        return " ".join(s for s in requested.split() if not s.startswith(("patient/Observation",
                                                                          "patient/Task")))

    with SmartStub(sekmet_base, grant_scope=grant) as stub:
        app = make_app(tmp_path, stub.base_url)
        client = ehr_launch(app, stub, "ex02-patient")
        report = client.get("/api/report").get_json()
        assert "Observation" in report["not_accessible"]
        assert not any(p.startswith("Observation") for _, p in stub.fhir_requests)
        page = client.get("/report").data
        assert b"did not grant" in page


def test_refresh_mid_session_against_the_real_server(tmp_path, smart_stub):
    app = make_app(tmp_path, smart_stub.base_url)
    client = ehr_launch(app, smart_stub, "ex04-patient")
    smart_stub.expire_access_tokens()
    assert client.get("/api/report").status_code == 200
    grants = [r.get("grant_type") for r in smart_stub.token_requests]
    assert grants.count("refresh_token") == 1


@pytest.mark.parametrize("writers", [2, 20])
def test_concurrent_task_writes_make_exactly_one_task(tmp_path, smart_stub, sekmet_base, writers):
    patient = {2: "ex07-patient", 20: "ex09-patient"}[writers]
    app = make_app(tmp_path, smart_stub.base_url)
    client = ehr_launch(app, smart_stub, patient)
    report = client.get("/api/report").get_json()
    token = client.get("/report").data.decode().split('name="csrf_token" value="')[1].split('"')[0]
    sid = client.get_cookie("ivig_sid").value
    results: list = []
    barrier = threading.Barrier(writers)

    def write():
        c = app.test_client()
        c.set_cookie("ivig_sid", sid)
        c.ctx = client.ctx
        barrier.wait()
        results.append(c.post("/task", data={"csrf_token": token}, headers={"Accept": "application/json"}))

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [r.status_code for r in results] == [200] * writers, [r.data[:200] for r in results]
    stored = tasks_for(sekmet_base, task_identifier(report))
    assert len(stored) == 1, f"{len(stored)} Tasks for one patient + indication + ruleset"
    assert sum(r.get_json()["created"] for r in results) == 1
    assert {r.get_json()["task"]["id"] for r in results} == {stored[0]["id"]}
    all_tasks = requests.get(f"{sekmet_base}/Task", params={"identifier": DEFAULT_TASK_IDENTIFIER_SYSTEM + "|",
                                                            "_count": 200},
                             headers={"Accept": "application/fhir+json"}, timeout=10).json()
    assert json.dumps(all_tasks).count(task_identifier(report)["value"]) <= 1 + len(all_tasks.get("entry") or [])
