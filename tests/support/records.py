"""Synthetic patient records shaped like real EHR data, for benchmarks and large-chart tests.

Every patient here is invented. Two generators, both deterministic for a given seed:

* ``realistic_record(seed, resources=100)``: an outpatient chart of about ``resources``
  resources shaped like US Core / Synthea exports (Patient with race/ethnicity extensions,
  address and identifiers; Encounters; vital-sign panels at every encounter — heart rate,
  respiratory rate, temperature, SpO2, blood pressure with components, weight, height,
  BMI — with date-times and offsets; lab panels (CBC, basic metabolic panel, lipids) with
  reference ranges and interpretations; a problem list; infections; medications with
  dosage; immunizations), plus an immune globulin indication, IgG results and an IVIG order.
* ``large_chart(base_bundle, observations=10_000)``: an inpatient record: the resources of
  ``base_bundle`` (e.g. example 02, a complete CVID request) plus hourly vital signs, daily
  weights older than the base record's latest weight, and daily CBC/BMP panels, until the
  record holds ``observations`` Observations. The padding carries nothing the criteria read
  beyond more of the same kinds (older weights, platelets, creatinine), so the report is
  the base record's.
"""

from __future__ import annotations

import copy
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition"
AS_OF = datetime(2025, 6, 30, 12, 0, tzinfo=timezone(timedelta(hours=-5)))

# (LOINC, display, unit, low, high) of the vital signs and labs the padding uses.
VITALS = [
    ("8867-4", "Heart rate", "/min", 55, 110, "us-core-heart-rate"),
    ("9279-1", "Respiratory rate", "/min", 12, 24, "us-core-respiratory-rate"),
    ("8310-5", "Body temperature", "Cel", 36.1, 38.4, "us-core-body-temperature"),
    ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 91, 100,
     "us-core-pulse-oximetry"),
]
CBC = [
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 3.5, 12.0),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 10.5, 16.5),
    ("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "%", 32, 48),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 150, 420),
]
BMP = [
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 160),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 1.3),
    ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 7, 25),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 134, 146),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.4, 5.2),
]
LIPIDS = [
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 140, 260),
    ("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", 60, 250),
    ("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", 35, 80),
]
PROBLEMS = [
    ("I10", "Essential (primary) hypertension", "38341003"),
    ("E11.9", "Type 2 diabetes mellitus without complications", "44054006"),
    ("E78.5", "Hyperlipidemia, unspecified", "55822004"),
    ("J45.909", "Unspecified asthma, uncomplicated", "195967001"),
    ("M17.9", "Osteoarthritis of knee, unspecified", "239873007"),
]
INDICATIONS = [
    ("D83.9", "Common variable immunodeficiency, unspecified", "23238000"),
    ("D80.0", "Hereditary hypogammaglobulinemia", "190979003"),
    ("C91.10", "Chronic lymphocytic leukemia of B-cell type not having achieved remission", "92814006"),
    ("G61.81", "Chronic inflammatory demyelinating polyneuritis", "128209004"),
]
INFECTIONS = [("J18.9", "Pneumonia, unspecified organism"), ("J01.90", "Acute sinusitis, unspecified"),
              ("H66.90", "Otitis media, unspecified"), ("L03.90", "Cellulitis, unspecified")]
MEDICATIONS = [("314076", "lisinopril 10 MG Oral Tablet"), ("860975", "metformin hydrochloride 500 MG Oral Tablet"),
               ("617310", "atorvastatin 20 MG Oral Tablet"), ("745679", "albuterol 0.09 MG/ACTUAT Inhaler")]
VACCINES = [("140", "Influenza, seasonal, injectable, preservative free"), ("115", "Tdap"),
            ("208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose")]


