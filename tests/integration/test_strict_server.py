"""The whole flow against strict EHRs: sekmet-fhir behind ``tests/support/strict_fhir.py``.

Two servers, as production EHRs differ:

* **strict**: answers 400 to an Observation search without ``code`` or ``category`` (a
  bare ``Observation?patient=``), as US Core EHRs do. Every example gives the report its
  Bundle gives, the Task is written and found again, and no search is refused.
* **lean**: its CapabilityStatement offers no MedicationAdministration, no
  MedicationDispense and no ``_include`` (and it refuses them). Those types are reported
  "not available from this server" (criterion status ``not-available``, listed under
  ``not_checked``), never "missing" and never a failure; nothing it does not offer is asked
  for; Medications an order points at are still read.

Plus the retrieval shapes on the strict server: results coded only locally are found by
the category search when the codes found too little, and a chart of 1,500 Observations is
read with one coded search and no paging.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from fhir_mappings import record_from_bundle
from smart_app.report import evaluate_record
from tests.integration.test_app_flow import BASE, make_app, post_task, tasks_for
from tests.support.fhir_server import load_bundle, load_examples, run_sekmet
from tests.support.records import large_chart
from tests.support.strict_fhir import StrictFhir
from smart_app.task import task_identifier

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AS_OF = date(2025, 6, 30)
RULESET = "bcbsmt-ig-2013"
LOCAL_LAB = "http://hospital.example.org/fhir/CodeSystem/lab-orderables"
LEAN_DROPS = ("MedicationAdministration", "MedicationDispense")


def ehr_launch(app, stub, patient_id: str, ruleset: str = RULESET):
    """A browser's EHR launch under ``ruleset`` (test_app_flow's, with the policy named)."""
    client = app.test_client()
    resp = client.get("/launch", query_string={"iss": stub.base_url, "launch": stub.new_launch(patient_id),
                                               "ruleset": ruleset})
    assert resp.status_code == 302, resp.data[:300]
    answer = requests.get(resp.headers["Location"], allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text[:300]
    q = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    back = client.get("/callback", query_string=q)
    assert back.status_code == 302 and urlsplit(back.headers["Location"]).path == "/report", back.data[:300]
    return client


def _bundle(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def local_coded_titers() -> dict:
    """Example 02 under new ids with every antibody titer coded only by a local lab code
    (text "Pneumococcal IgG serotype …", "Tetanus IgG antibody"): no LOINC code finds them."""
    text = json.dumps(_bundle("02-cvid-complete.json")).replace("ex02-", "loc02-")
    bundle = json.loads(text)
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] != "Observation" or not any(
                t in res["id"] for t in ("pneumo", "tetanus")):
            continue
        label = ("Tetanus IgG antibody" if "tetanus" in res["id"]
                 else f"Pneumococcal IgG serotype {res['id'].rsplit('-st', 1)[1].upper()}")
        res["code"] = {"coding": [{"system": LOCAL_LAB, "code": res["id"].upper(), "display": label}],
                       "text": label}
    return bundle


def big_chart() -> dict:
    """Example 01 under new ids with 1,500 Observations (vital signs, weights, CBC, BMP)."""
    text = json.dumps(_bundle("01-cvid-seed-002.json")).replace("ex01-", "big01-")
    return large_chart(json.loads(text), 1_500, seed=1)


def bundle_report(bundle: dict, ruleset: str = RULESET) -> dict:
    return evaluate_record(record_from_bundle(copy.deepcopy(bundle)), ruleset, AS_OF)


def outcome(report: dict) -> tuple:
    """What a clinician acts on: determination, indication, items, each criterion's status."""
    return (report["determination"], (report["indication"] or {}).get("id"),
            [m["code"] for m in report["missing_documentation"]],
            [(c["id"], c["status"]) for c in report["criteria"]],
            {**report["therapy"], "prior_exposure": sorted(report["therapy"]["prior_exposure"])},
            report["order"])


