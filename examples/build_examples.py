#!/usr/bin/env python3
"""Generate the synthetic FHIR R4 example Bundles in this directory.

Every patient here is invented ("Test Patient-Alpha", ...).  The examples are
written for an evaluation "as of" date of 2025-06-30 (see README.md): recency
windows (body weight within 90 days, IgG within 12 months, infection within
6 months) are measured from that date.

Run from anywhere:

    python examples/build_examples.py            # rewrites examples/NN-*.json
    python examples/build_examples.py --out DIR  # writes into DIR instead

Output is deterministic: fullUrls are uuid5 values derived from the example
name and the resource type/id, so re-running produces byte-identical files.

Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path

AS_OF = "2025-06-30"

# --------------------------------------------------------------------------
# Code systems
# --------------------------------------------------------------------------
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
CPT = "http://www.ama-assn.org/go/cpt"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
OBS_INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
AI_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
AI_VER = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
MED_ADMIN_CAT = "http://terminology.hl7.org/CodeSystem/medication-admin-category"
MRN_SYSTEM = "http://example.org/fhir/synthetic-mrn"

# Namespace for deterministic urn:uuid fullUrls.
UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://example.org/ivig-coverage-check/examples")

# --------------------------------------------------------------------------
# Immune globulin products (see shared/reference/terminology.md section 5).
# Only the RxNorm *ingredient* (1426680) is verified; the brand is carried in
# CodeableConcept.text and a HCPCS J-code coding.
# --------------------------------------------------------------------------
PRODUCTS = {
    "privigen": {
        "text": "Privigen 10% (immune globulin intravenous, human) liquid",
        "hcpcs": ("J1459", "Injection, immune globulin (Privigen), intravenous, "
                           "non-lyophilized (e.g., liquid), 500 mg"),
        "route": "IV",
        "grams_per_100_ml": 10,
    },
    "gammagard": {
        "text": "Gammagard Liquid 10% (immune globulin infusion, human)",
        "hcpcs": ("J1569", "Injection, immune globulin (Gammagard liquid), "
                           "non-lyophilized (e.g., liquid), 500 mg"),
        "route": "IV",
        "grams_per_100_ml": 10,
    },
    "hizentra": {
        "text": "Hizentra 20% (immune globulin subcutaneous, human) liquid",
        "hcpcs": ("J1559", "Injection, immune globulin (Hizentra), 100 mg"),
        "route": "SC",
        "grams_per_100_ml": 20,
    },
}

ROUTES = {
    "IV": (SNOMED, "47625008", "Intravenous route"),
    "SC": (SNOMED, "34206005", "Subcutaneous route"),
    "PO": (SNOMED, "26643006", "Oral route"),
}

# LOINC codes used below (display strings as in terminology.md where listed there).
LAB = {
    "igg": ("2465-3", "IgG [Mass/volume] in Serum or Plasma"),
    "iga": ("2458-8", "IgA [Mass/volume] in Serum or Plasma"),
    "igm": ("2472-9", "IgM [Mass/volume] in Serum or Plasma"),
    "igg1": ("2466-1", "IgG subclass 1 [Mass/volume] in Serum"),
    "igg2": ("2467-9", "IgG subclass 2 [Mass/volume] in Serum"),
    "igg3": ("2468-7", "IgG subclass 3 [Mass/volume] in Serum"),
    "igg4": ("2469-5", "IgG subclass 4 [Mass/volume] in Serum"),
    "weight": ("29463-7", "Body weight"),
    "platelets": ("777-3", "Platelets [#/volume] in Blood by Automated count"),
    "hiv": ("56888-1", "HIV 1+2 Ab+HIV1 p24 Ag [Presence] in Serum or Plasma by Immunoassay"),
    "albumin": ("1751-7", "Albumin [Mass/volume] in Serum or Plasma"),
    "urine_protein_24h": ("2889-4", "Protein [Mass/time] in 24 hour Urine"),
    "cd19": ("8116-6", "CD19 cells [#/volume] in Blood"),
    "cd19_pct": ("8117-4", "CD19 cells/100 cells in Blood"),
    "tetanus": ("22203-4", "Clostridium tetani IgG Ab [Units/volume] in Serum"),
    "diphtheria": ("13227-4", "Corynebacterium diphtheriae IgG Ab [Units/volume] in Serum"),
    "creatinine": ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma"),
    "csf_wbc": ("26465-5", "Leukocytes [#/volume] in Cerebral spinal fluid"),
    "csf_protein": ("2880-3", "Protein [Mass/volume] in Cerebral spinal fluid"),
    "csf_vdrl": ("5290-2", "Reagin Ab [Presence] in Cerebral spinal fluid by VDRL"),
}

# Pneumococcal serotype IgG (ug/mL); codes from terminology.md (US serotype numbering
# in the LOINC names; Danish serotype in the key).
PNEUMO_SEROTYPES = {
    "1": ("27092-6", "Streptococcus pneumoniae 1 IgG Ab [Mass/volume] in Serum"),
    "3": ("27096-7", "Streptococcus pneumoniae 3 IgG Ab [Mass/volume] in Serum"),
    "4": ("27094-2", "Streptococcus pneumoniae 4 IgG Ab [Mass/volume] in Serum"),
    "6B": ("27118-9", "Streptococcus pneumoniae 26 IgG Ab [Mass/volume] in Serum"),
    "7F": ("25296-5", "Streptococcus pneumoniae 51 IgG Ab [Mass/volume] in Serum"),
    "8": ("27113-0", "Streptococcus pneumoniae 8 IgG Ab [Mass/volume] in Serum"),
    "9N": ("27392-0", "Streptococcus pneumoniae 9 IgG Ab [Mass/volume] in Serum"),
    "9V": ("30153-1", "Streptococcus pneumoniae 68 IgG Ab [Mass/volume] in Serum"),
    "12F": ("27374-8", "Streptococcus pneumoniae 12 IgG Ab [Mass/volume] in Serum"),
    "14": ("27387-0", "Streptococcus pneumoniae 14 IgG Ab [Mass/volume] in Serum"),
    "18C": ("27395-3", "Streptococcus pneumoniae 56 IgG Ab [Mass/volume] in Serum"),
    "19A": ("40974-8", "Streptococcus pneumoniae 57 IgG Ab [Mass/volume] in Serum"),
    "19F": ("27390-4", "Streptococcus pneumoniae 19 IgG Ab [Mass/volume] in Serum"),
    "23F": ("27389-6", "Streptococcus pneumoniae 23 IgG Ab [Mass/volume] in Serum"),
}

UNITS = {
    # code: human-readable unit
    "mg/dL": "mg/dL",
    "g/L": "g/L",
    "g/dL": "g/dL",
    "kg": "kg",
    "[lb_av]": "lb",
    "10*3/uL": "10*3/uL",
    "/uL": "/uL",
    "%": "%",
    "ug/mL": "ug/mL",
    "[IU]/mL": "IU/mL",
    "mg/(24.h)": "mg/24 h",
    "g": "g",
    "mL": "mL",
    "mg/kg": "mg/kg",
    "g/kg": "g/kg",
}

NEGATIVE = (SNOMED, "260385009", "Negative")
SEVERE = (SNOMED, "24484000", "Severe")


# --------------------------------------------------------------------------
# Small datatype helpers
# --------------------------------------------------------------------------
def coding(system: str, code: str, display: str | None = None) -> dict:
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def concept(*codings: tuple, text: str | None = None) -> dict:
    """CodeableConcept from (system, code, display) tuples plus optional text."""
    cc: dict = {}
    if codings:
        cc["coding"] = [coding(*c) for c in codings]
    if text:
        cc["text"] = text
    return cc


def text_concept(text: str) -> dict:
    return {"text": text}


def quantity(value: float, unit_code: str, comparator: str | None = None) -> dict:
    q: dict = {}
    if comparator:
        q["comparator"] = comparator
    q.update({"value": value, "unit": UNITS.get(unit_code, unit_code),
              "system": UCUM, "code": unit_code})
    return q


def ref(resource: dict) -> dict:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def annotation(text: str) -> list[dict]:
    return [{"text": text}]


# --------------------------------------------------------------------------
# One example = one Bundle under construction
# --------------------------------------------------------------------------
class Example:
    """Collects the resources of one synthetic patient record."""

    def __init__(self, number: int, short_name: str, title: str):
        self.number = number
        self.name = f"{number:02d}-{short_name}"
        self.title = title
        self.prefix = f"ex{number:02d}"
        self.resources: list[dict] = []
        self.patient: dict | None = None

    # -- bookkeeping -------------------------------------------------------
    def rid(self, local: str) -> str:
        return f"{self.prefix}-{local}"

    def add(self, resource: dict) -> dict:
        self.resources.append(resource)
        return resource

    def subject(self) -> dict:
        assert self.patient is not None, "add the Patient first"
        return ref(self.patient)

    def bundle(self) -> dict:
        entries = []
        for r in self.resources:
            key = f"{self.name}/{r['resourceType']}/{r['id']}"
            entries.append({"fullUrl": f"urn:uuid:{uuid.uuid5(UUID_NAMESPACE, key)}",
                            "resource": r})
        return {
            "resourceType": "Bundle",
            "id": self.name,
            "meta": {"tag": [coding("http://example.org/fhir/CodeSystem/example-tags",
                                    "synthetic", "Synthetic test data")]},
            "type": "collection",
            "timestamp": f"{AS_OF}T12:00:00Z",
            "entry": entries,
        }

    # -- resources ---------------------------------------------------------
    def add_patient(self, given: str, family: str, gender: str, birth_date: str,
                    local: str = "patient") -> dict:
        self.patient = self.add({
            "resourceType": "Patient",
            "id": self.rid(local),
            "identifier": [{"system": MRN_SYSTEM, "value": f"SYN-{self.number:04d}"}],
            "active": True,
            "name": [{"use": "official", "family": family, "given": [given],
                      "text": f"{given} {family}"}],
            "gender": gender,
            "birthDate": birth_date,
        })
        return self.patient

    def add_condition(self, local: str, icd: str, display: str, *, text: str | None = None,
                      onset: str | None = None, recorded: str | None = None,
                      clinical: str = "active", verification: str = "confirmed",
                      category: str = "problem-list-item", extra_codings: tuple = (),
                      severity: tuple | None = None, note: str | None = None,
                      abatement: str | None = None) -> dict:
        r: dict = {
            "resourceType": "Condition",
            "id": self.rid(local),
            "clinicalStatus": concept((COND_CLINICAL, clinical, clinical.capitalize())),
            "verificationStatus": concept((COND_VER, verification,
                                           verification.replace("-", " ").capitalize())),
            "category": [concept((COND_CATEGORY, category,
                                  "Problem List Item" if category == "problem-list-item"
                                  else "Encounter Diagnosis"))],
        }
        if severity:
            r["severity"] = concept(severity)
        r["code"] = concept((ICD10CM, icd, display), *extra_codings, text=text or display)
        r["subject"] = self.subject()
        if onset:
            r["onsetDateTime"] = onset
        if abatement:
            r["abatementDateTime"] = abatement
        if recorded:
            r["recordedDate"] = recorded
        if note:
            r["note"] = annotation(note)
        return self.add(r)

    def add_observation(self, local: str, lab_key: str, date: str, *,
                        value: float | None = None, unit: str | None = None,
                        comparator: str | None = None, value_string: str | None = None,
                        value_concept: tuple | None = None, status: str = "final",
                        category: str = "laboratory", interpretation: str | None = None,
                        low: float | None = None, high: float | None = None,
                        range_text: str | None = None, note: str | None = None) -> dict:
        code, display = PNEUMO_SEROTYPES[lab_key] if lab_key in PNEUMO_SEROTYPES else LAB[lab_key]
        r: dict = {
            "resourceType": "Observation",
            "id": self.rid(local),
            "status": status,
            "category": [concept((OBS_CATEGORY, category,
                                  "Laboratory" if category == "laboratory" else "Vital Signs"))],
            "code": concept((LOINC, code, display), text=display),
            "subject": self.subject(),
            "effectiveDateTime": date,
        }
        if value is not None:
            r["valueQuantity"] = quantity(value, unit, comparator)
        elif value_string is not None:
            r["valueString"] = value_string
        elif value_concept is not None:
            r["valueCodeableConcept"] = concept(value_concept, text=value_concept[2])
        if interpretation:
            names = {"L": "Low", "H": "High", "N": "Normal", "LL": "Critical low",
                     "NEG": "Negative"}
            r["interpretation"] = [concept((OBS_INTERP, interpretation, names[interpretation]))]
        if low is not None or high is not None or range_text:
            rr: dict = {}
            if low is not None:
                rr["low"] = quantity(low, unit)
            if high is not None:
                rr["high"] = quantity(high, unit)
            if range_text:
                rr["text"] = range_text
            r["referenceRange"] = [rr]
        if note:
            r["note"] = annotation(note)
        return self.add(r)

    # Convenience wrappers for the observations used over and over.
    def add_igg(self, local: str, date: str, value: float, unit: str = "mg/dL",
                low: float | None = None, high: float | None = None, **kw) -> dict:
        """Total IgG with an adult reference range (labs differ; callers may override)."""
        if low is None:
            low, high = (7.0, 16.0) if unit == "g/L" else (700, 1600)
        kw.setdefault("interpretation", "L" if value < low else "N")
        return self.add_observation(local, "igg", date, value=value, unit=unit,
                                    low=low, high=high, **kw)

    def add_weight(self, local: str, date: str, value: float, unit: str = "kg") -> dict:
        return self.add_observation(local, "weight", date, value=value, unit=unit,
                                    category="vital-signs")

    def add_hiv_negative(self, local: str, date: str) -> dict:
        return self.add_observation(local, "hiv", date, value_concept=NEGATIVE,
                                    interpretation="NEG")

    def add_albumin(self, local: str, date: str, value: float) -> dict:
        return self.add_observation(local, "albumin", date, value=value, unit="g/dL",
                                    low=3.5, high=5.0,
                                    interpretation="N" if 3.5 <= value <= 5.0 else "L")

    def add_urine_protein(self, local: str, date: str, value: float) -> dict:
        return self.add_observation(local, "urine_protein_24h", date, value=value,
                                    unit="mg/(24.h)", high=150,
                                    interpretation="N" if value <= 150 else "H")

    def add_pneumo_titers(self, local: str, date: str, values: dict[str, float],
                          note: str | None = None) -> list[dict]:
        out = []
        for serotype, v in values.items():
            out.append(self.add_observation(
                f"{local}-st{serotype.lower()}", serotype, date, value=v, unit="ug/mL",
                low=1.3, range_text="Protective level >= 1.3 ug/mL per serotype",
                interpretation="L" if v < 1.3 else "N", note=note))
        return out

    def add_immunization(self, local: str, cvx: str, display: str, text: str, date: str) -> dict:
        return self.add({
            "resourceType": "Immunization",
            "id": self.rid(local),
            "status": "completed",
            "vaccineCode": concept((CVX, cvx, display), text=text),
            "patient": self.subject(),
            "occurrenceDateTime": date,
            "primarySource": True,
        })

    def ig_concept(self, product: str) -> dict:
        p = PRODUCTS[product]
        return concept((RXNORM, "1426680", "immunoglobulin G, human"),
                       (HCPCS, p["hcpcs"][0], p["hcpcs"][1]), text=p["text"])

    def add_medication(self, local: str, product: str) -> dict:
        """A Medication resource with the product's concentration as ingredient strength."""
        p = PRODUCTS[product]
        return self.add({
            "resourceType": "Medication",
            "id": self.rid(local),
            "code": self.ig_concept(product),
            "status": "active",
            "form": text_concept("Solution for infusion"),
            "ingredient": [{
                "itemCodeableConcept": concept((RXNORM, "1426680", "immunoglobulin G, human")),
                "isActive": True,
                "strength": {"numerator": quantity(p["grams_per_100_ml"], "g"),
                             "denominator": quantity(100, "mL")},
            }],
        })

    def add_ig_request(self, local: str, product: str, authored: str, *,
                       dose: float, dose_unit: str, status: str = "active",
                       reasons: list[dict] | None = None, reason_code: tuple | None = None,
                       reason_text: str | None = None, period: float | None = None,
                       period_unit: str | None = None, count: int | None = None,
                       medication: dict | None = None, medication_text: str | None = None,
                       prior: dict | None = None, note: str | None = None,
                       instruction: str | None = None) -> dict:
        """An immune globulin MedicationRequest.

        Maintenance regimens pass period/period_unit (frequency is always 1);
        acute courses pass count (number of doses, one per day).
        """
        route = ROUTES[PRODUCTS[product]["route"]]
        r: dict = {"resourceType": "MedicationRequest", "id": self.rid(local),
                   "status": status, "intent": "order"}
        if medication is not None:
            r["medicationReference"] = ref(medication)
        elif medication_text is not None:
            r["medicationCodeableConcept"] = text_concept(medication_text)
        else:
            r["medicationCodeableConcept"] = self.ig_concept(product)
        r["subject"] = self.subject()
        r["authoredOn"] = authored
        if reason_code:
            r["reasonCode"] = [concept(reason_code, text=reason_text or reason_code[2])]
        if reasons:
            r["reasonReference"] = [ref(c) for c in reasons]
        if note:
            r["note"] = annotation(note)
        repeat: dict = {}
        if count is not None:
            repeat.update({"count": count, "frequency": 1, "period": 1, "periodUnit": "d"})
        else:
            repeat.update({"frequency": 1, "period": period, "periodUnit": period_unit})
        dosage = {
            "sequence": 1,
            "text": instruction or "",
            "timing": {"repeat": repeat},
            "route": concept(route),
            "doseAndRate": [{"doseQuantity": quantity(dose, dose_unit)}],
        }
        if not dosage["text"]:
            del dosage["text"]
        r["dosageInstruction"] = [dosage]
        if prior is not None:
            r["priorPrescription"] = ref(prior)
        return self.add(r)

    def add_ig_administration(self, local: str, product: str, date: str, dose_g: float,
                              request: dict | None = None, reason: dict | None = None) -> dict:
        r: dict = {
            "resourceType": "MedicationAdministration",
            "id": self.rid(local),
            "status": "completed",
            "category": concept((MED_ADMIN_CAT, "outpatient", "Outpatient")),
            "medicationCodeableConcept": self.ig_concept(product),
            "subject": self.subject(),
            "effectiveDateTime": date,
        }
        if reason is not None:
            r["reasonReference"] = [ref(reason)]
        if request is not None:
            r["request"] = ref(request)
        r["dosage"] = {"route": concept(ROUTES[PRODUCTS[product]["route"]]),
                       "dose": quantity(dose_g, "g")}
        return self.add(r)

    def add_med_statement(self, local: str, medication: dict, status: str, *,
                          start: str | None = None, end: str | None = None,
                          reason: dict | None = None, status_reason: str | None = None,
                          note: str | None = None, dosage_text: str | None = None) -> dict:
        r: dict = {"resourceType": "MedicationStatement", "id": self.rid(local), "status": status}
        if status_reason:
            r["statusReason"] = [text_concept(status_reason)]
        r["medicationCodeableConcept"] = medication
        r["subject"] = self.subject()
        if start or end:
            period = {}
            if start:
                period["start"] = start
            if end:
                period["end"] = end
            r["effectivePeriod"] = period
        r["dateAsserted"] = AS_OF if not end else end
        if reason is not None:
            r["reasonReference"] = [ref(reason)]
        if note:
            r["note"] = annotation(note)
        if dosage_text:
            r["dosage"] = [{"text": dosage_text}]
        return self.add(r)

    def add_procedure(self, local: str, cpt: str, display: str, text: str, date: str,
                      reason: dict | None = None) -> dict:
        r: dict = {
            "resourceType": "Procedure",
            "id": self.rid(local),
            "status": "completed",
            "code": concept((CPT, cpt, display), text=text),
            "subject": self.subject(),
            "performedDateTime": date,
        }
        if reason is not None:
            r["reasonReference"] = [ref(reason)]
        return self.add(r)

    def add_report(self, local: str, code: dict, date: str, conclusion: str, *,
                   results: list[dict] = (), category_text: str | None = None) -> dict:
        r: dict = {"resourceType": "DiagnosticReport", "id": self.rid(local), "status": "final"}
        if category_text:
            r["category"] = [text_concept(category_text)]
        r.update({"code": code, "subject": self.subject(), "effectiveDateTime": date,
                  "issued": f"{date}T17:00:00Z"})
        if results:
            r["result"] = [ref(o) for o in results]
        r["conclusion"] = conclusion
        return self.add(r)

    def add_intolerance(self, local: str, substance: dict, manifestation: str,
                        recorded: str) -> dict:
        return self.add({
            "resourceType": "AllergyIntolerance",
            "id": self.rid(local),
            "clinicalStatus": concept((AI_CLINICAL, "active", "Active")),
            "verificationStatus": concept((AI_VER, "confirmed", "Confirmed")),
            "type": "intolerance",
            "category": ["medication"],
            "criticality": "low",
            "code": substance,
            "patient": self.subject(),
            "recordedDate": recorded,
            "reaction": [{"manifestation": [text_concept(manifestation)]}],
        })


