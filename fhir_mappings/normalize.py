"""Normalisers: FHIR R4 resources (plain dicts) -> typed facts (``facts.py``).

Pure functions: no I/O. A resource that cannot be read is skipped with a warning that
names its reference, never its values (warnings reach logs and the report).

What does not count (CONTRACT §4): Observations with status entered-in-error, cancelled,
preliminary (and registered, which has no result yet); Conditions whose
verificationStatus is refuted or entered-in-error. Inactive/resolved Conditions are kept
with their status: they still count as infection history, not as the indication.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Iterable
from datetime import date
from functools import cache
from typing import Any

from . import units
from .bundle import PatientRecord
from .dates import parse_date
from .facts import (
    Diagnosis,
    Finding,
    IgExposure,
    IgOrder,
    Lab,
    PatientFacts,
    Therapy,
    Vaccination,
)
from .terminology import DATA_DIR, Match, Terminology, default_terminology
from .therapy_context import OutcomeRules, normalised_codings, outcome_rules, route_codes, route_rules

EXCLUDED_OBSERVATION_STATUS = {"entered-in-error", "cancelled", "preliminary", "registered"}
EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}
EXCLUDED_EVENT_STATUS = {"entered-in-error", "not-done", "cancelled"}
# Condition.severity (SNOMED CT): FHIR's condition-severity value set (mild, moderate, severe)
# plus "life threatening severity".
SEVERITY_SNOMED = {"255604002": "mild", "6736007": "moderate", "24484000": "severe",
                   "442452003": "life-threatening"}
SEVERITY_WORDS = {"mild": "mild", "moderate": "moderate", "severe": "severe",
                  "life threatening": "life-threatening", "life-threatening": "life-threatening"}
DOCUMENTED_FAILURE = "documented_failure"  # tag, not a value set: see _therapy_from_medication
# Statuses under which a therapy was actually given (or is being given). A cancelled or
# draft order, a not-taken statement and a not-done procedure were never given.
GIVEN_STATUS = {
    "MedicationStatement": {"active", "completed", "stopped", "on-hold"},
    "MedicationRequest": {"active", "on-hold", "completed", "stopped"},
    "MedicationAdministration": {"completed", "in-progress", "stopped", "on-hold"},
    "MedicationDispense": {"completed", "in-progress", "on-hold"},
    "Procedure": {"completed", "in-progress", "stopped"},
}
# A finding Observation whose value says the finding is absent does not document it.
ABSENT_WORDS = ("absent", "not present", "no", "negative", "none", "false")

# Lab value sets and the canonical unit each is converted to (None: kept as reported).
LAB_UNITS: dict[str, tuple[str, Callable[[float, str | None], float | None]] | None] = {
    "igg_total": ("mg/dL", units.to_mg_dl),
    "igg_subclasses": ("mg/dL", units.to_mg_dl),
    "iga": ("mg/dL", units.to_mg_dl),
    "igm": ("mg/dL", units.to_mg_dl),
    "ige": None,
    "pneumococcal_igg": ("ug/mL", units.to_ug_ml),
    "tetanus_igg": ("IU/mL", units.to_iu_ml),
    "diphtheria_igg": ("IU/mL", units.to_iu_ml),
    "hib_antibody": None,
    "measles_igg": None,
    "body_weight": ("kg", units.to_kg),
    "body_height": None,
    "platelets": ("/uL", units.to_per_ul),
    "hiv_test": None,
    "serum_albumin": ("mg/dL", units.to_mg_dl),
    "urine_protein": ("", units.to_urine),  # canonical unit per reading: mg/24h, mg/mg, mg/dL
    "urine_albumin": ("", units.to_urine),
    "protein_electrophoresis": None,
    "csf_cell_count": ("/uL", units.to_per_ul),
    "csf_vdrl": None,
    "csf_protein": ("mg/dL", units.to_mg_dl),
    "csf_igg": ("mg/dL", units.to_mg_dl),
    "anti_gad": None,
    "parvovirus_b19_lab": None,
    "cd19_percent": ("%", units.to_percent),
    "cd19_absolute": ("/uL", units.to_per_ul),
    "btk_mutation": None,
    "birth_weight": ("g", units.to_grams),
    "gestational_age": ("wk", units.to_weeks),
    "rh_type": None,
    "platelet_alloantibody": None,
    "renal_function": None,
}
# Kinds whose numeric value a criterion compares: a missing/unknown unit makes them unusable.
# A MedicationRequest in these states may be the order being placed or renewed.
CURRENT_ORDER_STATUS = {"active", "draft", "on-hold", "unknown"}
NUMERIC_KINDS = {k for k, v in LAB_UNITS.items() if v is not None}

POSITIVE_WORDS = ("positive", "reactive", "detected", "present")
NEGATIVE_WORDS = ("negative", "non-reactive", "nonreactive", "not detected", "absent", "none detected")
QUALITATIVE_SNOMED = {
    "260385009": "negative",
    "10828004": "positive",
    "260373001": "positive",  # detected
    "260415000": "negative",  # not detected
    "11214006": "positive",  # reactive
    "131194007": "negative",  # non-reactive
    "165747007": "positive",  # RhD positive
    "165746003": "negative",  # RhD negative
}
# Rh(D) type in the words of a result: "Rh positive", "RhD neg", "O Pos", "A NEG", "B+".
RH_WORDS = re.compile(r"\brh\s*(?:\(d\)|d)?\s*(?:type)?\s*[:\-]?\s*(positive|negative|pos|neg|\+|-)(?![a-z])",
                      re.IGNORECASE)
ABO_RH = re.compile(r"\b(?:A|B|AB|O)\s*(POS|NEG|Pos|Neg|pos|neg|positive|negative|Positive|Negative|\+|-)(?![A-Za-z])")
ROUTE_SNOMED = {"47625008": "IV", "34206005": "SC"}
VALUE_STRING = re.compile(
    r"^\s*(?P<cmp><=|>=|<|>|≤|≥)?\s*(?P<num>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>[^\d\s].*)?$"
)
CMP_ALIASES = {"≤": "<=", "≥": ">="}


@cache
def ig_products() -> tuple[dict[str, Any], ...]:
    """Immune globulin brands with route and concentration (``data/ig_products.toml``)."""
    path = DATA_DIR / "ig_products.toml"
    if not path.is_file():
        return ()
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    allowed = {"name", "route", "concentration_g_per_ml", "source", "status", "note", "aliases"}
    for product in data.get("product", []):
        unknown = set(product) - allowed
        if unknown:
            raise ValueError(f"ig_products.toml: unknown keys {sorted(unknown)} in {product.get('name')}")
    return tuple(data.get("product", []))


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id', '?')}"


def _text_of(cc: Any) -> str:
    if not isinstance(cc, dict):
        return ""
    if isinstance(cc.get("text"), str) and cc["text"].strip():
        return cc["text"].strip()
    for coding in cc.get("coding") or []:
        if isinstance(coding, dict) and isinstance(coding.get("display"), str):
            return coding["display"].strip()
    for coding in cc.get("coding") or []:
        if isinstance(coding, dict) and coding.get("code"):
            return str(coding["code"])
    return ""


def _codings(cc: Any) -> Iterable[dict[str, Any]]:
    if isinstance(cc, dict) and isinstance(cc.get("coding"), list):
        yield from (c for c in cc["coding"] if isinstance(c, dict))


def _first_code(cc: Any, system_hint: str = "") -> tuple[str, str, str]:
    for coding in _codings(cc):
        if isinstance(coding.get("code"), str) and (
            not system_hint or system_hint in str(coding.get("system", ""))
        ):
            return (str(coding.get("system", "")), coding["code"], str(coding.get("display", "")))
    return ("", "", _text_of(cc))


def _code_of(cc: Any, codes: dict[str, str]) -> str | None:
    for coding in _codings(cc):
        if coding.get("code") in codes:
            return codes[coding["code"]]
    return None


def _status_code(cc: Any) -> str | None:
    for coding in _codings(cc):
        if isinstance(coding.get("code"), str):
            return coding["code"]
    return None


def _effective_date(resource: dict[str, Any], *keys: str) -> date | None:
    for key in keys:
        value = resource.get(key)
        if isinstance(value, dict):  # Period
            value = value.get("start")
        if isinstance(value, str):
            parsed = parse_date(value)
            if parsed is not None:
                return parsed
    return None


class _Reader:
    """Reads one PatientRecord into PatientFacts."""

    def __init__(self, record: PatientRecord, terminology: Terminology):
        self.record = record
        self.tx = terminology
        self.facts = PatientFacts(
            patient_ref=record.patient_ref,
            birth_date=parse_date(record.patient.get("birthDate"))
            if isinstance(record.patient.get("birthDate"), str)
            else None,
            warnings=list(record.warnings),
            not_accessible=set(record.not_accessible),
            not_available=set(record.not_available),
        )
        self.index: dict[str, dict[str, Any]] = dict(record.full_urls)
        for res in record.resources:
            self.index[_ref(res)] = res
        if isinstance(record.patient.get("birthDate"), str) and self.facts.birth_date is None:
            self.facts.warnings.append(f"{record.patient_ref}: birthDate is not a valid date")
        # Warnings already given, for de-duplication in constant time (facts.warnings keeps
        # the order): a record of 20,000 unit-less results gives 20,000 checks, not 20,000².
        self._warned: set[str] = set(self.facts.warnings)

    def warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.facts.warnings.append(message)

    def matches(self, cc: Any, ref: str) -> list[Match]:
        found = self.tx.match_concept(cc)
        self._warn_unverified(found, ref)
        return found

    def _warn_unverified(self, found: list[Match], ref: str) -> None:
        if found and not all(m.concept.verified for m in found):
            self.warn(f"{ref}: recognised by a code whose meaning this app has not yet confirmed "
                      "against the official code list; check that the entry is what the criterion needs")

    # --- dispatch -----------------------------------------------------------------------
    def read(self) -> PatientFacts:
        handlers = {
            "Observation": self.observation,
            "Condition": self.condition,
            "MedicationRequest": self.medication_request,
            "MedicationAdministration": self.medication_event,
            "MedicationDispense": self.medication_event,
            "MedicationStatement": self.medication_event,
            "Immunization": self.immunization,
            "Procedure": self.procedure,
            "DiagnosticReport": self.diagnostic_report,
            "AllergyIntolerance": self.allergy,
        }
        for resource in self.record.resources:
            handler = handlers.get(resource.get("resourceType"))
            if handler is None:
                continue
            try:
                handler(resource)
            except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError):
                self.warn(f"{_ref(resource)} could not be read and was skipped")
        for labs in self.facts.labs.values():
            labs.sort(key=lambda lab: (lab.date or date.min, lab.ref))
        self.facts.diagnoses.sort(key=lambda d: (d.when or date.min, d.ref))
        return self.facts

    # --- Observation --------------------------------------------------------------------
    def observation(self, obs: dict[str, Any]) -> None:
        if obs.get("status") in EXCLUDED_OBSERVATION_STATUS:
            return
        found = self.tx.match_concept(obs.get("code"))
        if not found:  # most of a chart (vital signs, routine labs): nothing more to read
            return
        ref = _ref(obs)
        self._warn_unverified(found, ref)
        findings = frozenset(m.valueset for m in found if m.valueset.startswith("finding_"))
        if findings:
            self._finding_observation(obs, ref, findings)
        kinds = [m for m in found if m.valueset in LAB_UNITS]
        if not kinds:
            return
        when = _effective_date(obs, "effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued")
        for raw in ("effectiveDateTime", "issued"):
            if isinstance(obs.get(raw), str) and parse_date(obs[raw]) is None:
                self.warn(f"{ref}: {raw} is not a valid date; the result is not dated")
        for match in {m.valueset: m for m in kinds}.values():
            lab = self._lab(obs, match, ref, when)
            if lab is not None:
                self.facts.labs.setdefault(lab.kind, []).append(lab)

    def _finding_observation(self, obs: dict[str, Any], ref: str, valuesets: frozenset[str]) -> None:
        """A clinical finding recorded as an Observation (e.g. areflexia on examination).

        Its value must not say the finding is absent (valueBoolean false, "absent", a
        negative interpretation)."""
        value_text = ""
        if isinstance(obs.get("valueBoolean"), bool):
            if not obs["valueBoolean"]:
                return
        elif isinstance(obs.get("valueCodeableConcept"), dict):
            cc = obs["valueCodeableConcept"]
            if _code_of(cc, QUALITATIVE_SNOMED) == "negative":
                return
            value_text = _text_of(cc)
        elif isinstance(obs.get("valueString"), str):
            value_text = obs["valueString"]
        if value_text.strip().lower() in ABSENT_WORDS:
            return
        if _status_code((obs.get("interpretation") or [None])[0]) in {"NEG", "ND"}:
            return
        when = _effective_date(obs, "effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued")
        note = "; ".join(n["text"] for n in obs.get("note") or [] if isinstance(n, dict)
                         and isinstance(n.get("text"), str))
        conclusion = "; ".join(t for t in (value_text, note) if t)
        self.facts.findings.append(Finding(ref, valuesets, when, _text_of(obs.get("code")),
                                           conclusion, self.conclusion_valuesets(conclusion)))

    def text_valuesets(self, text: str) -> frozenset[str]:
        """Value sets a report's or note's own words affirm ("no evidence of demyelination",
        "AMR ruled out" and "r/o AMR" affirm nothing: terminology.TextContext)."""
        if not text:
            return frozenset()
        return frozenset(m.valueset for m in self.tx.match_text(text))

    def conclusion_valuesets(self, text: str) -> frozenset[str]:
        """A report's or result's conclusion: nothing when the report disclaims itself
        ("findings equivocal, not diagnostic"), else what its words affirm."""
        if not text or self.tx.context.disclaimer(text):
            return frozenset()
        return self.text_valuesets(text)

    def _lab(self, obs: dict[str, Any], match: Match, ref: str, when: date | None) -> Lab | None:
        kind = match.valueset
        conversion = LAB_UNITS[kind]
        interpretation = _status_code((obs.get("interpretation") or [None])[0])
        label = match.concept.display or _text_of(obs.get("code"))
        value: float | None = None
        unit_in: str | None = None
        comparator: str | None = None
        qualitative: str | None = None
        if isinstance(obs.get("valueQuantity"), dict):
            q = obs["valueQuantity"]
            value = _number(q.get("value"))
            unit_in = q.get("code") or q.get("unit")
            comparator = q.get("comparator") if q.get("comparator") in {"<", "<=", ">", ">="} else None
        elif isinstance(obs.get("valueString"), str) and kind == "rh_type":
            qualitative = _rh_text(obs["valueString"])
        elif isinstance(obs.get("valueString"), str):
            parsed = VALUE_STRING.match(obs["valueString"])
            if parsed:
                value = _number(float(parsed["num"]))  # "1e400 kg" is inf: not a value
                cmp = parsed["cmp"]
                comparator = CMP_ALIASES.get(cmp, cmp) if cmp else None
                unit_in = (parsed["unit"] or "").strip() or None
                if unit_in is None and isinstance(obs.get("valueString"), str):
                    unit_in = None
            else:
                qualitative = _qualitative_text(obs["valueString"])
        elif isinstance(obs.get("valueCodeableConcept"), dict):
            cc = obs["valueCodeableConcept"]
            words = _rh_text if kind == "rh_type" else _qualitative_text
            qualitative = _code_of(cc, QUALITATIVE_SNOMED) or words(_text_of(cc))
        elif isinstance(obs.get("valueInteger"), int):
            value = _number(obs["valueInteger"])
        if qualitative is None and interpretation in {"POS", "DET"}:
            qualitative = "positive"
        if qualitative is None and interpretation in {"NEG", "ND"}:
            qualitative = "negative"

        ref_low = ref_high = None
        for rr in obs.get("referenceRange") or []:
            if not isinstance(rr, dict):
                continue
            for key in ("low", "high"):
                bound = rr.get(key)
                raw = _number(bound.get("value")) if isinstance(bound, dict) else None
                if raw is None:
                    continue
                value_at = conversion[1](raw, bound.get("code") or bound.get("unit") or unit_in) if conversion else raw
                value_at = value_at[0] if isinstance(value_at, tuple) else value_at
                if key == "low" and ref_low is None:
                    ref_low = value_at
                elif key == "high" and ref_high is None:
                    ref_high = value_at
            if ref_low is not None or ref_high is not None:
                break

        if value is None:
            if qualitative is None:
                return None
            return Lab(kind, ref, when, None, "", None, None, interpretation, qualitative, label)
        if conversion is None:
            return Lab(
                kind, ref, when, value, unit_in or "", comparator, ref_low, interpretation,
                qualitative, label, ref_high,
            )
        canonical, convert = conversion
        if unit_in is None:
            self.warn(f"{ref}: {label or kind} has a value without a unit and was not used")
            return None
        converted = convert(value, unit_in)
        if converted is None:
            self.warn(f"{ref}: unit {unit_in!r} is not recognised for {label or kind}; not used")
            return None
        if isinstance(converted, tuple):
            converted, canonical = converted
        return Lab(kind, ref, when, converted, canonical, comparator, ref_low, interpretation, None,
                   label, ref_high)

    # --- Condition ----------------------------------------------------------------------
    def condition(self, cond: dict[str, Any]) -> None:
        if _status_code(cond.get("verificationStatus")) in EXCLUDED_VERIFICATION:
            return
        ref = _ref(cond)
        # Conditions in no value set are kept too: an order may name one as its reason,
        # which makes it an unlisted indication (CONTRACT §2).
        found = self.matches(cond.get("code"), ref)
        system, code, display = _first_code(cond.get("code"))
        onset = _effective_date(cond, "onsetDateTime", "onsetPeriod")
        recorded = _effective_date(cond, "recordedDate")
        for raw in ("onsetDateTime", "recordedDate"):
            if isinstance(cond.get(raw), str) and parse_date(cond[raw]) is None:
                self.warn(f"{ref}: {raw} is not a valid date")
        notes = "; ".join(n["text"] for n in cond.get("note") or []
                          if isinstance(n, dict) and isinstance(n.get("text"), str))
        self.facts.diagnoses.append(
            Diagnosis(
                ref=ref,
                valuesets=frozenset(m.valueset for m in found),
                code=code,
                display=_text_of(cond.get("code")) or display,
                onset=onset,
                recorded=recorded,
                clinical_status=_status_code(cond.get("clinicalStatus")),
                severity=_severity(cond.get("severity")),
                unverified_codes=tuple(sorted({m.matched for m in found if not m.concept.verified})),
                codes=frozenset(_condition_codes(cond.get("code"))),
                verification=_status_code(cond.get("verificationStatus")),
                abatement=_effective_date(cond, "abatementDateTime", "abatementPeriod"),
                episode=any(self.tx.current_only(m.valueset) for m in found),
                note_valuesets=self.text_valuesets(notes),
                hedged=self.tx.context.hedge(f"{_text_of(cond.get('code'))}; {notes}"),
            )
        )

    # --- Medications --------------------------------------------------------------------
    def medication_resource(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """The Medication a medicationReference points to (contained or in the record)."""
        mref = resource.get("medicationReference")
        if not (isinstance(mref, dict) and isinstance(mref.get("reference"), str)):
            return None
        target = mref["reference"]
        if target.startswith("#"):
            for contained in resource.get("contained") or []:
                if isinstance(contained, dict) and contained.get("id") == target[1:]:
                    return contained
            return None
        med = self.index.get(target)
        if med is None and "/" in target:
            med = self.index.get("/".join(target.rstrip("/").split("/")[-2:]))
        return med

    def medication_concept(self, resource: dict[str, Any]) -> Any:
        if isinstance(resource.get("medicationCodeableConcept"), dict):
            return resource["medicationCodeableConcept"]
        mref = resource.get("medicationReference")
        if isinstance(mref, dict) and isinstance(mref.get("reference"), str):
            med = self.medication_resource(resource)
            if med is not None:
                return med.get("code")
            if mref["reference"].startswith("#"):
                return None
            if isinstance(mref.get("display"), str):
                return {"text": mref["display"]}
            self.warn(f"{_ref(resource)}: its Medication ({mref['reference']}) is not in the record")
        return None

    def is_ig(self, cc: Any, ref: str) -> tuple[bool, str]:
        found = self.matches(cc, ref)
        names = {m.valueset for m in found}
        if "ig_product" not in names or names & {"hyperimmune_globulin", "tx_rh_immune_globulin"}:
            return False, ""
        if all(m.concept.system == "text" for m in found if m.valueset == "ig_product"):
            self.warn(f"{ref}: immune globulin product recognised by its name only (no code)")
        return True, _text_of(cc) or "immune globulin"

    def therapy_valuesets(self, cc: Any, ref: str) -> frozenset[str]:
        return frozenset(
            m.valueset
            for m in self.matches(cc, ref)
            if m.valueset.startswith("tx_")
            or m.valueset in {"anti_cd20", "hypogam_drug", "systemic_immunosuppressant"}
        )

    def medication_request(self, req: dict[str, Any]) -> None:
        status = str(req.get("status", "unknown"))
        if status == "entered-in-error":  # not evidence of anything, and no warnings about it
            return
        ref = _ref(req)
        cc = self.medication_concept(req)
        if cc is None and isinstance(req.get("medicationReference"), dict) and status in CURRENT_ORDER_STATUS:
            self.facts.unreadable_orders.append(ref)
        ig, product = self.is_ig(cc, ref)
        if not ig:
            self._therapy_from_medication(req, cc, ref, "authoredOn")
            return
        self.facts.ig_orders.append(self._order(req, ref, status, product, cc))

    def _order(self, req: dict[str, Any], ref: str, status: str, product: str, cc: Any) -> IgOrder:
        dosage = (req.get("dosageInstruction") or [{}])[0]
        dosage = dosage if isinstance(dosage, dict) else {}
        route = _code_of(dosage.get("route"), ROUTE_SNOMED)
        if route is None:
            names = self.tx.names_of(cc)
            route_text = _text_of(dosage.get("route")).lower()
            if "ig_product_subcutaneous" in names or "subcut" in route_text:
                route = "SC"
            elif "intravenous" in route_text or route_text == "iv":
                route = "IV"
        dose_g = dose_mg_kg = None
        note = ""
        dar = (dosage.get("doseAndRate") or [{}])[0]
        q = dar.get("doseQuantity") if isinstance(dar, dict) else None
        value = _number(q.get("value")) if isinstance(q, dict) else None
        if value is not None and value > 0:
            unit = q.get("code") or q.get("unit")
            dose_g = units.to_g(value, unit)
            if dose_g is None:
                dose_mg_kg = units.to_mg_per_kg(value, unit)
            if dose_g is None and dose_mg_kg is None:
                ml = units.to_ml(value, unit)
                conc = product_concentration(cc, self.tx)
                if ml is not None and conc is not None:
                    dose_g = ml * conc
                    note = f"{value:g} mL of a {conc * 100:g}% product"
                elif ml is not None:
                    self.warn(f"{ref}: dose in mL but the product's concentration is unknown")
                else:
                    self.warn(f"{ref}: dose unit {unit!r} is not recognised")
        repeat = (dosage.get("timing") or {}).get("repeat") or {}
        interval = None
        period, period_unit = _number(repeat.get("period")), repeat.get("periodUnit")
        frequency = _number(repeat.get("frequency")) or 1
        if period and period > 0 and period_unit in units.PERIOD_DAYS and frequency > 0:
            interval = period * units.PERIOD_DAYS[period_unit] / frequency
        count = repeat.get("count")
        count = count if isinstance(count, int) and not isinstance(count, bool) and 0 < count < 1000 else None
        reason_refs = tuple(
            r["reference"]
            for r in req.get("reasonReference") or []
            if isinstance(r, dict) and isinstance(r.get("reference"), str)
        )
        reason_vs: set[str] = set()
        reason_codes = []
        reason_keys: set[tuple[str, str]] = set()
        for rc in req.get("reasonCode") or []:
            reason_vs |= {m.valueset for m in self.matches(rc, ref)}
            reason_codes.append(_first_code(rc))
            reason_keys |= _condition_codes(rc)
        return IgOrder(
            ref=ref,
            status=status,
            product=product,
            route=route,
            authored=_effective_date(req, "authoredOn"),
            dose_g=dose_g,
            dose_mg_per_kg=dose_mg_kg,
            interval_days=interval,
            course_count=count,
            reason_refs=reason_refs,
            reason_valuesets=frozenset(reason_vs),
            reason_codes=tuple(reason_codes),
            reason_code_keys=frozenset(reason_keys),
            prior_prescription=isinstance(req.get("priorPrescription"), dict),
            dose_note=note,
        )

    def medication_event(self, event: dict[str, Any]) -> None:
        ref = _ref(event)
        status = str(event.get("status", "unknown"))
        if status in EXCLUDED_EVENT_STATUS:
            return
        cc = self.medication_concept(event)
        ig, product = self.is_ig(cc, ref)
        keys = ("effectiveDateTime", "effectivePeriod", "whenHandedOver", "whenPrepared",
                "dateAsserted")
        if event["resourceType"] == "MedicationStatement":
            keys = ("effectiveDateTime", "effectivePeriod")  # dateAsserted is not a start
        if not ig:
            self._therapy_from_medication(event, cc, ref, *keys)
            return
        if event["resourceType"] == "MedicationStatement" and status in {"not-taken", "intended"}:
            return
        kind = {
            "MedicationAdministration": "administration",
            "MedicationDispense": "dispense",
            "MedicationStatement": "statement",
        }[event["resourceType"]]
        self.facts.ig_exposures.append(
            IgExposure(kind, ref, _effective_date(event, *keys), status, product, _period_end(event))
        )

    def _therapy_from_medication(self, res: dict[str, Any], cc: Any, ref: str, *keys: str) -> None:
        vs = self.therapy_valuesets(cc, ref)
        outcomes, reason = self.stated_outcomes(res)
        if not vs and outcomes:
            # Any medication whose record states it failed, was not tolerated or is
            # contraindicated: the appeal path of a not-covered indication asks for that,
            # whatever the drug (the policy names no standard therapy for an unlisted use).
            vs = frozenset({DOCUMENTED_FAILURE})
        if not vs:
            return
        status = str(res.get("status", "unknown"))
        for_refs, for_vs, for_codes, for_text = self.given_for(res, ref)
        self.facts.therapies.append(
            Therapy(ref, vs, "medication", status, _effective_date(res, *keys), _text_of(cc),
                    reason, frozenset(outcomes), status in GIVEN_STATUS[res["resourceType"]],
                    self.route_of(res, cc), _period_end(res), for_refs, for_vs, for_codes, for_text)
        )

    def given_for(self, res: dict[str, Any], ref: str) -> tuple[
            tuple[str, ...], frozenset[str], frozenset[tuple[str, str]], str]:
        """What a therapy was given for: its reasonReference targets, and the value sets,
        codes and words of its reasonCode. A reasonCode that only states an outcome
        ("treatment failure") says nothing about what the therapy was for."""
        refs = tuple(r["reference"] for r in res.get("reasonReference") or []
                     if isinstance(r, dict) and isinstance(r.get("reference"), str))
        found: set[str] = set()
        codes: set[tuple[str, str]] = set()
        words: list[str] = []
        rules = outcome_rules()
        for rc in res.get("reasonCode") or []:
            if not isinstance(rc, dict) or any(_outcomes_of(rc, rules, reason_code=True)):
                continue
            text = _text_of(rc)
            found |= {m.valueset for m in self.matches(rc, ref)}
            codes |= _condition_codes(rc)
            if text:
                words.append(text)
        return refs, frozenset(found), frozenset(codes), "; ".join(words)

    def stated_outcomes(self, res: dict[str, Any]) -> tuple[set[str], str]:
        """What the record states about a therapy (data/therapy_outcomes.toml), and the
        words it says it in (for the evidence summary)."""
        rules = outcome_rules()
        outcomes: set[str] = set()
        texts: list[str] = []
        status_reasons = res.get("statusReason")
        if res.get("resourceType") == "MedicationDispense":
            status_reasons = res.get("statusReasonCodeableConcept")
        for key, value, reason_code in (("statusReason", status_reasons, False),
                                        ("outcome", res.get("outcome"), False),
                                        ("reasonCode", res.get("reasonCode"), True)):
            for cc in value if isinstance(value, list) else [value]:
                if not isinstance(cc, dict):
                    continue
                coded, stated = _outcomes_of(cc, rules, reason_code=reason_code)
                outcomes |= coded | stated
                if (stated or key != "reasonCode") and _text_of(cc):
                    texts.append(_text_of(cc))
        # A note on a therapy still being given states at most an inadequate response; its
        # "side effects" or "failed" words are not the outcome of a therapy that goes on.
        ongoing = res.get("status") in {"active", "in-progress", "intended", "draft", "preparation"}
        for note in res.get("note") or []:
            if isinstance(note, dict) and isinstance(note.get("text"), str):
                stated = rules.from_text(note["text"])
                if ongoing:
                    stated &= {"inadequate"}
                outcomes |= stated
                if stated:
                    texts.append(note["text"])
        return outcomes, "; ".join(dict.fromkeys(t.strip() for t in texts if t.strip()))

    def route_of(self, res: dict[str, Any], cc: Any) -> str | None:
        """systemic | local | None, from the dosage route, dosage text, dose form and name."""
        dosages = res.get("dosageInstruction") or res.get("dosage")
        dosages = dosages if isinstance(dosages, list) else [dosages]
        codes: list[str] = []
        texts: list[str] = [_text_of(cc)] + [str(c.get("display", "")) for c in _codings(cc)]
        for dosage in dosages:
            if not isinstance(dosage, dict):
                continue
            codes += route_codes(dosage.get("route"))
            texts += [_text_of(dosage.get("route")), str(dosage.get("text") or "")]
        med = self.medication_resource(res)
        if med is not None:
            texts.append(_text_of(med.get("form")))
        return route_rules().classify(codes, texts)

    def allergy(self, allergy: dict[str, Any]) -> None:
        """An intolerance of a drug is intolerance; an allergy to it contraindicates it.
        A refuted, entered-in-error, inactive or resolved record says neither."""
        if _status_code(allergy.get("verificationStatus")) in EXCLUDED_VERIFICATION:
            return
        if _status_code(allergy.get("clinicalStatus")) in {"inactive", "resolved"}:
            return
        ref = _ref(allergy)
        vs = self.therapy_valuesets(allergy.get("code"), ref)
        if not vs:
            return
        kind = "allergy" if allergy.get("type") == "allergy" else "intolerance"
        outcome = "contraindicated" if kind == "allergy" else "intolerant"
        words = [_text_of(r.get("manifestation", [None])[0]) if isinstance(r, dict) and r.get("manifestation") else ""
                 for r in allergy.get("reaction") or []]
        words += [r.get("description", "") for r in allergy.get("reaction") or [] if isinstance(r, dict)]
        words += [n.get("text", "") for n in allergy.get("note") or [] if isinstance(n, dict)]
        reason = "; ".join(w for w in words if isinstance(w, str) and w.strip())
        self.facts.therapies.append(
            Therapy(ref, vs, kind, "documented",
                    _effective_date(allergy, "recordedDate", "onsetDateTime"),
                    _text_of(allergy.get("code")), reason or kind, frozenset({outcome}), False)
        )

    # --- Immunization, Procedure, DiagnosticReport --------------------------------------
    def immunization(self, imm: dict[str, Any]) -> None:
        if imm.get("status") != "completed":
            return
        ref = _ref(imm)
        kinds = frozenset(
            m.valueset for m in self.matches(imm.get("vaccineCode"), ref)
            if m.valueset.startswith("vaccine_")
        )
        if kinds:
            self.facts.vaccinations.append(
                Vaccination(ref, _effective_date(imm, "occurrenceDateTime"), kinds,
                            _text_of(imm.get("vaccineCode")))
            )

    def procedure(self, proc: dict[str, Any]) -> None:
        """A done procedure is a finding (biopsy, nerve conduction study …) and, for the
        procedures that are standard therapy (plasma exchange, splenectomy), a therapy
        with its stated outcome. A not-done procedure counts only as a therapy whose record
        states it is contraindicated."""
        status = proc.get("status")
        if status not in {"completed", "in-progress", "not-done", "stopped"}:
            return
        ref = _ref(proc)
        found = frozenset(m.valueset for m in self.matches(proc.get("code"), ref))
        when = _effective_date(proc, "performedDateTime", "performedPeriod")
        done = status in GIVEN_STATUS["Procedure"]
        if any(v.startswith("tx_") for v in found):
            outcomes, reason = self.stated_outcomes(proc)
            if done or "contraindicated" in outcomes:
                self.facts.therapies.append(
                    Therapy(ref, found, "procedure", str(status), when, _text_of(proc.get("code")),
                            reason, frozenset(outcomes if done else {"contraindicated"}), done)
                )
        if found and done:
            words = [_text_of(proc.get("outcome"))] + [
                n["text"] for n in proc.get("note") or [] if isinstance(n, dict) and isinstance(n.get("text"), str)]
            conclusion = "; ".join(w for w in words if w)
            self.facts.findings.append(Finding(ref, found, when, _text_of(proc.get("code")),
                                               conclusion, self.conclusion_valuesets(conclusion)))

    def diagnostic_report(self, report: dict[str, Any]) -> None:
        if report.get("status") not in {"final", "amended", "corrected", "appended"}:
            return
        ref = _ref(report)
        found = frozenset(m.valueset for m in self.matches(report.get("code"), ref))
        words = [report.get("conclusion") if isinstance(report.get("conclusion"), str) else ""]
        words += [_text_of(cc) for cc in report.get("conclusionCode") or []]
        conclusion = "; ".join(w for w in words if w)
        named = self.conclusion_valuesets(conclusion)
        # A report of any kind whose conclusion names a clinical finding documents it
        # ("falling vital capacity" in a pulmonary function report).
        if found or any(v.startswith("finding_") for v in named):
            self.facts.findings.append(
                Finding(ref, found, _effective_date(report, "effectiveDateTime", "effectivePeriod", "issued"),
                        _text_of(report.get("code")), conclusion, named)
            )


def _outcomes_of(cc: dict[str, Any], rules: OutcomeRules, *, reason_code: bool) -> tuple[set[str], set[str]]:
    """The outcomes one CodeableConcept states: (by its codings, by its words — its text and
    the displays of its codings). Shared by stated_outcomes and given_for, so a reason read
    as an outcome is never also read as what the therapy was given for."""
    text = " ".join(t for t in [cc.get("text")] + [c.get("display") for c in _codings(cc)] if isinstance(t, str))
    return set(rules.from_codings(normalised_codings(cc))), set(rules.from_text(text, reason_code=reason_code))


def _number(value: Any) -> float | None:
    """A finite JSON number as float; anything else (bool, str, NaN, inf, huge) is None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and abs(number) < 1e12 else None


