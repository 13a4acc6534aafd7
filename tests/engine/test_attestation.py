"""Clinician attestation in the engine and the ruleset schema.

The schema refuses ``attestable`` on any leaf that reads a record fact (a lab value, a
weight, a date, a test result, a diagnosis, an age, a dose, an IgG level, a vaccine titer);
the engine lets an answer fill only what the record leaves open, for the same patient,
indication and ruleset version, within the criterion's recency window; a Bundle whose
QuestionnaireResponse "answers" record facts changes nothing.
"""

from __future__ import annotations

import copy
import json
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from fhir_mappings import load_record
from fhir_mappings.bundle import PatientRecord
from helpers import ago, condition, infection, igg, ivig_request, patient, weight
from smart_app.attestation import build_response, response_identifier
from smart_app.engine import model as m
from smart_app.engine.model import RULESET_DIR, RulesetError, available_rulesets, get_ruleset, load_ruleset_file
from smart_app.questionnaire import DEFAULT_CANONICAL_BASE, attestable_for
from smart_app.report import evaluate_record, render_text
from smart_app.task import build_task

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AS_OF = date(2025, 6, 30)
WHY = "Relapses on interferon beta-1a for two years; glatiramer stopped for injection-site necrosis."


def example(name: str) -> PatientRecord:
    return load_record((EXAMPLES / name).read_text(encoding="utf-8"), name)


def record_of(resources: list[dict], pt: dict | None = None) -> PatientRecord:
    return PatientRecord(patient=pt or patient(), resources=resources)


def response(record: PatientRecord, indication: str, answers: dict[str, tuple[bool, str]], *,
             ruleset: str = "bcbsmt-ig-2013", on: date = date(2025, 6, 20), author: str | None = "Practitioner/dr-a",
             existing: dict | None = None) -> dict:
    return build_response(ruleset=get_ruleset(ruleset), indication_id=indication, patient_ref=record.patient_ref,
                          canonical_base=DEFAULT_CANONICAL_BASE, answers=answers, author=author,
                          now=datetime(on.year, on.month, on.day, 10, 0, tzinfo=timezone.utc), existing=existing)


def evaluate(record: PatientRecord, *extra: dict, ruleset: str | None = None, as_of: date = AS_OF) -> dict:
    return evaluate_record(PatientRecord(record.patient, [*record.resources, *extra], full_urls=record.full_urls),
                           ruleset, as_of)


def criterion(report: dict, cid: str) -> dict:
    return next(c for c in report["criteria"] if c["id"] == cid)


def statuses(report: dict) -> dict[str, str]:
    return {c["id"]: c["status"] for c in report["criteria"]}


# --- the schema: record facts are never attestable ---------------------------------------------
ATTESTABLE = {"id": "some-item", "question": "Is it so, as the policy says?", "policy_words": "as the policy says"}
RECORD_FACT_LEAVES = [
    {"type": "igg", "below_mg_dl": 500},
    {"type": "igg_recent"},
    {"type": "vaccine_response"},
    {"type": "igg_subclass"},
    {"type": "age", "min_years": 2},
    {"type": "platelets", "below_per_ul": 20000},
    {"type": "diagnosis_age", "max_days": 100},
    {"type": "body_weight"},
    {"type": "dose"},
    {"type": "start_date"},
    {"type": "course"},
    {"type": "secondary_causes"},
    {"type": "diagnosis_confirmed"},
    {"type": "clinical_response"},
    {"type": "reevaluation"},
    {"type": "appeal"},
    {"type": "infections", "min_count": 2},  # the infections themselves: a diagnosis
    {"type": "infections", "min_count": 2, "severity": "serious"},  # "serious" = invasive, a diagnosis
    {"type": "documented", "valuesets": ["igg_total"], "missing": "igg-level"},
    {"type": "documented", "valuesets": ["body_weight"], "value_below": 2500, "missing": "neonatal-risk"},
    {"type": "documented", "valuesets": ["bronchiectasis"], "conditions_only": True, "missing": "bronchiectasis"},
    {"type": "documented", "valuesets": ["anti_gad"], "lab_result": "positive", "missing": "anti-gad-antibody"},
    {"type": "documented", "valuesets": ["finding_tss_refractory"], "lab_result": "positive",
     "missing": "clinical-findings"},
]


