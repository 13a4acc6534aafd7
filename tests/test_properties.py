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

from hypothesis import HealthCheck, example, given, settings
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
@example({"resourceType": "Bundle", "type": []})  # unhashable Bundle.type
@example({"resourceType": "Patient\nBundle"})  # a resourceType with a line break
@example({"resourceType": "Bundle", "type": "collection",
          "entry": [{"resource": {"resourceType": "Patient", "id": ["p1"]}}]})  # unhashable Patient.id
def test_record_from_bundle_returns_record_or_bundle_error(data):
    try:
        result = record_from_bundle(data)
    except BundleError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(result, PatientRecord)


# --- (b) clinically odd resources ---------------------------------------------------------------
def junk_or(strategy):
    """Mostly `strategy`, now and then a value of the wrong type (1 in 16)."""
    return st.integers(0, 15).flatmap(lambda i: json_values if i == 0 else strategy)


def resource(required: dict, optional: dict | None = None):
    """A resource dict whose fields (other than resourceType/id) are each sometimes dropped."""
    fields = {**required, **(optional or {})}
    droppable = sorted(k for k in fields if k not in {"resourceType", "id"})
    base = st.fixed_dictionaries({k: v for k, v in fields.items()})
    drops = st.sets(st.sampled_from(droppable), max_size=max(1, len(droppable) // 2)) if droppable else st.just(set())
    return st.tuples(base, drops).map(lambda t: {k: v for k, v in t[0].items() if k not in t[1]})


def weighted(*pairs):
    """one_of with integer weights: weighted((3, a), (1, b))."""
    return st.one_of(*[s for w, s in pairs for _ in range(w)])


LAB_CODES = [(LOINC, c) for c in ("2465-3", "29463-7", "777-3", "7917-8", "27096-7", "2467-9",
                                  "1751-7", "22203-4", "2889-4", "2464-6", "9999-9")]
DX_CODES = [(ICD10, c) for c in ("D83.9", "C91.10", "G61.81", "D80.0", "D69.3", "M30.3", "G30.9",
                                 "G70.0", "J13", "A41.9", "Z99.99", "D84.821")] + [(SNOMED, "75053002")]
MED_CODES = [(HCPCS, "J1459"), (HCPCS, "J1569"), (HCPCS, "J1559"), (RXNORM, "1426680"), (RXNORM, "8640")]
VACCINE_CODES = [(CVX, "33"), (CVX, "115"), (CVX, "100"), (CVX, "999")]
PROC_CODES = [(CPT, "95910"), (CPT, "95907"), (CPT, "00000")]
ALL_CODES = LAB_CODES + DX_CODES + MED_CODES + VACCINE_CODES + PROC_CODES + [(SNOMED, "260385009"),
                                                                             ("urn:unknown", "33")]
TEXTS = ["Privigen", "Privigen 10%", "Hizentra", "hepatitis B immune globulin", "prednisone",
         "rituximab", "IVIG", "immune globulin", "Pneumovax 23", "Tdap", "", "Non-reactive",
         "Octagam 5%", "unknown stuff", "IgG", "body weight", "\u2028"]
coding = st.fixed_dictionaries(
    {},
    optional={
        "system": junk_or(st.sampled_from(sorted({s for s, _ in ALL_CODES}))),
        "code": junk_or(st.sampled_from([c for _, c in ALL_CODES])),
        "display": junk_or(st.sampled_from(TEXTS)),
    },
)


def concept_from(codes):
    real = st.sampled_from(codes).map(lambda sc: {"system": sc[0], "code": sc[1]})
    clean = st.builds(lambda c, t: {"coding": [c], **({"text": t} if t else {})},
                      real, st.one_of(st.none(), st.sampled_from(TEXTS)))
    text_only = st.sampled_from(TEXTS).map(lambda t: {"text": t})
    messy = st.fixed_dictionaries({}, optional={
        "coding": junk_or(st.lists(st.one_of(real, coding), max_size=3)),
        "text": junk_or(st.sampled_from(TEXTS)),
    })
    return weighted((4, clean), (1, text_only), (1, messy), (1, st.builds(dict)))  # last: empty


concept = concept_from(ALL_CODES)
UNITS = ["", "g/L", "mg/dL", "mg/L", "furlongs", None, "kg", "[lb_av]", "lb", "g", "10*3/uL",
         "ug/mL", "mL", "mg", "mg/kg", "g/kg", "[IU]/mL", " ", "10*9/L"]
EXTREMES = [0, 0.0, -1, -0.0, 1e-300, 5e-324, 1e300, 1.7e308, -1.7e308, 10**30, 10**400, -(10**400)]
numbers = weighted(
    (2, st.floats(allow_nan=False, allow_infinity=False)),
    (2, st.integers(min_value=-10**6, max_value=10**6)),
    (2, st.floats(min_value=0.01, max_value=5000)),
    (2, st.sampled_from(EXTREMES)),
)
quantity = resource({
    "value": junk_or(numbers),
    "unit": junk_or(st.sampled_from(UNITS)),
    "code": junk_or(st.sampled_from(UNITS)),
}, {"comparator": junk_or(st.sampled_from(["<", "<=", ">", ">=", "=", "~"]))})
dates = weighted(
    (1, st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(date.isoformat)),
    (2, st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)).map(date.isoformat)),
    (2, st.dates(min_value=date(2015, 1, 1), max_value=date(2026, 12, 31)).map(
        lambda d: d.isoformat() + "T10:00:00Z")),
    (1, st.sampled_from(["2023-02-30", "2019", "2019-05", "0000-01-01", "garbage", "", "2019-13-01",
                         "0001-01-01", "9999-12-31", "2025-06-30", "2025-07-01", "1000-01-01"])),
)
period = st.fixed_dictionaries({}, optional={"start": junk_or(dates), "end": junk_or(dates)})
OBS_STATUS = ["final", "amended", "corrected", "preliminary", "entered-in-error", "cancelled",
              "registered", "unknown", "FINAL"]
