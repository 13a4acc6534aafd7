"""Builders for FHIR R4 resource dicts and a one-call evaluation for engine tests.

Every builder returns a plain dict shaped like the FHIR R4 JSON the app reads from a
Bundle. Ids are generated (``<prefix>-<n>``) unless given, so a test only names the
resources it refers to (e.g. ``condition(..., id="dx")`` and ``ivig_request(reason="dx")``).

``run(resources, ruleset_id, as_of)`` turns a list of resources into a
``fhir_mappings.bundle.PatientRecord`` (the Patient is taken from the list, or a default
adult is added), extracts the facts, evaluates them and returns the report dict
(CONTRACT §2).
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any

from fhir_mappings import extract_facts
from fhir_mappings.bundle import PatientRecord
from smart_app.engine.evaluate import evaluate
from smart_app.engine.model import get_ruleset
from smart_app.report import build_report

AS_OF = "2025-06-30"

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
CPT = "http://www.ama-assn.org/go/cpt"
CVX = "http://hl7.org/fhir/sid/cvx"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

SEVERE = {"coding": [{"system": SNOMED, "code": "24484000", "display": "Severe"}]}
SEVERITY = {
    "mild": {"coding": [{"system": SNOMED, "code": "255604002", "display": "Mild"}]},
    "moderate": {"coding": [{"system": SNOMED, "code": "6736007", "display": "Moderate"}]},
    "severe": SEVERE,
    "life-threatening": {"coding": [{"system": SNOMED, "code": "442452003",
                                     "display": "Life threatening severity"}]},
}
QUALITATIVE = {
    "negative": {"system": SNOMED, "code": "260385009", "display": "Negative"},
    "positive": {"system": SNOMED, "code": "10828004", "display": "Positive"},
}
ROUTES = {
    "IV": {"system": SNOMED, "code": "47625008", "display": "Intravenous route"},
    "SC": {"system": SNOMED, "code": "34206005", "display": "Subcutaneous route"},
}

_ids = itertools.count(1)


def _id(prefix: str, given: str | None) -> str:
    return given or f"{prefix}-{next(_ids)}"


def ago(days: int, as_of: str = AS_OF) -> str:
    """The ISO date `days` days before the as-of date (negative: after)."""
    return (date.fromisoformat(as_of) - timedelta(days=days)).isoformat()


def _ref(target: str | dict[str, Any], default_type: str) -> dict[str, str]:
    if isinstance(target, dict):
        return {"reference": f"{target['resourceType']}/{target['id']}"}
    return {"reference": target if "/" in target else f"{default_type}/{target}"}


def cc(code: str | None = None, system: str | None = None, display: str = "", text: str | None = None) -> dict:
    concept: dict[str, Any] = {}
    if code is not None:
        coding = {"system": system, "code": code}
        if display:
            coding["display"] = display
        concept["coding"] = [coding]
    if text is not None:
        concept["text"] = text
    return concept


# --- Patient -----------------------------------------------------------------------------
def patient(birth: str | None = "1980-03-15", id: str = "p1", gender: str = "female") -> dict:
    res: dict[str, Any] = {"resourceType": "Patient", "id": id, "gender": gender}
    if birth is not None:
        res["birthDate"] = birth
    return res


def child(years: int, id: str = "p1") -> dict:
    """A patient who is `years` old (plus a few months) on the as-of date."""
    return patient(ago(365 * years + 100), id=id)


# --- Condition ---------------------------------------------------------------------------
def condition(
    code: str | None,
    display: str = "",
    *,
    system: str = ICD10,
    text: str | None = None,
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    severe: bool = False,
    severity: str | None = None,
    onset: str | None = None,
    recorded: str | None = None,
    note: str | None = None,
    id: str | None = None,
) -> dict:
    """A Condition; ``severity`` is mild / moderate / severe / life-threatening (``severe=True``
    is severity severe), ``note`` a Condition.note text."""
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "id": _id("cond", id),
        "subject": {"reference": "Patient/p1"},
        "code": cc(code, system, display, text if text is not None else (display or None)),
    }
    if clinical is not None:
        res["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": clinical}]}
    if verification is not None:
        res["verificationStatus"] = {"coding": [{"system": VERIFICATION, "code": verification}]}
    if severe or severity:
        res["severity"] = SEVERITY[severity or "severe"]
    if onset is not None:
        res["onsetDateTime"] = onset
    if recorded is not None:
        res["recordedDate"] = recorded
    if note is not None:
        res["note"] = [{"text": note}]
    return res


def infection(code: str = "J18.9", when: str | None = None, display: str = "Pneumonia", **kw) -> dict:
    """A bacterial infection Condition (resolved by default: history still counts)."""
    kw.setdefault("clinical", "resolved")
    return condition(code, display, onset=when or ago(200), **kw)


# --- Observation -------------------------------------------------------------------------
def observation(
    code: str | None,
    display: str = "",
    *,
    system: str = LOINC,
    text: str | None = None,
    value: float | None = None,
    unit: str | None = None,
    comparator: str | None = None,
    result: str | None = None,
    value_string: str | None = None,
    ref_low: float | None = None,
    ref_high: float | None = None,
    ref_unit: str | None = None,
    interpretation: str | None = None,
    when: str | None = None,
    status: str = "final",
    id: str | None = None,
) -> dict:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id("obs", id),
        "status": status,
        "code": cc(code, system, display, text if text is not None else (display or None)),
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when or ago(30),
    }
    if value is not None:
        q: dict[str, Any] = {"value": value}
        if unit is not None:
            q.update({"unit": unit, "system": UCUM, "code": unit})
        if comparator is not None:
            q["comparator"] = comparator
        res["valueQuantity"] = q
    elif result is not None:
        res["valueCodeableConcept"] = {"coding": [QUALITATIVE[result]], "text": result.capitalize()}
    elif value_string is not None:
        res["valueString"] = value_string
    if ref_low is not None or ref_high is not None:
        rr: dict[str, Any] = {}
        u = ref_unit or unit
        if ref_low is not None:
            rr["low"] = {"value": ref_low, **({"unit": u, "system": UCUM, "code": u} if u else {})}
        if ref_high is not None:
            rr["high"] = {"value": ref_high, **({"unit": u, "system": UCUM, "code": u} if u else {})}
        res["referenceRange"] = [rr]
    if interpretation is not None:
        res["interpretation"] = [{"coding": [{"system": INTERP, "code": interpretation}]}]
    return res


def igg(value: float, when: str | None = None, unit: str = "mg/dL", **kw) -> dict:
    return observation("2465-3", "IgG [Mass/volume] in Serum or Plasma", value=value, unit=unit,
                       when=when, **kw)


def igg_subclass(value: float, when: str, *, loinc: str = "2467-9", ref_low: float | None = 120,
                 **kw) -> dict:
    """IgG subclass (default IgG2) with the laboratory's reference-range low."""
    return observation(loinc, "IgG subclass [Mass/volume] in Serum", value=value, unit="mg/dL",
                       ref_low=ref_low, when=when, **kw)


