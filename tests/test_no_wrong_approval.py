"""Approval rests on evidence: two properties over the examples and the row records.

(1) Removing any one resource never turns a determination into criteria-met. Resources the
    evaluation holds *against* approval are set aside, because removing them changes what
    the record says rather than taking evidence away: what a not-met or missing criterion
    cites (a contradiction — without the normal IgG the low one is the latest; an abnormal
    protein-loss screen; a titer drawn on therapy), the diagnoses of a not-covered
    indication (without "Miller Fisher syndrome" the record is plain Guillain-Barré), and the
    immune globulin exposure records that make the patient a continuation (without them
    the record is a new start). Every other resource — uncited, or cited by met criteria —
    is supporting or neutral, and removing it must never create an approval.
(2) No met criterion cites only resources outside its own value sets: every met criterion
    shows at least one resource of the kind the criterion reads (an IgG for an IgG
    criterion, a therapy of the named set for a prior-therapy criterion …), and every
    reference it cites is a resource of the record.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent / "engine"))

from helpers import AS_OF, flatten, patient  # noqa: E402
from test_aaaai_pi import CASES as AAAAI_CASES  # noqa: E402
from test_bcbsmt_rows import CASES as BCBSMT_CASES  # noqa: E402
from test_bcbsmt_rows import ROWS  # noqa: E402

from fhir_mappings import extract_facts, load_record  # noqa: E402
from fhir_mappings.bundle import PatientRecord  # noqa: E402
from fhir_mappings.facts import PatientFacts  # noqa: E402
from smart_app.engine import model as m  # noqa: E402
from smart_app.engine.checks import BACTERIAL  # noqa: E402
from smart_app.engine.evaluate import evaluate  # noqa: E402
from smart_app.engine.model import get_ruleset  # noqa: E402
from smart_app.report import build_report  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RULESETS = ("bcbsmt-ig-2013", "aaaai-pi")
TITERS = {"pneumococcal_igg", "tetanus_igg", "diphtheria_igg"}
VACCINES = {"vaccine_pneumococcal_polysaccharide", "vaccine_tetanus", "vaccine_diphtheria"}


def _key(res: dict) -> str:
    return f"{res['resourceType']}/{res.get('id')}"


def evaluate_resources(resources: list[dict], ruleset_id: str):
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    record = PatientRecord(patient=patients[0] if patients else patient(),
                           resources=[r for r in resources if r["resourceType"] != "Patient"])
    facts = extract_facts(record)
    ev = evaluate(facts, get_ruleset(ruleset_id), date.fromisoformat(AS_OF))
    return facts, ev, build_report(ev)


def _example_records() -> list[pytest.param]:
    out = []
    for path in sorted(EXAMPLES.glob("[0-9][0-9]-*.json")):
        record = load_record(path.read_bytes(), path.name)
        resources = [record.patient, *record.resources]
        for rs in RULESETS:
            out.append(pytest.param(resources, rs, id=f"{path.stem}-{rs}"))
    return out


def _row_records() -> list[pytest.param]:
    out = [pytest.param(flatten(make()), "bcbsmt-ig-2013", id=f"row-{row}") for row, make in ROWS.items()]
    for case in BCBSMT_CASES:
        row, _crit, changes, *_ = case.values
        parts = ROWS[row]()
        parts.update(changes)
        out.append(pytest.param(flatten(parts), "bcbsmt-ig-2013", id=f"case-{case.id}"))
    for case in AAAAI_CASES:
        base, _crit, changes, *_ = case.values
        out.append(pytest.param(flatten(base(**changes)), "aaaai-pi", id=f"case-{case.id}"))
    return out


RECORDS = _example_records() + _row_records()


def contradicting(report: dict) -> set[str]:
    """What the evaluation holds against approval (see the module docstring)."""
    refs: set[str] = set()
    for block in [report, *report["other_indications"]]:
        for c in block["criteria"]:
            for part in [c, *c.get("components", [])]:
                if part["status"] in {"not-met", "missing"}:
                    refs |= {e["reference"] for e in part["evidence"]}
    for ind in [report["indication"], *report["other_indications"]]:
        if ind and ind["coverage"] in {"experimental", "unlisted"}:
            refs |= set(ind["evidence"])
    return refs


def exposure_refs(facts: PatientFacts) -> set[str]:
    return {e.ref for e in facts.ig_exposures} | {o.ref for o in facts.ig_orders}


def removal_property(resources: list[dict], ruleset_id: str) -> None:
    facts, _, report = evaluate_resources(resources, ruleset_id)
    if report["determination"] == "criteria-met":
        return
    kept = contradicting(report) | exposure_refs(facts)
    for i, res in enumerate(resources):
        if res["resourceType"] == "Patient" or _key(res) in kept:
            continue
        _, _, without = evaluate_resources(resources[:i] + resources[i + 1:], ruleset_id)
        assert without["determination"] != "criteria-met", (
            f"removing {_key(res)} turned {report['determination']} into criteria-met")


@pytest.mark.parametrize("resources,ruleset_id", RECORDS)
def test_removing_one_resource_never_makes_criteria_met(resources, ruleset_id):
    removal_property(resources, ruleset_id)


def _without_weight() -> list[pytest.param]:
    """Each example without its body weight: the order then needs one, and removing the
    order's Medication must not make the order (and that need) disappear — found by the
    generated-records test on example 03 (a MedicationRequest naming a Medication that is
    not in the record is an order whose product cannot be read: ordered-product)."""
    out = []
    for p in _example_records():
        resources, rs = p.values
        kept = [r for r in resources if not (r["resourceType"] == "Observation" and "weight" in r["id"])]
        if len(kept) < len(resources):
            out.append(pytest.param(kept, rs, id=f"{p.id}-without-weight"))
    return out


@pytest.mark.parametrize("resources,ruleset_id", _without_weight())
def test_removing_one_resource_never_makes_criteria_met_without_a_weight(resources, ruleset_id):
    removal_property(resources, ruleset_id)


# --- (2) met criteria cite their own kind of evidence --------------------------------------
def valuesets_by_ref(facts: PatientFacts) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {facts.patient_ref: {"Patient"}}

    def add(ref: str, sets) -> None:
        out.setdefault(ref, set()).update(sets)

    for labs in facts.labs.values():
        for lab in labs:
            add(lab.ref, {lab.kind})
    for d in facts.diagnoses:
        add(d.ref, d.valuesets | d.note_valuesets)
    for t in facts.therapies:
        add(t.ref, t.valuesets)
    for f in facts.findings:
        add(f.ref, f.valuesets | f.text_valuesets)
    for v in facts.vaccinations:
        add(v.ref, v.kinds)
    for e in facts.ig_exposures:
        add(e.ref, {"ig_product"})
    for o in facts.ig_orders:
        add(o.ref, {"ig_product"})
    return out


def expected_sets(check: m.Check, indication: m.Indication) -> set[str]:
    """The kinds of evidence a check reads (its value sets, or what its type implies)."""
    if isinstance(check, (m.AnyOf, m.AllOf)):
        return set().union(*(expected_sets(c, indication) for c in check.of))
    implied = {
        m.IggCheck: {"igg_total"}, m.IggRecentCheck: {"igg_total"}, m.SubclassCheck: {"igg_subclasses"},
        m.InfectionsCheck: set(BACTERIAL), m.ClinicalResponseCheck: set(BACTERIAL),
        m.VaccineResponseCheck: TITERS | VACCINES, m.ReevaluationCheck: TITERS | VACCINES | set(BACTERIAL),
        m.AgeCheck: {"Patient"}, m.PlateletCheck: {"platelets"}, m.BodyWeightCheck: {"body_weight"},
        m.DoseCheck: {"ig_product"}, m.CourseCheck: {"ig_product"}, m.StartDateCheck: {"ig_product"},
        m.SecondaryCausesCheck: {"hiv_test", "serum_albumin", "urine_protein", "urine_albumin",
                                 "protein_electrophoresis", "lymphoid_malignancy", "hiv_infection",
                                 "protein_loss_condition", "anti_cd20", "hypogam_drug",
                                 "systemic_immunosuppressant"},
        m.SeverityCheck: set(indication.diagnoses), m.DiagnosisConfirmedCheck: set(indication.diagnoses),
    }
    if type(check) in implied:
        return implied[type(check)]
    if isinstance(check, m.DiagnosisAgeCheck):
        return set(indication.diagnoses) | set(check.dated_by)
    if isinstance(check, m.PriorTherapyCheck):
        return set(check.valuesets) | ({"documented_failure"} if check.any_documented_failure else set())
    assert isinstance(check, m.DocumentedCheck), type(check)
    return set(check.valuesets)


@pytest.mark.parametrize("resources,ruleset_id", RECORDS)
def test_met_criteria_cite_resources_of_their_own_kind(resources, ruleset_id):
    facts, ev, report = evaluate_resources(resources, ruleset_id)
    known = valuesets_by_ref(facts)
    for res in [ev.primary, *ev.others]:
        if res is None:
            continue
        for cr in res.criteria:
            if cr.result.status != "met":
                continue
            refs = [e.reference for e in cr.result.evidence]
            assert refs, f"{cr.criterion.id} is met without evidence"
            assert all(r in known for r in refs), (cr.criterion.id, refs)
            wanted = expected_sets(cr.criterion.check, res.indication)
            assert any(known[r] & wanted for r in refs), (
                f"{cr.criterion.id} met on {refs}, none of which is in {sorted(wanted)}")


# --- the same over generated records ---------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([r.values[0] for r in RECORDS]), st.sampled_from(RULESETS), st.data())
def test_generated_removals_never_make_criteria_met(resources, ruleset_id, data):
    """Random subsets of the documented records: dropping one more resource from any of
    them never creates an approval (with the same two exceptions as above)."""
    drop = data.draw(st.sets(st.integers(0, len(resources) - 1), max_size=3), label="dropped")
    removal_property([r for i, r in enumerate(resources) if i not in drop or r["resourceType"] == "Patient"],
                     ruleset_id)
