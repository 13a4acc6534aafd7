"""Property tests: odd input never crashes the pipeline, and the output is well-formed.

(a) any JSON value -> record_from_bundle returns a PatientRecord or raises BundleError;
(b) structurally valid but clinically odd resources -> extract_facts, evaluate (both
    rulesets), build_report and build_task never raise; the report is well-formed and
    deterministic;
(c) adding an entered-in-error copy of an Observation never changes the report.
"""

from __future__ import annotations

import copy
import json
from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_mappings import extract_facts
from fhir_mappings.bundle import BundleError, PatientRecord, record_from_bundle
from smart_app.engine.evaluate import evaluate
from smart_app.engine.model import get_ruleset
from smart_app.report import build_report
from smart_app.task import build_task

AS_OF = date(2025, 6, 30)
RULESETS = ("bcbsmt-ig-2013", "aaaai-pi")
DETERMINATIONS = {"criteria-met", "documentation-missing", "criteria-not-met", "not-covered", "no-indication"}
CRITERION_STATUSES = {"met", "not-met", "missing", "not-applicable"}
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
CVX = "http://hl7.org/fhir/sid/cvx"
CPT = "http://www.ama-assn.org/go/cpt"

# --- (a) arbitrary JSON -------------------------------------------------------------------------
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=20,
)
RESOURCE_TYPES = ["Patient", "Observation", "Bundle", "OperationOutcome", "MedicationRequest",
                  "NutritionIntake", "Condition", "MedicationStatement"]
resource_like = st.fixed_dictionaries(
    {"resourceType": st.one_of(st.sampled_from(RESOURCE_TYPES), json_values)},
    optional={
        "id": st.one_of(st.sampled_from(["p1", "p2", "x"]), json_values),
        "type": st.one_of(st.sampled_from(["searchset", "collection"]), json_values),
        "entry": json_values,
        "medication": json_values,
        "issue": json_values,
    },
)
bundle_like = st.fixed_dictionaries(
    {"resourceType": st.one_of(st.just("Bundle"), json_values)},
    optional={
        "type": st.one_of(st.sampled_from(["collection", "searchset", "batch-response", "x"]), json_values),
        "entry": st.one_of(
            st.lists(st.one_of(
                st.fixed_dictionaries({}, optional={"resource": st.one_of(resource_like, json_values),
                                                    "fullUrl": json_values}),
                json_values,
            ), max_size=5),
            json_values,
        ),
    },
)


@settings(max_examples=200, **SETTINGS)
@given(st.one_of(json_values, bundle_like))
def test_record_from_bundle_returns_record_or_bundle_error(data):
    try:
        result = record_from_bundle(data)
    except BundleError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(result, PatientRecord)


# --- (b) clinically odd resources ---------------------------------------------------------------
def junk_or(strategy, junk_weight=1, weight=9):
    """Mostly `strategy`, sometimes a value of the wrong type."""
    return st.integers(0, junk_weight + weight - 1).flatmap(
        lambda i: json_values if i < junk_weight else strategy
    )


CODES = [
    (LOINC, "2465-3"), (LOINC, "29463-7"), (LOINC, "777-3"), (LOINC, "7917-8"), (LOINC, "27096-7"),
    (LOINC, "2467-9"), (LOINC, "1751-7"), (LOINC, "22203-4"), (LOINC, "2889-4"),
    (ICD10, "D83.9"), (ICD10, "C91.10"), (ICD10, "G61.81"), (ICD10, "D80.0"), (ICD10, "D69.3"),
    (ICD10, "M30.3"), (ICD10, "G30.9"), (ICD10, "G70.0"), (ICD10, "J13"), (ICD10, "A41.9"),
    (ICD10, "Z99.99"), (CVX, "33"), (CVX, "115"), (CVX, "100"), (HCPCS, "J1459"), (HCPCS, "J1569"),
    (RXNORM, "1426680"), (CPT, "95910"), (SNOMED, "260385009"), ("urn:unknown", "33"),
]
TEXTS = ["Privigen", "Privigen 10%", "Hizentra", "hepatitis B immune globulin", "prednisone",
         "rituximab", "IVIG", "immune globulin", "Pneumovax 23", "Tdap", "", "Non-reactive",
         "unknown stuff"]
