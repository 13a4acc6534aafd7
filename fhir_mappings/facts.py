"""Typed clinical facts: what the criteria engine reasons over.

Every fact carries ``ref`` ("Observation/o1"), the resource it came from, so the report
can show the evidence behind each criterion. Values are already in canonical units
(IgG and other serum proteins in mg/dL, weight in kg, platelets per µL, pneumococcal
antibody in µg/mL, tetanus/diphtheria antibody in IU/mL, doses in grams or mg/kg).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class Lab:
    kind: str  # value-set name, e.g. "igg_total"
    ref: str
    date: date | None
    value: float | None  # in `unit`; None for qualitative results
    unit: str
    comparator: str | None = None  # "<", "<=", ">", ">=" when the lab reported a bound
    ref_low: float | None = None  # reference range low, same unit
    interpretation: str | None = None  # v3 ObservationInterpretation code (L, LL, N, H, POS, NEG …)
    qualitative: str | None = None  # "positive" / "negative" for coded or text results
    label: str = ""  # e.g. "IgG subclass 2", "S. pneumoniae serotype 14 IgG"
    ref_high: float | None = None  # reference range high, same unit

    def shown(self) -> str:
        if self.value is None:
            return self.qualitative or "result"
        number = f"{self.value:.4g}"
        return f"{self.comparator or ''}{number} {self.unit}"

    @property
    def low(self) -> bool:
        """Below the lab's reference range (by value or by its interpretation flag)."""
        if self.interpretation in {"L", "LL", "LU"}:
            return True
        return self.value is not None and self.ref_low is not None and self.value < self.ref_low


SEVERITY_RANK = {"mild": 1, "moderate": 2, "severe": 3, "life-threatening": 4}


@dataclass(frozen=True)
class Diagnosis:
    ref: str
    valuesets: frozenset[str]
    code: str
    display: str
    onset: date | None
    recorded: date | None
    clinical_status: str | None  # active, recurrence, relapse, inactive, remission, resolved
    severity: str | None = None  # mild | moderate | severe | life-threatening (Condition.severity)
    unverified_codes: tuple[str, ...] = ()
    codes: frozenset[tuple[str, str]] = frozenset()  # (system, code) of every coding, normalised
    verification: str | None = None  # confirmed, provisional, differential, unconfirmed …
    abatement: date | None = None
    note_valuesets: frozenset[str] = frozenset()  # value sets the Condition's notes name
    # The code names an episode or current state (an exacerbation, a crisis, a relapse): its
    # onset dates that episode, not the disease.
    episode: bool = False
    # Hedging words in the Condition's text or notes ("probable ITP vs drug-induced"): with
    # no verificationStatus, the diagnosis is not shown to be confirmed.
    hedged: str = ""

    @property
    def active(self) -> bool:
        return self.clinical_status not in {"inactive", "resolved"}

    @property
    def when(self) -> date | None:
        return self.onset or self.recorded

    def at_least(self, severity: str) -> bool:
        """Condition.severity is recorded at this level or above."""
        return SEVERITY_RANK.get(self.severity or "", 0) >= SEVERITY_RANK[severity]

    @property
    def severe(self) -> bool:
        return self.at_least("severe")


@dataclass(frozen=True)
class IgExposure:
    """Evidence the patient already received immune globulin (not the order itself)."""

    kind: str  # administration | dispense | statement | request
    ref: str
    date: date | None
    status: str
    product: str
    end: date | None = None  # a MedicationStatement's effectivePeriod.end


@dataclass(frozen=True)
class IgOrder:
    ref: str
    status: str
    product: str
    route: str | None  # "IV" | "SC" | None
    authored: date | None
    dose_g: float | None = None  # grams per administration, when fixed
    dose_mg_per_kg: float | None = None  # when ordered per kg
    interval_days: float | None = None
    course_count: int | None = None  # Timing.repeat.count for acute courses
    reason_refs: tuple[str, ...] = ()
    reason_valuesets: frozenset[str] = frozenset()
    reason_codes: tuple[tuple[str, str, str], ...] = ()  # (system, code, display)
    reason_code_keys: frozenset[tuple[str, str]] = frozenset()  # as Diagnosis.codes
    prior_prescription: bool = False
    dose_note: str = ""  # how the dose was derived (e.g. "300 mL of a 10% product")


@dataclass(frozen=True)
class Vaccination:
    ref: str
    date: date | None
    kinds: frozenset[str]  # value-set names, e.g. vaccine_pneumococcal_polysaccharide
    display: str


OUTCOMES = ("failed", "inadequate", "intolerant", "contraindicated")


@dataclass(frozen=True)
class Therapy:
    """A medication, procedure or documented intolerance relevant to a criterion.

    ``outcomes`` is what the record states about it (``data/therapy_outcomes.toml``):
    ``failed`` (ineffective, no response), ``inadequate`` (partial response, not
    controlled), ``intolerant`` (adverse effect, complication) or ``contraindicated``.
    A status alone (stopped, completed) states none of them. ``given`` is whether the
    therapy was actually given (not a cancelled, never-taken or not-done record);
    ``route`` is ``systemic``, ``local`` (topical, inhaled, ophthalmic …) or ``None``
    when neither the route nor the dose form says.
    """

    ref: str
    valuesets: frozenset[str]
    kind: str  # medication | procedure | intolerance | allergy
    status: str
    date: date | None
    display: str
    reason: str = ""  # the stated reason text (statusReason, note, reaction …)
    outcomes: frozenset[str] = frozenset()
    given: bool = True
    route: str | None = None
    end: date | None = None
    # what it was given for: reasonReference targets, and the value sets, codes and words
    # of its reasonCode (a reasonCode that only states an outcome is not a "for")
    for_refs: tuple[str, ...] = ()
    for_valuesets: frozenset[str] = frozenset()
    for_codes: frozenset[tuple[str, str]] = frozenset()
    for_text: str = ""


@dataclass(frozen=True)
class Finding:
    """A Procedure, DiagnosticReport or clinical-finding Observation (nerve conduction,
    biopsy, areflexia …); ``conclusion`` is what the report or result says, and
    ``text_valuesets`` the value sets its conclusion text falls in (e.g. a nerve conduction
    report whose conclusion describes demyelination)."""

    ref: str
    valuesets: frozenset[str]
    date: date | None
    display: str
    conclusion: str = ""
    text_valuesets: frozenset[str] = frozenset()


@dataclass
class PatientFacts:
    patient_ref: str
    birth_date: date | None
    labs: dict[str, list[Lab]] = field(default_factory=dict)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    ig_exposures: list[IgExposure] = field(default_factory=list)
    ig_orders: list[IgOrder] = field(default_factory=list)
    vaccinations: list[Vaccination] = field(default_factory=list)
    therapies: list[Therapy] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    not_accessible: set[str] = field(default_factory=set)
    not_available: set[str] = field(default_factory=set)
    # current orders whose medication cannot be read (a Medication not in the record): any
    # of them may be the immune globulin order
    unreadable_orders: list[str] = field(default_factory=list)

    def lab(self, kind: str) -> list[Lab]:
        return self.labs.get(kind, [])

    def diagnoses_in(self, valueset: str) -> list[Diagnosis]:
        return [d for d in self.diagnoses if valueset in d.valuesets]
