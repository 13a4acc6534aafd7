"""Rulesets as data: the schema of ``rulesets/*.yaml`` and its strict loader.

Every model forbids unknown keys, so a typo in a policy file fails when the file loads
(with the path of the bad key), never in the middle of an evaluation. Every indication
and every criterion must carry a citation (the section and the clauses it encodes, quoted
verbatim from the source text), and every value set a ruleset names must exist in the
terminology data.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fhir_mappings.terminology import Terminology, default_terminology

RULESET_DIR = Path(__file__).parent / "rulesets"
DOC_CODES_FILE = Path(__file__).parent.parent / "data" / "documentation_codes.toml"

Therapy = Literal["new-start", "continuation", "none"]
Coverage = Literal["labeled", "off-label", "experimental", "unlisted"]


class RulesetError(ValueError):
    """A ruleset file is malformed (raised at load time)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- attestation -----------------------------------------------------------------------------
class Attestable(Strict):
    """A qualifier the policy leaves to clinical judgement ("failed", "severe", "debilitating",
    "refractory", "contraindicated"), which the clinician may attest in the app when the
    record does not show it (an item of the indication's Questionnaire, answered in a
    QuestionnaireResponse).

    ``question`` asks it in the policy's words; ``policy_words`` is the clause it asks about,
    verbatim from the criterion's ``cite.quotes`` (its ``basis`` when it quotes none; checked
    at load time). An attestation
    counts for ``within_days`` (default: the leaf's own recency window, if it has one).
    Record facts are never attestable: see ``record_fact_reason``.
    """

    id: str = Field(pattern=r"^[a-z][a-z0-9-]{2,62}$")  # the Questionnaire item's linkId
    question: str = Field(min_length=10)
    policy_words: str = Field(min_length=3)
    within_days: int | None = Field(None, ge=1)


# Leaf types whose answer is a record fact: a lab value, a weight, a date, a test result, a
# diagnosis, an age or a dose. ``attestable`` on one of them fails at load time.
RECORD_FACT_TYPES = {
    "igg": "IgG levels (laboratory results)",
    "igg_recent": "IgG trough levels (laboratory results)",
    "vaccine_response": "vaccine titers (laboratory results)",
    "igg_subclass": "IgG subclass levels (laboratory results)",
    "age": "the patient's age",
    "platelets": "platelet counts (laboratory results)",
    "diagnosis_age": "dates of the diagnosis or transplant",
    "reevaluation": "re-test titers and dates",
    "secondary_causes": "test results and the drug history",
    "start_date": "the date immune globulin was started",
    "clinical_response": "infections recorded before and on therapy",
    "body_weight": "body weights",
    "dose": "the ordered dose and the weight",
    "course": "the order's schedule",
    "diagnosis_confirmed": "the diagnosis's verification status",
    "appeal": "a filed appeal",
}
# Infections: the infections (diagnoses, dates, how many) come from the record; only these
# severity qualifiers of recorded infections may be attested.
ATTESTABLE_INFECTION_SEVERITY = {"significant", "severe", "life-threatening"}
# Documented findings that are the clinician's judgement, not a measurement, test or
# diagnosis ("refractory to several hours of aggressive therapy", "undrainable focus").
JUDGEMENT_FINDINGS = frozenset({"finding_tss_refractory", "finding_undrainable_focus"})


def record_fact_reason(leaf: Leaf) -> str:
    """Why this leaf may not be attestable ("" when it may): its answer is a record fact."""
    kind = getattr(leaf, "type", "")
    if kind in RECORD_FACT_TYPES:
        return f"it reads {RECORD_FACT_TYPES[kind]}, which only the record can show"
    if isinstance(leaf, InfectionsCheck) and leaf.severity not in ATTESTABLE_INFECTION_SEVERITY:
        return ("the infections (diagnoses and dates) come from the record; only a severity "
                f"qualifier ({', '.join(sorted(ATTESTABLE_INFECTION_SEVERITY))}) may be attested")
    if isinstance(leaf, DocumentedCheck):
        facts = sorted(set(leaf.valuesets) - JUDGEMENT_FINDINGS)
        if facts:
            return (f"value set(s) {', '.join(facts)} hold record facts (diagnoses, results, "
                    "therapies, measurements); only clinical-judgement findings may be attested")
        if (leaf.lab_result != "any" or leaf.value_below is not None or leaf.conclusion_all
                or leaf.percent_above is not None or leaf.therapy_active or leaf.conditions_only
                or leaf.scope != "record" or leaf.min_count != 1):
            return "it reads a result, a diagnosis or a therapy, which only the record can show"
    return ""