# --------------------------------------------------------------------------
# Shared clinical fragments
# --------------------------------------------------------------------------
PPSV23 = ("33", "pneumococcal polysaccharide PPV23", "Pneumovax 23")
TD = ("09", "Td (adult), adsorbed", "Td (tetanus and diphtheria toxoids, adult)")

PREDNISONE = concept((RXNORM, "8640", "prednisone"), text="prednisone 20 mg oral tablet")
AZATHIOPRINE = concept((RXNORM, "1256", "azathioprine"), text="azathioprine 50 mg oral tablet")
PYRIDOSTIGMINE = text_concept("pyridostigmine bromide 60 mg oral tablet")


def cvid_condition(ex: Example, recorded: str, onset: str | None = None,
                   local: str = "cvid") -> dict:
    return ex.add_condition(local, "D83.9", "Common variable immunodeficiency, unspecified",
                            text="Common variable immunodeficiency (CVID)",
                            extra_codings=((SNOMED, "23238000",
                                            "Common variable agammaglobulinemia"),),
                            onset=onset, recorded=recorded)


def secondary_cause_workup(ex: Example, date: str) -> None:
    """HIV negative + protein-loss screen (albumin, 24 h urine protein)."""
    ex.add_hiv_negative("hiv", date)
    ex.add_albumin("albumin", date, 4.2)
    ex.add_urine_protein("urine-protein", date, 85)