@pytest.fixture(scope="module")
def fhir() -> Iterator[str]:
    """A sekmet server of its own: the examples plus the two records made here."""
    with run_sekmet() as base:
        load_examples(base)
        load_bundle(base, local_coded_titers())
        load_bundle(base, big_chart())
        yield base


@pytest.fixture
def strict(fhir: str) -> Iterator[StrictFhir]:
    with StrictFhir(fhir) as server:
        yield server


@pytest.fixture
def lean(fhir: str) -> Iterator[StrictFhir]:
    with StrictFhir(fhir, drop_types=LEAN_DROPS, includes=False) as server:
        yield server


def observation_requests(server: StrictFhir) -> list[tuple[str, str]]:
    return [(m, p) for m, p in server.fhir_requests if p.startswith("Observation")]


# --- strict: every example, full flow --------------------------------------------------------
@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_strict_server_gives_each_examples_bundle_report(tmp_path, strict, example):
    app = make_app(tmp_path, strict.base_url)
    bundle = _bundle(example)
    patient = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    client = ehr_launch(app, strict, patient)
    report = client.get("/api/report").get_json()
    assert outcome(report) == outcome(bundle_report(bundle))
    assert report["not_available"] == [] and report["not_accessible"] == []
    assert not strict.refused, strict.refused  # the app never sent a search the server refuses
    searches = observation_requests(strict)
    assert searches and all(m == "POST" or "code=" in p or "category=" in p for m, p in searches)


def test_strict_server_task_written_and_found_again(tmp_path, strict, fhir):
    app = make_app(tmp_path, strict.base_url)
    client = ehr_launch(app, strict, "ex07-patient")
    report = client.get("/api/report").get_json()
    first = post_task(client)
    assert first["created"] is True
    again = post_task(ehr_launch(app, strict, "ex07-patient"))
    assert again["created"] is False and again["task"]["id"] == first["task"]["id"]
    stored = tasks_for(fhir, task_identifier(report))
    assert len(stored) == 1
    assert {i["type"]["coding"][0]["code"] for i in stored[0]["input"]} == \
        {m["code"] for m in report["missing_documentation"]}
    assert not strict.refused


def test_bare_observation_search_is_what_the_strict_server_refuses(strict):
    """The shim is strict: the search the app used to send is refused (so the tests above
    would fail on the old client)."""
    token = strict.issue_token("client", "patient/*.rs", "ex01-patient")["access_token"]
    resp = requests.get(f"{strict.base_url}/Observation", params={"patient": "ex01-patient", "_count": "200"},
                        headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
                        timeout=10)
    assert resp.status_code == 400
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_local_codes_are_found_by_the_category_search(tmp_path, strict):
    """aaaai-pi needs the vaccine response: the coded search finds no titer, so the
    laboratory category search runs and finds the locally coded ones."""
    bundle = local_coded_titers()
    app = make_app(tmp_path, strict.base_url)
    report = ehr_launch(app, strict, "loc02-patient", "aaaai-pi").get("/api/report").get_json()
    assert outcome(report) == outcome(bundle_report(bundle, "aaaai-pi"))
    assert report["determination"] == "criteria-met"
    searches = [p for _, p in observation_requests(strict)]
    assert any("category=" in p and "laboratory" in p for p in searches)
    assert not any("vital-signs" in p for p in searches)  # the weight was found by its code
    # Without the titers only the category search finds, the vaccine response is missing.
    without = copy.deepcopy(bundle)
    without["entry"] = [e for e in without["entry"]
                        if LOCAL_LAB not in json.dumps(e["resource"].get("code", {}))]
    assert [m["code"] for m in bundle_report(without, "aaaai-pi")["missing_documentation"]] == ["vaccine-response"]
    assert not strict.refused