# --- leaf checks ----------------------------------------------------------------------------
# Every leaf may carry ``document``: what the clinician should record for the criterion to be
# met, in the policy's words, with examples of what counts and where it is recorded. It is the
# text of the missing-documentation item (the engine adds what it found). A leaf the policy
# leaves to clinical judgement may be ``attestable`` (above).
class Leaf(Strict):
    document: str = ""
    attestable: Attestable | None = None

    @model_validator(mode="after")
    def _attestable_only_for_judgement(self) -> Leaf:
        if self.attestable is not None and (reason := record_fact_reason(self)):
            raise ValueError(f"a {getattr(self, 'type', 'leaf')} check cannot be attestable: {reason}")
        return self


class IggCheck(Leaf):
    """Total IgG against a threshold (mg/dL).

    ``timing: pretreatment``: only results drawn before the first immune globulin dose count.
    ``timing: any``: for a new start every result; for a continuation a result below the
    threshold counts whenever it was drawn (an on-treatment trough below it shows the
    deficiency all the more), but only a pre-treatment result can contradict the criterion.
    ``occasions``: that many results on different days, all meeting the bound ("persistent").
    """

    type: Literal["igg"]
    below_mg_dl: float | None = None  # met when the IgG is below this
    at_least_mg_dl: float | None = None  # met when the IgG is at least this
    normal: bool = False  # met when not below the laboratory's reference range ("normal IgG")
    timing: Literal["pretreatment", "any"] = "pretreatment"
    occasions: int = Field(1, ge=1)
    min_days_apart: int = 28  # "persistent": the occasions at least this far apart
    below_reference_range_counts: bool = False  # lab range low stands for "2 SD below age mean"
    missing: str = "igg-pretreatment"

    @model_validator(mode="after")
    def _one_bound(self) -> IggCheck:
        bounds = [self.below_mg_dl is not None, self.at_least_mg_dl is not None, self.normal]
        if sum(bounds) != 1:
            raise ValueError("igg check needs exactly one of below_mg_dl / at_least_mg_dl / normal")
        return self


class IggRecentCheck(Leaf):
    """An IgG trough in the window, drawn on therapy (after the first dose)."""

    type: Literal["igg_recent"]
    within_days: int = 365
    missing: str = "igg-trough"


InfectionSeverity = Literal["any", "serious", "significant", "severe", "life-threatening"]


class InfectionsCheck(Leaf):
    """Documented bacterial infections, counted before immune globulin began.

    ``severity``: ``serious`` = the invasive infections of value set
    serious_bacterial_infection (bacteremia, meningitis, pneumonia …); ``significant`` =
    serious, or Condition.severity moderate or worse; ``severe`` = Condition.severity
    severe or worse, or a life-threatening infection; ``life-threatening`` =
    Condition.severity life-threatening, or value set life_threatening_infection (sepsis,
    septic shock, bacterial meningitis).
    """

    type: Literal["infections"]
    min_count: int = 2
    within_days: int | None = None  # window ending at the reference date
    severity: InfectionSeverity = "any"
    missing: str = "infection-history"


