"""Privacy of the logs during a whole session under gunicorn, and a short load run.

The privacy test runs the app as deployed (``ivig-check serve``, log level DEBUG) behind
the SMART stub and the real FHIR server, walks launch -> report -> JSON -> Task -> token
refresh -> refused launches, and then searches everything the app wrote to its log for
tokens, authorization codes, state values, patient ids, names, identifiers, birth dates
and lab values.

The load test is the short form of ``bench/load.py``: simulated clinicians for a few
seconds; it checks correctness under concurrency (no errors, no duplicate Task), not
speed (the benchmark prints the figures).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from tests.support.app_server import run_app

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from load import run_load  # noqa: E402


def _phi_of_example(name: str) -> set[str]:
    bundle = json.loads((ROOT / "examples" / name).read_text())
    found: set[str] = set()
    for entry in bundle["entry"]:
        res = entry["resource"]
        found.add(res["id"])
        if res["resourceType"] == "Patient":
            for hn in res.get("name", []):
                found.update([hn.get("family", ""), hn.get("text", ""), *hn.get("given", [])])
            found.update(i["value"] for i in res.get("identifier", []))
            found.add(res.get("birthDate", ""))
        vq = res.get("valueQuantity")
        if vq and vq.get("unit"):
            found.add(f"{vq['value']} {vq['unit']}")
    return {s for s in found if s and len(s) >= 4}


def test_logs_hold_no_tokens_codes_or_patient_data(smart_stub):
    env = {"IVIG_ALLOWED_ISSUERS": smart_stub.base_url, "IVIG_CLIENT_ID": "privacy",
           "IVIG_AS_OF": "2025-06-30", "IVIG_SECRET_KEY": "privacy-secret-0123456789",
           "IVIG_LOG_LEVEL": "DEBUG", "IVIG_WORKERS": "1"}
    states, codes = [], []
    with run_app(env) as app:
        s = requests.Session()
        r = s.get(f"{app}/launch", params={"iss": smart_stub.base_url,
                                           "launch": smart_stub.new_launch("ex01-patient")},
                  allow_redirects=False, timeout=30)
        states.append(parse_qs(urlsplit(r.headers["Location"]).query)["state"][0])
        r = requests.get(r.headers["Location"], allow_redirects=False, timeout=30)
        q = parse_qs(urlsplit(r.headers["Location"]).query)
        codes.append(q["code"][0])
        r = s.get(f"{app}/callback", params={k: v[0] for k, v in q.items()}, timeout=30)
        assert r.status_code == 200 and urlsplit(r.url).path == "/report"
        ctx = parse_qs(urlsplit(r.url).query)["ctx"][0]
        token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
        assert s.get(f"{app}/api/report", params={"ctx": ctx}, timeout=30).status_code == 200
        assert s.post(f"{app}/task", data={"csrf_token": token, "ctx": ctx}, timeout=30).status_code == 200
        assert s.get(f"{app}/source/Observation/ex01-igg-1", params={"ctx": ctx}, timeout=30).status_code == 200
        smart_stub.expire_access_tokens()
        assert s.get(f"{app}/report", params={"refresh": "1", "ctx": ctx}, timeout=30).status_code == 200
        # refused requests that name resource and patient ids: the ids stay out of the log
        assert s.get(f"{app}/source/Patient/ex01-patient", params={"ctx": "x" * 43},
                     timeout=30).status_code == 401
        assert s.get(f"{app}/source/Binary/ex01-patient", timeout=30).status_code == 404
        assert s.get(f"{app}/source/Observation/..", timeout=30).status_code in (400, 404)
        # refused paths log too: replayed state, foreign issuer, missing CSRF token
        assert s.get(f"{app}/callback", params={"code": codes[0], "state": states[0]},
                     timeout=30).status_code == 400
        assert s.get(f"{app}/launch", params={"iss": "https://elsewhere.example/fhir", "patient": "ex01-patient"},
                     timeout=30).status_code == 403
        assert s.post(f"{app}/task", data={"ctx": ctx}, timeout=30).status_code == 403
        cookie = s.cookies.get("ivig_sid")
    log = run_app.last_log
    assert "GET /report 200" in log and "POST /task 303" in log, log[-3000:]  # the log is not empty
    secrets = set(smart_stub._access) | set(smart_stub._refresh) | set(codes) | set(states) | {cookie, token, ctx}
    secrets |= {r["response"]["id_token"] for r in smart_stub.token_requests if "id_token" in r.get("response", {})}
    for secret in secrets:
        assert secret not in log, "a token, code, state or session id reached the log"
    for phi in _phi_of_example("01-cvid-seed-002.json"):
        assert phi not in log, f"patient data reached the log: {phi[:3]}…"
    assert "Bearer" not in log and "mg/dL" not in log


def test_short_load_no_errors_no_duplicate_tasks(sekmet_base, example_patient_ids):
    env = {"IVIG_OPEN_ISSUERS": sekmet_base, "IVIG_AS_OF": "2025-06-30", "IVIG_LOG_LEVEL": "WARNING",
           "IVIG_SECRET_KEY": "load-test-secret-0123456789"}
    patients = example_patient_ids[9:13]  # a few patients, so Task writes collide
    with run_app(env) as app:
        result = run_load(app, sekmet_base, patients, clinicians=10, duration=5, task_every=1)
    assert result.launches > 0 and not result.errors, result.errors[:5]
    for patient in result.tasks_written:
        bundle = requests.get(f"{sekmet_base}/Task", params={"patient": patient},
                              headers={"Accept": "application/fhir+json"}, timeout=30).json()
        assert bundle.get("total", len(bundle.get("entry", []))) == 1, f"duplicate Tasks for {patient}"