# --------------------------------------------------------------------------
# The examples
# --------------------------------------------------------------------------
def ex01_cvid_seed_002() -> Example:
    ex = Example(1, "cvid-seed-002", "CVID on Privigen, seed 002 (missing baseline/start/weight)")
    ex.add_patient("Test", "Patient-Alpha", "female", "1979-04-17")
    cvid = cvid_condition(ex, recorded="2017-03-10")
    # Recurrent bacterial infections, years before (history still counts).
    ex.add_condition("pneumonia", "J18.9", "Pneumonia, unspecified organism",
                     onset="2016-12-05", abatement="2017-01-02", clinical="resolved",
                     category="encounter-diagnosis",
                     note="Right lower lobe pneumonia, hospitalized 4 days.")
    ex.add_condition("sinusitis", "J32.9", "Chronic sinusitis, unspecified",
                     text="Recurrent sinusitis", onset="2015-02-01", clinical="inactive",
                     note="4-5 courses of antibiotics per year 2015-2017.")
    ex.add_condition("cellulitis", "L03.90", "Cellulitis, unspecified",
                     onset="2016-07-19", abatement="2016-08-05", clinical="resolved",
                     category="encounter-diagnosis",
                     note="Left leg cellulitis requiring IV vancomycin.")
    ex.add_observation("cd19", "cd19", "2017-02-20", value=38, unit="/uL", low=90, high=660,
                       interpretation="L", note="Abnormal (low) B-cell count.")
    # Pneumovax booster then low serotype titers 4 weeks later, no pre-titers.
    ex.add_immunization("ppsv23", *PPSV23, "2016-10-03")
    ex.add_pneumo_titers("pneumo-post", "2016-10-31",
                         {"1": 0.3, "3": 0.4, "4": 1.6, "6B": 0.2, "9V": 0.5,
                          "14": 0.8, "19F": 0.6, "23F": 0.3})
    # Already on IVIG: an undated MedicationStatement and an earlier order.
    ex.add_med_statement("ivig-statement", ex.ig_concept("privigen"), "active", reason=cvid,
                         note="Receives Privigen by home infusion every 4 weeks; start date "
                              "not recorded. No infections since starting IVIG.",
                         dosage_text="40 g IV every 28 days")
    prior = ex.add_ig_request("ivig-order-2024", "privigen", "2024-06-24", dose=40,
                              dose_unit="g", status="completed", reasons=[cvid],
                              period=28, period_unit="d")
    # IgG values in the last 12 months: on-therapy troughs, not baselines.
    ex.add_igg("igg-1", "2024-08-12", 471)
    ex.add_igg("igg-2", "2024-12-09", 453)
    ex.add_igg("igg-3", "2025-04-14", 447)
    ex.add_ig_request("ivig-order", "privigen", "2025-06-20", dose=40, dose_unit="g",
                      reasons=[cvid], period=28, period_unit="d", prior=prior,
                      instruction="Privigen 40 g IV every 28 days, home infusion")
    return ex