class VaccineResponseCheck(Leaf):
    type: Literal["vaccine_response"]
    antigens: list[Literal["pneumococcal", "tetanus", "diphtheria"]] = [
        "pneumococcal",
        "tetanus",
        "diphtheria",
    ]
    # bcbsmt: "less than a 4-fold rise … and lack of protective level" needs a pre-titer;
    # aaaai-pi: a low post-vaccination titer after a documented vaccination suffices.
    require_pre_titer: bool = True
    protective_pneumococcal_ug_ml: float = 1.3
    # "severe polysaccharide nonresponsiveness": at most `severe_max_protective` protective
    # serotypes of at least `severe_min_serotypes` tested after the vaccination.
    severe: bool = False
    severe_max_protective: int = 2
    severe_min_serotypes: int = 6
    # Without a pre-titer (low post-vaccination titers): the share of pneumococcal serotypes
    # that must be non-protective, of at least `min_serotypes` tested ("failure to form
    # antibodies", "specific antibody deficiency"); tetanus/diphtheria is one antigen each.
    min_serotypes: int = 1
    min_share_nonprotective: float = 0.0
    # "protein AND polysaccharide antigens": a tetanus/diphtheria and a pneumococcal failure
    both_classes: bool = False
    missing: str = "vaccine-response"


class SubclassCheck(Leaf):
    type: Literal["igg_subclass"]
    occasions: int = 2
    infection_free_days: int = 30  # no documented infection this long before a draw
    missing: str = "igg-subclass-levels"


class AgeCheck(Leaf):
    type: Literal["age"]
    min_years: int | None = None
    under_years: int | None = None  # strictly younger than
    max_days: int | None = None  # neonates
    missing: str = "patient-age"


class PlateletCheck(Leaf):
    type: Literal["platelets"]
    below_per_ul: float
    within_days: int = 30
    missing: str = "platelet-count"


class DocumentedCheck(Leaf):
    """Something the record shows: an active Condition (its code, its text, or the words of
    its note), a done Procedure or final DiagnosticReport, a clinical-finding Observation, a
    given therapy, or a lab result.

    ``conclusion_all``: a report or finding counts only when its own conclusion falls in
    every one of these value sets (e.g. a nerve biopsy whose report describes demyelination
    *and* remyelination); a bare procedure code is not its result. Numeric labs use the
    latest result in the window: met below ``value_below`` (the HIV-positive limit applies
    when the record shows HIV infection, and a result between the two limits needs the HIV
    status documented).
    """

    type: Literal["documented"]
    valuesets: list[str]
    lab_result: Literal["any", "positive", "negative"] = "any"
    within_days: int | None = None
    value_below: float | None = None
    value_below_if_hiv: float | None = None
    conclusion_all: list[str] = []
    conditions_only: bool = False  # only Conditions count (a diagnosis qualifier)
    # indication: only the indication's own Conditions (their code, text and notes) count
    scope: Literal["record", "indication"] = "record"
    therapy_active: bool = False  # a therapy counts only while it is being given
    include_resolved: bool = False  # history: a resolved or inactive Condition counts too
    min_count: int = Field(1, ge=1)  # that many distinct resources (e.g. two antibiotic courses)
    contradicted_by: list[str] = []  # an active Condition in these sets makes it not-met
    # first-dose: the window ends when immune globulin was first given (what was true before
    # treatment, e.g. the antibiotic courses that preceded it); now: it ends at the evaluation
    window_ends: Literal["now", "first-dose"] = "now"
    # A report conclusion that states a percentage counts only above it (teased fibres:
    # "more than 12 % of 50 fibers"); one stating none is read by its words alone.
    percent_above: float | None = None
    missing: str


TherapyOutcome = Literal["failed", "inadequate", "intolerant", "contraindicated"]


class PriorTherapyCheck(Leaf):
    """Standard therapy failed, was not tolerated, or is contraindicated.

    A therapy counts when the record states one of ``outcomes`` for it (a reason, not a
    status: data/therapy_outcomes.toml), it was actually given (a contraindication needs
    no trial), and, for medications, by a systemic route: an ingredient that also comes in
    local forms (value set tx_has_local_forms: hydrocortisone, triamcinolone …) needs a
    systemic route or dose form on record. ``all_of``: each value set needs its own
    qualifying therapy ("not controlled by anticholinesterases and diaminopyridine").
    """

    type: Literal["prior_therapy"]
    valuesets: list[str]
    outcomes: list[TherapyOutcome] = ["failed", "intolerant", "contraindicated"]
    route: Literal["systemic", "any"] = "systemic"
    all_of: bool = False
    min_count: int = Field(1, ge=1)  # distinct qualifying therapies (e.g. several hypersensitivities)
    # also any medication or procedure with a stated failure (appeal path of a not-covered
    # indication, where the policy names no standard therapy)
    any_documented_failure: bool = False
    missing: str = "prior-therapy-failure"