def _rh_text(text: str) -> str | None:
    """An Rh(D) type from its words; a text that says neither is no result (never guessed
    from other words of the report, e.g. "antibody screen negative")."""
    match = RH_WORDS.search(text) or ABO_RH.search(text)
    if not match:
        return None
    return "positive" if match.group(1).lower() in {"positive", "pos", "+"} else "negative"


def _severity(cc: Any) -> str | None:
    """Condition.severity as mild | moderate | severe | life-threatening (code, then words)."""
    for coding in _codings(cc):
        if coding.get("code") in SEVERITY_SNOMED:
            return SEVERITY_SNOMED[coding["code"]]
    text = _text_of(cc).lower().strip()
    return SEVERITY_WORDS.get(text)


def _condition_codes(cc: Any) -> set[tuple[str, str]]:
    """Every (system, code) of a Condition, ICD-10-CM without dots and upper-case, so an
    order's reasonCode can be compared with it."""
    out = set()
    for system, code in normalised_codings(cc):
        if system == "http://hl7.org/fhir/sid/icd-10-cm":
            code = code.replace(".", "").upper()
        out.add((system, code))
    return out


def _period_end(resource: dict[str, Any]) -> date | None:
    period = resource.get("effectivePeriod")
    if isinstance(period, dict) and isinstance(period.get("end"), str):
        return parse_date(period["end"])
    return None


