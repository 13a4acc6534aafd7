"""fhir_mappings.extract_facts over small hand-built resources (CONTRACT §4)."""

from __future__ import annotations

from datetime import date

import pytest

from fhir_mappings import extract_facts
from fhir_mappings.bundle import PatientRecord

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
CVX = "http://hl7.org/fhir/sid/cvx"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"
LB = 0.45359237

PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-03-15"}


def facts_of(*resources, patient=PATIENT):
    return extract_facts(PatientRecord(patient=dict(patient), resources=[dict(r) for r in resources]))


def cc(system, code, display=None, text=None):
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    out = {"coding": [coding]}
    if text:
        out["text"] = text
    return out


def obs(code, oid="o1", status="final", when="2025-03-01", **value):
    res = {"resourceType": "Observation", "id": oid, "status": status,
           "code": cc(LOINC, code), "effectiveDateTime": when}
    res.update(value)
    return res


def qty(value, unit=None, code=None, comparator=None):
    q = {"value": value}
    if unit is not None:
        q["unit"] = unit
    if code is not None:
        q["code"] = code
        q["system"] = UCUM
    if comparator is not None:
        q["comparator"] = comparator
    return q


IGG = "2465-3"


# --- Observations: IgG and other labs -----------------------------------------------------------
@pytest.mark.parametrize(
    ("resource", "kind", "value", "unit", "comparator"),
    [
        pytest.param(obs(IGG, valueQuantity=qty(380, "mg/dL", "mg/dL")), "igg_total", 380.0, "mg/dL", None,
                     id="igg-mg/dL"),
        pytest.param(obs(IGG, valueQuantity=qty(3.8, "g/L", "g/L")), "igg_total", 380.0, "mg/dL", None,
                     id="igg-g/L-x100"),
        pytest.param(obs(IGG, valueQuantity=qty(3800, "mg/L", "mg/L")), "igg_total", 380.0, "mg/dL", None,
                     id="igg-mg/L-x0.1"),
        pytest.param(obs(IGG, valueQuantity=qty(3.8, unit="g/L")), "igg_total", 380.0, "mg/dL", None,
                     id="igg-human-unit-only"),
        pytest.param(obs(IGG, valueQuantity=qty(200, "mg/dL", "mg/dL", comparator="<")), "igg_total",
                     200.0, "mg/dL", "<", id="igg-comparator-lt-200-kept"),
        pytest.param(obs(IGG, valueQuantity=qty(2, "g/L", "g/L", comparator="<=")), "igg_total",
                     200.0, "mg/dL", "<=", id="igg-comparator-le-2-g/L-converted"),
        pytest.param(obs(IGG, valueString="< 300 mg/dL"), "igg_total", 300.0, "mg/dL", "<",
                     id="igg-valueString-lt-300-mg/dL"),
        pytest.param(obs(IGG, valueString="<0.3 g/L"), "igg_total", 30.0, "mg/dL", "<",
                     id="igg-valueString-lt-0.3-g/L"),
        pytest.param(obs(IGG, valueString="≤2.5 g/L"), "igg_total", 250.0, "mg/dL", "<=",
                     id="igg-valueString-unicode-le"),
        pytest.param(obs(IGG, status="amended", valueQuantity=qty(380, "mg/dL", "mg/dL")), "igg_total",
                     380.0, "mg/dL", None, id="igg-status-amended-kept"),
        pytest.param(obs(IGG, status="corrected", valueQuantity=qty(380, "mg/dL", "mg/dL")), "igg_total",
                     380.0, "mg/dL", None, id="igg-status-corrected-kept"),
        pytest.param(obs("29463-7", valueQuantity=qty(154, "lb", "[lb_av]")), "body_weight",
                     154 * LB, "kg", None, id="weight-[lb_av]-to-kg"),
        pytest.param(obs("29463-7", valueQuantity=qty(154, unit="lb")), "body_weight",
                     154 * LB, "kg", None, id="weight-human-lb-to-kg"),
        pytest.param(obs("29463-7", valueQuantity=qty(70, "kg", "kg")), "body_weight", 70.0, "kg", None,
                     id="weight-kg"),
        pytest.param(obs("777-3", valueQuantity=qty(25, "10*3/uL", "10*3/uL")), "platelets", 25000.0,
                     "/uL", None, id="platelets-10*3/uL-to-per-uL"),
        pytest.param(obs("777-3", valueQuantity=qty(25, "10^9/L", "10*9/L")), "platelets", 25000.0,
                     "/uL", None, id="platelets-10*9/L-to-per-uL"),
        pytest.param(obs("27096-7", valueQuantity=qty(0.4, "ug/mL", "ug/mL")), "pneumococcal_igg", 0.4,
                     "ug/mL", None, id="pneumococcal-serotype-3-ug/mL"),
        pytest.param(obs("27096-7", valueQuantity=qty(0.4, "mg/L", "mg/L")), "pneumococcal_igg", 0.4,
                     "ug/mL", None, id="pneumococcal-serotype-3-mg/L-equals-ug/mL"),
        pytest.param(obs("2467-9", valueQuantity=qty(0.9, "g/L", "g/L")), "igg_subclasses", 90.0,
                     "mg/dL", None, id="igg-subclass-2-g/L"),
    ],
)
def test_numeric_lab(resource, kind, value, unit, comparator):
    facts = facts_of(resource)
    labs = facts.lab(kind)
    assert len(labs) == 1, facts.warnings
    lab = labs[0]
    assert lab.value == pytest.approx(value)
    assert lab.unit == unit
    assert lab.comparator == comparator
    assert lab.ref == f"Observation/{resource['id']}"
    assert lab.date == date(2025, 3, 1)