class SeverityCheck(Leaf):
    """The indication's Condition records the severity (Condition.severity), and, with
    ``active``, is clinically active (not in remission) — "severe active illness"."""

    type: Literal["severity"]
    at_least: Literal["moderate", "severe", "life-threatening"] = "severe"
    active: bool = False
    missing: str


class DiagnosisAgeCheck(Leaf):
    """Days since the indication's diagnosis (or status, e.g. transplant) was first dated.

    A lower bound (``min_days``: "more than three months since diagnosis") may use the onset
    or the recorded date (a Condition is recorded on or after its onset, so the recorded
    date can only understate the time). An upper bound (``max_days``: "first 100 days
    post-transplant") needs the onset, or the date of a Procedure in ``dated_by``: a recent
    recorded date says nothing about when the transplant happened.
    """

    type: Literal["diagnosis_age"]
    min_days: int | None = None  # met only when more than this many days have passed
    max_days: int | None = None  # met only within this many days
    dated_by: list[str] = []
    # Only the indication's Conditions in these sets give the date (a transplant status, not a
    # later complication); empty: all of the indication's Conditions.
    dated_by_conditions: list[str] = []
    missing: str = "diagnosis-date"


class ReevaluationCheck(Leaf):
    """Re-Evaluation Table: continuation beyond 18 months needs the response to protein and
    polysaccharide antigens re-tested at least four months after immune globulin was
    discontinued (titers drawn on therapy reflect the donors' antibodies), still showing
    the deficiency, and fewer (or less severe) infections on therapy than before."""

    type: Literal["reevaluation"]
    after_days: int = 548
    off_therapy_days: int = 120
    missing: str = "vaccine-response"


class SecondaryCausesCheck(Leaf):
    type: Literal["secondary_causes"]
    drug_recent_days: int = 365  # a non-anti-CD20 causative drug ended this recently still counts
    missing: str = "secondary-causes-excluded"


class StartDateCheck(Leaf):
    type: Literal["start_date"]
    missing: str = "ivig-start-date"


class ClinicalResponseCheck(Leaf):
    type: Literal["clinical_response"]
    missing: str = "clinical-response"


class BodyWeightCheck(Leaf):
    type: Literal["body_weight"]
    within_days: int = 90
    missing: str = "body-weight"


class DoseCheck(Leaf):
    type: Literal["dose"]
    missing: str = "dose-justification"


class CourseCheck(Leaf):
    """The order is an acute course of at most ``max_doses`` daily doses, not maintenance."""

    type: Literal["course"]
    max_doses: int = 5
    missing: str = "dosing-schedule"


class DiagnosisConfirmedCheck(Leaf):
    """The indication's Condition is not merely provisional, differential or unconfirmed."""

    type: Literal["diagnosis_confirmed"]
    missing: str = "diagnosis-confirmation"


class AppealCheck(Leaf):
    """Not-covered indications: the path is an individual appeal the record cannot show."""

    type: Literal["appeal"]
    missing: str = "letter-of-medical-necessity"


class AnyOf(Strict):
    type: Literal["any"]
    of: list[Check] = Field(min_length=2)


class AllOf(Strict):
    type: Literal["all"]
    of: list[Check] = Field(min_length=2)