def weight(kg: float, when: str | None = None, unit: str = "kg", **kw) -> dict:
    return observation("29463-7", "Body weight", value=kg, unit=unit, when=when or ago(10), **kw)


def platelets(per_ul: float, when: str | None = None, **kw) -> dict:
    """Platelet count given per µL, recorded in 10*3/uL as labs report it."""
    return observation("777-3", "Platelets [#/volume] in Blood by Automated count",
                       value=per_ul / 1000, unit="10*3/uL", when=when or ago(3), **kw)


def pneumo_titer(value: float, when: str, *, loinc: str = "27092-6", **kw) -> dict:
    kw.setdefault("ref_low", 1.3)
    return observation(loinc, "Streptococcus pneumoniae IgG Ab [Mass/volume] in Serum",
                       value=value, unit="ug/mL", when=when, **kw)


def tetanus_titer(value: float, when: str, *, protective: float | None = 0.10, **kw) -> dict:
    return observation("22203-4", "Clostridium tetani IgG Ab [Units/volume] in Serum",
                       value=value, unit="[IU]/mL", ref_low=protective, when=when, **kw)


def hiv_test(result: str = "negative", when: str | None = None, **kw) -> dict:
    return observation("56888-1", "HIV 1+2 Ab+HIV1 p24 Ag [Presence] in Serum or Plasma",
                       result=result, when=when or ago(60), **kw)