@pytest.mark.parametrize(
    ("resource", "warning"),
    [
        pytest.param(obs(IGG, valueQuantity={"value": 380}), "without a unit", id="igg-no-unit"),
        pytest.param(obs(IGG, valueQuantity={"value": 380, "unit": ""}), "not used",
                     id="igg-empty-unit"),
        pytest.param(obs(IGG, valueString="<0.3"), "without a unit", id="igg-valueString-lt-0.3-no-unit"),
        pytest.param(obs(IGG, valueString="380"), "without a unit", id="igg-valueString-bare-number"),
        pytest.param(obs(IGG, valueInteger=380), "without a unit", id="igg-valueInteger"),
        pytest.param(obs(IGG, valueQuantity=qty(380, "furlongs")), "not recognised", id="igg-unit-furlongs"),
        pytest.param(obs(IGG, valueQuantity=qty(3.8, "mmol/L", "mmol/L")), "not recognised",
                     id="igg-unit-mmol/L-not-guessed"),
        pytest.param(obs(IGG, valueString="< 300 widgets"), "not recognised",
                     id="igg-valueString-unknown-unit"),
        pytest.param(obs("29463-7", valueQuantity={"value": 70}), "without a unit", id="weight-no-unit"),
        pytest.param(obs("29463-7", valueQuantity=qty(11, "stone")), "not recognised", id="weight-stone"),
        pytest.param(obs("777-3", valueQuantity=qty(25, "per-bucket")), "not recognised",
                     id="platelets-unknown-unit"),
    ],
)
def test_numeric_lab_without_usable_unit_is_not_used(resource, warning):
    facts = facts_of(resource)
    assert all(not labs for labs in facts.labs.values())
    matching = [w for w in facts.warnings if warning in w]
    assert matching, facts.warnings
    assert all("Observation/o1" in w for w in matching)


def test_unitless_kind_keeps_valueString_comparator():
    """IgE has no canonical unit: a bare "<0.3" is kept as reported, with its comparator."""
    facts = facts_of({**obs("19113-0", valueString="<0.3")})
    labs = facts.lab("ige")
    if not labs:
        pytest.skip("19113-0 is not in the ige value set")
    assert labs[0].value == pytest.approx(0.3)
    assert labs[0].comparator == "<"