coding = st.fixed_dictionaries(
    {},
    optional={
        "system": junk_or(st.sampled_from(sorted({s for s, _ in CODES}))),
        "code": junk_or(st.sampled_from([c for _, c in CODES])),
        "display": junk_or(st.sampled_from(TEXTS)),
    },
)
real_coding = st.sampled_from(CODES).map(lambda sc: {"system": sc[0], "code": sc[1]})
concept = st.fixed_dictionaries(
    {},
    optional={
        "coding": junk_or(st.lists(st.one_of(real_coding, coding), min_size=1, max_size=3)),
        "text": junk_or(st.sampled_from(TEXTS)),
    },
)
UNITS = ["", "g/L", "mg/dL", "mg/L", "furlongs", None, "kg", "[lb_av]", "lb", "g", "10*3/uL",
         "ug/mL", "mL", "mg", "mg/kg", "g/kg", "[IU]/mL", " "]
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-10**6, max_value=10**6),
    st.sampled_from([0, 0.0, -1, -0.0, 1e-300, 5e-324, 1e300, 1.7e308, -1.7e308, 10**30, 10**400]),
)
quantity = st.fixed_dictionaries(
    {},
    optional={
        "value": junk_or(numbers),
        "unit": junk_or(st.sampled_from(UNITS)),
        "code": junk_or(st.sampled_from(UNITS)),
        "comparator": junk_or(st.sampled_from(["<", "<=", ">", ">=", "=", "~"])),
    },
)
dates = st.one_of(
    st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(date.isoformat),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)).map(date.isoformat),
    st.dates(min_value=date(2015, 1, 1), max_value=date(2026, 12, 31)).map(lambda d: d.isoformat() + "T10:00:00Z"),
    st.sampled_from(["2023-02-30", "2019", "2019-05", "0000-01-01", "garbage", "", "2019-13-01",
                     "0001-01-01", "9999-12-31", "2025-06-30", "2025-07-01"]),
)
period = st.fixed_dictionaries({}, optional={"start": junk_or(dates), "end": junk_or(dates)})
OBS_STATUS = ["final", "amended", "corrected", "preliminary", "entered-in-error", "cancelled",
              "registered", "unknown", "FINAL"]
MED_STATUS = ["active", "draft", "on-hold", "completed", "stopped", "cancelled", "entered-in-error",
              "intended", "not-taken", "in-progress", "not-done", "unknown"]
ids = st.sampled_from(["r0", "r1", "r2", "r3", "r4", "med1"])


def status_cc(codes):
    return st.fixed_dictionaries({"coding": st.lists(
        st.fixed_dictionaries({"code": junk_or(st.sampled_from(codes))}), max_size=2)})