Check = Annotated[
    IggCheck
    | IggRecentCheck
    | InfectionsCheck
    | VaccineResponseCheck
    | SubclassCheck
    | AgeCheck
    | PlateletCheck
    | DocumentedCheck
    | PriorTherapyCheck
    | SeverityCheck
    | DiagnosisAgeCheck
    | ReevaluationCheck
    | SecondaryCausesCheck
    | StartDateCheck
    | ClinicalResponseCheck
    | BodyWeightCheck
    | DoseCheck
    | CourseCheck
    | DiagnosisConfirmedCheck
    | AppealCheck
    | AnyOf
    | AllOf,
    Field(discriminator="type"),
]
AnyOf.model_rebuild()
AllOf.model_rebuild()


# --- criteria, indications, rulesets -------------------------------------------------------
class Citation(Strict):
    """Where a criterion comes from: the section of the source document, and the clauses it
    encodes quoted verbatim (a test checks each against the source text). ``basis`` names a
    source other than the policy (e.g. the CONTRACT's fixed semantics) when no clause
    applies."""

    section: str = Field(min_length=3)
    quotes: list[str] = []
    basis: str = ""

    @model_validator(mode="after")
    def _something(self) -> Citation:
        if not self.quotes and not self.basis:
            raise ValueError("a citation needs quotes or a basis")
        return self


class Criterion(Strict):
    id: str
    description: str
    cite: Citation
    note: str = ""  # how the clause is encoded, where the policy is silent
    applies_to: list[Therapy] = ["new-start", "continuation", "none"]
    check: Check


class DoseRange(Strict):
    basis: Literal["per-4-weeks", "per-course"]
    range_mg_per_kg: tuple[float, float]
    # SCIG is dosed weekly; its range is given per week and checked as ×4 per 4 weeks.
    sc_range_mg_per_kg_per_week: tuple[float, float] | None = None
    cite: Citation


class BelongsTo(Strict):
    """When the record also documents one of ``when`` (another active Condition), this row's
    diagnoses belong to ``row`` instead (HIV-associated ITP is the HIV row; vasculitis with a
    connective tissue disease is on the experimental list)."""

    when: list[str] = Field(min_length=1)
    row: str
    reason: str = Field(min_length=10)


class Indication(Strict):
    id: str
    label: str
    coverage: Coverage
    diagnoses: list[str] = Field(min_length=1)
    also_requires: list[str] = []  # every one of these value sets must be documented too
    excludes: list[str] = []  # a diagnosis also in one of these belongs to another row
    cite: Citation
    dose: DoseRange | None = None
    criteria: list[Criterion] = []
    note: str = ""
    # The policy lists this row's maintenance use as experimental (myasthenia gravis): an
    # order on a recurring schedule is evaluated as that experimental indication instead.
    maintenance_is: str | None = None
    belongs_to: list[BelongsTo] = []


class Untraced(Strict):
    """A policy clause no criterion encodes, and why (kept so the trace is complete)."""

    quote: str
    reason: str = Field(min_length=10)


SourceType = Literal["Patient", "Observation", "Condition", "MedicationRequest", "MedicationAdministration",
                     "MedicationDispense", "MedicationStatement", "Immunization", "Procedure",
                     "DiagnosticReport", "AllergyIntolerance"]


class DocumentationCode(Strict):
    display: str
    definition: str
    sources: list[SourceType]  # resource types that can supply the item


