"""Clinician attestation against the real FHIR server (sekmet-fhir) behind the SMART stub:
report with an attestable missing item -> attest Yes -> the QuestionnaireResponse is on the
server, the Task's item is gone (the Task completed) -> relaunch: the criterion is met,
labelled attested -> attest No -> criteria-not-met; concurrent attestations make one
QuestionnaireResponse; the letter is written back once as a preliminary DocumentReference.

Each test stores its own copy of an example patient (ids prefixed), so no other test sees
its writes.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import requests

from smart_app.attestation import RESPONSE_IDENTIFIER_SYSTEM
from smart_app.demo_fhir import load_bundle
from smart_app.questionnaire import DEFAULT_CANONICAL_BASE
from tests.integration.test_app_flow import ehr_launch, make_app, tasks_for
from tests.support.smart_stub import SmartStub

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FHIR = {"Accept": "application/fhir+json"}


def own_patient(sekmet_base: str, example: str) -> str:
    """A fresh copy of an example patient on the server; returns its patient id."""
    prefix = f"t{secrets.token_hex(3)}-"
    text = (EXAMPLES / example).read_text(encoding="utf-8")
    bundle = json.loads(re.sub(r'(["/])(ex\d\d-)', rf"\1{prefix}\2", text))
    load_bundle(sekmet_base, bundle)
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    return patient["id"]


def csrf(client) -> str:
    return client.get("/report").data.decode().split('name="csrf_token" value="')[1].split('"')[0]


def attest(client, indication: str, answers: dict[str, tuple[str, str]], *, json_answer: bool = True):
    form = {"csrf_token": csrf(client), "indication": indication}
    for aid, (choice, why) in answers.items():
        form[f"answer-{aid}"] = choice
        form[f"justification-{aid}"] = why
    headers = {"Accept": "application/json"} if json_answer else {}
    return client.post("/attest", data=form, headers=headers)


def responses_for(sekmet_base: str, response_id: str) -> list[dict]:
    """Every QuestionnaireResponse on the server carrying this response's identifier (sekmet
    has no search parameters for the type: all are read and filtered here)."""
    bundle = requests.get(f"{sekmet_base}/QuestionnaireResponse", params={"_count": 1000}, headers=FHIR,
                          timeout=10).json()
    found = [e["resource"] for e in bundle.get("entry") or [] if e.get("resource", {}).get("resourceType")
             == "QuestionnaireResponse"]
    return [r for r in found if (r.get("identifier") or {}).get("system") == RESPONSE_IDENTIFIER_SYSTEM
            and r["identifier"].get("value") == response_id]


def criterion(report: dict, cid: str) -> dict:
    return next(c for c in report["criteria"] if c["id"] == cid)


def test_attest_yes_then_no_on_the_real_server(tmp_path, smart_stub, sekmet_base):
    pid = own_patient(sekmet_base, "09-ms-off-label-missing-failure.json")
    app = make_app(tmp_path, smart_stub.base_url)
    client = ehr_launch(app, smart_stub, pid)
    report = client.get("/api/report").get_json()
    assert report["determination"] == "documentation-missing"
    assert [m["code"] for m in report["missing_documentation"]] == ["prior-therapy-failure"]
    section = report["attestation"]
    assert [(i["id"], i["state"]) for i in section["items"]] == [("ms-other-therapy-failed", "open")]
    # The Task listing the missing item, as the clinician would have written it first.
    task = client.post("/task", data={"csrf_token": csrf(client)}, headers={"Accept": "application/json"})
    assert task.status_code == 200 and task.get_json()["created"] is True
    task_id = task.get_json()["task"]["id"]

    why = "Relapses on interferon beta-1a for two years; glatiramer stopped for injection-site necrosis."
    resp = attest(client, "multiple-sclerosis", {"ms-other-therapy-failed": ("yes", why)})
    assert resp.status_code == 200, resp.data[:300]
    body = resp.get_json()
    assert body["created"] is True
    # The QuestionnaireResponse is on the server: one, for this patient, with the answer.
    stored = responses_for(sekmet_base, section["response_id"])
    assert len(stored) == 1
    qr = stored[0]
    assert qr["subject"]["reference"] == f"Patient/{pid}"
    assert qr["questionnaire"] == section["questionnaire"]
    assert qr["questionnaire"].startswith(f"{DEFAULT_CANONICAL_BASE}/Questionnaire/bcbsmt-ig-2013.multiple-sclerosis|")
    assert qr["author"]["reference"] == smart_stub.fhir_user
    group = qr["item"][0]
    answers = {i["linkId"]: i["answer"][0] for i in group["item"]}
    assert answers["ms-other-therapy-failed.answer"] == {"valueBoolean": True}
    assert answers["ms-other-therapy-failed.justification"] == {"valueString": why}
    # The Task followed: its item is gone and, nothing else missing, it is completed; it
    # points at the attestation.
    [stored_task] = tasks_for(sekmet_base, {"system": task.get_json()["task"]["identifier"][0]["system"],
                                            "value": task.get_json()["task"]["identifier"][0]["value"]})
    assert stored_task["id"] == task_id and body["task"]["outcome"] == "updated"
    assert stored_task["status"] == "completed" and not stored_task.get("input")
    assert stored_task["output"][0]["valueReference"]["reference"] == f"QuestionnaireResponse/{qr['id']}"
    assert any("rests on clinician attestation" in n["text"] for n in stored_task["note"])

    # Relaunch (new browser session, new token): the criterion is met, labelled attested.
    again = ehr_launch(app, smart_stub, pid)
    report = again.get("/api/report").get_json()
    assert report["determination"] == "criteria-met"
    crit = criterion(report, "bcbsmt-ms-dmt-failed")
    assert crit["status"] == "met" and crit["rests_on_attestation"] is True
    [evidence] = crit["evidence"]
    assert evidence["origin"] == "attested"
    assert evidence["summary"] == f"attested by {smart_stub.fhir_user} on {qr['authored'][:10]}: {why}"
    assert report["attestation"]["summary"].startswith("1 of 5 criteria rests on clinician attestation")
    page = again.get("/report").data.decode()
    assert "attested by" in page and "rests on clinician attestation" in page
    # Every other evidence item is the record's.
    assert {e["origin"] for c in report["criteria"] if c["id"] != crit["id"] for e in c["evidence"]} == {"record"}

    # The CLI reads it back from the server too.
    cli = subprocess.run([sys.executable, "-m", "smart_app.cli", "evaluate", "--fhir-base", sekmet_base,
                          "--patient", pid, "--as-of", "2025-06-30", "--format", "json"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert cli.returncode == 0, cli.stderr
    from_cli = json.loads(cli.stdout)
    assert from_cli["determination"] == "criteria-met"
    assert criterion(from_cli, "bcbsmt-ms-dmt-failed")["evidence"] == [evidence]

    # Attest No: the criterion is not met, and so is the request.
    resp = attest(again, "multiple-sclerosis", {"ms-other-therapy-failed": ("no", "")})
    assert resp.status_code == 200 and resp.get_json()["created"] is False
    report = again.get("/api/report").get_json()
    assert report["determination"] == "criteria-not-met"
    assert criterion(report, "bcbsmt-ms-dmt-failed")["status"] == "not-met"
    assert len(responses_for(sekmet_base, section["response_id"])) == 1  # the same response, updated
    assert not smart_stub.rejected_requests


def test_concurrent_attestations_make_one_questionnaire_response(tmp_path, smart_stub, sekmet_base):
    pid = own_patient(sekmet_base, "10-experimental-alzheimers.json")
    app = make_app(tmp_path, smart_stub.base_url)
    client = ehr_launch(app, smart_stub, pid)
    report = client.get("/api/report").get_json()
    section = report["attestation"]
    assert [i["id"] for i in section["items"]] == ["standard-therapy-failed"]
    token = csrf(client)
    sid = client.get_cookie("ivig_sid").value
    writers = 8
    barrier = threading.Barrier(writers)
    results: list = []

    def write(n: int) -> None:
        c = app.test_client()
        c.set_cookie("ivig_sid", sid)
        c.ctx = client.ctx
        barrier.wait()
        results.append(c.post("/attest", headers={"Accept": "application/json"}, data={
            "csrf_token": token, "indication": report["indication"]["id"],
            "answer-standard-therapy-failed": "yes",
            "justification-standard-therapy-failed": f"Donepezil and memantine gave no benefit (writer {n})."}))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [r.status_code for r in results] == [200] * writers, [r.data[:200] for r in results]
    assert sum(r.get_json()["created"] for r in results) == 1
    stored = responses_for(sekmet_base, section["response_id"])
    assert len(stored) == 1, f"{len(stored)} QuestionnaireResponses for one patient + indication + ruleset"
    assert {r.get_json()["response"]["id"] for r in results} == {stored[0]["id"]}
    # Not covered stays not covered: an attestation is the appeal's evidence, not coverage.
    after = client.get("/api/report").get_json()
    assert after["determination"] == "not-covered"
    assert criterion(after, "appeal-prior-therapy")["status"] == "met"


def test_without_the_scopes_the_buttons_become_notices(tmp_path, sekmet_base):
    def grant(requested: str) -> str:
        return " ".join(s for s in requested.split()
                        if not s.startswith(("patient/QuestionnaireResponse", "patient/DocumentReference")))

    pid = own_patient(sekmet_base, "09-ms-off-label-missing-failure.json")
    with SmartStub(sekmet_base, grant_scope=grant) as stub:
        app = make_app(tmp_path, stub.base_url)
        client = ehr_launch(app, stub, pid)
        page = client.get("/report").data.decode()
        assert 'action="/attest"' not in page
        assert "did not grant this app permission to record attestations" in page
        letter = client.get("/letter").data.decode()
        assert 'action="/letter/document"' not in letter and "did not grant this app permission to write" in letter
        refused = attest(client, "multiple-sclerosis", {"ms-other-therapy-failed": ("yes", "x")})
        assert refused.status_code == 403
        # Without the read scope nothing is asked for: no QuestionnaireResponse request at all,
        # and the report says an earlier attestation would not be shown.
        assert not any(p.startswith("QuestionnaireResponse") for _, p in stub.fhir_requests)
        warnings = client.get("/api/report").get_json()["warnings"]
        assert any("did not let the app read clinician attestations" in w for w in warnings)


def test_letter_written_back_once_as_a_preliminary_document(tmp_path, smart_stub, sekmet_base):
    pid = own_patient(sekmet_base, "09-ms-off-label-missing-failure.json")
    app = make_app(tmp_path, smart_stub.base_url)
    client = ehr_launch(app, smart_stub, pid)
    page = client.get("/letter")
    assert page.status_code == 200 and b"Letter of medical necessity" in page.data
    token = page.data.decode().split('name="csrf_token" value="')[1].split('"')[0]
    first = client.post("/letter/document", data={"csrf_token": token}, headers={"Accept": "application/json"})
    second = client.post("/letter/document", data={"csrf_token": token}, headers={"Accept": "application/json"})
    assert first.status_code == second.status_code == 200, first.data[:300]
    assert first.get_json()["created"] is True and second.get_json()["created"] is False
    doc = first.get_json()["document"]
    assert second.get_json()["document"]["id"] == doc["id"]
    docs = requests.get(f"{sekmet_base}/DocumentReference", params={"patient": pid}, headers=FHIR,
                        timeout=10).json()
    stored = [e["resource"] for e in docs.get("entry") or [] if e["resource"]["resourceType"] == "DocumentReference"]
    assert len(stored) == 1
    assert stored[0]["docStatus"] == "preliminary" and stored[0]["status"] == "current"
    attachment = stored[0]["content"][0]["attachment"]
    assert attachment["contentType"] == "application/pdf"
    import base64

    assert base64.b64decode(attachment["data"]).startswith(b"%PDF-")