def ex02_cvid_complete() -> Example:
    ex = Example(2, "cvid-complete", "CVID with complete documentation")
    ex.add_patient("Test", "Patient-Bravo", "female", "1985-09-02")
    ex.add_condition("pneumonia-1", "J18.9", "Pneumonia, unspecified organism",
                     onset="2022-03-14", abatement="2022-04-01", clinical="resolved",
                     category="encounter-diagnosis")
    ex.add_condition("pneumonia-2", "J18.9", "Pneumonia, unspecified organism",
                     onset="2022-10-02", abatement="2022-10-20", clinical="resolved",
                     category="encounter-diagnosis", note="Hospitalized, IV ceftriaxone.")
    ex.add_condition("sinusitis", "J32.9", "Chronic sinusitis, unspecified",
                     text="Recurrent bacterial sinusitis", onset="2021-05-10",
                     clinical="inactive")
    # Pre-treatment immunoglobulins (two occasions) and secondary-cause work-up.
    ex.add_igg("igg-pre-1", "2022-08-10", 310)
    ex.add_igg("igg-pre-2", "2022-11-15", 280)
    ex.add_observation("iga-pre", "iga", "2022-11-15", value=12, unit="mg/dL", low=70,
                       high=400, interpretation="L")
    ex.add_observation("igm-pre", "igm", "2022-11-15", value=21, unit="mg/dL", low=40,
                       high=230, interpretation="L")
    secondary_cause_workup(ex, "2022-11-15")
    # Vaccine challenge: pre titers, PPSV23 + Td, post titers 4 / 3.5 weeks later.
    pre = {"1": 0.2, "3": 0.3, "4": 0.4, "6B": 0.1, "9V": 0.3, "14": 0.5, "19F": 0.4, "23F": 0.2}
    post = {"1": 0.3, "3": 0.4, "4": 0.6, "6B": 0.2, "9V": 0.4, "14": 0.9, "19F": 0.5, "23F": 0.3}
    ex.add_pneumo_titers("pneumo-pre", "2022-11-15", pre)
    ex.add_observation("tetanus-pre", "tetanus", "2022-11-15", value=0.05, unit="[IU]/mL",
                       low=0.1, range_text="Protective level >= 0.10 IU/mL", interpretation="L")
    ex.add_immunization("ppsv23", *PPSV23, "2022-11-21")
    ex.add_immunization("td", *TD, "2022-11-21")
    ex.add_pneumo_titers("pneumo-post", "2022-12-19", post)
    ex.add_observation("tetanus-post", "tetanus", "2022-12-15", value=0.08, unit="[IU]/mL",
                       low=0.1, range_text="Protective level >= 0.10 IU/mL", interpretation="L")
    cvid = cvid_condition(ex, recorded="2023-01-05", onset="2021-05-10")
    # Therapy: first dose documented, recent infusions, troughs.
    ex.add_weight("weight-2022", "2022-11-15", 68)
    ex.add_ig_administration("ivig-admin-first", "privigen", "2023-01-16", 35, reason=cvid)
    ex.add_ig_administration("ivig-admin-2025-05", "privigen", "2025-05-05", 35, reason=cvid)
    ex.add_igg("igg-trough-1", "2024-12-09", 790)
    ex.add_igg("igg-trough-2", "2025-06-02", 820,
               note="Trough drawn immediately before the 2025-06-02 infusion.")
    ex.add_weight("weight", "2025-06-02", 70)
    ex.add_ig_administration("ivig-admin-2025-06", "privigen", "2025-06-02", 35, reason=cvid)
    ex.add_ig_request("ivig-order", "privigen", "2025-06-25", dose=35, dose_unit="g",
                      reasons=[cvid], period=4, period_unit="wk",
                      instruction="Privigen 35 g (500 mg/kg) IV every 4 weeks")
    return ex


