"""Which coverage policy applies: the payer -> ruleset map and the choice from Coverage.

``data/payers.toml`` (or the file ``IVIG_PAYER_MAP`` names) is loaded strictly, like the
rulesets: unknown keys, unknown rulesets and entries that cannot match anything fail at load
time. ``choose_ruleset`` is pure: the patient's resources, the map, the date the Coverage
must cover, and an explicitly requested ruleset (or none) give the ruleset and a record of
why it was chosen. The rules are written at the top of ``data/payers.toml``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fhir_mappings.dates import parse_date

from .engine.model import RulesetError, get_ruleset

PAYER_MAP_FILE = Path(__file__).parent / "data" / "payers.toml"
COVERAGE_CLASS_SYSTEM = "http://terminology.hl7.org/CodeSystem/coverage-class"
ClassType = Literal["group", "subgroup", "plan", "subplan", "class", "subclass", "sequence",
                    "rxbin", "rxpcn", "rxid", "rxgroup"]
ChosenBy = Literal["coverage", "requested", "default"]


class PayerMapError(ValueError):
    """The payer map file is malformed (raised when it is loaded)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PayerIdentifier(_Strict):
    system: str = Field(min_length=1)
    value: str = Field(min_length=1)


class PlanClass(_Strict):
    """A Coverage.class the entry is restricted to (type code + value)."""

    type: ClassType
    value: str = Field(min_length=1)


class Effective(_Strict):
    start: date | None = None
    end: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Effective:
        if self.start and self.end and self.end < self.start:
            raise ValueError("effective.end is before effective.start")
        return self

    def covers(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)


class PayerEntry(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,63}$")
    label: str = Field(min_length=1)
    short_label: str = Field(min_length=1, max_length=24)  # for one-line summaries ("BCBS MT")
    ruleset: str
    names: list[str] = []
    identifiers: list[PayerIdentifier] = []
    classes: list[PlanClass] = []
    effective: Effective | None = None
    source: str = ""
    note: str = ""

    @model_validator(mode="after")
    def _names_something(self) -> PayerEntry:
        if not self.names and not self.identifiers:
            raise ValueError("a payer entry needs at least one of names / identifiers")
        if any(not normalize_name(n) for n in self.names):
            raise ValueError("a payer name must hold letters or digits")
        return self


class PayerMap(_Strict):
    version: Literal["1"]
    payer: list[PayerEntry] = []

    @model_validator(mode="after")
    def _unique_ids(self) -> PayerMap:
        seen: set[str] = set()
        for entry in self.payer:
            if entry.id in seen:
                raise ValueError(f"duplicate payer id {entry.id!r}")
            seen.add(entry.id)
        return self

    def entry(self, payer_id: str) -> PayerEntry | None:
        return next((e for e in self.payer if e.id == payer_id), None)