class Ruleset(Strict):
    id: str
    version: str
    title: str
    citation: str = Field(min_length=3)  # how a person cites the source ("BCBS of Montana …")
    source: str
    seed: str  # the source text's file name (rulesets/sources, a copy of shared/seeds): tests and the policy trace
    description: str = ""
    common_criteria: list[Criterion] = []  # added to every covered indication
    not_covered_criteria: list[Criterion] = []  # the appeal path for experimental/unlisted
    indications: list[Indication]
    untraced: list[Untraced] = []

    def indication(self, indication_id: str) -> Indication | None:
        return next((i for i in self.indications if i.id == indication_id), None)

    @cached_property
    def routed(self) -> frozenset[str]:
        """Experimental rows reached only through a covered row's ``maintenance_is``."""
        return frozenset(i.maintenance_is for i in self.indications if i.maintenance_is)

    @cached_property
    def index(self) -> RulesetIndex:
        """The indications' value-set lists as sets, and value set -> indications, built once."""
        by_valueset: dict[str, list[int]] = {}
        for i, ind in enumerate(self.indications):
            for vs in ind.diagnoses:
                by_valueset.setdefault(vs, []).append(i)
        return RulesetIndex(
            diagnoses=tuple(frozenset(i.diagnoses) for i in self.indications),
            excludes=tuple(frozenset(i.excludes) for i in self.indications),
            belongs_when=tuple(tuple(frozenset(b.when) for b in i.belongs_to) for i in self.indications),
            by_valueset={k: tuple(v) for k, v in by_valueset.items()},
            position={i.id: n for n, i in enumerate(self.indications)},
        )

    @cached_property
    def experimental_labels(self) -> dict[str, str]:
        """Value set -> label of the experimental row it codes (routed rows excluded)."""
        return {vs: i.label for i in self.indications
                if i.coverage == "experimental" and i.id not in self.routed for vs in i.diagnoses}

    def cite(self, cite: Citation) -> str:
        """The citation as a person reads it: source, section, and the clauses quoted."""
        text = f"{self.citation} — {cite.section}"
        if cite.quotes:
            text += ": " + " … ".join(f"“{q}”" for q in cite.quotes)
        if cite.basis:
            text += f" ({cite.basis})" if cite.quotes else f": {cite.basis}"
        return text


@dataclass(frozen=True)
class RulesetIndex:
    """Per indication (by position in the ruleset): its diagnosis and exclusion value sets
    and its belongs_to conditions as sets; and which indications list a value set."""

    diagnoses: tuple[frozenset[str], ...]
    excludes: tuple[frozenset[str], ...]
    belongs_when: tuple[tuple[frozenset[str], ...], ...]
    by_valueset: dict[str, tuple[int, ...]]
    position: dict[str, int]

    def listing(self, valuesets: frozenset[str] | set[str]) -> list[int]:
        """Positions of the indications whose diagnoses include any of these, in order."""
        return sorted({i for vs in valuesets for i in self.by_valueset.get(vs, ())})


def _walk(check: Check):
    yield check
    if isinstance(check, (AnyOf, AllOf)):
        for sub in check.of:
            yield from _walk(sub)


def _criteria_of(ruleset: Ruleset):
    yield from ruleset.common_criteria
    yield from ruleset.not_covered_criteria
    for ind in ruleset.indications:
        yield from ind.criteria


def _checks_of(ruleset: Ruleset):
    for criterion in _criteria_of(ruleset):
        yield criterion.id, criterion.check


def attestable_leaves(criteria: list[Criterion]) -> list[tuple[Criterion, Leaf]]:
    """(criterion, leaf) of every attestable leaf of these criteria, in policy order, each
    attestable id once."""
    out: list[tuple[Criterion, Leaf]] = []
    seen: set[str] = set()
    for criterion in criteria:
        for leaf in _walk(criterion.check):
            att = getattr(leaf, "attestable", None)
            if att is not None and att.id not in seen:
                seen.add(att.id)
                out.append((criterion, leaf))
    return out


def _folded(text: str) -> str:
    return " ".join(text.split())


def _attestable_problems(ruleset: Ruleset) -> list[str]:
    """Attestable ids are unique in the ruleset, and each asks about a clause its criterion
    quotes from the policy."""
    problems = []
    owner: dict[str, str] = {}
    for criterion in _criteria_of(ruleset):
        for leaf in _walk(criterion.check):
            att = getattr(leaf, "attestable", None)
            if att is None:
                continue
            if att.id in owner:
                problems.append(f"criterion {criterion.id!r}: attestable id {att.id!r} is also used by "
                                f"{owner[att.id]!r}")
            owner[att.id] = criterion.id
            # The policy's words: a clause the criterion quotes (its basis only when it quotes
            # none, e.g. an appeal path the source document does not spell out).
            words = criterion.cite.quotes or [criterion.cite.basis]
            if not any(_folded(att.policy_words) in _folded(w) for w in words):
                problems.append(f"criterion {criterion.id!r}: attestable {att.id!r}: policy_words are not "
                                "quoted in the criterion's cite.quotes")
    return problems