def ex03_xla_new_start_si_units() -> Example:
    ex = Example(3, "xla-new-start-si-units",
                 "XLA new start: IgG in g/L, weight in lb, dose in mL, Medication resource")
    ex.add_patient("Test", "Patient-Charlie", "male", "2006-01-23")
    xla = ex.add_condition("xla", "D80.0", "Hereditary hypogammaglobulinemia",
                           text="X-linked agammaglobulinemia (Bruton), BTK variant confirmed",
                           extra_codings=((SNOMED, "65880007", "X-linked agammaglobulinemia"),),
                           onset="2025-04-01", recorded="2025-06-02")
    ex.add_condition("pneumonia", "J18.9", "Pneumonia, unspecified organism",
                     onset="2025-03-08", abatement="2025-03-28", clinical="resolved",
                     category="encounter-diagnosis")
    ex.add_igg("igg", "2025-05-20", 1.5, unit="g/L", interpretation="LL")
    ex.add_observation("iga", "iga", "2025-05-20", value=0.05, unit="g/L", comparator="<",
                       low=0.7, high=4.0, interpretation="L")
    ex.add_observation("igm", "igm", "2025-05-20", value=0.1, unit="g/L", low=0.4, high=2.3,
                       interpretation="L")
    ex.add_observation("cd19-pct", "cd19_pct", "2025-05-20", value=0.1, unit="%", low=6,
                       high=23, interpretation="L", note="B cells essentially absent.")
    ex.add_hiv_negative("hiv", "2025-05-20")
    ex.add_albumin("albumin", "2025-05-20", 4.4)
    ex.add_weight("weight", "2025-06-10", 132, unit="[lb_av]")
    med = ex.add_medication("gammagard", "gammagard")
    ex.add_ig_request("ivig-order", "gammagard", "2025-06-24", dose=300, dose_unit="mL",
                      medication=med, reasons=[xla], period=4, period_unit="wk",
                      instruction="Gammagard Liquid 10% 300 mL (30 g) IV every 4 weeks")
    return ex


def ex04_continuation_with_start_date() -> Example:
    ex = Example(4, "continuation-with-start-date",
                 "SCIG Hizentra continuation with documented start date")
    ex.add_patient("Test", "Patient-Delta", "female", "1970-06-11")
    ex.add_condition("pneumonia-1", "J18.9", "Pneumonia, unspecified organism",
                     onset="2020-02-10", clinical="resolved", category="encounter-diagnosis")
    ex.add_condition("pneumonia-2", "J18.9", "Pneumonia, unspecified organism",
                     onset="2020-09-21", clinical="resolved", category="encounter-diagnosis")
    ex.add_condition("sinusitis", "J32.9", "Chronic sinusitis, unspecified",
                     onset="2019-11-01", clinical="inactive")
    ex.add_igg("igg-pre-1", "2020-11-02", 340)
    ex.add_igg("igg-pre-2", "2021-02-01", 350)
    ex.add_observation("iga-pre", "iga", "2021-02-01", value=25, unit="mg/dL", low=70,
                       high=400, interpretation="L")
    secondary_cause_workup(ex, "2021-02-01")
    ex.add_pneumo_titers("pneumo-pre", "2020-11-30",
                         {"1": 0.2, "3": 0.2, "4": 0.3, "6B": 0.1, "14": 0.6, "19F": 0.3,
                          "23F": 0.1})
    ex.add_immunization("ppsv23", *PPSV23, "2020-12-07")
    ex.add_pneumo_titers("pneumo-post", "2021-01-11",
                         {"1": 0.4, "3": 0.3, "4": 0.5, "6B": 0.2, "14": 1.1, "19F": 0.5,
                          "23F": 0.2})
    cvid = cvid_condition(ex, recorded="2021-03-01", onset="2019-11-01")
    ex.add_med_statement("scig-statement", ex.ig_concept("hizentra"), "active",
                         start="2021-04-12", reason=cvid,
                         dosage_text="Hizentra 8 g subcutaneously once weekly")
    ex.add_ig_administration("scig-admin-first", "hizentra", "2021-04-12", 8, reason=cvid)
    ex.add_igg("igg-trough", "2025-03-10", 1010, interpretation="N")
    ex.add_weight("weight", "2025-05-19", 64)
    ex.add_ig_administration("scig-admin-recent", "hizentra", "2025-06-23", 8, reason=cvid)
    ex.add_ig_request("scig-order", "hizentra", "2025-06-26", dose=8, dose_unit="g",
                      reasons=[cvid], period=1, period_unit="wk",
                      instruction="Hizentra 8 g (125 mg/kg) SC once weekly")
    return ex


def ex05_cll_comparator() -> Example:
    ex = Example(5, "cll-comparator", "CLL with IgG below a comparator bound")
    ex.add_patient("Test", "Patient-Echo", "male", "1951-02-27")
    cll = ex.add_condition("cll", "C91.10", "Chronic lymphocytic leukemia of B-cell type not "
                                            "having achieved remission",
                           extra_codings=((SNOMED, "92814006", "Chronic lymphoid leukemia"),),
                           onset="2019-05-14", recorded="2019-05-20")
    ex.add_condition("pneumonia", "J18.9", "Pneumonia, unspecified organism",
                     onset="2025-02-10", abatement="2025-03-01", clinical="resolved",
                     category="encounter-diagnosis", severity=SEVERE,
                     note="Pneumococcal bacteremic pneumonia; hospitalized 6 days, IV ceftriaxone.")
    ex.add_igg("igg-comparator", "2025-04-02", 400, comparator="<", interpretation="L",
               note="Below the assay's lower reporting limit.")
    ex.add_observation("igg-string", "igg", "2025-06-05", value_string="<300",
                       note="Result transmitted as text by the reference laboratory.")
    ex.add_weight("weight", "2025-06-05", 80)
    ex.add_ig_request("ivig-order", "privigen", "2025-06-18", dose=30, dose_unit="g",
                      reasons=[cll], period=4, period_unit="wk",
                      instruction="Privigen 30 g IV every 4 weeks")
    return ex


def ex06_itp_acute_course() -> Example:
    ex = Example(6, "itp-acute-course", "ITP, IVIG 1 g/kg x 2 days")
    ex.add_patient("Test", "Patient-Foxtrot", "female", "1991-08-30")
    itp = ex.add_condition("itp", "D69.3", "Immune thrombocytopenic purpura",
                           extra_codings=((SNOMED, "32273002",
                                           "Idiopathic thrombocytopenic purpura"),),
                           onset="2025-06-25", recorded="2025-06-27",
                           note="Petechiae and gum bleeding; no response to prednisone x 1 week.")
    ex.add_observation("platelets", "platelets", "2025-06-27", value=12, unit="10*3/uL",
                       low=150, high=400, interpretation="LL")
    ex.add_igg("igg", "2025-06-27", 1050, interpretation="N")
    ex.add_weight("weight", "2025-06-27", 62)
    ex.add_ig_request("ivig-order", "privigen", "2025-06-28", dose=1, dose_unit="g/kg",
                      reasons=[itp], count=2,
                      instruction="Privigen 1 g/kg IV daily for 2 consecutive days")
    return ex