def parse_payer_map(text: str, name: str = "payers.toml") -> PayerMap:
    """The map from TOML text, validated (every ruleset it names must exist)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PayerMapError(f"{name}: not valid TOML ({exc})") from None
    try:
        payer_map = PayerMap.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise PayerMapError(f"{name}: {where}: {first['msg']} ({exc.error_count()} problem(s))") from None
    for entry in payer_map.payer:
        try:
            get_ruleset(entry.ruleset)
        except RulesetError as exc:
            raise PayerMapError(f"{name}: payer {entry.id!r}: {exc}") from None
    return payer_map


@cache
def load_payer_map(path: str | None = None) -> PayerMap:
    """The payer map in ``path`` (default: the shipped ``data/payers.toml``), loaded once."""
    file = Path(path) if path else PAYER_MAP_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PayerMapError(f"{file}: cannot be read ({exc.strerror or exc})") from None
    return parse_payer_map(text, file.name)


# --- reading Coverage (pure) --------------------------------------------------------------------
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalize_name(name: str) -> str:
    """``"Blue Cross & Blue Shield of Montana"`` -> ``"blue cross and blue shield of montana"``."""
    folded = name.casefold().replace("&", " and ")
    return " ".join(_NON_ALNUM.sub(" ", folded).split())


@dataclass(frozen=True)
class Payor:
    """What the record says about the payer of one Coverage."""

    reference: str | None
    display: str | None
    identifiers: tuple[tuple[str, str], ...]
    names: tuple[str, ...]
    kind: str | None  # the referenced resource type (Organization, Patient, RelatedPerson)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reference": self.reference, "display": self.display}
        if self.identifiers:
            out["identifier"] = [{"system": s, "value": v} for s, v in self.identifiers]
        return out


@dataclass(frozen=True)
class PayerChoice:
    """The ruleset to evaluate with, and how it was chosen (report ``payer``, CONTRACT §6)."""

    ruleset: str
    chosen_by: ChosenBy
    detail: str
    date: date
    coverage: str | None = None  # "Coverage/…" (the primary Coverage), or None
    payor: Payor | None = None
    payer: PayerEntry | None = None  # the map entry that matched
    matched_on: str | None = None  # "identifier" | "name"
    coverage_ruleset: str | None = None  # what the Coverage maps to (when something else was requested)
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "coverage": self.coverage,
            "payor": self.payor.to_json() if self.payor else None,
            "payer_id": self.payer.id if self.payer else None,
            "payer_label": self.payer.label if self.payer else None,
            "short_label": self.payer.short_label if self.payer else None,
            "matched_on": self.matched_on,
            "chosen_by": self.chosen_by,
            "ruleset": self.ruleset,
            "coverage_ruleset": self.coverage_ruleset,
            "date": self.date.isoformat(),
            "detail": self.detail,
        }


def _ref(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id', '?')}"


def _period_covers(period: Any, day: date) -> bool | None:
    """True/False, or None when a bound is present but not a date (the Coverage is unusable)."""
    if period is None:
        return True
    if not isinstance(period, dict):
        return None
    start, end = period.get("start"), period.get("end")
    start_d, end_d = parse_date(start), parse_date(end)
    if (start is not None and start_d is None) or (end is not None and end_d is None):
        return None
    return (start_d is None or start_d <= day) and (end_d is None or day <= end_d)


def _order_key(coverage: Mapping[str, Any]) -> tuple[int, str]:
    order = coverage.get("order")
    rank = order if isinstance(order, int) and not isinstance(order, bool) and order > 0 else 1 << 30
    return rank, str(coverage.get("id", ""))


def _identifiers(value: Any) -> list[tuple[str, str]]:
    items = value if isinstance(value, list) else [value]
    out = []
    for ident in items:
        if isinstance(ident, dict) and isinstance(ident.get("system"), str) and isinstance(ident.get("value"), str):
            out.append((ident["system"].strip(), ident["value"].strip()))
    return out


def _resolve(reference: str, owner: Mapping[str, Any], index: Mapping[str, Mapping[str, Any]]
             ) -> Mapping[str, Any] | None:
    if reference.startswith("#"):
        for contained in owner.get("contained") or []:
            if isinstance(contained, dict) and contained.get("id") == reference[1:]:
                return contained
        return None
    found = index.get(reference)
    if found is None and "/" in reference:  # an absolute URL: its last two segments
        found = index.get("/".join(reference.rstrip("/").split("/")[-2:]))
    return found


def read_payor(coverage: Mapping[str, Any], index: Mapping[str, Mapping[str, Any]]) -> list[Payor]:
    """Every payor of a Coverage, with the referenced resource's identifiers and names."""
    out = []
    for ref in coverage.get("payor") or []:
        if not isinstance(ref, dict):
            continue
        reference = ref.get("reference") if isinstance(ref.get("reference"), str) else None
        display = ref.get("display").strip() if isinstance(ref.get("display"), str) else None
        identifiers = _identifiers(ref.get("identifier"))
        names = [display] if display else []
        target = _resolve(reference, coverage, index) if reference else None
        kind = ref.get("type") if isinstance(ref.get("type"), str) else None
        if target is not None:
            kind = target.get("resourceType") if isinstance(target.get("resourceType"), str) else kind
            if kind == "Organization":
                identifiers += _identifiers(target.get("identifier"))
                for name in [target.get("name"), *(target.get("alias") or [])]:
                    if isinstance(name, str) and name.strip():
                        names.append(name.strip())
                if display is None and isinstance(target.get("name"), str):
                    display = target["name"].strip() or None
        elif reference and "/" in reference and not reference.startswith("#"):
            kind = kind or reference.rstrip("/").split("/")[-2]
        out.append(Payor(reference=reference, display=display,
                         identifiers=tuple(dict.fromkeys(identifiers)), names=tuple(dict.fromkeys(names)),
                         kind=kind))
    return out


def _coverage_classes(coverage: Mapping[str, Any]) -> set[tuple[str, str]]:
    out = set()
    for cls in coverage.get("class") or []:
        if not isinstance(cls, dict) or not isinstance(cls.get("value"), str):
            continue
        ctype = cls.get("type") if isinstance(cls.get("type"), dict) else {}
        for coding in ctype.get("coding") or []:
            if isinstance(coding, dict) and isinstance(coding.get("code"), str) and (
                coding.get("system") in (None, COVERAGE_CLASS_SYSTEM)
            ):
                out.add((coding["code"], cls["value"].strip()))
    return out


def _match(entry: PayerEntry, payor: Payor) -> str | None:
    wanted = {(i.system, i.value) for i in entry.identifiers}
    if wanted & set(payor.identifiers):
        return "identifier"
    names = {normalize_name(n) for n in entry.names}
    if names & {normalize_name(n) for n in payor.names}:
        return "name"
    return None