@cache
def documentation_codes() -> dict[str, DocumentationCode]:
    import tomllib

    data = tomllib.loads(DOC_CODES_FILE.read_text(encoding="utf-8"))
    unknown = set(data) - {"version", "codes"}
    if unknown:
        raise RulesetError(f"{DOC_CODES_FILE.name}: unknown keys {sorted(unknown)}")
    try:
        return {code: DocumentationCode(**entry) for code, entry in data["codes"].items()}
    except (TypeError, ValidationError) as exc:
        raise RulesetError(f"{DOC_CODES_FILE.name}: {exc}") from exc


def validate_references(ruleset: Ruleset, terminology: Terminology) -> None:
    """Every value set exists, every missing-item code is defined, ids are unique."""
    codes = documentation_codes()
    problems = []
    seen_ind: set[str] = set()
    ids = {i.id: i for i in ruleset.indications}
    for ind in ruleset.indications:
        if ind.id in seen_ind:
            problems.append(f"duplicate indication id {ind.id!r}")
        seen_ind.add(ind.id)
        for vs in [*ind.diagnoses, *ind.also_requires, *ind.excludes]:
            if vs not in terminology:
                problems.append(f"indication {ind.id!r}: unknown value set {vs!r}")
        for b in ind.belongs_to:
            if b.row not in ids:
                problems.append(f"indication {ind.id!r}: belongs_to names unknown row {b.row!r}")
            for vs in b.when:
                if vs not in terminology:
                    problems.append(f"indication {ind.id!r}: unknown value set {vs!r}")
        if ind.maintenance_is is not None and (
            ind.maintenance_is not in ids or ids[ind.maintenance_is].coverage != "experimental"
        ):
            problems.append(f"indication {ind.id!r}: maintenance_is must name an experimental indication")
    seen_crit: set[str] = set()
    for crit_id, check in _checks_of(ruleset):
        if crit_id in seen_crit:
            problems.append(f"duplicate criterion id {crit_id!r}")
        seen_crit.add(crit_id)
        for leaf in _walk(check):
            missing = getattr(leaf, "missing", None)
            if missing is not None and missing not in codes:
                problems.append(f"criterion {crit_id!r}: undefined documentation code {missing!r}")
            for vs in [*getattr(leaf, "valuesets", []), *getattr(leaf, "dated_by", []),
                       *getattr(leaf, "conclusion_all", []), *getattr(leaf, "dated_by_conditions", []),
                       *getattr(leaf, "contradicted_by", [])]:
                if vs not in terminology:
                    problems.append(f"criterion {crit_id!r}: unknown value set {vs!r}")
    problems += _attestable_problems(ruleset)
    if problems:
        raise RulesetError(f"ruleset {ruleset.id}: " + "; ".join(problems))


def _format_validation(path: Path, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{path.name}: {where}: {first['msg']} ({exc.error_count()} problem(s))"


def load_ruleset_file(path: Path, terminology: Terminology | None = None) -> Ruleset:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RulesetError(f"{path.name}: cannot read ruleset: {exc}") from exc
    try:
        ruleset = Ruleset.model_validate(data)
    except ValidationError as exc:
        raise RulesetError(_format_validation(path, exc)) from exc
    validate_references(ruleset, terminology or default_terminology())
    return ruleset


@cache
def available_rulesets() -> dict[str, Ruleset]:
    rulesets = {}
    for path in sorted(RULESET_DIR.glob("*.yaml")):
        ruleset = load_ruleset_file(path)
        rulesets[ruleset.id] = ruleset
    return rulesets


def get_ruleset(ruleset_id: str) -> Ruleset:
    rulesets = available_rulesets()
    if ruleset_id not in rulesets:
        known = ", ".join(sorted(rulesets))
        raise RulesetError(f"unknown ruleset {ruleset_id!r} (available: {known})")
    return rulesets[ruleset_id]