MED_STATUS = ["active", "draft", "on-hold", "completed", "stopped", "cancelled", "entered-in-error",
              "intended", "not-taken", "in-progress", "not-done", "unknown"]
ids = st.sampled_from(["r0", "r1", "r2", "r3", "r4"])


def status_cc(codes):
    return st.fixed_dictionaries({"coding": st.lists(
        st.fixed_dictionaries({"code": junk_or(st.sampled_from(codes))}), min_size=1, max_size=2)})


def value_x():
    """Exactly one Observation.value[x] (or none)."""
    return st.one_of(
        st.builds(lambda q: {"valueQuantity": q}, junk_or(quantity)),
        st.builds(lambda q: {"valueQuantity": q}, junk_or(quantity)),
        st.builds(lambda v: {"valueString": v}, junk_or(st.one_of(st.sampled_from(
            ["<0.3", "< 300 mg/dL", "Non-reactive", "positive", "380", "≥ 7 g/L", ".5 g/L", "abc",
             "1e999 mg/dL", "9" * 400 + " mg/dL"]), st.text(max_size=10)))),
        st.builds(lambda v: {"valueCodeableConcept": v}, junk_or(concept)),
        st.builds(lambda v: {"valueInteger": v}, junk_or(numbers)),
        st.just({}),
    )


observation = st.builds(
    lambda base, value: {**base, **value},
    resource(
        {"resourceType": st.just("Observation"), "id": ids,
         "status": junk_or(weighted((3, st.sampled_from(["final", "amended"])), (1, st.sampled_from(OBS_STATUS)))),
         "code": junk_or(concept_from(LAB_CODES)),
         "effectiveDateTime": junk_or(dates)},
        {"interpretation": junk_or(st.lists(status_cc(["L", "LL", "N", "H", "POS", "NEG"]), max_size=2)),
         "referenceRange": junk_or(st.lists(st.fixed_dictionaries({"low": junk_or(quantity)}), max_size=2)),
         "effectivePeriod": junk_or(period),
         "issued": junk_or(dates)},
    ),
    value_x(),
)
condition = resource(
    {"resourceType": st.just("Condition"), "id": ids,
     "code": junk_or(concept_from(DX_CODES)),
     "clinicalStatus": junk_or(status_cc(["active", "inactive", "resolved", "remission", "relapse"])),
     "verificationStatus": junk_or(status_cc(["confirmed", "provisional", "refuted", "entered-in-error"])),
     "onsetDateTime": junk_or(dates)},
    {"onsetPeriod": junk_or(period), "recordedDate": junk_or(dates),
     "severity": junk_or(status_cc(["24484000", "6736007"]))},
)
repeat = resource({
    "frequency": junk_or(weighted((3, st.integers(0, 3)), (1, numbers))),
    "period": junk_or(weighted((3, st.integers(1, 6)), (1, numbers))),
    "periodUnit": junk_or(st.sampled_from(["d", "wk", "mo", "a", "h", "min", "s", "fortnight"])),
}, {"count": junk_or(st.integers(-3, 10))})
dosage = resource({
    "doseAndRate": junk_or(st.lists(st.fixed_dictionaries({"doseQuantity": junk_or(quantity)}),
                                    min_size=1, max_size=2)),
    "timing": junk_or(st.fixed_dictionaries({"repeat": junk_or(repeat)})),
}, {"route": junk_or(st.one_of(status_cc(["47625008", "34206005"]),
                               st.fixed_dictionaries({"text": st.sampled_from(["IV", "subcut", "oral"])})))})