def match_payer(payer_map: PayerMap, payors: Iterable[Payor], coverage: Mapping[str, Any], day: date
                ) -> tuple[PayerEntry | None, Payor | None, str | None, list[PayerEntry]]:
    """(entry, payor, how it matched, entries that matched the payer but not the date/plan)."""
    classes = _coverage_classes(coverage)
    for payor in payors:  # Coverage.payor in order: the first payor the map knows decides
        best: tuple[tuple[int, int, int], PayerEntry, str] | None = None
        near: list[PayerEntry] = []
        for n, entry in enumerate(payer_map.payer):
            how = _match(entry, payor)
            if how is None:
                continue
            if entry.classes and not ({(c.type, c.value) for c in entry.classes} & classes):
                near.append(entry)
                continue
            if entry.effective and not entry.effective.covers(day):
                near.append(entry)
                continue
            key = (0 if entry.classes else 1, 0 if how == "identifier" else 1, n)
            if best is None or key < best[0]:
                best = (key, entry, how)
        if best is not None:
            return best[1], payor, best[2], []
        if near:
            return None, payor, None, near
    first = next(iter(payors), None)
    return None, first, None, []


def choose_ruleset(resources: Iterable[Mapping[str, Any]], payer_map: PayerMap, day: date, *,
                   requested: str | None, default: str, coverage_readable: bool = True,
                   full_urls: Mapping[str, Mapping[str, Any]] | None = None) -> PayerChoice:
    """The ruleset for this record: ``requested`` if given, else the primary Coverage's
    payer through the map, else ``default``; with the reason, and warnings for the report.

    ``day``: the date the Coverage must cover (the order's date, or the evaluation date).
    ``coverage_readable``: False when the app was not allowed to read Coverage.
    """
    resources = list(resources)
    index: dict[str, Mapping[str, Any]] = dict(full_urls or {})
    for res in resources:
        index.setdefault(_ref(res), res)
    coverages = [r for r in resources if r.get("resourceType") == "Coverage"]
    usable, unreadable_period = [], []
    for cov in coverages:
        if cov.get("status") != "active":
            continue
        covers = _period_covers(cov.get("period"), day)
        if covers is None:
            unreadable_period.append(_ref(cov))
        elif covers:
            usable.append(cov)
    primary = min(usable, key=_order_key) if usable else None

    entry = payor = how = None
    near: list[PayerEntry] = []
    if primary is not None:
        entry, payor, how, near = match_payer(payer_map, read_payor(primary, index), primary, day)
    coverage_ref = _ref(primary) if primary is not None else None
    on = day.isoformat()
    warnings: list[str] = [f"{ref}: its period is not a valid date range, so it was not used to choose the policy"
                           for ref in unreadable_period]

    # Why the Coverage does not decide (when it does not), in one sentence.
    if not coverage_readable:
        why_not = "the EHR did not let the app read the patient's Coverage"
    elif not coverages:
        why_not = "the record holds no Coverage"
    elif primary is None:
        why_not = f"no Coverage in the record is active on {on}"
    elif payor is None:
        why_not = f"the primary Coverage ({coverage_ref}) names no payor"
    elif entry is None and near:
        why_not = (f"the primary payer ({_payor_text(payor)}) is mapped, but not for "
                   + ("this plan" if all(e.classes for e in near) else f"an order dated {on}"))
    elif entry is None:
        why_not = f"the primary payer ({_payor_text(payor)}) is not in the payer map"
    else:
        why_not = ""

    common = dict(date=day, coverage=coverage_ref, payor=payor, payer=entry, matched_on=how)
    if requested:
        mapped = entry.ruleset if entry else None
        if mapped and mapped != requested:
            detail = (f"Evaluated under {requested} as requested; the primary Coverage ({coverage_ref}, "
                      f"{entry.label}) maps to {mapped}.")
            warnings.append(detail)
        elif mapped:
            detail = f"Evaluated under {requested} as requested, which is also the ruleset of {entry.label}."
        else:
            detail = f"Evaluated under {requested} as requested ({why_not})."
        return PayerChoice(ruleset=requested, chosen_by="requested", detail=detail,
                           coverage_ruleset=mapped, warnings=tuple(warnings), **common)
    if entry is not None:
        detail = (f"{entry.label} is the payer of the primary Coverage ({coverage_ref}, active on {on}); "
                  f"matched on its {how}; its policy is {entry.ruleset}.")
        return PayerChoice(ruleset=entry.ruleset, chosen_by="coverage", detail=detail,
                           coverage_ruleset=entry.ruleset, warnings=tuple(warnings), **common)
    detail = f"Evaluated under the default ruleset {default}: {why_not}."
    warnings.append(f"No payer policy could be chosen from Coverage ({why_not}); "
                    f"evaluated against the default ruleset {default}. Check that this is the patient's payer's policy.")
    return PayerChoice(ruleset=default, chosen_by="default", detail=detail, warnings=tuple(warnings), **common)


def _payor_text(payor: Payor) -> str:
    if payor.display:
        return payor.display
    if payor.identifiers:
        system, value = payor.identifiers[0]
        return f"{system}|{value}"
    return payor.reference or "unnamed"