def _cidp_base(ex: Example, given_family: tuple, birth: str) -> tuple[dict, dict]:
    ex.add_patient(given_family[0], given_family[1], "male", birth)
    cidp = ex.add_condition("cidp", "G61.81", "Chronic inflammatory demyelinating polyneuritis",
                            text="Chronic inflammatory demyelinating polyradiculoneuropathy (CIDP)",
                            onset="2024-09-01", recorded="2025-01-20",
                            note="Progressive symmetric weakness and numbness of all four limbs "
                                 "over 4 months; areflexia in all four limbs.")
    ncs_proc = ex.add_procedure("ncs", "95910", "Nerve conduction studies; 7-8 studies",
                                "Nerve conduction study", "2025-01-15", reason=cidp)
    ncs = ex.add_report(
        "ncs-report", concept((CPT, "95910", "Nerve conduction studies; 7-8 studies"),
                              text="Nerve conduction study"),
        "2025-01-15",
        "Predominantly demyelinating sensorimotor polyneuropathy including proximal segments: "
        "conduction velocity <70% LLN in median, ulnar and peroneal motor nerves; partial "
        "conduction block in the right median nerve between wrist and elbow; distal motor "
        "latencies >150% ULN in 3 nerves; prolonged minimal F-wave latencies. 4 of 4 "
        "physiologic criteria met.",
        category_text="Neurophysiology")
    ncs_proc["report"] = [ref(ncs)]
    return cidp, ncs


def ex07_cidp_missing_diagnostics() -> Example:
    ex = Example(7, "cidp-missing-diagnostics", "CIDP with NCS only (no CSF, no biopsy)")
    cidp, _ = _cidp_base(ex, ("Test", "Patient-Golf"), "1966-12-03")
    ex.add_weight("weight", "2025-06-10", 82)
    ex.add_ig_request("ivig-order", "privigen", "2025-06-20", dose=1, dose_unit="g/kg",
                      reasons=[cidp], period=3, period_unit="wk",
                      instruction="Privigen 1 g/kg IV every 3 weeks (maintenance)")
    return ex


def ex08_mg_off_label_prior_therapy() -> Example:
    ex = Example(8, "mg-off-label-prior-therapy",
                 "Myasthenia gravis, chronic debilitating, failed standard therapy")
    ex.add_patient("Test", "Patient-Hotel", "female", "1980-03-15")
    mg = ex.add_condition("mg", "G70.00", "Myasthenia gravis without (acute) exacerbation",
                          text="Generalized AChR-antibody positive myasthenia gravis, "
                               "chronic debilitating (MGFA class IIIb)",
                          extra_codings=((SNOMED, "91637004", "Myasthenia gravis"),),
                          onset="2019-04-01", recorded="2019-06-12", severity=SEVERE,
                          note="Persistent diplopia, dysphagia and proximal weakness despite "
                               "pyridostigmine, prednisone and azathioprine trials.")
    ex.add_med_statement("pyridostigmine", PYRIDOSTIGMINE, "stopped", start="2019-06-12",
                         end="2023-02-01", reason=mg, status_reason="ineffective",
                         dosage_text="60 mg by mouth four times daily")
    ex.add_med_statement("prednisone", PREDNISONE, "stopped", start="2020-01-10",
                         end="2024-05-20", reason=mg, status_reason="ineffective",
                         note="Up to 60 mg daily without sustained benefit; steroid-induced "
                              "diabetes.")
    ex.add_med_statement("azathioprine", AZATHIOPRINE, "stopped", start="2023-03-01",
                         end="2023-05-15", reason=mg, status_reason="intolerance",
                         note="Stopped for hepatotoxicity.")
    ex.add_intolerance("azathioprine-intolerance", concept((RXNORM, "1256", "azathioprine")),
                       "Drug-induced hepatotoxicity (ALT 6x ULN)", "2023-05-15")
    ex.add_weight("weight", "2025-06-16", 68)
    ex.add_ig_request("ivig-order", "gammagard", "2025-06-24", dose=0.4, dose_unit="g/kg",
                      reasons=[mg], count=5,
                      instruction="Gammagard Liquid 0.4 g/kg IV daily x 5 days (2 g/kg course)")
    return ex


def ex09_ms_off_label_missing_failure() -> Example:
    ex = Example(9, "ms-off-label-missing-failure",
                 "Relapsing-remitting MS without documented failure of standard therapy")
    ex.add_patient("Test", "Patient-India", "female", "1988-10-09")
    # G35 is the billable MS code for dates of service before 2025-10-01.
    ms = ex.add_condition("ms", "G35", "Multiple sclerosis",
                          text="Relapsing-remitting multiple sclerosis, severe relapses",
                          onset="2021-02-01", recorded="2021-04-15", severity=SEVERE,
                          note="Three disabling relapses in 18 months.")
    ex.add_weight("weight", "2025-06-05", 75)
    ex.add_ig_request("ivig-order", "privigen", "2025-06-19", dose=30, dose_unit="g",
                      reasons=[ms], period=4, period_unit="wk",
                      instruction="Privigen 0.4 g/kg (30 g) IV every 4 weeks")
    return ex


def ex10_experimental_alzheimers() -> Example:
    ex = Example(10, "experimental-alzheimers", "Alzheimer's disease (experimental list)")
    ex.add_patient("Test", "Patient-Juliett", "male", "1948-05-21")
    ad = ex.add_condition("alzheimers", "G30.9", "Alzheimer's disease, unspecified",
                          onset="2022-01-01", recorded="2022-03-08")
    ex.add_med_statement("donepezil", concept((RXNORM, "135447", "donepezil"),
                                              text="donepezil 10 mg oral tablet"),
                         "active", start="2022-03-08", reason=ad)
    ex.add_weight("weight", "2025-05-28", 72)
    ex.add_ig_request("ivig-order", "gammagard", "2025-06-23", dose=0.4, dose_unit="g/kg",
                      reasons=[ad], period=2, period_unit="wk",
                      instruction="Gammagard Liquid 0.4 g/kg IV every 2 weeks")
    return ex


def ex11_unlisted_indication() -> Example:
    ex = Example(11, "unlisted-indication",
                 "Small fiber neuropathy: not on the policy, not on the experimental list")
    ex.add_patient("Test", "Patient-Kilo", "female", "1976-07-04")
    sfn_text = ("Small fiber neuropathy, presumed immune-mediated (skin biopsy: reduced "
                "intraepidermal nerve fiber density)")
    ex.add_condition("sfn", "G62.9", "Polyneuropathy, unspecified", text=sfn_text,
                     onset="2022-09-01", recorded="2023-04-18")
    # Standard therapy tried and failed (so only the appeal letter should be missing).
    ex.add_med_statement("gabapentin", concept((RXNORM, "25480", "gabapentin"),
                                               text="gabapentin 600 mg oral tablet"),
                         "stopped", start="2023-05-01", end="2024-01-15",
                         status_reason="ineffective")
    ex.add_med_statement("duloxetine", text_concept("duloxetine 60 mg oral capsule"),
                         "stopped", start="2024-02-01", end="2024-06-10",
                         status_reason="ineffective")
    ex.add_weight("weight", "2025-06-12", 66)
    ex.add_ig_request(
        "ivig-order", "privigen", "2025-06-25", dose=2, dose_unit="g/kg",
        reason_code=(ICD10CM, "G62.9", "Polyneuropathy, unspecified"),
        reason_text=sfn_text,
        period=4, period_unit="wk",
        instruction="Privigen 2 g/kg IV divided over 2 days every 4 weeks")
    return ex