def _qualitative_text(text: str) -> str | None:
    """positive / negative from a result's words; "normal" reads as negative (a screen with
    nothing found) and "abnormal" as positive."""
    low = text.lower().strip()
    if "abnormal" in low:
        return "positive"
    if any(word in low for word in NEGATIVE_WORDS):
        return "negative"
    if any(word in low for word in POSITIVE_WORDS):
        return "positive"
    if re.search(r"(?<![a-z])(normal|unremarkable|within normal limits)(?![a-z])", low):
        return "negative"
    return None


def product_concentration(cc: Any, tx: Terminology) -> float | None:
    """Concentration (g/mL) of the named immune globulin brand, if the text names one."""
    text = " ".join(
        [_text_of(cc)] + [str(c.get("display", "")) for c in _codings(cc)]
    ).lower()
    for product in ig_products():
        names = [product["name"], *product.get("aliases", [])]
        for name in names:
            if re.search(r"(?<![a-z0-9])" + re.escape(name.lower()) + r"(?![a-z0-9])", text):
                return float(product["concentration_g_per_ml"])
    percent = re.search(r"(\d+(?:\.\d+)?)\s*%", text)
    if percent:
        return float(percent.group(1)) / 100
    return None


def extract_facts(record: PatientRecord, terminology: Terminology | None = None) -> PatientFacts:
    """Turn one patient's record into typed facts. Never raises on odd resources."""
    return _Reader(record, terminology or default_terminology()).read()