@pytest.mark.parametrize(
    "status",
    [pytest.param(s, id=f"observation-{s}-excluded")
     for s in ("entered-in-error", "cancelled", "preliminary", "registered")],
)
def test_excluded_observation_status(status):
    facts = facts_of(obs(IGG, status=status, valueQuantity=qty(180, "mg/dL", "mg/dL")))
    assert facts.lab("igg_total") == []


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        pytest.param(obs("7917-8", valueCodeableConcept=cc(SNOMED, "260385009", "Negative")), "negative",
                     id="hiv-snomed-260385009-negative"),
        pytest.param(obs("7917-8", valueCodeableConcept=cc(SNOMED, "131194007")), "negative",
                     id="hiv-snomed-non-reactive"),
        pytest.param(obs("7917-8", valueCodeableConcept=cc(SNOMED, "10828004")), "positive",
                     id="hiv-snomed-positive"),
        pytest.param(obs("7917-8", valueString="Non-reactive"), "negative", id="hiv-text-Non-reactive"),
        pytest.param(obs("7917-8", valueString="NONREACTIVE"), "negative", id="hiv-text-NONREACTIVE"),
        pytest.param(obs("7917-8", valueString="Reactive"), "positive", id="hiv-text-Reactive"),
        pytest.param(obs("7917-8", valueCodeableConcept={"text": "Not detected"}), "negative",
                     id="hiv-concept-text-not-detected"),
        pytest.param(obs("7917-8", interpretation=[cc("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "NEG")]),
                     "negative", id="hiv-interpretation-NEG-only"),
    ],
)
def test_qualitative_hiv(resource, expected):
    labs = facts_of(resource).lab("hiv_test")
    assert len(labs) == 1
    assert labs[0].qualitative == expected
    assert labs[0].value is None
    assert labs[0].ref == "Observation/o1"


def test_igg_subclass_label_names_the_subclass():
    labs = facts_of(obs("2467-9", valueQuantity=qty(20, "mg/dL", "mg/dL"))).lab("igg_subclasses")
    assert len(labs) == 1
    assert "IgG subclass 2" in labs[0].label


def test_pneumococcal_serotype_titers_keep_serotype_labels():
    facts = facts_of(
        obs("27092-6", oid="s1", valueQuantity=qty(0.3, "ug/mL", "ug/mL")),
        obs("27096-7", oid="s3", valueQuantity=qty(2.1, "ug/mL", "ug/mL")),
    )
    labs = facts.lab("pneumococcal_igg")
    assert {lab.ref for lab in labs} == {"Observation/s1", "Observation/s3"}
    labels = {lab.ref: lab.label for lab in labs}
    assert "pneumoniae 1 " in labels["Observation/s1"]
    assert "pneumoniae 3 " in labels["Observation/s3"]
    assert labels["Observation/s1"] != labels["Observation/s3"]


def test_reference_range_low_converted_and_low_flag():
    res = obs(IGG, valueQuantity=qty(5.0, "g/L", "g/L"),
              referenceRange=[{"low": qty(7.0, "g/L", "g/L"), "high": qty(16.0, "g/L", "g/L")}])
    lab = facts_of(res).lab("igg_total")[0]
    assert lab.ref_low == pytest.approx(700.0)
    assert lab.low


def test_invalid_effective_date_is_undated_with_warning():
    facts = facts_of(obs(IGG, when="2023-02-30", valueQuantity=qty(380, "mg/dL", "mg/dL")))
    lab = facts.lab("igg_total")[0]
    assert lab.date is None
    assert any("not a valid date" in w for w in facts.warnings)


# --- Conditions ---------------------------------------------------------------------------------
def cond(code, cid="c1", clinical="active", verification="confirmed", system=ICD10, **extra):
    res = {
        "resourceType": "Condition", "id": cid, "code": cc(system, code),
        "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical),
        "verificationStatus": cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", verification),
        "onsetDateTime": "2018-01-01",
    }
    res.update(extra)
    return res


@pytest.mark.parametrize(
    ("resource", "valueset", "active"),
    [
        pytest.param(cond("D83.9"), "dx_primary_humoral_immunodeficiency", True, id="cvid-D83.9-active"),
        pytest.param(cond("C91.10"), "dx_cll", True, id="cll-C91.10-descendant-of-C91.1"),
        pytest.param(cond("G61.81"), "dx_cidp", True, id="cidp-G61.81"),
        pytest.param(cond("D839"), "dx_primary_humoral_immunodeficiency", True, id="icd-without-dot"),
        pytest.param(cond("D83.9", clinical="inactive"), "dx_primary_humoral_immunodeficiency", False,
                     id="inactive-kept-not-active"),
        pytest.param(cond("D83.9", clinical="resolved"), "dx_primary_humoral_immunodeficiency", False,
                     id="resolved-kept-not-active"),
        pytest.param(cond("D83.9", clinical="remission"), "dx_primary_humoral_immunodeficiency", True,
                     id="remission-still-active"),
        pytest.param(cond("D83.9", verification="provisional"), "dx_primary_humoral_immunodeficiency", True,
                     id="provisional-kept"),
    ],
)
def test_condition_kept(resource, valueset, active):
    facts = facts_of(resource)
    assert len(facts.diagnoses) == 1
    dx = facts.diagnoses[0]
    assert valueset in dx.valuesets
    assert dx.active is active
    assert dx.ref == "Condition/c1"
    assert dx.onset == date(2018, 1, 1)


@pytest.mark.parametrize(
    "verification",
    [pytest.param(v, id=f"condition-{v}-excluded") for v in ("refuted", "entered-in-error")],
)
def test_condition_excluded(verification):
    assert facts_of(cond("D83.9", verification=verification)).diagnoses == []


# --- IVIG orders ------------------------------------------------------------------------------
PRIVIGEN_CODED = {"coding": [{"system": HCPCS, "code": "J1459",
                              "display": "Injection, immune globulin (Privigen), intravenous"}],
                  "text": "Privigen"}


def medreq(mid="m1", status="active", concept=None, dose=None, repeat=None, **extra):
    res = {"resourceType": "MedicationRequest", "id": mid, "status": status, "intent": "order",
           "subject": {"reference": "Patient/p1"}, "authoredOn": "2025-06-01"}
    if concept is not None:
        res["medicationCodeableConcept"] = concept
    dosage = {}
    if dose is not None:
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
    if repeat is not None:
        dosage["timing"] = {"repeat": repeat}
    if dosage:
        res["dosageInstruction"] = [dosage]
    res.update(extra)
    return res


MEDICATION = {"resourceType": "Medication", "id": "med1", "code": PRIVIGEN_CODED}


@pytest.mark.parametrize(
    ("resources", "expect"),
    [
        pytest.param([medreq(concept=PRIVIGEN_CODED, dose=qty(35, "g", "g"))],
                     {"dose_g": 35.0}, id="coded-dose-g"),
        pytest.param([medreq(concept=PRIVIGEN_CODED, dose=qty(35000, "mg", "mg"))],
                     {"dose_g": 35.0}, id="coded-dose-mg-to-g"),
        pytest.param([MEDICATION, medreq(medicationReference={"reference": "Medication/med1"},
                                         dose=qty(30, "g", "g"))],
                     {"dose_g": 30.0}, id="medicationReference-in-record"),
        pytest.param([medreq(medicationReference={"reference": "#med"},
                             contained=[{**MEDICATION, "id": "med"}], dose=qty(30, "g", "g"))],
                     {"dose_g": 30.0}, id="contained-medication"),
        pytest.param([medreq(concept={"text": "Privigen"}, dose=qty(300, "mL", "mL"))],
                     {"dose_g": 30.0, "dose_note": "300 mL of a 10% product"},
                     id="privigen-300-mL-of-10pct-is-30-g"),
        pytest.param([medreq(concept=PRIVIGEN_CODED, dose=qty(400, "mg/kg", "mg/kg"))],
                     {"dose_g": None, "dose_mg_per_kg": 400.0}, id="dose-mg/kg"),
        pytest.param([medreq(concept=PRIVIGEN_CODED, dose=qty(1, "g/kg", "g/kg"))],
                     {"dose_g": None, "dose_mg_per_kg": 1000.0}, id="dose-g/kg-to-mg/kg"),
        pytest.param([medreq(concept=PRIVIGEN_CODED, dose=qty(35, "g", "g"),
                             repeat={"frequency": 1, "period": 4, "periodUnit": "wk"})],
                     {"interval_days": 28.0, "course_count": None}, id="every-4-wk-is-28-days"),
        pytest.param([medreq(concept=PRIVIGEN_CODED, dose=qty(35, "g", "g"),
                             repeat={"period": 21, "periodUnit": "d"})],
                     {"interval_days": 21.0}, id="every-21-d"),
        pytest.param([medreq(concept=PRIVIGEN_CODED, dose=qty(1, "g/kg", "g/kg"),
                             repeat={"count": 2, "frequency": 1, "period": 1, "periodUnit": "d"})],
                     {"course_count": 2, "interval_days": 1.0, "dose_mg_per_kg": 1000.0},
                     id="acute-course-count-2"),
        pytest.param([medreq(concept=PRIVIGEN_CODED, status="draft")], {"status": "draft"},
                     id="draft-order-kept"),
        pytest.param([medreq(concept=PRIVIGEN_CODED, priorPrescription={"reference": "MedicationRequest/old"})],
                     {"prior_prescription": True}, id="priorPrescription-flag"),
        pytest.param([medreq(concept=PRIVIGEN_CODED,
                             dosageInstruction=[{"route": cc(SNOMED, "47625008")}])],
                     {"route": "IV"}, id="route-snomed-IV"),
        pytest.param([medreq(concept={"text": "Hizentra 20%"},
                             dosageInstruction=[{"route": {"text": "subcutaneous"}}])],
                     {"route": "SC"}, id="route-text-subcutaneous"),
        pytest.param([medreq(concept=PRIVIGEN_CODED, reasonReference=[{"reference": "Condition/c1"}])],
                     {"reason_refs": ("Condition/c1",)}, id="reasonReference-kept"),
    ],
)
def test_ivig_order(resources, expect):
    facts = facts_of(*resources)
    assert len(facts.ig_orders) == 1, facts.warnings
    order = facts.ig_orders[0]
    assert order.ref == "MedicationRequest/m1"
    assert order.authored == date(2025, 6, 1)
    for key, value in expect.items():
        got = getattr(order, key)
        if isinstance(value, float):
            assert got == pytest.approx(value), key
        else:
            assert got == value, key


def test_text_only_product_is_an_order_with_name_only_warning():
    facts = facts_of(medreq(concept={"text": "Privigen"}, dose=qty(35, "g", "g")))
    assert len(facts.ig_orders) == 1
    assert facts.ig_orders[0].product == "Privigen"
    assert any("recognised by its name only" in w and "MedicationRequest/m1" in w for w in facts.warnings)


def test_coded_product_has_no_name_only_warning():
    facts = facts_of(medreq(concept=PRIVIGEN_CODED))
    assert len(facts.ig_orders) == 1
    assert not any("recognised by its name only" in w for w in facts.warnings)


def test_medication_reference_not_in_record_warns():
    facts = facts_of(medreq(medicationReference={"reference": "Medication/nowhere"}))
    assert facts.ig_orders == []
    assert any("Medication/nowhere" in w and "not in the record" in w for w in facts.warnings)


def test_medication_reference_display_used_when_target_missing():
    facts = facts_of(medreq(medicationReference={"reference": "Medication/nowhere", "display": "Privigen"}))
    assert len(facts.ig_orders) == 1


def test_ml_dose_without_concentration_warns():
    facts = facts_of(medreq(concept={"coding": [{"system": RXNORM, "code": "1426680"}]},
                            dose=qty(300, "mL", "mL")))
    order = facts.ig_orders[0]
    assert order.dose_g is None
    assert any("concentration is unknown" in w for w in facts.warnings)


def test_unknown_dose_unit_warns():
    facts = facts_of(medreq(concept=PRIVIGEN_CODED, dose=qty(3, "vials")))
    assert facts.ig_orders[0].dose_g is None
    assert facts.ig_orders[0].dose_mg_per_kg is None
    assert any("'vials' is not recognised" in w for w in facts.warnings)


@pytest.mark.parametrize(
    "concept",
    [
        pytest.param({"text": "hepatitis B immune globulin"}, id="hepatitis-B-immune-globulin"),
        pytest.param({"text": "HBIG 0.06 mL/kg"}, id="HBIG"),
        pytest.param({"text": "Rabies immune globulin (human)"}, id="rabies-immune-globulin"),
        pytest.param({"text": "CytoGam cytomegalovirus immune globulin intravenous"}, id="cytogam-cmv-igiv"),
    ],
)
def test_hyperimmune_globulin_is_not_ivig(concept):
    facts = facts_of(
        medreq(concept=concept, dose=qty(5, "mL", "mL")),
        {"resourceType": "MedicationAdministration", "id": "a1", "status": "completed",
         "medicationCodeableConcept": concept, "effectiveDateTime": "2025-01-01"},
    )
    assert facts.ig_orders == []
    assert facts.ig_exposures == []


@pytest.mark.parametrize(
    "status",
    [pytest.param("entered-in-error", id="order-entered-in-error-dropped")],
)
def test_order_entered_in_error_dropped(status):
    assert facts_of(medreq(concept=PRIVIGEN_CODED, status=status)).ig_orders == []


@pytest.mark.parametrize(
    "status",
    [pytest.param(s, id=f"order-{s}-kept-as-history") for s in ("cancelled", "stopped", "completed")],
)
def test_order_history_statuses_kept(status):
    orders = facts_of(medreq(concept=PRIVIGEN_CODED, status=status)).ig_orders
    assert [o.status for o in orders] == [status]


# --- IVIG exposure ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("resource", "kind", "when"),
    [
        pytest.param({"resourceType": "MedicationAdministration", "id": "e1", "status": "completed",
                      "medicationCodeableConcept": PRIVIGEN_CODED,
                      "effectiveDateTime": "2019-05-02T09:00:00Z"},
                     "administration", date(2019, 5, 2), id="administration-effectiveDateTime"),
        pytest.param({"resourceType": "MedicationAdministration", "id": "e1", "status": "completed",
                      "medicationCodeableConcept": PRIVIGEN_CODED,
                      "effectivePeriod": {"start": "2019-05-02T09:00:00Z", "end": "2019-05-02T13:00:00Z"}},
                     "administration", date(2019, 5, 2), id="administration-effectivePeriod"),
        pytest.param({"resourceType": "MedicationStatement", "id": "e1", "status": "active",
                      "medicationCodeableConcept": PRIVIGEN_CODED,
                      "effectivePeriod": {"start": "2019-05"}},
                     "statement", date(2019, 5, 1), id="statement-partial-start"),
        pytest.param({"resourceType": "MedicationStatement", "id": "e1", "status": "completed",
                      "medicationCodeableConcept": PRIVIGEN_CODED, "dateAsserted": "2024-01-01"},
                     "statement", None, id="statement-dateAsserted-is-not-a-start"),
        pytest.param({"resourceType": "MedicationDispense", "id": "e1", "status": "completed",
                      "medicationCodeableConcept": PRIVIGEN_CODED, "whenHandedOver": "2020-02-02"},
                     "dispense", date(2020, 2, 2), id="dispense-whenHandedOver"),
        pytest.param({"resourceType": "MedicationAdministration", "id": "e1", "status": "completed",
                      "medicationReference": {"reference": "Medication/med1"},
                      "effectiveDateTime": "2019-05-02"},
                     "administration", date(2019, 5, 2), id="administration-medicationReference"),
    ],
)
def test_ig_exposure(resource, kind, when):
    facts = facts_of(MEDICATION, resource)
    assert len(facts.ig_exposures) == 1
    exp = facts.ig_exposures[0]
    assert exp.kind == kind
    assert exp.date == when
    assert exp.ref == f"{resource['resourceType']}/e1"
    assert facts.ig_orders == []