med_reference = resource({
    "reference": junk_or(st.sampled_from(["Medication/med1", "#c1", "Medication/none",
                                          "http://x/fhir/Medication/med1", "urn:uuid:0"])),
}, {"display": junk_or(st.sampled_from(TEXTS))})
medication = resource({"resourceType": st.just("Medication"), "id": st.just("med1"),
                       "code": junk_or(concept_from(MED_CODES))})
contained = st.lists(
    resource({"resourceType": st.just("Medication"), "id": st.sampled_from(["c1", "c2"]),
              "code": junk_or(concept_from(MED_CODES))}),
    max_size=2,
)
med_concept = junk_or(concept_from(MED_CODES))
ref_list = st.lists(st.fixed_dictionaries({"reference": junk_or(
    st.sampled_from(["Condition/r0", "Condition/r1", "Condition/r2", "Condition/zz"]))}), max_size=2)
medication_request = resource(
    {"resourceType": st.just("MedicationRequest"), "id": ids,
     "status": junk_or(st.sampled_from(MED_STATUS)),
     "intent": st.just("order"),
     "medicationCodeableConcept": med_concept,
     "authoredOn": junk_or(dates),
     "dosageInstruction": junk_or(st.lists(dosage, min_size=1, max_size=2))},
    {"medicationReference": junk_or(med_reference),
     "contained": junk_or(contained),
     "reasonReference": junk_or(ref_list),
     "reasonCode": junk_or(st.lists(concept_from(DX_CODES), max_size=2)),
     "priorPrescription": junk_or(st.fixed_dictionaries({"reference": st.just("MedicationRequest/old")})),
     "statusReason": junk_or(concept),
     "note": junk_or(st.lists(st.fixed_dictionaries({"text": st.sampled_from(["failed", "ok"])}), max_size=1))},
)
medication_event = resource(
    {"resourceType": st.sampled_from(["MedicationAdministration", "MedicationStatement", "MedicationDispense"]),
     "id": ids,
     "status": junk_or(st.sampled_from(MED_STATUS)),
     "medicationCodeableConcept": med_concept,
     "effectiveDateTime": junk_or(dates)},
    {"medicationReference": junk_or(med_reference),
     "contained": junk_or(contained),
     "effectivePeriod": junk_or(period),
     "whenHandedOver": junk_or(dates),
     "dateAsserted": junk_or(dates),
     "statusReason": junk_or(st.lists(concept, max_size=2))},
)
immunization = resource({
    "resourceType": st.just("Immunization"), "id": ids,
    "status": junk_or(st.sampled_from(["completed", "not-done", "entered-in-error"])),
    "vaccineCode": junk_or(concept_from(VACCINE_CODES)),
    "occurrenceDateTime": junk_or(dates),
})
procedure = resource(
    {"resourceType": st.sampled_from(["Procedure", "DiagnosticReport", "AllergyIntolerance"]), "id": ids,
     "status": junk_or(st.sampled_from(["completed", "in-progress", "final", "not-done"])),
     "code": junk_or(concept_from(PROC_CODES + MED_CODES))},
    {"performedDateTime": junk_or(dates), "effectiveDateTime": junk_or(dates),
     "conclusion": junk_or(st.text(max_size=10)),
     "verificationStatus": junk_or(status_cc(["confirmed", "refuted"]))},
)
any_resource = weighted((3, observation), (2, condition), (2, medication_request), (2, medication_event),
                        (1, immunization), (1, procedure), (1, medication))
patient = st.fixed_dictionaries(
    {"resourceType": st.just("Patient"), "id": st.just("p1")},
    optional={"birthDate": junk_or(dates)},
)

# A plausible IVIG request (indication, IgG, weight, order, earlier doses) whose values, units,
# dates and intervals are odd: reaches the timeline, the dose arithmetic and every check.
def clinical_obs(code):
    return st.builds(
        lambda i, status, when, q: {"resourceType": "Observation", "id": i, "status": status,
                                    "code": {"coding": [{"system": LOINC, "code": code}]},
                                    "effectiveDateTime": when, "valueQuantity": q},
        st.sampled_from(["s-obs-1", "s-obs-2", "s-obs-3"]),
        st.sampled_from(["final", "amended", "preliminary", "entered-in-error"]),
        dates, quantity,
    )