def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _category(code: str, display: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": OBS_CAT, "code": code, "display": display}]}]


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _observation(rng: random.Random, pid: str, enc: str | None, moment: datetime, code: str, display: str,
                 value: float, unit: str, category: str, profile: str,
                 low: float | None = None, high: float | None = None) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation", "id": _uid(rng),
        "meta": {"profile": [f"{US_CORE}/{profile}"], "lastUpdated": _when(moment + timedelta(minutes=7))},
        "status": "final",
        "category": _category(category, "Vital Signs" if category == "vital-signs" else "Laboratory"),
        "code": _concept(LOINC, code, display),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": _when(moment), "issued": _when(moment + timedelta(minutes=42)),
        "valueQuantity": _quantity(value, unit),
    }
    if enc:
        obs["encounter"] = {"reference": f"Encounter/{enc}"}
    if low is not None and high is not None:
        obs["referenceRange"] = [{"low": _quantity(low, unit), "high": _quantity(high, unit)}]
        flag = "L" if value < low else "H" if value > high else "N"
        obs["interpretation"] = [{"coding": [{"system": INTERP, "code": flag}]}]
    return obs


def _blood_pressure(rng: random.Random, pid: str, enc: str | None, moment: datetime) -> dict[str, Any]:
    obs = _observation(rng, pid, enc, moment, "85354-9", "Blood pressure panel with all children optional",
                       0, "mm[Hg]", "vital-signs", "us-core-blood-pressure")
    del obs["valueQuantity"]
    obs["component"] = [
        {"code": _concept(LOINC, "8480-6", "Systolic blood pressure"),
         "valueQuantity": _quantity(rng.randint(100, 160), "mm[Hg]")},
        {"code": _concept(LOINC, "8462-4", "Diastolic blood pressure"),
         "valueQuantity": _quantity(rng.randint(60, 100), "mm[Hg]")},
    ]
    return obs


def _vital_panel(rng: random.Random, pid: str, enc: str | None, moment: datetime,
                 weight: float | None) -> list[dict[str, Any]]:
    out = [_observation(rng, pid, enc, moment, code, display, round(rng.uniform(lo, hi), 1), unit,
                        "vital-signs", profile)
           for code, display, unit, lo, hi, profile in VITALS]
    out.append(_blood_pressure(rng, pid, enc, moment))
    if weight is not None:
        out.append(_observation(rng, pid, enc, moment, "29463-7", "Body weight", weight, "kg",
                                "vital-signs", "us-core-body-weight"))
    return out


def _lab_panel(rng: random.Random, pid: str, enc: str | None, moment: datetime,
               panel: list[tuple[str, str, str, float, float]]) -> list[dict[str, Any]]:
    out = []
    for code, display, unit, lo, hi in panel:
        value = round(rng.uniform(lo * 0.85, hi * 1.1), 1)
        out.append(_observation(rng, pid, enc, moment, code, display, value, unit, "laboratory",
                                "us-core-observation-lab", lo, hi))
    return out


def _patient(rng: random.Random, pid: str) -> dict[str, Any]:
    born = f"{rng.randint(1945, 2010)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return {
        "resourceType": "Patient", "id": pid,
        "meta": {"profile": [f"{US_CORE}/us-core-patient"]},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Generated by a "
                 "benchmark; not a real person.</div>"},
        "extension": [
            {"url": f"{US_CORE}/us-core-race", "extension": [
                {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238",
                                                       "code": "2106-3", "display": "White"}},
                {"url": "text", "valueString": "White"}]},
            {"url": f"{US_CORE}/us-core-ethnicity", "extension": [
                {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238",
                                                       "code": "2186-5", "display": "Not Hispanic or Latino"}},
                {"url": "text", "valueString": "Not Hispanic or Latino"}]},
            {"url": f"{US_CORE}/us-core-birthsex", "valueCode": rng.choice("FM")},
        ],
        "identifier": [
            {"system": "https://github.com/synthetichealth/synthea", "value": _uid(rng)},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR",
                                  "display": "Medical Record Number"}], "text": "Medical Record Number"},
             "system": "http://hospital.example.org", "value": _uid(rng)},
        ],
        "name": [{"use": "official", "family": f"Synthetic{rng.randint(1, 9999)}", "given": ["Test"],
                  "prefix": ["Mx."]}],
        "telecom": [{"system": "phone", "value": "555-010-0000", "use": "home"}],
        "gender": rng.choice(["female", "male"]), "birthDate": born,
        "address": [{"line": ["1 Example Way"], "city": "Springfield", "state": "MT",
                     "postalCode": "59000", "country": "US"}],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                                      "code": "M", "display": "Married"}], "text": "Married"},
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US",
                                                    "display": "English (United States)"}]}}],
    }