@pytest.mark.parametrize(
    ("rtype", "status"),
    [
        pytest.param("MedicationAdministration", "entered-in-error", id="administration-entered-in-error"),
        pytest.param("MedicationAdministration", "not-done", id="administration-not-done"),
        pytest.param("MedicationStatement", "not-taken", id="statement-not-taken"),
        pytest.param("MedicationStatement", "intended", id="statement-intended"),
        pytest.param("MedicationDispense", "cancelled", id="dispense-cancelled"),
    ],
)
def test_ig_exposure_not_counted(rtype, status):
    facts = facts_of({"resourceType": rtype, "id": "e1", "status": status,
                      "medicationCodeableConcept": PRIVIGEN_CODED, "effectiveDateTime": "2019-05-02"})
    assert facts.ig_exposures == []


# --- Therapies, vaccines, procedures -------------------------------------------------------------
def test_prednisone_stopped_with_reason_is_corticosteroid_therapy():
    facts = facts_of({
        "resourceType": "MedicationStatement", "id": "ms1", "status": "stopped",
        "statusReason": [{"text": "ineffective after 3 months"}],
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "8640", "display": "prednisone"}]},
        "effectivePeriod": {"start": "2024-01-10", "end": "2024-04-10"},
    })
    assert len(facts.therapies) == 1
    t = facts.therapies[0]
    assert "tx_corticosteroid" in t.valuesets
    assert t.kind == "medication"
    assert t.status == "stopped"
    assert "ineffective" in t.reason
    assert t.date == date(2024, 1, 10)
    assert t.ref == "MedicationStatement/ms1"