def test_large_chart_is_read_with_one_coded_search_and_no_paging(tmp_path, strict):
    bundle = big_chart()
    client = ehr_launch(make_app(tmp_path, strict.base_url), strict, "big01-patient")
    report = client.get("/api/report").get_json()
    assert outcome(report) == outcome(bundle_report(bundle))
    obs = observation_requests(strict)
    coded = [(m, p) for m, p in obs if m == "POST"]
    assert len(coded) == 1  # one coded search, its first page holding every result the criteria read
    paged = [p for _, p in obs if "_offset" in p or "page" in p]
    assert not paged, paged


# --- lean: no MedicationAdministration/Dispense, no _include ---------------------------------
def test_lean_server_reports_not_available_never_missing(tmp_path, lean, fhir):
    """Example 01: already on immune globulin, start date undocumented. Without
    administrations and dispenses the start date and the baseline IgG cannot be looked for:
    not available, not missing (and so not in the Task)."""
    app = make_app(tmp_path, lean.base_url)
    client = ehr_launch(app, lean, "ex01-patient")
    report = client.get("/api/report").get_json()
    assert report["not_available"] == sorted(LEAN_DROPS)
    assert not lean.refused, lean.refused  # nothing it does not offer was asked for
    sent = " ".join(p for _, p in lean.fhir_requests)
    assert "MedicationAdministration" not in sent and "MedicationDispense" not in sent
    assert "_include" not in sent
    # Items that administrations or dispenses could supply are "not checked", not missing.
    from smart_app.engine.model import documentation_codes

    codes = documentation_codes()
    for section in (report, *report["other_indications"]):
        for item in section["missing_documentation"]:
            assert not set(codes[item["code"]].sources) & set(LEAN_DROPS), item
        for item in section["not_checked"]:
            assert item["not_available"], item
    assert "not-available" in {c["status"] for c in report["criteria"]}
    assert {m["code"] for m in report["not_checked"]} == {"igg-pretreatment", "ivig-start-date"}
    assert any("does not offer MedicationAdministration, MedicationDispense" in w for w in report["warnings"])
    page = client.get("/report")
    assert page.status_code == 200 and b"not offer" in page.data

    # The flow goes on: the Task (without the unchecked items) is written and found again.
    first = post_task(client)
    stored = tasks_for(fhir, task_identifier(report))
    if report["missing_documentation"]:
        assert first["created"] is True and len(stored) == 1
        assert {i["type"]["coding"][0]["code"] for i in stored[0]["input"]} == \
            {m["code"] for m in report["missing_documentation"]}
        assert post_task(ehr_launch(app, lean, "ex01-patient"))["task"]["id"] == first["task"]["id"]
    else:
        assert first["task"] is None and stored == []


def test_lean_server_still_reads_the_medication_an_order_names(tmp_path, lean):
    """Example 03's order names its product through a Medication resource: with no
    _include, the Medication is read by id, so the order is still recognised."""
    client = ehr_launch(make_app(tmp_path, lean.base_url), lean, "ex03-patient")
    report = client.get("/api/report").get_json()
    expected = bundle_report(_bundle("03-xla-new-start-si-units.json"))
    assert report["order"] == expected["order"] and report["order"] is not None
    assert any(p.startswith("Medication?") and "_id=" in p for _, p in lean.fhir_requests)
    assert not lean.refused


def test_lean_server_full_flow_for_every_example(tmp_path, lean):
    """No example fails on the lean server; the determination differs from the Bundle's only
    where an unavailable type was needed, and then it is flagged provisional."""
    app = make_app(tmp_path, lean.base_url)
    for path in sorted(EXAMPLES.glob("*.json")):
        bundle = _bundle(path.name)
        patient = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        report = ehr_launch(app, lean, patient).get("/api/report").get_json()
        assert "determination" in report, (path.name, report)
        assert report["not_available"] == sorted(LEAN_DROPS)
        expected = bundle_report(bundle)
        if outcome(report)[:2] != outcome(expected)[:2] or report["not_checked"]:
            assert any("provisional" in w for w in report["warnings"]), path.name
    assert not lean.refused
