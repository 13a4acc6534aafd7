"""Reading the Bundle envelope (fhir_mappings.bundle): every refusal is one clear line."""

from __future__ import annotations

import json

import pytest

from fhir_mappings.bundle import BundleError, PatientRecord, load_record, record_from_bundle

PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-01"}
OBS = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2465-3"}]},
    "valueQuantity": {"value": 380, "unit": "mg/dL", "code": "mg/dL"},
}


def bundle(*resources, btype="collection", **extra):
    return {
        "resourceType": "Bundle",
        "type": btype,
        "entry": [{"fullUrl": f"urn:uuid:{i:08d}-0000-0000-0000-000000000000", "resource": r}
                  for i, r in enumerate(resources)],
        **extra,
    }


def text(obj) -> str:
    return json.dumps(obj)


OPERATION_OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "forbidden",
               "diagnostics": "Access denied: token lacks patient/*.read"}],
}
R5_MEDREQ = {
    "resourceType": "MedicationRequest",
    "id": "m1",
    "status": "active",
    "intent": "order",
    "medication": {"concept": {"text": "Privigen"}},
}
BATCH_WITH_TWO_PATIENTS_INNER = {
    "resourceType": "Bundle",
    "type": "batch-response",
    "entry": [
        {"resource": {"resourceType": "Bundle", "type": "searchset",
                      "entry": [{"resource": PATIENT}]}},
        {"resource": {"resourceType": "Bundle", "type": "searchset",
                      "entry": [{"resource": {**PATIENT, "id": "p2"}}]}},
    ],
}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        pytest.param('{"resourceType": "Bundle",\n  "type": }', "line 2, column", id="malformed-json-line-col"),
        pytest.param("", "not valid JSON (line 1, column 1", id="empty-input"),
        pytest.param("{'single': 'quotes'}", "not valid JSON", id="single-quoted-json"),
        pytest.param(b"\xff\xfe\x00garbage", "not", id="binary-not-utf8"),
        pytest.param("[1, 2, 3]", "expected a JSON object", id="json-array-not-object"),
        pytest.param('"a string"', "expected a JSON object", id="json-string-not-object"),
        pytest.param("null", "expected a JSON object", id="json-null-not-object"),
        pytest.param("42", "expected a JSON object", id="json-number-not-object"),
        pytest.param(text(OPERATION_OUTCOME), "OperationOutcome", id="operation-outcome"),
        pytest.param(text(OPERATION_OUTCOME), "Access denied: token lacks patient/*.read",
                     id="operation-outcome-diagnostics-in-message"),
        pytest.param(text({"resourceType": "OperationOutcome",
                           "issue": [{"severity": "fatal", "code": "x",
                                      "details": {"text": "Server melted"}}]}),
                     "Server melted", id="operation-outcome-details-text"),
        pytest.param(text({"resourceType": "OperationOutcome",
                           "issue": [{"severity": "error", "code": "x",
                                      "diagnostics": "first line\nsecond line"}]}),
                     "OperationOutcome", id="operation-outcome-multiline-diagnostics"),
        pytest.param(text({"resourceType": "Patient", "id": "p1"}), "is a Patient, not a Bundle",
                     id="bare-patient-not-bundle"),
        pytest.param(text({"foo": "bar"}), "without resourceType", id="object-without-resourceType"),
        pytest.param(text({"resourceType": "Observation\nInjected: yes"}), "not a Bundle",
                     id="resourceType-with-line-break"),
        pytest.param(text({"resourceType": ["Bundle"]}), "not a Bundle", id="resourceType-is-a-list"),
        pytest.param(text({"resourceType": "Bundle", "type": ["collection"]}), "not a FHIR R4 Bundle type",
                     id="bundle-type-is-a-list"),
        pytest.param(text(bundle(OBS)), "holds no Patient", id="bundle-without-patient"),
        pytest.param(text({"resourceType": "Bundle", "type": "collection"}), "holds no Patient",
                     id="bundle-without-entries"),
        pytest.param(text(bundle(PATIENT, {**PATIENT, "id": "p2"})), "2 different patients",
                     id="two-patients"),
        pytest.param(text(BATCH_WITH_TWO_PATIENTS_INNER), "2 different patients",
                     id="two-patients-across-nested-searchsets"),
        pytest.param(text(bundle(PATIENT, {"resourceType": "NutritionIntake", "id": "n1"})),
                     "exists only in FHIR R5", id="r5-only-resource-NutritionIntake"),
        pytest.param(text(bundle(PATIENT, {"resourceType": "Permission", "id": "x"})),
                     "Permission", id="r5-only-resource-Permission-named"),
        pytest.param(text(bundle(PATIENT, R5_MEDREQ)), "R5 element 'medication'",
                     id="r5-shaped-medicationrequest"),
        pytest.param(text(bundle(PATIENT, {**R5_MEDREQ, "resourceType": "MedicationStatement"})),
                     "R5 element 'medication'", id="r5-shaped-medicationstatement"),
        pytest.param(text(bundle(PATIENT, btype="subscription-notification")),
                     "'subscription-notification' is not a FHIR R4 Bundle type",
                     id="r5-bundle-type-subscription-notification"),
        pytest.param(text(bundle(PATIENT, btype=None)), "Bundle.type None",
                     id="bundle-type-missing"),
        pytest.param(text(bundle(PATIENT, btype="Collection")), "not a FHIR R4 Bundle type",
                     id="bundle-type-wrong-case"),
        pytest.param(text({"resourceType": "Bundle", "type": "collection", "entry": {"resource": PATIENT}}),
                     "Bundle.entry must be a list", id="entry-not-a-list"),
    ],
)
def test_load_record_refuses_with_one_line(raw, fragment):
    with pytest.raises(BundleError) as info:
        load_record(raw)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message and "\r" not in message
    assert message.strip() == message and message