def _encounter(rng: random.Random, pid: str, moment: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Encounter", "id": _uid(rng),
        "meta": {"profile": [f"{US_CORE}/us-core-encounter"]},
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [_concept(SNOMED, "185349003", "Encounter for check up (procedure)")],
        "subject": {"reference": f"Patient/{pid}"},
        "participant": [{"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                               "code": "PPRF", "display": "primary performer"}]}],
                         "individual": {"reference": "Practitioner/synthetic-1", "display": "Dr. Example"}}],
        "period": {"start": _when(moment), "end": _when(moment + timedelta(minutes=30))},
        "serviceProvider": {"reference": "Organization/synthetic-clinic", "display": "Example Clinic"},
    }


def _condition(rng: random.Random, pid: str, code: str, display: str, snomed: str | None, onset: datetime,
               status: str, category: str) -> dict[str, Any]:
    coding = [{"system": ICD10, "code": code, "display": display}]
    if snomed:
        coding.append({"system": SNOMED, "code": snomed, "display": display})
    return {
        "resourceType": "Condition", "id": _uid(rng),
        "meta": {"profile": [f"{US_CORE}/us-core-condition-problems-health-concerns"]},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": status}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                           "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                  "code": category}]}],
        "code": {"coding": coding, "text": display},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": _when(onset), "recordedDate": _when(onset + timedelta(days=1)),
    }


def _med_request(rng: random.Random, pid: str, code: str, display: str, authored: datetime) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest", "id": _uid(rng),
        "meta": {"profile": [f"{US_CORE}/us-core-medicationrequest"]},
        "status": rng.choice(["active", "active", "completed", "stopped"]), "intent": "order",
        "medicationCodeableConcept": _concept(RXNORM, code, display),
        "subject": {"reference": f"Patient/{pid}"}, "authoredOn": _when(authored),
        "requester": {"reference": "Practitioner/synthetic-1", "display": "Dr. Example"},
        "dosageInstruction": [{"sequence": 1, "text": "Take one tablet by mouth daily",
                               "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                               "asNeededBoolean": False,
                               "doseAndRate": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/dose-rate-type",
                                                                     "code": "ordered"}]},
                                                "doseQuantity": {"value": 1, "unit": "tablet"}}]}],
    }


def _immunization(rng: random.Random, pid: str, code: str, display: str, moment: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Immunization", "id": _uid(rng),
        "meta": {"profile": [f"{US_CORE}/us-core-immunization"]},
        "status": "completed", "vaccineCode": _concept(CVX, code, display),
        "patient": {"reference": f"Patient/{pid}"}, "occurrenceDateTime": _when(moment),
        "primarySource": True, "location": {"display": "Example Clinic"},
    }