def albumin(g_dl: float = 4.1, when: str | None = None, **kw) -> dict:
    return observation("1751-7", "Albumin [Mass/volume] in Serum or Plasma", value=g_dl,
                       unit="g/dL", when=when or ago(60), **kw)


def urine_protein(mg_day: float = 80, when: str | None = None, **kw) -> dict:
    return observation("2889-4", "Protein [Mass/time] in 24 hour Urine", value=mg_day,
                       unit="mg/(24.h)", when=when or ago(60), **kw)


def csf_cells(per_ul: float, when: str | None = None, **kw) -> dict:
    return observation("26465-5", "Leukocytes [#/volume] in Cerebral spinal fluid",
                       value=per_ul, unit="/uL", when=when or ago(40), **kw)


def csf_vdrl(result: str = "negative", when: str | None = None, **kw) -> dict:
    return observation("5290-2", "Reagin Ab [Presence] in Cerebral spinal fluid by VDRL",
                       result=result, when=when or ago(40), **kw)


def anti_gad(result: str = "positive", when: str | None = None, **kw) -> dict:
    return observation(None, text="GAD65 antibody (anti-GAD)", result=result,
                       when=when or ago(50), **kw)


def parvovirus_lab(result: str = "positive", when: str | None = None, **kw) -> dict:
    return observation(None, text="Parvovirus B19 DNA PCR", result=result,
                       when=when or ago(20), **kw)


# --- Immunization ------------------------------------------------------------------------
def immunization(cvx: str, when: str, text: str = "", status: str = "completed",
                 id: str | None = None) -> dict:
    return {
        "resourceType": "Immunization",
        "id": _id("imm", id),
        "status": status,
        "vaccineCode": cc(cvx, CVX, text, text or None),
        "patient": {"reference": "Patient/p1"},
        "occurrenceDateTime": when,
    }


def ppsv23(when: str, **kw) -> dict:
    return immunization("33", when, "Pneumovax 23", **kw)


def td_vaccine(when: str, **kw) -> dict:
    return immunization("09", when, "Td (adult)", **kw)


# --- Immune globulin ---------------------------------------------------------------------
def ig_concept(text: str = "Privigen", rxnorm: str | None = "1426680") -> dict:
    return cc(rxnorm, RXNORM, "immunoglobulin G, human", text) if rxnorm else {"text": text}


def ivig_request(
    dose: float | None = 35,
    unit: str = "g",
    *,
    every: float | None = 4,
    period_unit: str = "wk",
    count: int | None = None,
    status: str = "active",
    reason: str | dict | None = None,
    reason_code: tuple[str, str] | None = None,
    text: str = "Privigen",
    rxnorm: str | None = "1426680",
    route: str | None = "IV",
    authored: str | None = None,
    prior: str | None = None,
    id: str | None = None,
) -> dict:
    """An IVIG/SCIG MedicationRequest: ``dose`` in g, g/kg, mg/kg or mL every ``every`` units;
    ``count`` = number of doses of an acute course (Timing.repeat.count)."""
    dosage: dict[str, Any] = {}
    repeat: dict[str, Any] = {}
    if every is not None:
        repeat.update({"frequency": 1, "period": every, "periodUnit": period_unit})
    if count is not None:
        repeat["count"] = count
        if every is None:
            repeat.update({"frequency": 1, "period": 1, "periodUnit": "d"})
    if repeat:
        dosage["timing"] = {"repeat": repeat}
    if route is not None:
        dosage["route"] = {"coding": [ROUTES[route]]}
    if dose is not None:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": dose, "unit": unit, "system": UCUM, "code": unit}}]
    res: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": _id("ivig-order", id),
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": ig_concept(text, rxnorm),
        "subject": {"reference": "Patient/p1"},
        "authoredOn": authored or ago(5),
        "dosageInstruction": [dosage],
    }
    if reason is not None:
        res["reasonReference"] = [_ref(reason, "Condition")]
    if reason_code is not None:
        code, display = reason_code
        res["reasonCode"] = [cc(code, ICD10, display, display)]
    if prior is not None:
        res["priorPrescription"] = _ref(prior, "MedicationRequest")
    return res


