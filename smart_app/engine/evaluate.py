"""Evaluation: facts + ruleset + as-of date -> determination per indication.

The output is a pure function of (facts, ruleset, as_of): no clock, no I/O.
Determination order and primary-indication choice follow CONTRACT §2.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date

from fhir_mappings.facts import Diagnosis, IgOrder, PatientFacts

from . import model as m
from .attested import Attestation, AttestableItem, attestable_items
from .checks import (
    MET,
    MISSING,
    NA,
    NOT_MET,
    Context,
    DoseResult,
    Missing,
    Result,
    evaluate_check,
)
from .timeline import Timeline, build_timeline, latest_weight

COVERED = ("labeled", "off-label")
COVERAGE_RANK = {"labeled": 0, "off-label": 1, "experimental": 2, "unlisted": 3}
DETERMINATION_RANK = {"criteria-met": 0, "documentation-missing": 1, "criteria-not-met": 2, "not-covered": 3}
WEIGHT_WINDOW_DAYS = 90


@dataclass
class CriterionResult:
    criterion: m.Criterion
    result: Result


@dataclass
class IndicationResult:
    indication: m.Indication
    diagnoses: list[Diagnosis]
    named_by_order: bool
    criteria: list[CriterionResult]
    determination: str
    missing: list[Missing]
    dose: DoseResult
    # Clinician attestation (engine/attested.py): the attestable leaves still open or
    # decided by an answer, the criteria whose status rests on an answer, and why an
    # attestation did not count.
    attestable: list[AttestableItem] = field(default_factory=list)
    attested_criteria: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# The clinician's attestations for an indication, by attestable id (None: no attestation).
Attestations = Callable[[m.Indication], Mapping[str, Attestation]]


@dataclass
class Evaluation:
    ruleset: m.Ruleset
    as_of: date
    facts: PatientFacts
    timeline: Timeline
    primary: IndicationResult | None
    others: list[IndicationResult]
    determination: str
    missing: list[Missing]
    warnings: list[str] = field(default_factory=list)

    @property
    def dose(self) -> DoseResult:
        if self.primary is not None:
            return self.primary.dose
        return compute_dose(self.facts, self.timeline, None)


# --- dose --------------------------------------------------------------------------------------
def compute_dose(facts: PatientFacts, tl: Timeline, rng: m.DoseRange | None) -> DoseResult:
    order = tl.order
    if order is None:
        return DoseResult("not-applicable")
    weight, _ = latest_weight(facts, tl.as_of, WEIGHT_WINDOW_DAYS)
    if rng is not None:
        basis = rng.basis
    else:
        basis = "per-course" if order.course_count or not order.interval_days else "per-4-weeks"
    limits: tuple[float, float] | None = None
    if rng is not None:
        limits = rng.range_mg_per_kg
        if order.route == "SC" and rng.sc_range_mg_per_kg_per_week:
            lo, hi = rng.sc_range_mg_per_kg_per_week
            limits = (lo * 4, hi * 4)  # weekly SCIG range expressed per 4 weeks
    result = DoseResult("unknown", basis, weight, None, limits)

    per_dose = order.dose_mg_per_kg
    if per_dose is None:
        if order.dose_g is None:
            result.note = "the order's dose could not be read"
            return result
        if weight is None or not weight.value:
            result.note = f"no body weight in the {WEIGHT_WINDOW_DAYS} days before {tl.as_of.isoformat()}"
            return result
        per_dose = order.dose_g * 1000 / weight.value
    if basis == "per-4-weeks":
        if not order.interval_days:
            result.note = "the order has no dosing interval"
            return result
        mg_per_kg = per_dose * 28 / order.interval_days
    else:
        mg_per_kg = per_dose * (order.course_count or 1)
    if not math.isfinite(mg_per_kg):
        result.note = "the dose could not be computed from the order"
        return result
    result.mg_per_kg = round(mg_per_kg, 1)
    if limits is None:
        result.note = "the policy gives no dose range for this indication"
        return result
    shown = round(mg_per_kg)
    if shown > limits[1]:
        result.status = "above-range"
    elif shown < limits[0]:
        result.status = "below-range"
    else:
        result.status = "within-range"
    return result


# --- indications -------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "diagnosis"


def _unlisted(dx_label: str, ruleset: m.Ruleset) -> m.Indication:
    dx_label = " ".join(dx_label.split()) or "unnamed diagnosis"
    return m.Indication.model_construct(
        id=f"unlisted-{_slug(dx_label)}",
        label=dx_label,
        coverage="unlisted",
        diagnoses=[],
        also_requires=[],
        excludes=[],
        cite=m.Citation.model_construct(
            section="Experimental, investigational and unproven",
            quotes=["considered experimental, investigational and unproven for any indication not listed above"]
            if ruleset.id == "bcbsmt-ig-2013" else [],
            basis="" if ruleset.id == "bcbsmt-ig-2013" else f"not listed in {ruleset.citation}"),
        dose=None,
        criteria=[],
        note="",
        maintenance_is=None,
    )


def _active(facts: PatientFacts, as_of: date) -> list[Diagnosis]:
    return [d for d in facts.diagnoses if d.active and (d.when is None or d.when <= as_of)]


MAINTENANCE_WINDOW_DAYS = 180
COURSE_GAP_DAYS = 14  # doses closer than this belong to one course


def _maintenance(order: IgOrder | None, tl: Timeline) -> str:
    """Why the order is maintenance therapy ("" if it is not): a recurring schedule, or a
    course that follows two or more earlier courses in the last six months."""
    if order is None:
        return ""
    if order.interval_days and not order.course_count:
        return f"The order repeats every {order.interval_days:g} days"
    since = tl.as_of.toordinal() - MAINTENANCE_WINDOW_DAYS
    days = sorted({start for start, _end, _stop in tl.periods if start.toordinal() >= since})
    courses = 0
    last = None
    for day in days:
        if last is None or (day - last).days > COURSE_GAP_DAYS:
            courses += 1
        last = day
    if courses >= 2:
        return (f"{courses} earlier immune globulin courses in the last {MAINTENANCE_WINDOW_DAYS} days "
                "precede this one")
    return ""


def _named(d: Diagnosis, order: IgOrder | None) -> bool:
    """The order names this Condition: by reference, or by a reasonCode with its code."""
    if order is None:
        return False
    return d.ref in order.reason_refs or bool(d.codes & order.reason_code_keys)


def match_indications(
    facts: PatientFacts, ruleset: m.Ruleset, tl: Timeline, warnings: list[str] | None = None
) -> list[tuple[m.Indication, list[Diagnosis], bool]]:
    """Indications the record supports: (indication, its diagnoses, named by the order).

    Only an active, non-refuted Condition makes an indication: an order's reasonCode or
    reasonReference alone (no Condition, or one that is resolved, inactive, refuted or
    entered in error) does not. A Condition that also falls in an experimental row's value
    set (a broad covered code whose text names an experimental sub-condition, e.g. G61.0
    "Miller Fisher syndrome") counts for the experimental row only: a conflict between
    code and text is never resolved toward coverage.
    """
    warnings = warnings if warnings is not None else []
    active = _active(facts, tl.as_of)
    order = tl.order
    labels = ruleset.experimental_labels
    experimental = frozenset(labels)
    idx = ruleset.index
    inds = ruleset.indications
    # Only the indications that list one of the record's value sets can match: found through
    # the ruleset's index, in ruleset order (the loops below ask nothing of the others).
    present = frozenset().union(*(d.valuesets for d in active)) if active else frozenset()
    listed = idx.listing(present)
    # A covered row whose experimental sub-conditions (its `excludes`) another active
    # Condition names — relapsing-remitting MS on one problem-list entry, secondary
    # progressive MS on another — is a conflict: it is never resolved toward coverage. The
    # row's diagnoses go to the experimental row instead.
    redirect: dict[str, list[Diagnosis]] = {}
    suppressed: set[str] = set()
    for i in listed:
        ind = inds[i]
        sub = idx.excludes[i] & experimental
        if ind.coverage not in COVERED or not sub:
            continue
        hits = [d for d in active if (d.valuesets | d.note_valuesets) & sub]
        if not hits:
            continue
        mine = [d for d in active if d.valuesets & idx.diagnoses[i] and d not in hits]
        if mine:
            suppressed.add(ind.id)
            names = "; ".join(sorted({labels[vs] for d in hits for vs in (d.valuesets | d.note_valuesets) & sub}))
            warnings.append(f"The record documents {ind.label} and also {names}, which the policy "
                            "lists as experimental: the conflict is not resolved toward coverage; "
                            "evaluated as experimental.")
            for vs in {vs for d in hits for vs in (d.valuesets | d.note_valuesets) & sub}:
                redirect.setdefault(vs, []).extend(mine)
    # A row that belongs to another when the record also documents something else
    # (HIV-associated ITP is the HIV row; vasculitis with a connective tissue disease is on
    # the experimental list): its diagnoses go to that row.
    moved: dict[str, list[Diagnosis]] = {}
    for i in listed:
        ind = inds[i]
        for b, when in zip(ind.belongs_to, idx.belongs_when[i], strict=True):
            if ind.id in suppressed or not when & present:
                continue
            mine = [d for d in active if d.valuesets & idx.diagnoses[i]]
            suppressed.add(ind.id)
            target = ruleset.indication(b.row)
            warnings.append(f"{ind.label}: {b.reason} — evaluated as {target.label}.")
            moved.setdefault(b.row, []).extend(mine)
    # A covered Condition whose own code or text also names an experimental row (G61.0
    # "Miller Fisher syndrome"), or whose notes name one of the row's experimental
    # sub-conditions ("secondary progressive since 2021" on a G35 entry), is evaluated under
    # the experimental row. A note naming an unrelated experimental condition ("also has
    # chronic fatigue syndrome" on a CVID entry) is a comorbidity, not a conflict.
    hidden_pairs: set[tuple[str, str]] = set()
    for i in listed:
        ind = inds[i]
        if ind.coverage not in COVERED or ind.id in ruleset.routed or ind.id in suppressed:
            continue
        for d in active:
            if not d.valuesets & idx.diagnoses[i]:
                continue
            hidden = (d.valuesets & experimental) | (d.note_valuesets & idx.excludes[i] & experimental)
            if not hidden:
                continue
            hidden_pairs.add((ind.id, d.ref))
            names = "; ".join(sorted({labels[vs] for vs in hidden}))
            message = (f"{d.ref} ({d.display or d.code}) falls under {ind.label}, but its code, "
                       f"text or notes also name {names}, which the policy lists as experimental: "
                       "it is evaluated as experimental.")
            if message not in warnings:
                warnings.append(message)
            for vs in hidden:
                if d not in redirect.setdefault(vs, []):
                    redirect[vs].append(d)
    candidates = sorted(set(listed) | set(idx.listing(frozenset(redirect)))
                        | {idx.position[row] for row in moved})
    out = []
    for i in candidates:
        ind = inds[i]
        if ind.id in ruleset.routed or ind.id in suppressed:
            continue
        covered = ind.coverage in COVERED
        dx = list(dict.fromkeys(
            [d for vs in ind.diagnoses for d in redirect.get(vs, [])] + moved.get(ind.id, [])))
        for d in active:
            if not d.valuesets & idx.diagnoses[i] or (ind.id, d.ref) in hidden_pairs:
                continue
            if d.valuesets & idx.excludes[i]:
                continue
            if d not in dx:
                dx.append(d)
        if not dx:
            continue
        if any(vs not in present for vs in ind.also_requires):
            continue
        named = any(_named(d, order) for d in dx) or bool(order and order.reason_valuesets & idx.diagnoses[i])
        maintenance = _maintenance(order, tl) if covered and ind.maintenance_is else ""
        if maintenance:
            exp = ruleset.indication(ind.maintenance_is)
            assert exp is not None
            warnings.append(f"{maintenance}: maintenance therapy, which the policy lists as {exp.label}.")
            out.append((exp, dx, named))
            continue
        out.append((ind, dx, named))
    # An experimental-list diagnosis (e.g. diabetes, asthma) is only the indication when
    # immune globulin is requested for it: named by the order, or an order that names no
    # reason while no covered indication is documented. Otherwise it is a comorbidity.
    any_named = any(named for _, _, named in out)
    any_covered = any(ind.coverage in COVERED for ind, _, _ in out)
    names_reason = bool(order and (order.reason_refs or order.reason_code_keys or order.reason_codes))
    out = [
        (ind, dx, named) for ind, dx, named in out
        if ind.coverage in COVERED
        or named
        or (order is not None and not any_named and not any_covered and not names_reason)
    ]
    # An IVIG order for a diagnosis the policy does not list: an unlisted indication. The
    # diagnosis is the Condition the order names; failing that (an order naming nothing,
    # with nothing listed documented), an active Condition of the kinds immune globulin is
    # requested for (value set dx_ivig_relevant_unlisted).
    if order is not None and not any(named for _, _, named in out):
        named_dx = [d for d in active if _named(d, order)]
        if not named_dx and not out:
            named_dx = [d for d in active if "dx_ivig_relevant_unlisted" in d.valuesets]
        for d in named_dx:
            out.append((_unlisted(d.display or d.code, ruleset), [d], _named(d, order)))
    return out


def _merge_missing(items: list[Missing]) -> list[Missing]:
    merged: dict[str, list[str]] = {}
    for item in items:
        details = merged.setdefault(item.code, [])
        if item.detail and item.detail not in details:
            details.append(item.detail)
    return [Missing(code, " ".join(details)) for code, details in merged.items()]


def evaluate_indication(
    facts: PatientFacts,
    ruleset: m.Ruleset,
    tl: Timeline,
    ind: m.Indication,
    diagnoses: list[Diagnosis],
    named: bool,
    attested: Mapping[str, Attestation] | None = None,
) -> IndicationResult:
    dose = compute_dose(facts, tl, ind.dose)
    ctx = Context(facts, tl, ind, diagnoses, dose, attestations=attested or {})
    if ind.coverage in COVERED:
        criteria = [*ind.criteria, *ruleset.common_criteria]
    else:
        criteria = list(ruleset.not_covered_criteria)
    results = []
    for crit in criteria:
        if tl.status not in crit.applies_to:
            results.append(CriterionResult(crit, Result(NA, detail=f"applies to {', '.join(crit.applies_to)} only")))
            continue
        results.append(CriterionResult(crit, evaluate_check(crit.check, ctx)))
    statuses = {r.result.status for r in results}
    if ind.coverage not in COVERED:
        determination = "not-covered"
    elif NOT_MET in statuses:
        determination = "criteria-not-met"
    elif MISSING in statuses:
        determination = "documentation-missing"
    else:
        determination = "criteria-met"
    missing = _merge_missing([x for r in results if r.result.status == MISSING for x in r.result.missing])
    out = IndicationResult(ind, diagnoses, named, results, determination, missing, dose)
    plain = Context(facts, tl, ind, diagnoses, dose)
    for r in results:
        if r.result.status == NA:
            continue
        out.attestable += attestable_items(r.criterion, r.result, ctx)
        # A criterion rests on attestation when, without the answers, its status would differ.
        if ctx.attestations and evaluate_check(r.criterion.check, plain).status != r.result.status:
            out.attested_criteria.append(r.criterion.id)
    out.notes = list(ctx.warnings)
    return out


def _no_indication_detail(facts: PatientFacts, tl: Timeline, ruleset: m.Ruleset) -> str:
    """What to document when no diagnosis makes an indication, naming what the order says."""
    text = ("Record the diagnosis immune globulin is requested for as an active, confirmed "
            "Condition on the problem list (with its onset date).")
    order = tl.order
    if order is None:
        return text
    named = [display or code for _system, code, display in order.reason_codes if display or code]
    refs = [r for r in order.reason_refs]
    inactive = [d for d in facts.diagnoses if d.ref in refs or d.codes & order.reason_code_keys]
    if inactive:
        shown = ", ".join(f"{d.display or d.code} ({d.clinical_status or 'no status'})" for d in inactive[:2])
        return (f"The order names {shown}, which is not an active Condition: record the current "
                "diagnosis as an active, confirmed Condition on the problem list (with its onset date).")
    if named or refs:
        shown = ", ".join(named[:2]) or "a diagnosis"
        return (f"The order names {shown} as its reason, but the record holds no active, confirmed "
                f"Condition for it: {text[0].lower()}{text[1:]}")
    return text


def _rank(res: IndicationResult, index: int) -> tuple:
    return (
        COVERAGE_RANK[res.indication.coverage],
        DETERMINATION_RANK[res.determination],
        len(res.missing),
        index,
    )


def evaluate(facts: PatientFacts, ruleset: m.Ruleset, as_of: date,
             attestations: Attestations | None = None) -> Evaluation:
    """``attestations``: the clinician's answers for an indication of this ruleset (version),
    if any (smart_app/attestation.py reads them from QuestionnaireResponses)."""
    tl = build_timeline(facts, as_of)
    warnings = list(facts.warnings)
    matched = match_indications(facts, ruleset, tl, warnings)
    results = [evaluate_indication(facts, ruleset, tl, ind, dx, named,
                                   attestations(ind) if attestations is not None else None)
               for ind, dx, named in matched]
    if tl.on_therapy_unknown_start and any(lab.value is not None for lab in facts.lab("igg_total")):
        warnings.append(
            "The patient is already on immune globulin and no start date is documented: the "
            "IgG values found may be on-therapy troughs, not pre-treatment baselines."
        )
    if not results:
        return Evaluation(ruleset, as_of, facts, tl, None, [], "no-indication",
                          [Missing("indication", _no_indication_detail(facts, tl, ruleset))], warnings)
    ranked = sorted(range(len(results)), key=lambda i: (not results[i].named_by_order, _rank(results[i], i)))
    primary = results[ranked[0]]
    others = [results[i] for i in ranked[1:]]
    warnings.extend(n for n in primary.notes if n not in warnings)
    order = tl.order
    names_reason = bool(order and (order.reason_refs or order.reason_codes))
    if names_reason and not primary.named_by_order and primary.determination == "criteria-met":
        # The order is for a diagnosis the record does not hold as an active Condition: its
        # criteria cannot be checked, and another indication's approval is not this order's.
        primary.missing = [Missing("indication", _no_indication_detail(facts, tl, ruleset)
                                   + f" The record supports {primary.indication.label}; if immune "
                                   "globulin is for it, name it as the order's reason.")]
        primary.determination = "documentation-missing"
        warnings.append("The order's reason is not an active Condition in the record, so the "
                        f"criteria met for {primary.indication.label} are not this order's approval.")
    return Evaluation(ruleset, as_of, facts, tl, primary, others, primary.determination,
                      primary.missing, warnings)


__all__ = ["Evaluation", "IndicationResult", "CriterionResult", "evaluate", "compute_dose", "MET", "NA"]