observation = st.fixed_dictionaries(
    {"resourceType": st.just("Observation"), "id": ids},
    optional={
        "status": junk_or(st.sampled_from(OBS_STATUS)),
        "code": junk_or(concept),
        "effectiveDateTime": junk_or(dates),
        "effectivePeriod": junk_or(period),
        "issued": junk_or(dates),
        "valueQuantity": junk_or(quantity),
        "valueString": junk_or(st.one_of(st.sampled_from(
            ["<0.3", "< 300 mg/dL", "Non-reactive", "positive", "380", "≥ 7 g/L", ".5 g/L", "abc"]),
            st.text(max_size=10))),
        "valueCodeableConcept": junk_or(concept),
        "valueInteger": junk_or(st.integers(min_value=-10**6, max_value=10**6)),
        "interpretation": junk_or(st.lists(status_cc(["L", "LL", "N", "H", "POS", "NEG"]), max_size=2)),
        "referenceRange": junk_or(st.lists(st.fixed_dictionaries({}, optional={"low": junk_or(quantity)}),
                                           max_size=2)),
    },
)
condition = st.fixed_dictionaries(
    {"resourceType": st.just("Condition"), "id": ids},
    optional={
        "code": junk_or(concept),
        "clinicalStatus": junk_or(status_cc(["active", "inactive", "resolved", "remission", "relapse"])),
        "verificationStatus": junk_or(status_cc(["confirmed", "provisional", "refuted", "entered-in-error"])),
        "onsetDateTime": junk_or(dates),
        "onsetPeriod": junk_or(period),
        "recordedDate": junk_or(dates),
        "severity": junk_or(status_cc(["24484000", "6736007"])),
    },
)
repeat = st.fixed_dictionaries(
    {},
    optional={
        "frequency": junk_or(st.one_of(st.integers(-2, 5), numbers)),
        "period": junk_or(numbers),
        "periodUnit": junk_or(st.sampled_from(["d", "wk", "mo", "a", "h", "min", "s", "fortnight"])),
        "count": junk_or(st.integers(-3, 10)),
    },
)
dosage = st.fixed_dictionaries(
    {},
    optional={
        "route": junk_or(st.one_of(status_cc(["47625008", "34206005"]),
                                   st.fixed_dictionaries({"text": st.sampled_from(["IV", "subcut", "oral"])}))),
        "doseAndRate": junk_or(st.lists(st.fixed_dictionaries({}, optional={"doseQuantity": junk_or(quantity)}),
                                        max_size=2)),
        "timing": junk_or(st.fixed_dictionaries({}, optional={"repeat": junk_or(repeat)})),
    },
)
med_reference = st.fixed_dictionaries(
    {},
    optional={
        "reference": junk_or(st.sampled_from(["Medication/med1", "#c1", "Medication/none",
                                              "http://x/fhir/Medication/med1", "urn:uuid:0"])),
        "display": junk_or(st.sampled_from(TEXTS)),
    },
)
medication = st.fixed_dictionaries(
    {"resourceType": st.just("Medication"), "id": st.just("med1")},
    optional={"code": junk_or(concept)},
)
contained = st.lists(
    st.fixed_dictionaries({"resourceType": st.just("Medication"), "id": st.sampled_from(["c1", "c2"])},
                          optional={"code": junk_or(concept)}),
    max_size=2,
)
ref_list = st.lists(st.fixed_dictionaries({"reference": junk_or(
    st.sampled_from(["Condition/r0", "Condition/r1", "Condition/r2", "Condition/zz"]))}), max_size=2)