def scig_request(dose: float = 8, **kw) -> dict:
    kw.setdefault("every", 1)
    kw.setdefault("text", "Hizentra 20%")
    kw.setdefault("route", "SC")
    return ivig_request(dose, **kw)


def ivig_admin(when: str | None, status: str = "completed", text: str = "Privigen",
               dose_g: float = 35, id: str | None = None) -> dict:
    res: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": _id("ivig-admin", id),
        "status": status,
        "medicationCodeableConcept": ig_concept(text),
        "subject": {"reference": "Patient/p1"},
        "dosage": {"dose": {"value": dose_g, "unit": "g", "system": UCUM, "code": "g"}},
    }
    if when is not None:
        res["effectiveDateTime"] = when
    return res


def ivig_statement(start: str | None = None, status: str = "active", text: str = "Privigen",
                   asserted: str | None = None, id: str | None = None) -> dict:
    res: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "id": _id("ivig-stmt", id),
        "status": status,
        "medicationCodeableConcept": ig_concept(text),
        "subject": {"reference": "Patient/p1"},
    }
    if start is not None:
        res["effectivePeriod"] = {"start": start}
    if asserted is not None:
        res["dateAsserted"] = asserted
    return res


# --- other medications, intolerances, procedures, reports ---------------------------------
def med_statement(text: str, status: str = "stopped", reason: str | None = "ineffective",
                  when: str | None = None, id: str | None = None, route: str | None = None,
                  end: str | None = None, note: str | None = None, reason_code: str | None = None) -> dict:
    """A standard-therapy MedicationStatement (``stopped`` + statusReason = failed).

    ``route``: a SNOMED route coding (oral, IV, topical …) in ``dosage``; ``reason_code``: a
    reasonCode text (why the drug was taken)."""
    res: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "id": _id("med-stmt", id),
        "status": status,
        "medicationCodeableConcept": {"text": text},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": when or ago(400)},
    }
    if end is not None:
        res["effectivePeriod"]["end"] = end
    if reason is not None:
        res["statusReason"] = [{"text": reason}]
    if route is not None:
        res["dosage"] = [{"route": {"coding": [ROUTE_CODES[route]]}}]
    if note is not None:
        res["note"] = [{"text": note}]
    if reason_code is not None:
        res["reasonCode"] = [{"text": reason_code}]
    return res


ROUTE_CODES = {
    "oral": {"system": SNOMED, "code": "26643006", "display": "Oral route"},
    "IV": {"system": SNOMED, "code": "47625008", "display": "Intravenous route"},
    "topical": {"system": SNOMED, "code": "6064005", "display": "Topical route"},
    "inhaled": {"system": SNOMED, "code": "447694001", "display": "Respiratory tract route"},
    "ophthalmic": {"system": SNOMED, "code": "54485002", "display": "Ophthalmic route"},
}


def med_request(text: str, status: str = "active", when: str | None = None,
                id: str | None = None, reason: str | None = None, route: str | None = None) -> dict:
    """A MedicationRequest for a standard therapy; ``reason`` is its statusReason text."""
    res: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": _id("med-req", id),
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"text": text},
        "subject": {"reference": "Patient/p1"},
        "authoredOn": when or ago(100),
    }
    if reason is not None:
        res["statusReason"] = {"text": reason}
    if route is not None:
        res["dosageInstruction"] = [{"route": {"coding": [ROUTE_CODES[route]]}}]
    return res