def ex12_no_indication() -> Example:
    ex = Example(12, "no-indication", "Hypertension and type 2 diabetes only; no IVIG order")
    ex.add_patient("Test", "Patient-Lima", "male", "1962-11-19")
    ex.add_condition("htn", "I10", "Essential (primary) hypertension",
                     onset="2015-03-01", recorded="2015-03-10")
    ex.add_condition("t2dm", "E11.9", "Type 2 diabetes mellitus without complications",
                     onset="2018-08-01", recorded="2018-08-20")
    ex.add_med_statement("lisinopril", concept((RXNORM, "29046", "lisinopril"),
                                               text="lisinopril 20 mg oral tablet"),
                         "active", start="2015-03-10")
    ex.add_med_statement("metformin", concept((RXNORM, "6809", "metformin"),
                                              text="metformin 1000 mg oral tablet"),
                         "active", start="2018-08-20")
    ex.add_weight("weight", "2025-05-15", 91)
    ex.add_observation("creatinine", "creatinine", "2025-05-15", value=0.9, unit="mg/dL",
                       low=0.7, high=1.3, interpretation="N")
    return ex


def ex13_entered_in_error() -> Example:
    ex = Example(13, "entered-in-error",
                 "CVID label, but only a normal IgG counts (error/refuted records ignored)")
    ex.add_patient("Test", "Patient-Mike", "female", "1983-01-08")
    cvid = cvid_condition(ex, recorded="2025-05-01")
    ex.add_condition("cll-refuted", "C91.10", "Chronic lymphocytic leukemia of B-cell type not "
                                              "having achieved remission",
                     verification="refuted", recorded="2024-10-02",
                     note="Flow cytometry did not confirm a clonal B-cell population.")
    ex.add_condition("sinusitis", "J32.9", "Chronic sinusitis, unspecified",
                     onset="2023-10-01", clinical="active")
    ex.add_igg("igg-error", "2024-11-04", 250, status="entered-in-error",
               note="Entered on the wrong patient; see corrected result.")
    # This laboratory's adult range is 600-1640 mg/dL, so 650 is reported as normal.
    ex.add_igg("igg", "2025-04-22", 650, low=600, high=1640)
    ex.add_hiv_negative("hiv", "2025-04-22")
    ex.add_albumin("albumin", "2025-04-22", 4.3)
    # Normal polysaccharide response closes the "normal IgG + non-responder" pathway.
    ex.add_pneumo_titers("pneumo-pre", "2025-02-24",
                         {"1": 0.4, "3": 0.3, "4": 0.5, "6B": 0.6, "14": 0.8, "19F": 0.7,
                          "23F": 0.4})
    ex.add_immunization("ppsv23", *PPSV23, "2025-03-03")
    ex.add_pneumo_titers("pneumo-post", "2025-04-07",
                         {"1": 3.1, "3": 2.2, "4": 4.0, "6B": 3.5, "14": 6.2, "19F": 4.4,
                          "23F": 2.6})
    ex.add_weight("weight", "2025-06-09", 65)
    ex.add_ig_request("ivig-order", "privigen", "2025-06-20", dose=30, dose_unit="g",
                      reasons=[cvid], period=4, period_unit="wk",
                      instruction="Privigen 30 g IV every 4 weeks")
    return ex


def ex14_weight_stale_dose_high() -> Example:
    ex = Example(14, "weight-stale-dose-high",
                 "PI continuation, last weight 200 days old, 60 g every 4 weeks")
    ex.add_patient("Test", "Patient-November", "male", "1990-12-12")
    ex.add_condition("pneumonia-1", "J18.9", "Pneumonia, unspecified organism",
                     onset="2019-01-15", clinical="resolved", category="encounter-diagnosis")
    ex.add_condition("pneumonia-2", "J18.9", "Pneumonia, unspecified organism",
                     onset="2019-09-02", clinical="resolved", category="encounter-diagnosis")
    ex.add_condition("sinusitis", "J32.9", "Chronic sinusitis, unspecified",
                     onset="2018-06-01", clinical="inactive")
    ex.add_igg("igg-pre", "2019-11-18", 310)
    ex.add_igg("igg-pre-2", "2019-12-16", 295)  # persistent: a second baseline below 400
    secondary_cause_workup(ex, "2019-11-18")
    ex.add_immunization("ppsv23", *PPSV23, "2019-11-25")
    ex.add_pneumo_titers("pneumo-post", "2019-12-23",
                         {"1": 0.3, "3": 0.2, "4": 0.6, "6B": 0.2, "14": 0.7, "19F": 0.4,
                          "23F": 0.3})
    cvid = cvid_condition(ex, recorded="2020-01-20", onset="2018-06-01")
    ex.add_ig_administration("ivig-admin-first", "privigen", "2020-03-02", 30, reason=cvid)
    ex.add_weight("weight-old", "2023-06-01", 52)
    ex.add_weight("weight-stale", "2024-12-12", 50)
    ex.add_igg("igg-trough", "2025-02-10", 980, interpretation="N")
    ex.add_ig_administration("ivig-admin-recent", "privigen", "2025-06-02", 60, reason=cvid)
    ex.add_ig_request("ivig-order", "privigen", "2025-06-24", dose=60, dose_unit="g",
                      reasons=[cvid], period=4, period_unit="wk",
                      instruction="Privigen 60 g IV every 4 weeks")
    return ex


def ex15_kawasaki_child() -> Example:
    ex = Example(15, "kawasaki-child", "Kawasaki disease, 2 g/kg single infusion")
    ex.add_patient("Test", "Patient-Oscar", "male", "2022-02-14")
    kd = ex.add_condition("kawasaki", "M30.3", "Mucocutaneous lymph node syndrome [Kawasaki]",
                          extra_codings=((SNOMED, "75053002", "Kawasaki disease"),),
                          onset="2025-06-24", recorded="2025-06-28",
                          note="Fever day 5, conjunctival injection, strawberry tongue, "
                               "polymorphous rash, cervical adenopathy.")
    ex.add_weight("weight", "2025-06-28", 14)
    ex.add_ig_request("ivig-order", "gammagard", "2025-06-28", dose=2, dose_unit="g/kg",
                      reasons=[kd], count=1,
                      instruction="Gammagard Liquid 2 g/kg IV over 10-12 hours, once, "
                                  "with high-dose aspirin")
    return ex