medication_request = st.fixed_dictionaries(
    {"resourceType": st.just("MedicationRequest"), "id": ids},
    optional={
        "status": junk_or(st.sampled_from(MED_STATUS)),
        "intent": st.just("order"),
        "medicationCodeableConcept": junk_or(concept),
        "medicationReference": junk_or(med_reference),
        "contained": junk_or(contained),
        "authoredOn": junk_or(dates),
        "dosageInstruction": junk_or(st.lists(dosage, max_size=2)),
        "reasonReference": junk_or(ref_list),
        "reasonCode": junk_or(st.lists(concept, max_size=2)),
        "priorPrescription": junk_or(st.fixed_dictionaries({"reference": st.just("MedicationRequest/old")})),
        "statusReason": junk_or(concept),
        "note": junk_or(st.lists(st.fixed_dictionaries({"text": st.sampled_from(["failed", "ok"])}), max_size=1)),
    },
)
medication_event = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["MedicationAdministration", "MedicationStatement", "MedicationDispense"]),
     "id": ids},
    optional={
        "status": junk_or(st.sampled_from(MED_STATUS)),
        "medicationCodeableConcept": junk_or(concept),
        "medicationReference": junk_or(med_reference),
        "contained": junk_or(contained),
        "effectiveDateTime": junk_or(dates),
        "effectivePeriod": junk_or(period),
        "whenHandedOver": junk_or(dates),
        "dateAsserted": junk_or(dates),
        "statusReason": junk_or(st.lists(concept, max_size=2)),
    },
)
immunization = st.fixed_dictionaries(
    {"resourceType": st.just("Immunization"), "id": ids},
    optional={
        "status": junk_or(st.sampled_from(["completed", "not-done", "entered-in-error"])),
        "vaccineCode": junk_or(concept),
        "occurrenceDateTime": junk_or(dates),
    },
)
procedure = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["Procedure", "DiagnosticReport", "AllergyIntolerance"]), "id": ids},
    optional={
        "status": junk_or(st.sampled_from(["completed", "in-progress", "final", "not-done"])),
        "code": junk_or(concept),
        "performedDateTime": junk_or(dates),
        "effectiveDateTime": junk_or(dates),
        "conclusion": junk_or(st.text(max_size=10)),
        "verificationStatus": junk_or(status_cc(["confirmed", "refuted"])),
    },
)
any_resource = st.one_of(observation, condition, medication_request, medication_event, immunization,
                         procedure, medication)
patient = st.fixed_dictionaries(
    {"resourceType": st.just("Patient"), "id": st.just("p1")},
    optional={"birthDate": junk_or(dates)},
)
records = st.tuples(patient, st.lists(any_resource, max_size=10))


def run_pipeline(patient_res, resources):
    """Report and Task for each ruleset, as a canonical JSON string."""
    record = PatientRecord(patient=copy.deepcopy(patient_res), resources=copy.deepcopy(resources))
    facts = extract_facts(record)
    out = {}
    for rid in RULESETS:
        report = build_report(evaluate(facts, get_ruleset(rid), AS_OF))
        task = build_task(report)
        out[rid] = (report, task)
    return out


def canonical(out) -> str:
    return json.dumps(out, sort_keys=True, default=str)


def check_report(report):
    assert report["determination"] in DETERMINATIONS
    if report["determination"] == "no-indication":
        assert report["indication"] is None
    sections = [report, *report["other_indications"]]
    for section in sections:
        for criterion in section["criteria"]:
            assert criterion["status"] in CRITERION_STATUSES, criterion
        codes = [m["code"] for m in section["missing_documentation"]]
        assert len(codes) == len(set(codes)), codes
    for other in report["other_indications"]:
        assert other["determination"] in DETERMINATIONS - {"no-indication"}


@settings(max_examples=150, **SETTINGS)
@given(records)
def test_odd_resources_never_crash_and_report_is_well_formed(record):
    patient_res, resources = record
    first = run_pipeline(patient_res, resources)
    for report, task in first.values():
        check_report(report)
        if task is not None:
            assert task["resourceType"] == "Task"
            assert len(task["input"]) == len(report["missing_documentation"])
        else:
            assert report["missing_documentation"] == []
    second = run_pipeline(patient_res, resources)
    assert canonical(first) == canonical(second)


# --- (c) entered-in-error copies change nothing --------------------------------------------------
@settings(max_examples=100, **SETTINGS)
@given(records, observation, st.booleans(), st.data())
def test_entered_in_error_copy_of_observation_changes_nothing(record, extra_obs, same_id, data):
    patient_res, resources = record
    resources = [*resources, extra_obs]
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    original = data.draw(st.sampled_from(observations), label="observation copied")
    duplicate = copy.deepcopy(original)
    duplicate["status"] = "entered-in-error"
    if not same_id:
        duplicate["id"] = f"{original['id']}-eie"
    position = data.draw(st.integers(0, len(resources)), label="insert position")
    with_copy = [*resources[:position], duplicate, *resources[position:]]
    assert canonical(run_pipeline(patient_res, resources)) == canonical(run_pipeline(patient_res, with_copy))
