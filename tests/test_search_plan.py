"""The search plan (pure) and how the client runs it: US Core shapes, what the server
declares, and degrading to "not available" when a server refuses a search."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from fhir_mappings import PatientRecord
from fhir_mappings.terminology import default_terminology
from smart_app.fhir_client import FhirClient
from smart_app.report import evaluate_record
from smart_app.retrieval import fetch_report
from smart_app.search_plan import (MAX_URL_QUERY, OBS_CATEGORY, OPTIONAL_TYPES, PATIENT_TYPES, UNKNOWN,
                                   ServerCapabilities,
                                   build_search_plan, fallback_categories, observation_codes,
                                   parse_capability_statement)

ROOT = Path(__file__).resolve().parent.parent
FHIR = "http://fhir.test/r4"
AS_OF = date(2025, 6, 30)


def capability_statement(resources: dict[str, list[str]], includes: dict[str, list[str]] | None = None) -> dict:
    return {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
            "format": ["json"], "rest": [{"mode": "server", "resource": [
                {"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}],
                 "searchParam": [{"name": n, "type": "token"} for n in params],
                 **({"searchInclude": (includes or {})[t]} if t in (includes or {}) else {})}
                for t, params in resources.items()]}]}


SEARCHED = (*PATIENT_TYPES, *OPTIONAL_TYPES)
US_CORE = {t: ["patient", "_id"] for t in SEARCHED} | {
    "Observation": ["patient", "code", "category", "date"], "Medication": ["_id"]}


# --- the LOINC codes come from the terminology -----------------------------------------------------
def test_observation_codes_are_the_lab_value_sets_loinc_codes():
    from fhir_mappings.normalize import LAB_UNITS

    tx = default_terminology()
    expected = {c.code for name in LAB_UNITS for c in tx.valuesets[name].concepts if c.system == "http://loinc.org"}
    assert set(observation_codes()) == expected
    assert {"2465-3", "29463-7", "777-3", "22203-4"} <= expected  # IgG, weight, platelets, tetanus


# --- CapabilityStatement ---------------------------------------------------------------------------
def test_parse_capability_statement():
    caps = parse_capability_statement(capability_statement(
        {"Observation": ["patient", "code"], "Condition": ["patient"]},
        {"MedicationRequest": ["MedicationRequest:medication"]}))
    assert caps.known and caps.supports("Observation", "code") and not caps.supports("Observation", "category")
    assert not caps.offers("MedicationAdministration")
    cs = capability_statement({"Observation": ["patient"]})
    cs["rest"][0]["resource"].append({"type": "Procedure", "interaction": [{"code": "read"}]})  # not searchable
    cs["rest"][0]["resource"].append({"type": "Immunization", "interaction": [{"code": "search-type"}]})  # no params listed
    caps = parse_capability_statement(cs)
    assert not caps.offers("Procedure") and caps.supports("Immunization", "patient")


@pytest.mark.parametrize("cs", [None, {}, {"resourceType": "Patient"}, {"resourceType": "CapabilityStatement"},
                                {"resourceType": "CapabilityStatement", "rest": [{"mode": "server"}]}])
def test_unreadable_capability_statement_is_unknown(cs):
    assert parse_capability_statement(cs) == UNKNOWN


# --- the plan --------------------------------------------------------------------------------------
def test_us_core_server_plan():
    plan = build_search_plan("p1", parse_capability_statement(capability_statement(
        US_CORE, {"MedicationRequest": ["MedicationRequest:medication"]})))
    obs = [s for s in plan.searches if s.rtype == "Observation"]
    assert len(obs) == 1 and obs[0].purpose == "code" and obs[0].post  # ~80 codes: a long query
    assert len(obs[0].query) > MAX_URL_QUERY
    form = parse_qs(obs[0].query)
    assert form["patient"] == ["p1"]
    assert set(form["code"][0].split(",")) == {f"http://loinc.org|{c}" for c in observation_codes()}
    assert set(plan.fallback) == {"laboratory", "vital-signs"}
    assert parse_qs(plan.fallback["laboratory"].query)["category"] == [f"{OBS_CATEGORY}|laboratory"]
    assert not any("category" in parse_qs(s.query) for s in plan.searches)  # not in the first wave
    med = next(s for s in plan.searches if s.rtype == "MedicationRequest")
    assert parse_qs(med.query)["_include"] == ["MedicationRequest:medication"]
    assert {s.rtype for s in plan.searches} == set(SEARCHED)
    assert not plan.not_available and not plan.not_accessible


def test_plan_leaves_out_what_the_server_lacks():
    lean = {t: p for t, p in US_CORE.items() if t not in ("MedicationAdministration", "MedicationDispense")}
    plan = build_search_plan("p1", parse_capability_statement(capability_statement(lean)))
    assert plan.not_available == {"MedicationAdministration", "MedicationDispense"}
    assert not any("_include" in s.query for s in plan.searches)
    assert {s.rtype for s in plan.searches} == set(SEARCHED) - plan.not_available


def test_plan_observation_shapes_by_what_is_declared():
    only_category = parse_capability_statement(capability_statement({"Observation": ["patient", "category"]}))
    plan = build_search_plan("p1", only_category)
    assert [s.purpose for s in plan.searches] == ["category:laboratory", "category:vital-signs"]
    assert not plan.fallback
    only_code = parse_capability_statement(capability_statement({"Observation": ["patient", "code"]}))
    plan = build_search_plan("p1", only_code)
    assert [s.purpose for s in plan.searches] == ["code"] and not plan.fallback and plan.notes
    subject_only = parse_capability_statement(capability_statement({"Condition": ["subject"]}))
    plan = build_search_plan("p1", subject_only)
    assert [s.params[0] for s in plan.searches] == [("subject", "Patient/p1")]


def test_plan_scopes_before_server():
    plan = build_search_plan("p1", UNKNOWN, readable={"Patient", "Condition"})
    assert {s.rtype for s in plan.searches} == {"Condition"}
    assert plan.not_accessible == set(SEARCHED) - {"Condition"} and not plan.medications_readable


def test_short_code_lists_are_a_get():
    plan = build_search_plan("p1", UNKNOWN, codes=["2465-3", "29463-7"])
    obs = plan.searches[0]
    assert not obs.post and obs.path.startswith("Observation?patient=p1&code=http://loinc.org|2465-3,")


def test_fallback_categories_follow_the_missing_items():
    def report(*codes, others=()):
        return {"missing_documentation": [{"code": c} for c in codes],
                "other_indications": [{"missing_documentation": [{"code": c} for c in others]}]}

    assert fallback_categories(report()) == set()
    assert fallback_categories(report("letter-of-medical-necessity", "infection-history")) == set()
    assert fallback_categories(report("body-weight")) == {"vital-signs"}
    assert fallback_categories(report("igg-pretreatment")) == {"laboratory"}
    assert fallback_categories(report(others=["vaccine-response", "body-weight"])) == {"laboratory", "vital-signs"}


# --- running it against a server that refuses -------------------------------------------------------
class Server:
    """A responses-mocked FHIR server holding one example: searches by GET or POST _search,
    filtered by code, category and _id, with _include of Medications. ``refuse``: rules
    (method or "*", type, parameter that triggers it or None, status) for searches it refuses."""

    def __init__(self, rsps, example: str, cs: dict | None, refuse=()):
        bundle = json.loads((ROOT / "examples" / example).read_text())
        self.resources = [e["resource"] for e in bundle["entry"]]
        self.patient = next(r for r in self.resources if r["resourceType"] == "Patient")
        self.refuse = list(refuse)
        self.calls: list[tuple[str, str, dict]] = []
        rsps.add(responses.GET, f"{FHIR}/metadata", json=cs, status=200 if cs else 404)
        rsps.add(responses.GET, f"{FHIR}/Patient/{self.patient['id']}", json=self.patient)
        for method in ("GET", "POST"):
            rsps.add_callback(method, re.compile(rf"{re.escape(FHIR)}/[A-Za-z]+(/_search)?(\?.*)?$"),
                              callback=self.search)
        rsps.add_callback("GET", re.compile(rf"{re.escape(FHIR)}/(Organization|Medication)/[A-Za-z0-9.-]+$"),
                          callback=self.read)

    def read(self, request):
        rtype, rid = urlsplit(request.url).path.rsplit("/", 2)[-2:]
        found = [r for r in self.resources if r["resourceType"] == rtype and r["id"] == rid]
        self.calls.append(("GET", f"{rtype}/{rid}", {}))
        if not found:
            return 404, {}, json.dumps({"resourceType": "OperationOutcome", "issue": []})
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(found[0])

    def search(self, request):
        parts = urlsplit(request.url)
        rtype = parts.path.rsplit("/", 2)[-2] if parts.path.endswith("/_search") else parts.path.rsplit("/", 1)[-1]
        body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
        q = parse_qs(body if request.method == "POST" else parts.query)
        self.calls.append((request.method, rtype, q))
        for method, rt, param, status in self.refuse:
            if method in ("*", request.method) and rt == rtype and (param is None or param in q):
                return status, {}, json.dumps({"resourceType": "OperationOutcome",
                                               "issue": [{"severity": "error", "code": "not-supported"}]})
        found = [r for r in self.resources if r["resourceType"] == rtype]
        if "code" in q:
            wanted = set(q["code"][0].split(","))
            found = [r for r in found if any(f"{c.get('system')}|{c.get('code')}" in wanted
                                             for c in r.get("code", {}).get("coding", []))]
        if "category" in q:
            cat = q["category"][0].split("|")[-1]
            found = [r for r in found if any(c.get("code") == cat for cc in r.get("category", [])
                                             for c in cc.get("coding", []))]
        if "_id" in q:
            found = [r for r in found if r["id"] in set(q["_id"][0].split(","))]
        if "_include" in q and rtype in ("MedicationRequest", "Coverage"):
            included = "Medication" if rtype == "MedicationRequest" else "Organization"
            found += [r for r in self.resources if r["resourceType"] == included]
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(
            {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in found]})

    def expected(self, ruleset="bcbsmt-ig-2013", drop=()) -> dict:
        record = PatientRecord(patient=self.patient, resources=[r for r in self.resources if r is not self.patient
                                                               and r["resourceType"] not in drop],
                               not_available=set(drop))
        return evaluate_record(record, ruleset, AS_OF)


def _outcome(report):
    return (report["determination"], [m["code"] for m in report["missing_documentation"]],
            sorted((c["id"], c["status"]) for c in report["criteria"]), report["order"])


@responses.activate
def test_unknown_server_post_refused_falls_back_to_short_gets():
    server = Server(responses, "03-xla-new-start-si-units.json", None, refuse=[("POST", "Observation", None, 405)])
    record, report = fetch_report(FhirClient(FHIR, backoff=0), server.patient["id"], "bcbsmt-ig-2013", AS_OF)
    assert _outcome(report) == _outcome(server.expected())
    gets = [q for m, t, q in server.calls if m == "GET" and t == "Observation" and "code" in q]
    assert len(gets) >= 2  # the coded search in chunks whose URLs stay short
    assert all(len("&".join(f"{k}={v[0]}" for k, v in q.items())) <= MAX_URL_QUERY for q in gets)


@responses.activate
def test_code_search_refused_uses_the_category_searches():
    server = Server(responses, "02-cvid-complete.json", capability_statement(US_CORE),
                    refuse=[("*", "Observation", "code", 400)])
    record, report = fetch_report(FhirClient(FHIR, backoff=0), server.patient["id"], "bcbsmt-ig-2013", AS_OF)
    assert _outcome(report) == _outcome(server.expected())
    assert {q["category"][0].split("|")[1] for m, t, q in server.calls if "category" in q} == {"laboratory",
                                                                                              "vital-signs"}


@responses.activate
def test_404_to_a_declared_type_is_not_available_never_missing():
    server = Server(responses, "01-cvid-seed-002.json", capability_statement(US_CORE),
                    refuse=[("GET", "MedicationAdministration", None, 404), ("GET", "MedicationDispense", None, 400)])
    record, report = fetch_report(FhirClient(FHIR, backoff=0), server.patient["id"], "aaaai-pi", AS_OF)
    assert record.not_available == {"MedicationAdministration", "MedicationDispense"}
    assert report["not_available"] == ["MedicationAdministration", "MedicationDispense"]
    assert report == server.expected("aaaai-pi", drop=("MedicationAdministration", "MedicationDispense"))
    assert {m["code"] for m in report["not_checked"]} == {"igg-pretreatment", "ivig-start-date"}
    assert all(m["not_available"] for m in report["not_checked"])
    assert "not-available" in {c["status"] for c in report["criteria"]}


@responses.activate
def test_include_refused_retries_without_it_and_reads_the_medication():
    """Example 03's order names its product through a Medication resource."""
    server = Server(responses, "03-xla-new-start-si-units.json",
                    capability_statement(US_CORE, {"MedicationRequest": ["MedicationRequest:medication"]}),
                    refuse=[("GET", "MedicationRequest", "_include", 400)])
    record, report = fetch_report(FhirClient(FHIR, backoff=0), server.patient["id"], "bcbsmt-ig-2013", AS_OF)
    assert _outcome(report) == _outcome(server.expected())
    assert report["order"] is not None and report["order"]["product"]
    assert any(t == "Medication" and "_id" in q for _, t, q in server.calls)
    assert not record.not_available


@responses.activate
def test_coded_search_finds_what_criteria_need_so_no_category_search():
    """A complete record: every item was found by code, so no category search is sent."""
    server = Server(responses, "02-cvid-complete.json", capability_statement(US_CORE))
    _, report = fetch_report(FhirClient(FHIR), server.patient["id"], "bcbsmt-ig-2013", AS_OF)
    assert report["determination"] == "criteria-met"
    assert not any("category" in q for _, _, q in server.calls)
    assert [t for m, t, q in server.calls if t == "Observation"] == ["Observation"]  # one Observation search


def test_capabilities_given_skip_the_metadata_read(monkeypatch):
    client = FhirClient(FHIR)
    monkeypatch.setattr(client, "capabilities", lambda: pytest.fail("metadata read again"))
    monkeypatch.setattr(client, "fetch", lambda plan: PatientRecord(patient={"resourceType": "Patient", "id": "p"},
                                                                     resources=[]))
    _, report = fetch_report(client, "p", "bcbsmt-ig-2013", AS_OF, capabilities=ServerCapabilities())
    assert report["determination"] == "no-indication"
