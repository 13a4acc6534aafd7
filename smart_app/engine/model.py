"""Rulesets as data: the schema of ``rulesets/*.yaml`` and its strict loader.

Every model forbids unknown keys, so a typo in a policy file fails when the file loads
(with the path of the bad key), never in the middle of an evaluation. Every indication
and every criterion must carry a ``source`` citation, and every value set a ruleset names
must exist in the terminology data.
"""

from __future__ import annotations

from functools import cache
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


# --- leaf checks ----------------------------------------------------------------------------
class IggCheck(Strict):
    """Total IgG against a threshold (mg/dL)."""

    type: Literal["igg"]
    below_mg_dl: float | None = None  # met when the IgG is below this
    at_least_mg_dl: float | None = None  # met when the IgG is at least this
    normal: bool = False  # met when not below the laboratory's reference range ("normal IgG")
    timing: Literal["pretreatment", "any"] = "pretreatment"
    below_reference_range_counts: bool = False  # lab range low stands for "2 SD below age mean"
    missing: str = "igg-pretreatment"

    @model_validator(mode="after")
    def _one_bound(self) -> IggCheck:
        bounds = [self.below_mg_dl is not None, self.at_least_mg_dl is not None, self.normal]
        if sum(bounds) != 1:
            raise ValueError("igg check needs exactly one of below_mg_dl / at_least_mg_dl / normal")
        return self


class IggRecentCheck(Strict):
    type: Literal["igg_recent"]
    within_days: int = 365
    missing: str = "igg-trough"


class InfectionsCheck(Strict):
    type: Literal["infections"]
    min_count: int = 2
    within_days: int | None = None  # window ending at the reference date
    serious_only: bool = False
    missing: str = "infection-history"


class VaccineResponseCheck(Strict):
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
    missing: str = "vaccine-response"


class SubclassCheck(Strict):
    type: Literal["igg_subclass"]
    occasions: int = 2
    missing: str = "igg-subclass-levels"


class AgeCheck(Strict):
    type: Literal["age"]
    min_years: int | None = None
    under_years: int | None = None  # strictly younger than
    max_days: int | None = None  # neonates
    missing: str = "patient-age"


class PlateletCheck(Strict):
    type: Literal["platelets"]
    below_per_ul: float
    within_days: int = 30
    missing: str = "platelet-count"


class DocumentedCheck(Strict):
    """Something the record shows as a coded diagnosis, finding, lab or therapy."""

    type: Literal["documented"]
    valuesets: list[str]
    lab_result: Literal["any", "positive", "negative"] = "any"
    within_days: int | None = None
    # numeric labs: met only below this value; the HIV-positive limit applies when the
    # record shows HIV infection (CIDP CSF cell count: < 10, or < 50 if HIV-seropositive)
    value_below: float | None = None
    value_below_if_hiv: float | None = None
    missing: str


class PriorTherapyCheck(Strict):
    """Standard therapy failed, was not tolerated, or is contraindicated."""

    type: Literal["prior_therapy"]
    valuesets: list[str]
    accept_active: bool = False  # "despite treatment with …": an ongoing trial counts
    # also any medication stopped with a stated reason (indications with no named therapy)
    any_documented_failure: bool = False
    missing: str = "prior-therapy-failure"


class SeverityCheck(Strict):
    type: Literal["severity"]
    missing: str


class DiagnosisAgeCheck(Strict):
    """Days since the indication's diagnosis (or status, e.g. transplant) was first dated."""

    type: Literal["diagnosis_age"]
    min_days: int | None = None  # met only when more than this many days have passed
    max_days: int | None = None  # met only within this many days
    missing: str = "diagnosis-date"


class ReevaluationCheck(Strict):
    """Re-Evaluation Table: continuation beyond 18 months needs re-tested antibody response."""

    type: Literal["reevaluation"]
    after_days: int = 548
    missing: str = "vaccine-response"


class SecondaryCausesCheck(Strict):
    type: Literal["secondary_causes"]
    missing: str = "secondary-causes-excluded"


class StartDateCheck(Strict):
    type: Literal["start_date"]
    missing: str = "ivig-start-date"


class ClinicalResponseCheck(Strict):
    type: Literal["clinical_response"]
    missing: str = "clinical-response"


class BodyWeightCheck(Strict):
    type: Literal["body_weight"]
    within_days: int = 90
    missing: str = "body-weight"


class DoseCheck(Strict):
    type: Literal["dose"]
    missing: str = "dose-justification"


class AppealCheck(Strict):
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
    | AppealCheck
    | AnyOf
    | AllOf,
    Field(discriminator="type"),
]
AnyOf.model_rebuild()
AllOf.model_rebuild()


# --- criteria, indications, rulesets -------------------------------------------------------
class Criterion(Strict):
    id: str
    description: str
    source: str = Field(min_length=3)
    applies_to: list[Therapy] = ["new-start", "continuation", "none"]
    check: Check


class DoseRange(Strict):
    basis: Literal["per-4-weeks", "per-course"]
    range_mg_per_kg: tuple[float, float]
    # SCIG is dosed weekly; its range is given per week and checked as ×4 per 4 weeks.
    sc_range_mg_per_kg_per_week: tuple[float, float] | None = None
    source: str = Field(min_length=3)


class Indication(Strict):
    id: str
    label: str
    coverage: Coverage
    diagnoses: list[str] = Field(min_length=1)
    also_requires: list[str] = []  # every one of these value sets must be documented too
    excludes: list[str] = []  # a diagnosis also in one of these belongs to another row
    source: str = Field(min_length=3)
    dose: DoseRange | None = None
    criteria: list[Criterion] = []
    note: str = ""


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
    source: str
    description: str = ""
    common_criteria: list[Criterion] = []  # added to every covered indication
    not_covered_criteria: list[Criterion] = []  # the appeal path for experimental/unlisted
    indications: list[Indication]

    def indication(self, indication_id: str) -> Indication | None:
        return next((i for i in self.indications if i.id == indication_id), None)


def _walk(check: Check):
    yield check
    if isinstance(check, (AnyOf, AllOf)):
        for sub in check.of:
            yield from _walk(sub)


def _checks_of(ruleset: Ruleset):
    for criterion in [*ruleset.common_criteria, *ruleset.not_covered_criteria]:
        yield criterion.id, criterion.check
    for ind in ruleset.indications:
        for criterion in ind.criteria:
            yield criterion.id, criterion.check


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
    for ind in ruleset.indications:
        if ind.id in seen_ind:
            problems.append(f"duplicate indication id {ind.id!r}")
        seen_ind.add(ind.id)
        for vs in [*ind.diagnoses, *ind.also_requires, *ind.excludes]:
            if vs not in terminology:
                problems.append(f"indication {ind.id!r}: unknown value set {vs!r}")
    seen_crit: set[str] = set()
    for crit_id, check in _checks_of(ruleset):
        if crit_id in seen_crit:
            problems.append(f"duplicate criterion id {crit_id!r}")
        seen_crit.add(crit_id)
        for leaf in _walk(check):
            missing = getattr(leaf, "missing", None)
            if missing is not None and missing not in codes:
                problems.append(f"criterion {crit_id!r}: undefined documentation code {missing!r}")
            for vs in getattr(leaf, "valuesets", []):
                if vs not in terminology:
                    problems.append(f"criterion {crit_id!r}: unknown value set {vs!r}")
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