def test_uncatalogued_drug_stopped_with_reason_is_documented_failure():
    facts = facts_of({
        "resourceType": "MedicationStatement", "id": "ms1", "status": "stopped",
        "statusReason": [{"text": "intolerant: nausea"}],
        "medicationCodeableConcept": {"text": "zzz-unknown-drug"},
    })
    assert [t.valuesets for t in facts.therapies] == [frozenset({"documented_failure"})]


@pytest.mark.parametrize(
    ("vaccine", "status", "kinds"),
    [
        pytest.param(cc(CVX, "33", "PPSV23"), "completed", {"vaccine_pneumococcal_polysaccharide"},
                     id="cvx-33-pneumococcal-polysaccharide"),
        pytest.param({"text": "Pneumovax 23"}, "completed", {"vaccine_pneumococcal_polysaccharide"},
                     id="text-pneumovax"),
        pytest.param(cc(CVX, "115", "Tdap"), "completed", {"vaccine_tetanus"}, id="cvx-115-tdap-tetanus"),
        pytest.param(cc(CVX, "33"), "not-done", None, id="cvx-33-not-done-ignored"),
        pytest.param(cc(CVX, "33"), "entered-in-error", None, id="cvx-33-entered-in-error-ignored"),
    ],
)
def test_immunization(vaccine, status, kinds):
    facts = facts_of({"resourceType": "Immunization", "id": "i1", "status": status,
                      "vaccineCode": vaccine, "occurrenceDateTime": "2024-09-01"})
    if kinds is None:
        assert facts.vaccinations == []
        return
    assert len(facts.vaccinations) == 1
    v = facts.vaccinations[0]
    assert kinds <= v.kinds
    assert v.date == date(2024, 9, 1)
    assert v.ref == "Immunization/i1"