@pytest.mark.parametrize("leaf", RECORD_FACT_LEAVES, ids=lambda leaf: f"{leaf['type']}-{leaf.get('valuesets', leaf.get('severity', ''))}")
def test_a_record_fact_leaf_cannot_be_attestable(leaf):
    crit = {"id": "c", "description": "d", "cite": {"section": "Coverage", "quotes": ["as the policy says"]},
            "check": {**leaf, "attestable": ATTESTABLE}}
    with pytest.raises(ValidationError, match="cannot be attestable"):
        m.Criterion.model_validate(crit)
    del crit["check"]["attestable"]
    m.Criterion.model_validate(crit)  # the same leaf without it is fine


@pytest.mark.parametrize("leaf", [
    {"type": "prior_therapy", "valuesets": ["tx_corticosteroid"]},
    {"type": "severity", "missing": "disease-severity"},
    {"type": "infections", "min_count": 1, "severity": "life-threatening"},
    {"type": "documented", "valuesets": ["finding_tss_refractory"], "within_days": 30, "missing": "clinical-findings"},
])
def test_judgement_leaves_may_be_attestable(leaf):
    m.Criterion.model_validate({"id": "c", "description": "d", "cite": {"section": "Coverage", "quotes": ["q"]},
                                "check": {**leaf, "attestable": ATTESTABLE}})