def realistic_record(seed: int, resources: int = 100) -> dict[str, Any]:
    """A collection Bundle of about ``resources`` US Core-shaped resources for one patient."""
    rng = random.Random(seed)
    pid = f"real{seed}"
    res: list[dict[str, Any]] = [_patient(rng, pid)]
    code, display, snomed = rng.choice(INDICATIONS)
    onset = AS_OF - timedelta(days=rng.randint(400, 3000))
    dx = _condition(rng, pid, code, display, snomed, onset, "active", "problem-list-item")
    res.append(dx)
    for p in rng.sample(PROBLEMS, 3):
        res.append(_condition(rng, pid, p[0], p[1], p[2], AS_OF - timedelta(days=rng.randint(100, 4000)),
                              "active", "problem-list-item"))
    for _ in range(rng.randint(2, 5)):
        icode, idisplay = rng.choice(INFECTIONS)
        res.append(_condition(rng, pid, icode, idisplay, None, AS_OF - timedelta(days=rng.randint(30, 1500)),
                              "resolved", "encounter-diagnosis"))
    for rx, name in rng.sample(MEDICATIONS, 3):
        res.append(_med_request(rng, pid, rx, name, AS_OF - timedelta(days=rng.randint(30, 900))))
    for cvx, name in VACCINES:
        res.append(_immunization(rng, pid, cvx, name, AS_OF - timedelta(days=rng.randint(30, 900))))
    weight = round(rng.uniform(45, 110), 1)
    for k in range(3):
        moment = AS_OF - timedelta(days=rng.randint(30, 1500))
        res.extend(_lab_panel(rng, pid, None, moment, [("2465-3", "IgG [Mass/volume] in Serum or Plasma",
                                                        "mg/dL", 700, 1600)]))
    res.append({
        "resourceType": "MedicationRequest", "id": _uid(rng), "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1426680",
                                                  "display": "immunoglobulin G, human"}],
                                      "text": "Privigen 10% (immune globulin intravenous, human) liquid"},
        "subject": {"reference": f"Patient/{pid}"}, "authoredOn": _when(AS_OF - timedelta(days=5)),
        "reasonReference": [{"reference": f"Condition/{dx['id']}"}],
        "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 4, "periodUnit": "wk"}},
                               "route": {"coding": [{"system": SNOMED, "code": "47625008",
                                                     "display": "Intravenous route"}]},
                               "doseAndRate": [{"doseQuantity": _quantity(round(weight * 0.5), "g")}]}],
    })
    visit = 0
    while len(res) < resources:
        visit += 1
        moment = AS_OF - timedelta(days=visit * rng.randint(20, 60), hours=rng.randint(0, 8))
        enc = _encounter(rng, pid, moment)
        res.append(enc)
        res.extend(_vital_panel(rng, pid, enc["id"], moment, weight))
        panel = [CBC, BMP, LIPIDS][visit % 3]
        res.extend(_lab_panel(rng, pid, enc["id"], moment + timedelta(minutes=20), panel))
    entries = [{"fullUrl": f"urn:uuid:{r['id']}" if len(r["id"]) == 36 else f"Patient/{r['id']}",
                "resource": r} for r in res[:resources]]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def large_chart(base_bundle: dict[str, Any], observations: int = 10_000, *, seed: int = 0) -> dict[str, Any]:
    """``base_bundle`` plus hourly vitals, daily weights and labs up to ``observations`` Observations.

    The added weights are dated before every weight of the base record and carry its latest
    value, and no added result is an IgG or a titer: the base record's report is unchanged.
    """
    rng = random.Random(seed)
    bundle = copy.deepcopy(base_bundle)
    resources = [e["resource"] for e in bundle["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    pid = patient["id"]
    weights = [r for r in resources if r["resourceType"] == "Observation"
               and any(c.get("code") == "29463-7" for c in r["code"].get("coding", []))]
    earliest = min((r.get("effectiveDateTime", "9999") for r in weights), default="2025-06-01")[:10]
    latest_kg = max(weights, key=lambda r: r.get("effectiveDateTime", ""))["valueQuantity"]["value"] if weights else 70
    # Inpatient stay ending the day before the earliest base weight, going back far enough.
    end = datetime.fromisoformat(earliest).replace(hour=6, tzinfo=AS_OF.tzinfo) - timedelta(days=1)
    have = sum(1 for r in resources if r["resourceType"] == "Observation")
    added: list[dict[str, Any]] = []
    hour = 0
    while have + len(added) < observations:
        moment = end - timedelta(hours=hour)
        if hour % 24 == 0:
            added.append(_observation(rng, pid, None, moment, "29463-7", "Body weight", latest_kg, "kg",
                                      "vital-signs", "us-core-body-weight"))
            added.extend(_lab_panel(rng, pid, None, moment, CBC if (hour // 24) % 2 else BMP))
        added.extend(_vital_panel(rng, pid, None, moment, None))
        hour += 1
    added = added[:observations - have]
    bundle["entry"].extend({"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in added)
    return bundle