@pytest.mark.parametrize(
    ("status", "counted"),
    [
        pytest.param("completed", True, id="ncs-cpt-95910-completed"),
        pytest.param("in-progress", True, id="ncs-cpt-95910-in-progress"),
        pytest.param("not-done", False, id="ncs-cpt-95910-not-done"),
        pytest.param("entered-in-error", False, id="ncs-cpt-95910-entered-in-error"),
    ],
)
def test_nerve_conduction_procedure(status, counted):
    facts = facts_of({"resourceType": "Procedure", "id": "pr1", "status": status,
                      "code": cc(CPT, "95910", "Nerve conduction studies; 7-8 studies"),
                      "performedDateTime": "2025-02-14"})
    if not counted:
        assert facts.findings == []
        return
    assert len(facts.findings) == 1
    f = facts.findings[0]
    assert "nerve_conduction_study" in f.valuesets
    assert f.ref == "Procedure/pr1"
    assert f.date == date(2025, 2, 14)


# --- every fact keeps its reference --------------------------------------------------------------
def test_every_fact_keeps_ref():
    resources = [
        MEDICATION,
        obs(IGG, oid="igg", valueQuantity=qty(3.0, "g/L", "g/L")),
        obs("29463-7", oid="wt", valueQuantity=qty(70, "kg", "kg")),
        obs("7917-8", oid="hiv", valueString="Non-reactive"),
        cond("D83.9", cid="cvid"),
        medreq(mid="order", concept=PRIVIGEN_CODED, dose=qty(35, "g", "g")),
        {"resourceType": "MedicationAdministration", "id": "adm", "status": "completed",
         "medicationReference": {"reference": "Medication/med1"}, "effectiveDateTime": "2019-05-02"},
        {"resourceType": "MedicationStatement", "id": "pred", "status": "stopped",
         "statusReason": [{"text": "ineffective"}], "medicationCodeableConcept": {"text": "prednisone"}},
        {"resourceType": "Immunization", "id": "ppsv", "status": "completed",
         "vaccineCode": cc(CVX, "33"), "occurrenceDateTime": "2024-09-01"},
        {"resourceType": "Procedure", "id": "ncs", "status": "completed", "code": cc(CPT, "95910")},
    ]
    facts = facts_of(*resources)
    refs = (
        [lab.ref for labs in facts.labs.values() for lab in labs]
        + [d.ref for d in facts.diagnoses]
        + [o.ref for o in facts.ig_orders]
        + [e.ref for e in facts.ig_exposures]
        + [t.ref for t in facts.therapies]
        + [v.ref for v in facts.vaccinations]
        + [f.ref for f in facts.findings]
    )
    expected = {
        "Observation/igg", "Observation/wt", "Observation/hiv", "Condition/cvid",
        "MedicationRequest/order", "MedicationAdministration/adm", "MedicationStatement/pred",
        "Immunization/ppsv", "Procedure/ncs",
    }
    assert set(refs) == expected
    assert facts.patient_ref == "Patient/p1"
    assert facts.birth_date == date(1980, 3, 15)