scenario_condition = st.builds(
    lambda code, clinical, onset: {
        "resourceType": "Condition", "id": "s-dx", "code": {"coding": [{"system": code[0], "code": code[1]}]},
        "clinicalStatus": {"coding": [{"code": clinical}]}, "onsetDateTime": onset},
    st.sampled_from(DX_CODES), st.sampled_from(["active", "inactive", "relapse"]), dates,
)
scenario_order = st.builds(
    lambda code, status, when, dose, rep, reason: {
        "resourceType": "MedicationRequest", "id": "s-order", "status": status, "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": code[0], "code": code[1]}], "text": "Privigen"},
        "authoredOn": when, "reasonReference": reason,
        "dosageInstruction": [{"doseAndRate": [{"doseQuantity": dose}], "timing": {"repeat": rep}}]},
    st.sampled_from(MED_CODES[:4]), st.sampled_from(["active", "draft", "on-hold", "completed"]), dates,
    quantity, repeat, st.sampled_from([[], [{"reference": "Condition/s-dx"}]]),
)
scenario_exposure = st.builds(
    lambda rtype, status, when: {
        "resourceType": rtype, "id": "s-exp", "status": status, "effectiveDateTime": when,
        "whenHandedOver": when,
        "medicationCodeableConcept": {"coding": [{"system": HCPCS, "code": "J1459"}]}},
    st.sampled_from(["MedicationAdministration", "MedicationStatement", "MedicationDispense"]),
    st.sampled_from(["completed", "active", "in-progress"]), dates,
)
scenario_infection = st.builds(
    lambda i, code, onset: {
        "resourceType": "Condition", "id": i, "code": {"coding": [{"system": ICD10, "code": code}]},
        "clinicalStatus": {"coding": [{"code": "resolved"}]}, "onsetDateTime": onset},
    st.sampled_from(["s-inf-1", "s-inf-2", "s-inf-3"]), st.sampled_from(["J13", "A41.9", "J01.90"]), dates,
)
scenario = st.builds(
    lambda *parts: [r for part in parts for r in (part if isinstance(part, list) else [part])],
    scenario_condition,
    st.lists(scenario_infection, max_size=3),
    st.lists(clinical_obs("2465-3"), max_size=2),
    st.lists(clinical_obs("29463-7"), max_size=2),
    scenario_order,
    st.lists(scenario_exposure, max_size=2),
    st.lists(any_resource, max_size=4),
)
records = st.tuples(patient, st.one_of(st.lists(any_resource, max_size=10), scenario))


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


J1459 = {"coding": [{"system": HCPCS, "code": "J1459"}]}
CVID = {"resourceType": "Condition", "id": "cvid", "code": {"coding": [{"system": ICD10, "code": "D83.9"}]}}
WEIGHT = {"resourceType": "Observation", "id": "wt", "status": "final", "effectiveDateTime": "2025-06-01",
          "code": {"coding": [{"system": LOINC, "code": "29463-7"}]}, "valueQuantity": {"value": 70, "code": "kg"}}
P1 = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-01"}


@settings(max_examples=150, **SETTINGS)
@given(records)
# Known-odd inputs, always tried first (each is a structurally valid FHIR resource):
@example((P1, [  # a 401-digit IgG value (JSON integers are unbounded)
    {"resourceType": "Observation", "id": "o1", "status": "final", "effectiveDateTime": "2025-01-01",
     "code": {"coding": [{"system": LOINC, "code": "2465-3"}]},
     "valueQuantity": {"value": 10**400, "unit": "mg/dL", "code": "mg/dL"}}]))
@example((P1, [  # a dose so large that mg/kg per 4 weeks overflows to infinity
    CVID, WEIGHT,
    {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
     "medicationCodeableConcept": J1459,
     "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 1.7e308, "code": "g"}}],
                            "timing": {"repeat": {"period": 4, "periodUnit": "wk"}}}]}]))
@example((P1, [  # immune globulin first given in the year 500, infections documented
    CVID,
    {"resourceType": "Condition", "id": "inf", "onsetDateTime": "2020-01-01",
     "code": {"coding": [{"system": ICD10, "code": "J13"}]}},
    {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
     "medicationCodeableConcept": J1459},
    {"resourceType": "MedicationAdministration", "id": "a1", "status": "completed",
     "medicationCodeableConcept": J1459, "effectiveDateTime": "0500-01-01"}]))
@example((P1, [  # an order whose reason is coded with a display that is only a line separator
    {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
     "medicationCodeableConcept": J1459,
     "reasonCode": [{"coding": [{"system": "urn:example", "code": "1", "display": "\u2028"}]}]}]))
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