def ex16_cidp_complete() -> Example:
    ex = Example(16, "cidp-complete", "CIDP with NCS, CSF analysis and nerve biopsy")
    cidp, _ = _cidp_base(ex, ("Test", "Patient-Papa"), "1961-04-28")
    # The mandatory clinical criterion recorded as a finding, not only in free-text notes.
    ex.add_condition("areflexia", "R29.2", "Abnormal reflex", text="Areflexia in all four limbs",
                     onset="2024-11-01", recorded="2025-01-20")
    ex.add_procedure("lumbar-puncture", "62270", "Spinal puncture, lumbar, diagnostic",
                     "Lumbar puncture", "2025-01-22", reason=cidp)
    wbc = ex.add_observation("csf-wbc", "csf_wbc", "2025-01-22", value=3, unit="/uL", high=5,
                             interpretation="N")
    prot = ex.add_observation("csf-protein", "csf_protein", "2025-01-22", value=112,
                              unit="mg/dL", low=15, high=45, interpretation="H")
    vdrl = ex.add_observation("csf-vdrl", "csf_vdrl", "2025-01-22", value_concept=NEGATIVE,
                              interpretation="NEG")
    ex.add_report("csf-report", text_concept("Cerebrospinal fluid analysis"), "2025-01-22",
                  "Albuminocytologic dissociation: protein 112 mg/dL, 3 cells/uL, "
                  "VDRL non-reactive.", results=[wbc, prot, vdrl], category_text="Laboratory")
    ex.add_hiv_negative("hiv", "2025-01-22")
    biopsy = ex.add_procedure("nerve-biopsy", "64795", "Biopsy of nerve",
                              "Sural nerve biopsy", "2025-02-05", reason=cidp)
    report = ex.add_report(
        "nerve-biopsy-report", concept((CPT, "64795", "Biopsy of nerve"),
                                       text="Sural nerve biopsy pathology"),
        "2025-02-12",
        "Teased fiber study: segmental demyelination and remyelination in 18% of 50 fibers "
        "(>= 4 internodes each); onion-bulb formations. Consistent with CIDP.",
        category_text="Pathology")
    biopsy["report"] = [ref(report)]
    ex.add_weight("weight", "2025-06-10", 78)
    ex.add_ig_request("ivig-order", "privigen", "2025-06-20", dose=1, dose_unit="g/kg",
                      reasons=[cidp], period=3, period_unit="wk",
                      instruction="Privigen 1 g/kg IV every 3 weeks (maintenance)")
    return ex


def ex17_draft_order_uncoded_mgkg() -> Example:
    ex = Example(17, "draft-order-uncoded-mgkg",
                 "PI new start: draft order, uncoded product text, dose in mg/kg, "
                 "cancelled earlier order")
    ex.add_patient("Test", "Patient-Quebec", "female", "1995-03-30")
    hypo = ex.add_condition("hypogam", "D80.1", "Nonfamilial hypogammaglobulinemia",
                            onset="2024-01-01", recorded="2025-05-12")
    ex.add_condition("pneumonia-1", "J18.9", "Pneumonia, unspecified organism",
                     onset="2024-03-04", clinical="resolved", category="encounter-diagnosis")
    ex.add_condition("pneumonia-2", "J18.9", "Pneumonia, unspecified organism",
                     onset="2024-11-18", clinical="resolved", category="encounter-diagnosis")
    ex.add_condition("cellulitis", "L03.90", "Cellulitis, unspecified",
                     onset="2025-01-27", clinical="resolved", category="encounter-diagnosis")
    ex.add_igg("igg-1", "2025-02-10", 360)
    ex.add_igg("igg-2", "2025-04-14", 345)
    secondary_cause_workup(ex, "2025-04-14")
    ex.add_immunization("ppsv23", *PPSV23, "2025-04-14")
    ex.add_pneumo_titers("pneumo-post", "2025-05-12",
                         {"1": 0.2, "3": 0.3, "4": 0.9, "6B": 0.1, "9V": 0.4, "14": 1.5,
                          "19F": 0.6, "23F": 0.2})
    ex.add_weight("weight", "2025-06-16", 60)
    # A cancelled order is history, not exposure to IVIG and not the order under review.
    ex.add_ig_request("ivig-order-cancelled", "gammagard", "2025-05-20", dose=30,
                      dose_unit="g", status="cancelled", reasons=[hypo], period=4,
                      period_unit="wk", note="Cancelled: wrong product selected.")
    ex.add_ig_request("ivig-order", "gammagard", "2025-06-27", dose=500, dose_unit="mg/kg",
                      status="draft", reasons=[hypo], period=4, period_unit="wk",
                      medication_text="Octagam 10% immune globulin intravenous (human)",
                      instruction="Octagam 10% 500 mg/kg IV every 4 weeks")
    return ex


EXAMPLES = [
    ex01_cvid_seed_002,
    ex02_cvid_complete,
    ex03_xla_new_start_si_units,
    ex04_continuation_with_start_date,
    ex05_cll_comparator,
    ex06_itp_acute_course,
    ex07_cidp_missing_diagnostics,
    ex08_mg_off_label_prior_therapy,
    ex09_ms_off_label_missing_failure,
    ex10_experimental_alzheimers,
    ex11_unlisted_indication,
    ex12_no_indication,
    ex13_entered_in_error,
    ex14_weight_stale_dose_high,
    ex15_kawasaki_child,
    ex16_cidp_complete,
    ex17_draft_order_uncoded_mgkg,
]


# --------------------------------------------------------------------------
# Coverage: who pays, which chooses the ruleset (smart_app/data/payers.toml)
# --------------------------------------------------------------------------
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
PAYER_ID_SYSTEM = "http://example.org/fhir/sid/payer-id"


def add_bcbsmt_coverage(ex: Example) -> None:
    """Every example is insured by BCBS of Montana (plan year 2025), so a Bundle evaluated
    without --ruleset is judged by bcbsmt-ig-2013 through the payer map; the aaaai-pi
    outcomes in README stay reachable with --ruleset aaaai-pi. Added last, after the
    clinical resources, so nothing else in the example changes."""
    payer = ex.add({
        "resourceType": "Organization",
        "id": ex.rid("payer"),
        "identifier": [{"system": PAYER_ID_SYSTEM, "value": "bcbsmt-example"}],
        "active": True,
        "type": [concept(("http://terminology.hl7.org/CodeSystem/organization-type", "ins",
                          "Insurance Company"))],
        "name": "Blue Cross and Blue Shield of Montana",
    })
    ex.add({
        "resourceType": "Coverage",
        "id": ex.rid("coverage"),
        "status": "active",
        "type": concept(("http://terminology.hl7.org/CodeSystem/v3-ActCode", "HIP",
                         "health insurance plan policy")),
        "subscriberId": f"SYN{ex.number:06d}",
        "beneficiary": ex.subject(),
        "relationship": concept(("http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                                 "self", "Self")),
        "period": {"start": "2025-01-01", "end": "2025-12-31"},
        "payor": [ref(payer)],
        "class": [{"type": concept((COVERAGE_CLASS, "plan", "Plan")), "value": "SYN-PPO",
                   "name": "Synthetic PPO plan"}],
        "order": 1,
    })


def build_all() -> dict[str, dict]:
    """Return {file name: Bundle} for every example."""
    out = {}
    for make in EXAMPLES:
        ex = make()
        add_bcbsmt_coverage(ex)
        out[f"{ex.name}.json"] = ex.bundle()
    return out


def render(bundle: dict) -> str:
    return json.dumps(bundle, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="directory to write the NN-*.json files into (default: here)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for file_name, bundle in build_all().items():
        (args.out / file_name).write_text(render(bundle), encoding="utf-8")
        print(f"wrote {args.out / file_name} ({len(bundle['entry'])} resources)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