def _ruleset_file(tmp_path, change) -> Path:
    data = yaml.safe_load((RULESET_DIR / "aaaai-pi.yaml").read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "aaaai-pi.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _crit(data: dict, cid: str) -> dict:
    return next(c for i in data["indications"] for c in i["criteria"] if c["id"] == cid)


def _igg_attestable(data):
    _crit(data, "aaaai-pretreatment-igg")["check"]["attestable"] = {
        "id": "igg-low", "question": "Is the IgG below 500 mg/dL?", "policy_words": "less than 500 mg/dL"}


def _weight_attestable(data):
    next(c for c in data["common_criteria"] if c["id"] == "body-weight-current")["check"]["attestable"] = {
        "id": "weight-ok", "question": "Is the weight documented?", "policy_words": "Document patient weight"}


def _appeal_leaf(data) -> dict:
    return next(c for c in data["not_covered_criteria"] if c["id"] == "appeal-prior-therapy")["check"]


def _unknown_key(data):
    _appeal_leaf(data)["attestable"]["answer_type"] = "quantity"


def _not_the_policys_words(data):
    _appeal_leaf(data)["attestable"]["policy_words"] = "the patient would benefit"


def _repeated_id(data):
    leaf = _appeal_leaf(data)
    data["common_criteria"].append({"id": "again", "description": "d",
                                    "cite": {"section": "Coverage", "quotes": ["the same words"]},
                                    "check": {**copy.deepcopy(leaf), "attestable": {
                                        **leaf["attestable"], "policy_words": "the same words"}}})


@pytest.mark.parametrize("change,message", [
    (_igg_attestable, "cannot be attestable: it reads IgG levels"),
    (_weight_attestable, "cannot be attestable: it reads body weights"),
    (_unknown_key, "answer_type"),
    (_not_the_policys_words, "policy_words are not quoted"),
    (_repeated_id, "is also used by"),
])
def test_a_bad_attestable_fails_when_the_ruleset_loads(tmp_path, change, message):
    with pytest.raises(RulesetError, match=message):
        load_ruleset_file(_ruleset_file(tmp_path, change))


def test_shipped_rulesets_mark_only_judgement_qualifiers():
    kinds: dict[str, set[str]] = {}
    for rs in available_rulesets().values():
        for crit in [*rs.common_criteria, *rs.not_covered_criteria, *(c for i in rs.indications for c in i.criteria)]:
            for _, leaf in m.attestable_leaves([crit]):
                assert not m.record_fact_reason(leaf)
                kinds.setdefault(rs.id, set()).add(leaf.type)
    assert kinds["bcbsmt-ig-2013"] == {"prior_therapy", "severity", "infections", "documented"}
    assert kinds["aaaai-pi"] == {"prior_therapy"}  # only the appeal's standard-therapy outcome
    bcbsmt = get_ruleset("bcbsmt-ig-2013")
    # Rows decided by laboratory results, tests or diagnoses have nothing to attest.
    for row in ("primary-humoral-immunodeficiency", "cidp", "gbs", "bmt", "aids-child", "solid-organ-transplant"):
        assert not [leaf for _, leaf in m.attestable_leaves(bcbsmt.indication(row).criteria)], row
    assert not m.attestable_leaves(get_ruleset("aaaai-pi").indication("primary-humoral-immunodeficiency").criteria)


# --- the engine ------------------------------------------------------------------------------------
def test_attested_yes_meets_the_qualifier_labelled_as_attested():
    rec = example("09-ms-off-label-missing-failure.json")
    before = evaluate(rec)
    assert before["determination"] == "documentation-missing"
    qr = response(rec, "multiple-sclerosis", {"ms-other-therapy-failed": (True, WHY)})
    report = evaluate(rec, qr)
    assert report["determination"] == "criteria-met"
    crit = criterion(report, "bcbsmt-ms-dmt-failed")
    assert crit["status"] == "met" and crit["rests_on_attestation"] is True
    assert crit["evidence"] == [{"reference": f"QuestionnaireResponse/{qr['id']}",
                                 "summary": f"attested by Practitioner/dr-a on 2025-06-20: {WHY}",
                                 "origin": "attested"}]
    assert report["missing_documentation"] == []
    # Everything else comes from the record, and says so.
    others = [e for c in report["criteria"] if c["id"] != crit["id"] for e in c["evidence"]]
    assert others and {e["origin"] for e in others} == {"record"}
    assert report["attestation"]["criteria_attested"] == ["bcbsmt-ms-dmt-failed"]
    assert report["attestation"]["summary"] == (
        "1 of 5 criteria rests on clinician attestation, not on the record: Interferon beta / glatiramer "
        "(other therapy) failed, intolerable or contraindicated.")
    assert [(i["id"], i["state"]) for i in report["attestation"]["items"]] == [("ms-other-therapy-failed", "yes")]
    text = render_text(report)
    assert "Attestation: 1 of 5 criteria rests on clinician attestation" in text and "[attested] attested by" in text
    # The Task says so and points at the response.
    task = build_task(report, existing={"id": "t1", "authoredOn": "2025-06-01"})
    assert task["status"] == "completed"
    assert task["output"][0]["valueReference"]["reference"] == f"QuestionnaireResponse/{qr['id']}"
    assert any("rests on clinician attestation" in n["text"] for n in task["note"])


def test_attested_no_makes_it_not_met():
    rec = example("09-ms-off-label-missing-failure.json")
    yes = response(rec, "multiple-sclerosis", {"ms-other-therapy-failed": (True, WHY)})
    no = response(rec, "multiple-sclerosis", {"ms-other-therapy-failed": (False, "")}, on=date(2025, 6, 25),
                  existing=yes)
    report = evaluate(rec, no)
    assert report["determination"] == "criteria-not-met"
    assert criterion(report, "bcbsmt-ms-dmt-failed")["status"] == "not-met"
    assert criterion(report, "bcbsmt-ms-dmt-failed")["evidence"][0]["origin"] == "attested"


def _spoil(qr: dict, how: str) -> dict:
    qr = copy.deepcopy(qr)
    if how == "another-indication":
        qr["identifier"] = response_identifier(qr["subject"]["reference"], "sle", "bcbsmt-ig-2013")
    elif how == "another-ruleset":
        qr["identifier"] = response_identifier(qr["subject"]["reference"], "multiple-sclerosis", "aaaai-pi")
    elif how == "earlier-version":
        qr["questionnaire"] = qr["questionnaire"].split("|")[0] + "|2013.2"
    elif how == "another-patient":
        qr["subject"] = {"reference": "Patient/someone-else"}
    elif how == "in-progress":
        qr["status"] = "in-progress"
    elif how == "no-justification":
        group = qr["item"][0]
        group["item"] = [i for i in group["item"] if not i["linkId"].endswith(".justification")]
    elif how == "no-identifier":
        del qr["identifier"]
    elif how == "another-questionnaire":
        qr["questionnaire"] = "https://payer.example.org/Questionnaire/ms|2013.3"
    return qr


@pytest.mark.parametrize("how", ["another-indication", "another-ruleset", "earlier-version", "another-patient",
                                 "in-progress", "no-justification", "no-identifier", "another-questionnaire"])
def test_an_attestation_for_something_else_does_not_count(how):
    rec = example("09-ms-off-label-missing-failure.json")
    qr = _spoil(response(rec, "multiple-sclerosis", {"ms-other-therapy-failed": (True, WHY)}), how)
    report = evaluate(rec, qr)
    assert report["determination"] == "documentation-missing"
    crit = criterion(report, "bcbsmt-ms-dmt-failed")
    assert crit["status"] == "missing" and "rests_on_attestation" not in crit
    assert not [e for c in report["criteria"] for e in c["evidence"] if e["origin"] == "attested"]
    if how == "earlier-version":
        assert any("earlier version of this policy's questions" in w for w in report["warnings"])


def test_an_attestation_after_the_evaluation_date_does_not_count():
    rec = example("09-ms-off-label-missing-failure.json")
    qr = response(rec, "multiple-sclerosis", {"ms-other-therapy-failed": (True, WHY)}, on=date(2025, 7, 2))
    report = evaluate(rec, qr)
    assert criterion(report, "bcbsmt-ms-dmt-failed")["status"] == "missing"
    assert any("after the evaluation date" in w for w in report["warnings"])
    assert evaluate(rec, qr, as_of=date(2025, 7, 3))["determination"] == "criteria-met"


def mg_exacerbation() -> list[dict]:
    """Myasthenia gravis in an acute exacerbation (3 days), an acute course ordered; the record
    shows neither the severity nor the other treatments' outcome."""
    return [condition("G70.01", "Myasthenia gravis with (acute) exacerbation", id="dx", onset=ago(3)),
            ivig_request(0.4, "g/kg", every=None, count=5, reason="dx"), weight(70, ago(10))]


def test_an_attestation_older_than_the_criterions_window_does_not_count():
    rec = record_of(mg_exacerbation())
    assert criterion(evaluate(rec), "bcbsmt-mg-any")["status"] == "missing"
    answers = {"mg-acute-severe-decompensation": (True, "FVC fell to 1.4 L with bulbar weakness."),
               "mg-other-treatments-unsuccessful": (True, "Worsened despite pyridostigmine 60 mg q4h.")}
    recent = evaluate(rec, response(rec, "myasthenia-gravis", answers, on=date(2025, 6, 25)))
    assert criterion(recent, "bcbsmt-mg-any")["status"] == "met"
    assert recent["determination"] == "criteria-met"
    old = evaluate(rec, response(rec, "myasthenia-gravis", answers, on=date(2025, 5, 20)))  # 41 days
    assert criterion(old, "bcbsmt-mg-any")["status"] == "missing"
    assert any("more than 30 days before 2025-06-30" in w for w in old["warnings"])


def test_the_record_wins_over_an_attestation():
    """Example 08 documents the MG qualifiers: an attested No changes none of them."""
    rec = example("08-mg-off-label-prior-therapy.json")
    before = evaluate(rec)
    assert before["determination"] == "criteria-met"
    every = {leaf.attestable.id: (False, "") for _, leaf in attestable_for(get_ruleset("bcbsmt-ig-2013"),
                                                                           "myasthenia-gravis")}
    after = evaluate(rec, response(rec, "myasthenia-gravis", every))
    assert after["determination"] == "criteria-met"
    assert statuses(after) == statuses(before)
    assert not [e for c in after["criteria"] for e in c["evidence"] if e["origin"] == "attested"]


def cll(*extra: dict) -> list[dict]:
    return [condition("C91.10", "Chronic lymphocytic leukemia", id="dx"), igg(480, ago(40)),
            ivig_request(reason="dx"), weight(80, ago(10)), *extra]


def test_an_infection_severity_is_attested_only_for_an_infection_the_record_holds():
    with_infection = record_of(cll(infection(when=ago(60))))  # one pneumonia, severity not recorded
    assert criterion(evaluate(with_infection), "bcbsmt-cll-infections")["status"] == "missing"
    answer = {"cll-severe-infection": (True, "Admitted for IV ceftriaxone, oxygen for 4 days.")}
    report = evaluate(with_infection, response(with_infection, "cll", answer))
    crit = criterion(report, "bcbsmt-cll-infections")
    assert crit["status"] == "met"
    assert [e["origin"] for e in crit["evidence"]][-1] == "attested"
    assert any(e["origin"] == "record" and e["reference"].startswith("Condition/") for e in crit["evidence"])

    without = record_of(cll())
    assert "cll-severe-infection" not in [i["id"] for i in evaluate(without)["attestation"]["items"]]
    report = evaluate(without, response(without, "cll", answer))
    assert criterion(report, "bcbsmt-cll-infections")["status"] == "missing"
    assert any("the infections it qualifies are not in the record" in w for w in report["warnings"])


# --- a QuestionnaireResponse that "answers" record facts changes nothing --------------------------
def lab_value_responses(rec: PatientRecord, indication: str, ruleset: str) -> list[dict]:
    """QuestionnaireResponses holding only lab values, weights and dates: as items of the app's
    own response for the indication (right identifier and Questionnaire), as contained
    Observations, and as a foreign form."""
    own = response(rec, indication, {}, ruleset=ruleset) if attestable_for(get_ruleset(ruleset), indication) else {
        "resourceType": "QuestionnaireResponse", "id": "own", "status": "completed",
        "identifier": response_identifier(rec.patient_ref, indication, ruleset),
        "questionnaire": f"{DEFAULT_CANONICAL_BASE}/Questionnaire/{ruleset}.{indication}|{get_ruleset(ruleset).version}",
        "subject": {"reference": rec.patient_ref}, "authored": "2025-06-20"}
    igg_answer = {"valueQuantity": {"value": 150, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                    "code": "mg/dL"}}
    own["item"] = [
        {"linkId": "aaaai-pretreatment-igg", "answer": [igg_answer]},
        {"linkId": "igg-pretreatment", "item": [{"linkId": "igg-pretreatment.answer", "answer": [{"valueBoolean": True}]}]},
        {"linkId": "bcbsmt-pi-any", "item": [{"linkId": "bcbsmt-pi-any.answer", "answer": [{"valueBoolean": True}]},
                                             {"linkId": "bcbsmt-pi-any.justification", "answer": [{"valueString": "IgG 150"}]}]},
        {"linkId": "body-weight-current", "answer": [{"valueQuantity": {"value": 70, "unit": "kg"}}]},
        {"linkId": "ivig-start-date", "answer": [{"valueDate": "2019-05-02"}]},
        {"linkId": "standard-therapy-failed",  # attestable, but not for this indication
         "item": [{"linkId": "standard-therapy-failed.answer", "answer": [{"valueBoolean": True}]},
                  {"linkId": "standard-therapy-failed.justification", "answer": [{"valueString": "x"}]}]},
    ]
    contained = {
        "resourceType": "QuestionnaireResponse", "id": "with-contained", "status": "completed",
        "subject": {"reference": rec.patient_ref}, "authored": "2025-06-20",
        "contained": [
            {"resourceType": "Observation", "id": "igg", "status": "final",
             "code": {"coding": [{"system": "http://loinc.org", "code": "2465-3"}]},
             "subject": {"reference": rec.patient_ref}, "effectiveDateTime": "2019-03-01",
             "valueQuantity": igg_answer["valueQuantity"]},
            {"resourceType": "Observation", "id": "wt", "status": "final",
             "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
             "subject": {"reference": rec.patient_ref}, "effectiveDateTime": "2025-06-20",
             "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}],
        "item": [{"linkId": "igg", "answer": [{"valueReference": {"reference": "#igg"}}]}],
    }
    foreign = {"resourceType": "QuestionnaireResponse", "id": "foreign", "status": "completed",
               "questionnaire": "https://payer.example.org/Questionnaire/ivig-dtr",
               "subject": {"reference": rec.patient_ref}, "authored": "2025-06-20",
               "item": [{"linkId": "igg-pretreatment", "answer": [igg_answer]},
                        {"linkId": "weight", "answer": [{"valueDecimal": 70}]}]}
    return [own, contained, foreign]


@pytest.mark.parametrize("name,ruleset,indication", [
    ("01-cvid-seed-002.json", "bcbsmt-ig-2013", "primary-humoral-immunodeficiency"),
    ("01-cvid-seed-002.json", "aaaai-pi", "primary-humoral-immunodeficiency"),
    ("14-weight-stale-dose-high.json", "bcbsmt-ig-2013", None),
])
def test_a_bundle_with_only_lab_values_in_questionnaire_responses_satisfies_nothing(name, ruleset, indication):
    rec = example(name)
    before = evaluate(rec, ruleset=ruleset)
    indication = indication or before["indication"]["id"]
    bundle = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    bundle["entry"] += [{"resource": qr} for qr in lab_value_responses(rec, indication, ruleset)]
    after = evaluate_record(load_record(json.dumps(bundle)), ruleset, AS_OF)
    assert statuses(after) == statuses(before)
    assert after["determination"] == before["determination"]
    assert after["missing_documentation"] == before["missing_documentation"]
    assert after["dose_check"] == before["dose_check"]
    assert not [e for c in after["criteria"] for e in c["evidence"] if e["origin"] != "record"]
    assert any("were ignored" in w for w in after["warnings"])
    # The record facts they name are still asked for.
    codes = {i["code"] for i in after["missing_documentation"]}
    assert {"body-weight"} & codes or "igg-pretreatment" in codes or "dose-justification" in codes


@pytest.mark.parametrize("ruleset", ["bcbsmt-ig-2013", "aaaai-pi"])
@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_yes_to_every_question_never_touches_a_record_fact_criterion(name, ruleset):
    """Attesting Yes to everything the Questionnaire asks leaves every criterion without an
    attestable qualifier as the record has it, and never approves a request one of them
    blocks."""
    rec = example(name)
    before = evaluate(rec, ruleset=ruleset)
    if before["indication"] is None:
        return
    rs = get_ruleset(ruleset)
    ind_id = before["indication"]["id"]
    items = attestable_for(rs, ind_id)
    qr = response(rec, ind_id, {leaf.attestable.id: (True, "As attested.") for _, leaf in items}, ruleset=ruleset)
    after = evaluate(rec, qr, ruleset=ruleset)
    with_attestable = {c.id for c, _ in items}
    for cid, status in statuses(before).items():
        if cid not in with_attestable:
            assert statuses(after)[cid] == status, cid
    blocked = [c for c in before["criteria"] if c["id"] not in with_attestable and c["status"] in ("missing", "not-met")]
    if blocked:
        assert after["determination"] != "criteria-met"