def finding(text: str, when: str | None = None, value: Any = True, code: str | None = None,
            id: str | None = None) -> dict:
    """A clinical-finding Observation (exam finding) named by ``text`` (or a SNOMED ``code``)."""
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id("finding", id),
        "status": "final",
        "code": cc(code, SNOMED, text, text) if code else {"text": text},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when or ago(5),
    }
    if isinstance(value, bool):
        res["valueBoolean"] = value
    elif isinstance(value, str):
        res["valueString"] = value
    return res


def intolerance(text: str, note: str = "intolerance", id: str | None = None,
                type: str = "intolerance", clinical: str | None = None) -> dict:
    """An AllergyIntolerance for a drug: ``type`` intolerance (not tolerated) or allergy
    (contraindicated); ``clinical`` an optional clinicalStatus code."""
    res = {
        "resourceType": "AllergyIntolerance",
        "id": _id("allergy", id),
        "type": type,
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
            "code": "confirmed"}]},
        "code": {"text": text},
        "patient": {"reference": "Patient/p1"},
        "recordedDate": ago(300),
        "note": [{"text": note}],
    }
    if clinical is not None:
        res["clinicalStatus"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": clinical}]}
    return res


def procedure(cpt: str | None, text: str, when: str | None = None, status: str = "completed",
              id: str | None = None, outcome: str | None = None, status_reason: str | None = None,
              note: str | None = None) -> dict:
    """A Procedure; ``outcome`` is Procedure.outcome text ("Unsuccessful …"), ``status_reason``
    its statusReason text (e.g. why a not-done procedure was not done)."""
    res: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": _id("proc", id),
        "status": status,
        "code": cc(cpt, CPT, text, text) if cpt else {"text": text},
        "subject": {"reference": "Patient/p1"},
        "performedDateTime": when or ago(60),
    }
    if outcome is not None:
        res["outcome"] = {"text": outcome}
    if status_reason is not None:
        res["statusReason"] = {"text": status_reason}
    if note is not None:
        res["note"] = [{"text": note}]
    return res


def diagnostic_report(code: str | None, text: str, conclusion: str = "", *, system: str = CPT,
                      when: str | None = None, status: str = "final", id: str | None = None) -> dict:
    res: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": _id("report", id),
        "status": status,
        "code": cc(code, system, text, text) if code else {"text": text},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when or ago(60),
    }
    if conclusion:
        res["conclusion"] = conclusion
    return res


# --- evaluation ----------------------------------------------------------------------------
def flatten(parts: Any) -> list[dict]:
    """Resources from a list, or from a dict of named parts (each a resource or a list)."""
    items = parts.values() if isinstance(parts, dict) else parts
    out: list[dict] = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, dict):
            out.append(item)
        else:
            out.extend(flatten(item))
    return out


def run(resources: Any, ruleset_id: str, as_of: str = AS_OF) -> dict:
    """Evaluate the resources (a list or a dict of parts) and return the report dict."""
    resources = flatten(resources)
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    record = PatientRecord(
        patient=patients[0] if patients else patient(),
        resources=[r for r in resources if r["resourceType"] != "Patient"],
    )
    facts = extract_facts(record)
    ev = evaluate(facts, get_ruleset(ruleset_id), date.fromisoformat(as_of))
    return build_report(ev)


def criterion(report: dict, criterion_id: str) -> dict:
    found = [c for c in report["criteria"] if c["id"] == criterion_id]
    assert found, f"criterion {criterion_id!r} not in report; have {[c['id'] for c in report['criteria']]}"
    return found[0]


def missing_codes(report: dict) -> set[str]:
    return {m["code"] for m in report["missing_documentation"]}


def evidence_refs(report: dict) -> set[str]:
    """Every resource reference shown as evidence anywhere in the report."""
    refs: set[str] = set()
    for block in [report, *report["other_indications"]]:
        for c in block["criteria"]:
            refs |= {e["reference"] for e in c["evidence"]}
            for comp in c.get("components", []):
                refs |= {e["reference"] for e in comp["evidence"]}
    if report["indication"]:
        refs |= set(report["indication"]["evidence"])
    return refs