def test_what_names_the_input():
    with pytest.raises(BundleError, match=r"^bundle\.json is not valid JSON"):
        load_record("{", what="bundle.json")


def test_nested_r5_resource_inside_batch_response_is_refused():
    data = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"resource": {"resourceType": "Bundle", "type": "searchset",
                                "entry": [{"resource": PATIENT},
                                          {"resource": {"resourceType": "Transport", "id": "t"}}]}}],
    }
    with pytest.raises(BundleError, match="Transport") as info:
        record_from_bundle(data)
    assert "\n" not in str(info.value)


def test_batch_response_with_nested_searchsets():
    data = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [
            {"resource": {"resourceType": "Bundle", "type": "searchset",
                          "entry": [{"resource": PATIENT}]},
             "response": {"status": "200 OK"}},
            {"resource": {"resourceType": "Bundle", "type": "searchset",
                          "entry": [{"resource": OBS},
                                    {"resource": {"resourceType": "OperationOutcome", "issue": []}}]},
             "response": {"status": "200 OK"}},
            {"response": {"status": "403 Forbidden"}},
        ],
    }
    record = record_from_bundle(data)
    assert isinstance(record, PatientRecord)
    assert record.patient["id"] == "p1"
    assert record.patient_ref == "Patient/p1"
    assert [r["resourceType"] for r in record.resources] == ["Observation"]


@pytest.mark.parametrize(
    "btype",
    [pytest.param(t, id=t) for t in ("collection", "searchset", "batch-response", "transaction",
                                     "transaction-response", "document", "history")],
)
def test_r4_bundle_types_accepted(btype):
    record = record_from_bundle(bundle(PATIENT, OBS, btype=btype))
    assert record.patient["id"] == "p1"
    assert record.resources == [OBS]


def test_same_patient_twice_is_one_patient():
    record = record_from_bundle(bundle(PATIENT, dict(PATIENT), OBS))
    assert record.patient["id"] == "p1"
    assert all(r["resourceType"] != "Patient" for r in record.resources)


def test_full_urls_indexed_and_operation_outcomes_dropped():
    data = bundle(PATIENT, OBS, {"resourceType": "OperationOutcome", "issue": []})
    record = record_from_bundle(data)
    assert record.resources == [OBS]
    assert record.full_urls["urn:uuid:00000001-0000-0000-0000-000000000000"] is OBS


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param({"resource": "not an object"}, id="resource-is-string"),
        pytest.param({"resource": {"id": "x"}}, id="resource-without-type"),
        pytest.param({"resource": {"resourceType": 7}}, id="resourceType-not-string"),
        pytest.param({"resource": []}, id="resource-is-list"),
    ],
)
def test_unreadable_entries_are_skipped_with_warning(entry):
    data = bundle(PATIENT)
    data["entry"].append(entry)
    record = record_from_bundle(data)
    assert record.patient["id"] == "p1"
    assert record.resources == []
    assert any("entry 1" in w for w in record.warnings)


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("a string entry", id="entry-is-string"),
        pytest.param(None, id="entry-is-null"),
        pytest.param({"response": {"status": "404"}}, id="response-only-entry"),
    ],
)
def test_entries_without_resource_are_ignored(entry):
    data = bundle(PATIENT)
    data["entry"].append(entry)
    record = record_from_bundle(data)
    assert record.patient["id"] == "p1"
    assert record.resources == []
