"""Leaf checks: one function per check ``type`` of the ruleset schema.

Each takes the check's parameters (from the ruleset file) and the evaluation context and
returns a three-valued Result: ``met`` (the record positively shows every qualifier the
check encodes), ``not-met`` (documented data contradicts it), ``missing`` (the record does
not show it either way; absent data is never ``not-met``), or ``not-applicable``.

The rule for every check: ``met`` only with positive evidence. A diagnosis code does not
prove its own qualifier, a status does not prove a reason ("stopped" is not "failed"), a
result with the wrong unit is not a result, and a lab drawn while the patient was on
immune globulin does not show the patient's own antibody levels. What the record cannot
show is ``missing``, with an item saying what to document. Pure functions; no I/O.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from fhir_mappings.dates import years_between
from fhir_mappings.facts import Diagnosis, Lab, PatientFacts, Therapy
from fhir_mappings.normalize import DOCUMENTED_FAILURE, LAB_UNITS

from . import model as m
from .timeline import Timeline, igg_results, latest_weight, pretreatment_igg

MET, NOT_MET, MISSING, NA = "met", "not-met", "missing", "not-applicable"
LAB_KINDS = frozenset(LAB_UNITS)


@dataclass(frozen=True)
class Evidence:
    reference: str
    summary: str
    origin: str = "record"  # "attested": a clinician's attestation, not the record (attested.py)


@dataclass(frozen=True)
class Missing:
    code: str
    detail: str


@dataclass
class Result:
    status: str
    evidence: list[Evidence] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    detail: str = ""
    components: list[Result] = field(default_factory=list)


@dataclass
class DoseResult:
    status: str  # within-range | above-range | below-range | unknown | not-applicable
    basis: str | None = None
    weight: Lab | None = None
    mg_per_kg: float | None = None
    range_mg_per_kg: tuple[float, float] | None = None
    note: str = ""


@dataclass
class Context:
    facts: PatientFacts
    tl: Timeline
    indication: m.Indication
    diagnoses: list[Diagnosis]
    dose: DoseResult
    warnings: list[str] = field(default_factory=list)
    # The clinician's attestations for this indication, by attestable id (engine/attested.py).
    attestations: Mapping[str, Any] = field(default_factory=dict)

    @property
    def as_of(self) -> date:
        return self.tl.as_of

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)


def days_before(day: date, days: int) -> date:
    """``day - days``, clamped at the earliest representable date (records can be odd)."""
    try:
        return day - timedelta(days=days)
    except OverflowError:
        return date.min


def _d(day: date | None) -> str:
    return day.isoformat() if day else "undated"


def _item(c: m.Leaf, default: str, found: str = "") -> Missing:
    """The missing-documentation item of a leaf: the ruleset's text (or a default), plus
    what the record was found to hold."""
    text = (c.document or default).strip()
    if found:
        text = f"{text} {found.strip()}"
    return Missing(c.missing, text)


def lab_evidence(lab: Lab, name: str | None = None) -> Evidence:
    return Evidence(lab.ref, f"{name or lab.label or lab.kind} {lab.shown()} on {_d(lab.date)}")


def dx_evidence(dx: Diagnosis) -> Evidence:
    when = dx.when.isoformat() if dx.when else "undated"
    severity = f", {dx.severity}" if dx.severity else ""
    return Evidence(dx.ref, f"{dx.display or dx.code} ({when}{severity})")


def therapy_evidence(t: Therapy) -> Evidence:
    reason = f": {t.reason}" if t.reason else ""
    kind = {"intolerance": "intolerance record", "allergy": "allergy record"}.get(t.kind, t.kind)
    return Evidence(t.ref, f"{t.display} — {kind} {t.status} {_d(t.date)}{reason}")


def _dedupe(evidence: list[Evidence]) -> list[Evidence]:
    return list(dict.fromkeys(evidence))


def _join(parts: list[str]) -> str:
    """Details joined once each (nested any/all groups repeat their parts' details)."""
    return "; ".join(dict.fromkeys(f for p in parts if p for f in p.split("; ") if f))


# --- IgG ---------------------------------------------------------------------------------
def _below(lab: Lab, bound: float, reference_range_counts: bool) -> bool | None:
    """True/False, or None when a lower-bound-only result (">300") cannot be compared."""
    assert lab.value is not None
    if lab.value < bound or (lab.comparator in {"<", "<="} and lab.value <= bound):
        return True
    if reference_range_counts and lab.low:
        return True
    if lab.comparator in {">", ">="} and lab.value < bound:
        return None
    return False


def _latest_days(labs: list[Lab], n: int, apart: int = 0) -> list[Lab]:
    """The latest result of each of the ``n`` most recent occasions (oldest first); with
    ``apart``, occasions at least that many days apart (two draws in one illness are one
    occasion)."""
    by_day: dict[date | None, Lab] = {}
    for lab in labs:  # labs are sorted oldest first: the last of a day wins
        by_day[lab.date] = lab
    days = sorted(by_day, key=lambda d: d or date.min)
    if apart <= 0 or n <= 1:
        return [by_day[d] for d in days[-n:]]
    chosen: list[date | None] = []
    for day in reversed(days):
        if not chosen or (day is not None and chosen[-1] is not None and (chosen[-1] - day).days >= apart):
            chosen.append(day)
        if len(chosen) == n:
            break
    return [by_day[d] for d in reversed(chosen)]


def check_igg(c: m.IggCheck, ctx: Context) -> Result:
    facts, tl = ctx.facts, ctx.tl
    everything = [x for x in igg_results(facts, ctx.as_of) if x.value is not None]
    pre = pretreatment_igg(facts, tl)
    if c.timing == "pretreatment" and pre is None:
        note = (f" {len(everything)} IgG result(s) were found, but the patient is already on immune "
                "globulin with no documented start date: they may be on-therapy troughs."
                if everything else "")
        return Result(
            MISSING,
            [lab_evidence(x, "IgG (timing vs. therapy unknown)") for x in everything[-3:]],
            [_item(c, "Document a total serum IgG drawn before immune globulin was first given "
                   "(a laboratory result with its date).", note),
             Missing("ivig-start-date", "Document the date immune globulin was first given "
                     "(the first administration, or the start date of the medication history), so "
                     "baseline and on-treatment IgG can be told apart.")],
            "Pre-treatment status of IgG cannot be established." + note,
        )
    pool = [x for x in (pre or []) if x.value is not None]
    bound = c.below_mg_dl if c.below_mg_dl is not None else c.at_least_mg_dl
    what = "pre-treatment" if c.timing == "pretreatment" else "total"
    if not pool:
        if c.timing == "any" and tl.status == "continuation" and c.below_mg_dl is not None:
            # On-therapy troughs below the threshold show the deficiency all the more.
            low = [x for x in everything if _below(x, c.below_mg_dl, c.below_reference_range_counts)]
            days = _latest_days(low, c.occasions, c.min_days_apart)
            if len(days) >= c.occasions:
                return Result(MET, [lab_evidence(x, "IgG (on therapy)") for x in days],
                              detail=f"IgG on therapy below {c.below_mg_dl:g} mg/dL")
            found = (f" The {len(everything)} IgG result(s) found were drawn on immune globulin and "
                     "are not below the threshold; a pre-treatment result is needed."
                     if everything else "")
            return Result(MISSING, [lab_evidence(x, "IgG (on therapy)") for x in everything[-3:]],
                          [_item(c, f"Document a serum IgG level (below {bound:g} mg/dL).", found)])
        when = " drawn before the first immune globulin dose" if c.timing == "pretreatment" else ""
        return Result(MISSING, [], [_item(c, f"Document a {what} serum IgG level{when}.")])
    if c.normal:
        lab = pool[-1]
        ev = [lab_evidence(x, "IgG") for x in pool[-3:]]
        if lab.low:
            return Result(NOT_MET, ev, detail=f"IgG {lab.shown()} is below the laboratory's range")
        if lab.ref_low is None:
            return Result(MISSING, ev, [_item(c, "Document the IgG with the laboratory's "
                          "age-specific reference range, to show it is normal.")])
        return Result(MET, ev, detail=f"IgG {lab.shown()} within the laboratory's range")
    days = _latest_days(pool, c.occasions, c.min_days_apart)
    ev = [lab_evidence(x, "IgG") for x in _latest_days(pool, max(3, c.occasions))]
    latest = days[-1]
    if c.below_mg_dl is not None:
        verdicts = [_below(x, c.below_mg_dl, c.below_reference_range_counts) for x in days]
        if verdicts[-1] is False:
            return Result(NOT_MET, ev, detail=f"latest {what} IgG {latest.shown()} vs. < {c.below_mg_dl:g} mg/dL")
        if verdicts[-1] is None:
            return Result(MISSING, ev, [_item(c, "Document the measured IgG value.",
                          "The IgG was reported only as a lower bound.")])
        if len(days) < c.occasions or not all(verdicts):
            return Result(MISSING, ev, [_item(c, f"Document {c.occasions} {what} IgG results at least "
                          f"{c.min_days_apart} days apart, each below {c.below_mg_dl:g} mg/dL "
                          "(persistent hypogammaglobulinemia).", f"Found {sum(1 for v in verdicts if v)} "
                          "qualifying occasion(s).")])
        low_note = " (below the laboratory's range)" if latest.value >= c.below_mg_dl else ""
        return Result(MET, ev, detail=f"{what} IgG {', '.join(x.shown() for x in days)}{low_note} "
                      f"vs. < {c.below_mg_dl:g} mg/dL")
    assert c.at_least_mg_dl is not None
    if latest.comparator in {"<", "<="} and latest.value > c.at_least_mg_dl:
        return Result(MISSING, ev, [_item(c, "Document the measured IgG value.",
                      "The IgG was reported only as an upper bound.")])
    ok = latest.value >= c.at_least_mg_dl and latest.comparator not in {"<", "<="}
    return Result(MET if ok else NOT_MET, ev,
                  detail=f"latest IgG {latest.shown()} vs. ≥ {c.at_least_mg_dl:g} mg/dL")


def check_igg_recent(c: m.IggRecentCheck, ctx: Context) -> Result:
    since = days_before(ctx.as_of, c.within_days)
    start = ctx.tl.first_dose
    # A trough is drawn on therapy: a baseline from before the first dose is not one.
    recent = [x for x in igg_results(ctx.facts, ctx.as_of) if x.date is not None and x.date >= since
              and (start is None or x.date >= start)]
    if recent:
        return Result(MET, [lab_evidence(x, "IgG") for x in recent[-3:]])
    return Result(MISSING, [], [_item(c, f"Document an IgG trough level drawn within "
                  f"{c.within_days} days before {ctx.as_of.isoformat()} (just before an infusion).")])


# --- infections ------------------------------------------------------------------------------
BACTERIAL = ("bacterial_infection", "serious_bacterial_infection", "life_threatening_infection")
SEVERITY_WORDS = {
    "any": "bacterial infection",
    "serious": "serious bacterial infection (e.g. bacteremia, meningitis, pneumonia)",
    "significant": "significant bacterial infection",
    "severe": "severe bacterial infection",
    "life-threatening": "life-threatening bacterial infection",
}


def _qualifies(d: Diagnosis, severity: str) -> bool:
    if severity == "any":
        return True
    if severity == "serious":
        return "serious_bacterial_infection" in d.valuesets
    if severity == "significant":
        return "serious_bacterial_infection" in d.valuesets or d.at_least("moderate") \
            or "life_threatening_infection" in d.valuesets
    if severity == "severe":
        return d.at_least("severe") or "life_threatening_infection" in d.valuesets
    return d.at_least("life-threatening") or "life_threatening_infection" in d.valuesets


def infection_list(ctx: Context, severity: str = "any") -> list[Diagnosis]:
    return [d for d in ctx.facts.diagnoses
            if d.valuesets & set(BACTERIAL) and _qualifies(d, severity)
            and (d.when is None or d.when <= ctx.as_of)]


def check_infections(c: m.InfectionsCheck, ctx: Context) -> Result:
    # Infections before therapy began are the ones that justify it; for a new start the
    # window ends at the evaluation date.
    end = ctx.tl.first_dose or ctx.as_of
    infections = infection_list(ctx, c.severity)
    if c.within_days is not None:
        start = days_before(end, c.within_days)
        infections = [d for d in infections if d.when is not None and start <= d.when <= end]
    ev = [dx_evidence(d) for d in infections]
    kind = SEVERITY_WORDS[c.severity]
    window = f" within {c.within_days} days before {end.isoformat()}" if c.within_days else ""
    if len(infections) >= c.min_count:
        return Result(MET, ev, detail=f"{len(infections)} {kind}(s){window}")
    others = [d for d in infection_list(ctx) if d not in infections][:3]
    found = f"Found {len(infections)}."
    if others and c.severity != "any":
        found += (" Other bacterial infections on record do not show the qualifier (record "
                  "Condition.severity, or the invasive diagnosis).")
    need = f"at least {c.min_count} {kind}(s){window}"
    return Result(MISSING, ev + [dx_evidence(d) for d in others],
                  [_item(c, f"Document {need} on the problem list, each as a dated Condition.", found)])


# --- vaccine response ------------------------------------------------------------------------
ANTIGEN = {
    # antigen: (vaccine value sets, titer kind, post window days)
    "pneumococcal": (("vaccine_pneumococcal_polysaccharide",), "pneumococcal_igg", (21, 42)),
    "tetanus": (("vaccine_tetanus",), "tetanus_igg", (21, 28)),
    "diphtheria": (("vaccine_diphtheria",), "diphtheria_igg", (21, 28)),
}
PRE_WINDOW_DAYS = 365
OFF_THERAPY_DAYS = 120  # Re-Evaluation Table: "discontinued at least four months"
UNTESTED = "no dated"


def _window(titers: list[Lab], dates: list[date], lo: date, hi: date) -> list[Lab]:
    """Titers dated in [lo, hi], through the date index (titers sorted by date)."""
    return titers[bisect.bisect_left(dates, lo):bisect.bisect_right(dates, hi)]


def _antigen_response(c: m.VaccineResponseCheck, ctx: Context, antigen: str) -> Result:
    vaccine_sets, kind, (lo, hi) = ANTIGEN[antigen]
    vaccinations = [
        v for v in ctx.facts.vaccinations
        if v.date is not None and v.date <= ctx.as_of and set(vaccine_sets) & v.kinds
    ]
    titers = sorted((x for x in ctx.facts.lab(kind) if x.date is not None and x.value is not None
                     and x.date <= ctx.as_of), key=lambda x: (x.date, x.ref))
    if not vaccinations:
        return Result(MISSING, [lab_evidence(t) for t in titers[-3:]],
                      detail=f"{UNTESTED} {antigen} vaccination to pair titers with")
    dates = [t.date for t in titers]
    # Per vaccination only its own windows are touched: whether a day is on therapy is worked
    # out once per day, the baseline of a label is a lookup, and the evidence is built only
    # for a result that is kept (a list filled in place once the result is known).
    on_by_day: dict[date, bool] = {}

    def on(day: date) -> bool:
        hit = on_by_day.get(day)
        if hit is None:
            hit = on_by_day[day] = not ctx.tl.off_therapy_at(day, OFF_THERAPY_DAYS)
        return hit

    best: Result | None = None
    for vac in sorted(vaccinations, key=lambda v: v.date, reverse=True):
        post = _window(titers, dates, vac.date + timedelta(days=lo), vac.date + timedelta(days=hi))
        pre = _window(titers, dates, days_before(vac.date, PRE_WINDOW_DAYS), vac.date)
        if not post:
            res = Result(MISSING, [Evidence(vac.ref, f"{vac.display} on {_d(vac.date)}")],
                         detail=f"no {antigen} titer {lo}–{hi} days after the vaccination of {_d(vac.date)}")
            best = best or res
            continue
        ev: list[Evidence] = []
        on_therapy = [t for t in pre + post if on(t.date)]
        last_pre = {p.label: p for p in pre} if c.require_pre_titer else {}
        inadequate, adequate, uninterpretable = [], [], []
        for t in post:
            protective = c.protective_pneumococcal_ug_ml if antigen == "pneumococcal" else t.ref_low
            if protective is None:
                uninterpretable.append(t)
                continue
            low = t.value < protective
            if c.require_pre_titer:
                # A fold-rise needs the patient's own titers: none drawn on immune globulin.
                baseline = last_pre.get(t.label)
                if on(t.date) or baseline is None or on(baseline.date):
                    uninterpretable.append(t)
                    continue
                rise = t.value >= 4 * baseline.value if baseline.value > 0 else t.value > 0
                (inadequate if (low and not rise) else adequate).append(t)
            elif low:
                # Donor antibody only raises a titer: a low one on therapy is still low.
                inadequate.append(t)
            elif on(t.date):
                uninterpretable.append(t)  # a protective titer on therapy may be the donors'
            else:
                adequate.append(t)
        share_rule = antigen == "pneumococcal" and not c.require_pre_titer and (
            c.min_serotypes > 1 or c.min_share_nonprotective > 0)
        if share_rule:
            res = _share_nonprotective(c, ev, post)
        elif adequate and not inadequate and not uninterpretable:
            res = Result(NOT_MET, ev, detail=f"adequate {antigen} response documented")
        elif c.severe and antigen == "pneumococcal":
            res = _severe_pneumococcal(c, ev, post, on_therapy, bool(inadequate))
        elif inadequate:
            res = Result(MET, ev, detail=f"inadequate {antigen} response: {len(inadequate)} of "
                         f"{len(post)} post-vaccination titer(s) below protective level"
                         + ("" if not c.require_pre_titer else " without a 4-fold rise"))
        elif adequate and not uninterpretable:
            res = Result(NOT_MET, ev, detail=f"adequate {antigen} response documented")
        else:
            why = []
            if on_therapy:
                why.append("titers drawn while on immune globulin do not show the patient's own response")
            if c.require_pre_titer and not on_therapy:
                why.append("no pre-vaccination titer for a fold-rise")
            if any(t.ref_low is None for t in uninterpretable) and antigen != "pneumococcal":
                why.append("no protective level stated by the laboratory")
            res = Result(MISSING, ev, detail=f"{antigen} titers not interpretable: "
                         + ("; ".join(why) or "see the results"))
        if res.status == MET or best is None or best.status == MISSING:  # kept: its evidence
            ev += [Evidence(vac.ref, f"{vac.display} on {_d(vac.date)}")]
            ev += [lab_evidence(t) for t in pre + post]
        if res.status == MET:
            return res
        if best is None or best.status == MISSING:
            best = res
    assert best is not None
    return best


def _share_nonprotective(c: m.VaccineResponseCheck, ev: list[Evidence], post: list[Lab]) -> Result:
    """Low post-vaccination titers in enough serotypes: "failure to form antibodies" is not one
    low serotype among protective ones (a low titer on therapy is still low: donor antibody
    only raises it)."""
    latest = {t.label: t for t in post}
    low = sum(1 for t in latest.values() if t.value < c.protective_pneumococcal_ug_ml)
    detail = f"{low} of {len(latest)} pneumococcal serotypes below {c.protective_pneumococcal_ug_ml:g} µg/mL after the vaccination"
    if len(latest) < c.min_serotypes:
        return Result(MISSING, ev, detail=f"{detail}; at least {c.min_serotypes} serotypes are needed")
    if low / len(latest) >= max(c.min_share_nonprotective, 1e-9):
        return Result(MET, ev, detail=f"inadequate pneumococcal response: {detail}")
    return Result(NOT_MET, ev, detail=f"adequate pneumococcal response: {detail}")


def _severe_pneumococcal(c: m.VaccineResponseCheck, ev: list[Evidence], post: list[Lab],
                         on_therapy: list[Lab], inadequate: bool) -> Result:
    """"Severe polysaccharide nonresponsiveness": at most a few serotypes protective."""
    own = [t for t in post if t not in on_therapy]
    latest = {t.label: t for t in own}
    protective = sum(1 for t in latest.values() if t.value >= c.protective_pneumococcal_ug_ml)
    detail = f"{protective} of {len(latest)} serotypes protective after the vaccination"
    if len(latest) < c.severe_min_serotypes:
        return Result(MISSING, ev, detail=f"{detail}; at least {c.severe_min_serotypes} serotypes "
                      "tested off immune globulin are needed to call the nonresponse severe")
    if protective <= c.severe_max_protective and inadequate:
        return Result(MET, ev, detail=f"severe pneumococcal nonresponse: {detail}")
    if protective > c.severe_max_protective:
        return Result(NOT_MET, ev, detail=f"not a severe nonresponse: {detail}")
    return Result(MISSING, ev, detail=f"{detail}; pre-vaccination titers are needed for the fold-rise")


def _combine_any(parts: list[Result]) -> str:
    """met if any part is met; not-met if every tested part is not-met; else missing."""
    if any(p.status == MET for p in parts):
        return MET
    tested = [p for p in parts if not p.detail.startswith(UNTESTED)]
    if tested and all(p.status == NOT_MET for p in tested):
        return NOT_MET
    return MISSING


def check_vaccine_response(c: m.VaccineResponseCheck, ctx: Context) -> Result:
    parts = {a: _antigen_response(c, ctx, a) for a in c.antigens}
    evidence = _dedupe([e for p in parts.values() for e in p.evidence])
    details = _join([p.detail for p in parts.values()])
    if c.both_classes:
        # "protein and polysaccharide antigens": a toxoid and the pneumococcal vaccine.
        protein = _combine_any([parts[a] for a in ("tetanus", "diphtheria") if a in parts])
        poly = _combine_any([parts[a] for a in ("pneumococcal",) if a in parts])
        status = NOT_MET if NOT_MET in (protein, poly) else MET if protein == poly == MET else MISSING
    else:
        status = _combine_any(list(parts.values()))
    if status == MET:
        return Result(MET, evidence, detail=_join([p.detail for p in parts.values() if p.status == MET]))
    if status == NOT_MET:
        return Result(NOT_MET, evidence, detail=details)
    pre = "pre- and " if c.require_pre_titer else ""
    severe = (f" For a severe nonresponse, at most {c.severe_max_protective} of at least "
              f"{c.severe_min_serotypes} pneumococcal serotypes may be protective.") if c.severe else ""
    if c.min_serotypes > 1:
        severe += (f" At least {c.min_serotypes} pneumococcal serotypes, {c.min_share_nonprotective:.0%} "
                   "or more of them below the protective level.")
    if c.both_classes:
        severe += " Both a protein antigen (tetanus or diphtheria) and the pneumococcal polysaccharide vaccine."
    default = (f"Document {pre}post-vaccination antibody titers paired with a dated vaccination "
               "(pneumococcal polysaccharide vaccine: titers 3–6 weeks after; tetanus/diphtheria: "
               "3–4 weeks after), drawn before immune globulin was started or at least four months "
               "after it was stopped." + severe)
    return Result(MISSING, evidence, [_item(c, default, f"Found: {details}." if details else "")], details)


# --- subclasses, age, platelets --------------------------------------------------------------
def check_igg_subclass(c: m.SubclassCheck, ctx: Context) -> Result:
    labs = [x for x in ctx.facts.lab("igg_subclasses") if x.date is not None and x.date <= ctx.as_of]
    infections = [d.when for d in infection_list(ctx) if d.when is not None]
    by_day: dict[date, list[Lab]] = {}
    for lab in labs:
        by_day.setdefault(lab.date, []).append(lab)

    def infection_free(day: date) -> bool:
        return not any(days_before(day, c.infection_free_days) <= when <= day for when in infections)

    low_days = [d for d, xs in by_day.items() if any(x.low for x in xs)]
    usable = [d for d in low_days if infection_free(d)]
    ev = [lab_evidence(x) for x in labs[-8:]]
    # "Deficiency of one or more IgG subclasses … assessed on at least two occasions": the
    # same subclass low each time (IgG2 low once and IgG3 low once is not a deficiency shown
    # twice).
    by_subclass: dict[str, set[date]] = {}
    for day in usable:
        for x in by_day[day]:
            if x.low:
                by_subclass.setdefault(x.label, set()).add(day)
    repeated = {label: days for label, days in by_subclass.items() if len(days) >= c.occasions}
    if repeated:
        label, days = max(repeated.items(), key=lambda kv: len(kv[1]))
        return Result(MET, ev, detail=f"{label or 'IgG subclass'} low on {len(days)} occasions with "
                      f"no infection recorded in the {c.infection_free_days} days before")
    interpretable = [d for d, xs in by_day.items() if any(x.ref_low is not None or x.interpretation for x in xs)]
    if len(interpretable) >= c.occasions and not low_days:
        return Result(NOT_MET, ev, detail="IgG subclasses within the reference range")
    during = len(low_days) - len(usable)
    found = f"Found {max((len(d) for d in by_subclass.values()), default=0)} qualifying occasion(s) of one subclass" + (
        f"; {during} low result(s) were drawn within {c.infection_free_days} days of an infection" if during else "") + "."
    return Result(MISSING, ev, [_item(c, f"Document IgG subclass levels with the laboratory's "
                  f"age-specific reference range on at least {c.occasions} occasions, drawn while the "
                  "patient was free of infection.", found)])


def check_age(c: m.AgeCheck, ctx: Context) -> Result:
    born = ctx.facts.birth_date
    if born is None:
        return Result(MISSING, [], [_item(c, "Record the patient's date of birth.")])
    years = years_between(born, ctx.as_of)
    days = (ctx.as_of - born).days
    ev = [Evidence(ctx.facts.patient_ref, f"age {years} years ({days} days) on {ctx.as_of.isoformat()}")]
    ok = True
    if c.min_years is not None and years < c.min_years:
        ok = False
    if c.under_years is not None and years >= c.under_years:
        ok = False
    if c.max_days is not None and days > c.max_days:
        ok = False
    return Result(MET if ok else NOT_MET, ev)


def check_platelets(c: m.PlateletCheck, ctx: Context) -> Result:
    since = days_before(ctx.as_of, c.within_days)
    recent = [x for x in ctx.facts.lab("platelets")
              if x.date is not None and since <= x.date <= ctx.as_of and x.value is not None]
    if not recent:
        return Result(MISSING, [], [_item(c, f"Document a platelet count from the last "
                      f"{c.within_days} days.")])
    lab = recent[-1]
    ok = lab.value < c.below_per_ul
    return Result(MET if ok else NOT_MET, [lab_evidence(lab, "Platelets")],
                  detail=f"{lab.value:,.0f}/µL vs. < {c.below_per_ul:,.0f}/µL")


# --- documented findings, therapies, severity -------------------------------------------------
def _lab_says(lab: Lab, result: str) -> bool | None:
    """Whether a lab result is positive / negative: its coded or worded result, else its
    interpretation flag or the laboratory's range (a numeric anti-GAD titer above the upper
    limit is positive). None when it says neither."""
    if lab.qualitative is not None:
        return lab.qualitative == result
    flag = lab.interpretation
    positive = flag in {"H", "HH", "HU", "POS", "A", "AA", "DET"} or (
        lab.value is not None and lab.ref_high is not None and lab.value > lab.ref_high)
    negative = flag in {"N", "NEG", "ND"} or (
        lab.value is not None and lab.ref_high is not None and lab.value <= lab.ref_high)
    if not (positive or negative):
        return None
    return positive if result == "positive" else negative


PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


def check_documented(c: m.DocumentedCheck, ctx: Context) -> Result:
    wanted = set(c.valuesets)
    until = (ctx.tl.first_dose or ctx.as_of) if c.window_ends == "first-dose" else ctx.as_of
    since = days_before(until, c.within_days) if c.within_days else None
    own = {d.ref for d in ctx.diagnoses}

    def in_window(day: date | None) -> bool:
        if since is None:
            return day is None or day <= until
        return day is not None and since <= day <= until

    ev: list[Evidence] = []
    negative: list[Evidence] = []
    unshown: list[Evidence] = []  # a report whose conclusion does not show the result
    for dx in ctx.facts.diagnoses:
        if c.scope == "indication" and dx.ref not in own:
            continue
        # A Condition's notes speak for that Condition only when it is the indication's
        # (an osteoarthritis note "unable to walk" says nothing about the Guillain-Barré).
        named = dx.valuesets | (dx.note_valuesets if dx.ref in own else frozenset())
        if wanted & named and (dx.active or c.include_resolved) and in_window(dx.when):
            ev.append(dx_evidence(dx))
    if c.contradicted_by and any(set(c.contradicted_by) & d.valuesets and d.active
                                 for d in ctx.facts.diagnoses):
        against = [dx_evidence(d) for d in ctx.facts.diagnoses
                   if set(c.contradicted_by) & d.valuesets and d.active]
        return Result(NOT_MET, against, detail="the record documents the opposite")
    # A report or procedure coded as a laboratory test is not its result: the result is
    # read from the Observation (a DiagnosticReport coded "VDRL" may say "reactive").
    qualifying = wanted - LAB_KINDS
    if not c.conditions_only and c.scope == "record":
        for f in ctx.facts.findings:
            if not in_window(f.date):
                continue
            coded = bool(qualifying & f.valuesets)
            # A report whose own conclusion names the finding documents it too ("unable to
            # walk independently" in a neurology note); with conclusion_all, the report must
            # be of the right kind and its conclusion must state the required result.
            if not coded and (c.conclusion_all or not qualifying & f.text_valuesets):
                continue
            conclusion = f": {f.conclusion}" if f.conclusion else ""
            e = Evidence(f.ref, f"{f.display} on {_d(f.date)}{conclusion}")
            shown = all(v in f.text_valuesets for v in c.conclusion_all)
            if shown and c.percent_above is not None:
                stated = [float(x) for x in PERCENT.findall(f.conclusion)]
                shown = not stated or max(stated) > c.percent_above
            (ev if shown else unshown).append(e)
        for t in ctx.facts.therapies:
            current = t.status in {"active", "in-progress"} or not c.therapy_active
            if wanted & t.valuesets and t.given and current and in_window(t.date):
                ev.append(therapy_evidence(t))
    limit, hiv_limit = c.value_below, c.value_below_if_hiv
    hiv = _hiv_status(ctx.facts)
    indeterminate: list[Evidence] = []
    lab_ev: list[Evidence] = []
    unread: list[Evidence] = []
    for kind in sorted(wanted):
        labs = [x for x in ctx.facts.lab(kind) if in_window(x.date)]
        if c.conditions_only or c.scope == "indication" or not labs:
            continue
        lab = labs[-1]  # the latest result decides
        if limit is not None:
            if lab.value is None:
                continue
            if lab.value < limit:
                lab_ev.append(lab_evidence(lab))
            elif hiv_limit is not None and lab.value < hiv_limit and hiv is None:
                indeterminate.append(lab_evidence(lab))
            elif hiv_limit is not None and lab.value < hiv_limit and hiv:
                lab_ev.append(lab_evidence(lab, f"{lab.label or lab.kind} (HIV-positive limit)"))
            else:
                negative.append(lab_evidence(lab))
        elif c.lab_result == "any":
            ev.append(lab_evidence(lab))
        else:
            says = _lab_says(lab, c.lab_result)
            if says is None:
                unread.append(lab_evidence(lab))
            else:
                (ev if says else negative).append(lab_evidence(lab))
    if limit is not None and (lab_ev or negative):
        # A measured value is the most specific evidence: it decides over a coded category
        # (a gestational age of 39 weeks over a "preterm" problem-list entry).
        return Result(MET, _dedupe(lab_ev)) if lab_ev else Result(
            NOT_MET, negative, detail=f"result is not below {limit:g}")
    ev = _dedupe(ev)
    if len(ev) >= c.min_count:
        return Result(MET, ev)
    if negative:
        why = f"not below {limit:g}" if limit is not None else f"not {c.lab_result}"
        return Result(NOT_MET, negative, detail=f"result is {why}")
    if indeterminate:
        return Result(MISSING, indeterminate, [_item(c, "Document the result.", (
            f"The result is below {hiv_limit:g} but not below {limit:g}: it meets the criterion only "
            "if the patient is HIV-seropositive. Document the HIV status."))])
    found = ""
    if unshown:
        found = ("Found " + "; ".join(e.summary for e in unshown[:2])
                 + " — the report does not state the result the policy requires.")
    elif unread:
        found = ("Found " + "; ".join(e.summary for e in unread[:2])
                 + f" — the result does not say whether it is {c.lab_result} (no interpretation or range).")
    elif ev:
        found = f"Found {len(ev)} of the {c.min_count} needed."
    return Result(MISSING, ev + unshown[:2] + unread[:2], [_item(c, "Document it in the record "
                  "(problem list, procedure report or laboratory result).", found)])


def _hiv_status(facts: PatientFacts) -> bool | None:
    """True (HIV infection documented), False (latest HIV test negative), None (unknown)."""
    if facts.diagnoses_in("hiv_infection"):
        return True
    tests = [x for x in facts.lab("hiv_test") if x.qualitative is not None]
    if not tests:
        return None
    return tests[-1].qualitative == "positive"


LOCAL_FORMS = "tx_has_local_forms"


FOR_SLACK_DAYS = 30  # a therapy started this long before the diagnosis was dated may be for it


def _for_another_condition(t: Therapy, ctx: Context) -> str:
    """The therapy was given for something else: its reasonReference names another
    Condition, its reasonCode another diagnosis, or it began (and, for a course, ended) well
    before the indication's diagnosis. "Refractory to corticosteroids" means for this
    disease, not a COPD taper five years ago."""
    own_refs = {d.ref for d in ctx.diagnoses}
    own_sets = set(ctx.indication.diagnoses)
    if t.for_refs:
        return "" if set(t.for_refs) & own_refs else "given for another condition"
    dx_sets = {v for v in t.for_valuesets if v.startswith("dx_")}
    if dx_sets and not dx_sets & own_sets:
        return "given for another condition"
    # A reasonCode naming something that is not this indication (its codes or its value
    # sets): "COPD exacerbation", "cellulitis" (treatment, not the prophylaxis asked for).
    if (t.for_codes or t.for_text) and not (t.for_valuesets & own_sets) and not (
            t.for_codes & {k for d in ctx.diagnoses for k in d.codes}):
        return f"given for {t.for_text or 'another condition'} (reasonCode), not for this indication"
    # An exacerbation's or crisis's onset dates the episode: treatment before it may well
    # have been for the same disease (and failed to prevent it).
    onsets = [d.when for d in ctx.diagnoses if d.when is not None and not d.episode]
    if t.date is not None and onsets and not dx_sets & own_sets:
        onset = min(onsets)
        ended = t.end or (t.date if t.status in {"completed", "stopped"} else None)
        if t.date < days_before(onset, FOR_SLACK_DAYS) and ended is not None and ended < onset:
            return f"given and stopped before the diagnosis ({onset.isoformat()})"
    return ""


def _why_not(t: Therapy, c: m.PriorTherapyCheck, ctx: Context | None = None) -> str:
    """Why a therapy on record does not show what the criterion needs ("" if it does)."""
    if ctx is not None and DOCUMENTED_FAILURE not in t.valuesets:
        other = _for_another_condition(t, ctx)
        if other:
            return f"{t.display}: {other}"
    accepted = set(c.outcomes) & t.outcomes
    if not accepted:
        stated = ", ".join(sorted(t.outcomes)) if t.outcomes else "no reason stated"
        return f"{t.display} ({t.status}): {stated}"
    if accepted == {"contraindicated"}:
        return ""
    if not t.given and t.kind not in {"intolerance", "allergy"}:
        return f"{t.display} ({t.status}): never given"
    if t.kind == "medication" and c.route == "systemic":
        if t.route == "local":
            return f"{t.display}: a local (topical, inhaled or similar) form, not systemic therapy"
        if t.route is None and LOCAL_FORMS in t.valuesets:
            return f"{t.display}: the route or dose form is not recorded (a systemic form is needed)"
    return ""


def check_prior_therapy(c: m.PriorTherapyCheck, ctx: Context) -> Result:
    sets = list(c.valuesets) + ([DOCUMENTED_FAILURE] if c.any_documented_failure else [])
    tried = [t for t in ctx.facts.therapies if set(sets) & t.valuesets
             and (t.date is None or t.date <= ctx.as_of)]
    why = {t.ref: _why_not(t, c, ctx if ctx.indication.coverage in ("labeled", "off-label") else None)
           for t in tried}
    good = [t for t in tried if not why[t.ref]]
    reasons = [why[t.ref] for t in tried if why[t.ref]]
    found = ("Found, but not counted: " + "; ".join(dict.fromkeys(reasons[:4])) + ".") if reasons else ""
    outcome_words = {"failed": "failed (ineffective)", "inadequate": "did not control the disease",
                     "intolerant": "was not tolerated", "contraindicated": "is contraindicated"}
    default = ("Document, for the standard therapy given for this condition, that it "
               + " or ".join(outcome_words[o] for o in c.outcomes)
               + ": the medication with its route and the reason it was stopped (status reason), an "
               "intolerance or allergy record, or a documented contraindication. Counseling or "
               "monitoring notes are not an outcome.")
    if c.all_of:
        lacking = [vs for vs in c.valuesets if not any(vs in t.valuesets for t in good)]
        if not lacking and good:
            return Result(MET, [therapy_evidence(t) for t in good])
        return Result(MISSING, [therapy_evidence(t) for t in tried],
                      [_item(c, default, found)])
    if len({t.ref for t in good}) >= c.min_count:
        return Result(MET, [therapy_evidence(t) for t in good])
    return Result(MISSING, [therapy_evidence(t) for t in tried], [_item(c, default, found)])


ACTIVE_STATUSES = {"active", "recurrence", "relapse"}


def check_severity(c: m.SeverityCheck, ctx: Context) -> Result:
    qualifying = [d for d in ctx.diagnoses if d.at_least(c.at_least)
                  and (not c.active or d.clinical_status in ACTIVE_STATUSES)]
    if qualifying:
        return Result(MET, [dx_evidence(d) for d in qualifying])
    recorded = [d for d in ctx.diagnoses if d.severity]
    found = ""
    if recorded:
        found = "Recorded: " + ", ".join(f"{d.display or d.code} — {d.severity}" for d in recorded[:2]) + "."
    elif c.active and any(d.at_least(c.at_least) for d in ctx.diagnoses):
        found = "The condition is not recorded as clinically active."
    active = " and active (clinical status active)" if c.active else ""
    return Result(MISSING, [dx_evidence(d) for d in ctx.diagnoses[:1]], [_item(c,
                  f"Record the condition's severity as {c.at_least}{active} (Condition.severity) with "
                  "the findings that make it so.", found)])


def check_diagnosis_age(c: m.DiagnosisAgeCheck, ctx: Context) -> Result:
    dates: list[tuple[date, Evidence]] = []
    for d in ctx.diagnoses:
        if c.dated_by_conditions and not set(c.dated_by_conditions) & d.valuesets:
            continue
        when = d.onset if c.max_days is not None else d.when
        if when is not None:
            dates.append((when, dx_evidence(d)))
    for f in ctx.facts.findings:
        if set(c.dated_by) & f.valuesets and f.date is not None and f.date <= ctx.as_of:
            dates.append((f.date, Evidence(f.ref, f"{f.display} on {_d(f.date)}")))
    if not dates:
        recorded_only = c.max_days is not None and any(d.recorded for d in ctx.diagnoses)
        found = (" The problem-list entry has only a recorded date, which is not the date of the "
                 "event." if recorded_only else "")
        return Result(MISSING, [dx_evidence(d) for d in ctx.diagnoses[:1]],
                      [_item(c, "Record the date of diagnosis (the Condition's onset date).", found)])
    first, ev = min(dates, key=lambda x: x[0])
    days = (ctx.as_of - first).days
    ok = (c.min_days is None or days > c.min_days) and (c.max_days is None or 0 <= days <= c.max_days)
    needs = []
    if c.min_days is not None:
        needs.append(f"more than {c.min_days}")
    if c.max_days is not None:
        needs.append(f"at most {c.max_days}")
    return Result(MET if ok else NOT_MET, [ev],
                  detail=f"{days} days since {first.isoformat()} (needs {' and '.join(needs)})")


def check_reevaluation(c: m.ReevaluationCheck, ctx: Context) -> Result:
    tl = ctx.tl
    if tl.status != "continuation":
        return Result(NA)
    start = tl.first_dose
    if start is None:
        return Result(MISSING, [], [Missing("ivig-start-date", "Document the date immune globulin "
                      "was first given: the re-evaluation deadline (18 months after starting) cannot "
                      "be checked without it.")])
    if (ctx.as_of - start).days <= c.after_days:
        return Result(NA, detail=f"within {c.after_days} days of starting therapy")
    kinds = ("pneumococcal_igg", "tetanus_igg", "diphtheria_igg")
    retested = sorted((x for k in kinds for x in ctx.facts.lab(k)
                       if x.date is not None and start < x.date <= ctx.as_of and x.value is not None),
                      key=lambda x: (x.date, x.ref))
    off = [x for x in retested if tl.off_therapy_at(x.date, c.off_therapy_days)]
    on = [x for x in retested if x not in off]
    default = ("Therapy began more than 18 months ago: discontinue immune globulin, and at least "
               "four months later re-test the response to protein and polysaccharide antigens "
               "(pre- and post-vaccination titers), with the stop date recorded in the medication "
               "history (Re-Evaluation Table).")
    if not off:
        found = (f"{len(on)} titer(s) after the start were drawn on immune globulin (no documented "
                 f"stop of at least {c.off_therapy_days} days before them)." if on else "")
        return Result(MISSING, [lab_evidence(x) for x in on[-3:]], [_item(c, default, found)])
    protective = {"pneumococcal_igg": 1.3}
    still_low = [x for x in off if x.value < (protective.get(x.kind) or x.ref_low or 0)]
    ev = [lab_evidence(x) for x in off[-6:]]
    if not still_low:
        return Result(NOT_MET, ev, detail="re-tested off therapy: antibody response now protective")
    # "IVIG should also be discontinued … if the number and/or severity of infections have
    # not been reduced"
    response = _infection_response(ctx, start)
    if response.status != MET:
        return Result(response.status, ev + response.evidence, response.missing,
                      _join(["re-tested off therapy: response still deficient", response.detail]))
    return Result(MET, ev + response.evidence, detail=_join([
        "re-tested off therapy: response still deficient", response.detail]))


def _infection_response(ctx: Context, start: date, missing: str = "clinical-response") -> Result:
    """Fewer, or less severe, bacterial infections since immune globulin began than in a
    window of the same length before it. More or equally severe ones are no response."""
    infections = [d for d in infection_list(ctx) if d.when is not None]
    span = max((ctx.as_of - start).days, 1)
    before = [d for d in infections if days_before(start, span) <= d.when < start]
    after = [d for d in infections if start <= d.when <= ctx.as_of]
    sev_before = sum(1 for d in before if _qualifies(d, "severe"))
    sev_after = sum(1 for d in after if _qualifies(d, "severe"))
    ev = [dx_evidence(d) for d in before + after]
    detail = (f"{len(before)} bacterial infection(s) ({sev_before} severe) in the {span} days before "
              f"therapy, {len(after)} ({sev_after} severe) since")
    if not before:
        return Result(MISSING, ev, [Missing(missing, "Document the infection history before and "
                      "since immune globulin started (each infection as a dated Condition with its "
                      "severity), so a reduction can be shown.")], detail)
    fewer = len(after) < len(before) and sev_after <= sev_before
    milder = len(after) <= len(before) and sev_after < sev_before
    if fewer or milder:
        return Result(MET, ev, detail=detail)
    return Result(NOT_MET, ev, detail=detail + ": not reduced")


# --- aaaai-pi specifics ------------------------------------------------------------------------
CAUSE_DRUGS = {"anti_cd20", "hypogam_drug", "systemic_immunosuppressant", "tx_corticosteroid"}
# Conditions that explain a low IgG (thymoma: Good syndrome)
SECONDARY_CAUSE_DX = {"lymphoid_malignancy", "hiv_infection", "protein_loss_condition", "thymoma"}
PROTEIN_SCREENS = ("serum_albumin", "urine_protein", "protein_electrophoresis")
# Without a laboratory range: serum albumin below 3.5 g/dL is low; 24-hour urine protein
# above 150 mg, or a protein/creatinine ratio above 0.2 mg/mg, is abnormal; 3.5 g/24 h (or
# 3.5 mg/mg) is nephrotic-range ("heavy") proteinuria. Standard adult reference limits.
ALBUMIN_LOW_MG_DL = 3500
URINE_LIMITS = {"mg/24h": (150, 3500), "mg/mg": (0.2, 3.5)}


def _screen_state(lab: Lab) -> tuple[str, str]:
    """normal | low | high | heavy | unknown, with the reason."""
    if lab.kind == "serum_albumin":
        if lab.value is None:
            return "unknown", "no value"
        low = lab.ref_low if lab.ref_low is not None else ALBUMIN_LOW_MG_DL
        return ("low" if lab.value < low else "normal"), f"albumin {lab.value / 1000:.3g} g/dL"
    if lab.kind == "urine_protein":
        if lab.value is None:
            if lab.qualitative == "negative":
                return "normal", "negative"
            return ("high", "positive") if lab.qualitative == "positive" else ("unknown", "no value")
        limits = URINE_LIMITS.get(lab.unit)
        if limits is None:
            return "unknown", f"unit {lab.unit or 'missing'}"
        normal, heavy = limits
        if lab.value >= heavy:
            return "heavy", f"{lab.shown()} (nephrotic range)"
        return ("high" if lab.value > normal else "normal"), lab.shown()
    # protein electrophoresis: the interpretation decides
    if lab.interpretation in {"N"} or lab.qualitative == "negative":
        return "normal", "normal pattern"
    if lab.interpretation in {"A", "AA", "L", "LL", "H", "HH"} or lab.qualitative == "positive":
        return "high", "abnormal pattern"
    return "unknown", "no interpretation"


def check_secondary_causes(c: m.SecondaryCausesCheck, ctx: Context) -> Result:
    facts = ctx.facts
    causes: list[Evidence] = []
    for dx in facts.diagnoses:
        # Good syndrome outlasts the thymoma: a resected (resolved) thymoma still explains it.
        if (dx.active and dx.valuesets & SECONDARY_CAUSE_DX) or "thymoma" in dx.valuesets:
            causes.append(dx_evidence(dx))
    recent = days_before(ctx.as_of, c.drug_recent_days)
    for t in facts.therapies:
        if not (t.valuesets & CAUSE_DRUGS and t.kind == "medication" and t.given):
            continue
        if t.valuesets & CAUSE_DRUGS == {"tx_corticosteroid"} and (
                t.route != "systemic" and (t.route == "local" or "tx_has_local_forms" in t.valuesets)):
            continue  # a topical or inhaled steroid does not lower IgG
        # B-cell depletion outlasts the drug by months to years: any anti-CD20 exposure counts.
        ended = t.end or (t.date if t.status in {"completed", "stopped"} else None)
        if "anti_cd20" in t.valuesets or t.status in {"active", "on-hold"} or ended is None or ended >= recent:
            causes.append(therapy_evidence(t))
    hiv = [x for x in facts.lab("hiv_test") if x.qualitative is not None]
    causes += [lab_evidence(x, "HIV test") for x in hiv if x.qualitative == "positive"]
    screens = {k: [x for x in facts.lab(k) if x.date is None or x.date <= ctx.as_of] for k in PROTEIN_SCREENS}
    latest = {k: v[-1] for k, v in screens.items() if v}
    states = {k: _screen_state(lab) for k, lab in latest.items()}
    heavy = [k for k, (s, _) in states.items() if s == "heavy"]
    low_albumin = states.get("serum_albumin", ("", ""))[0] == "low"
    proteinuria = states.get("urine_protein", ("", ""))[0] in {"high", "heavy"}
    if heavy or (low_albumin and proteinuria):
        causes += [lab_evidence(latest[k]) for k in latest if states[k][0] in {"low", "high", "heavy"}]
    if causes:
        return Result(NOT_MET, _dedupe(causes), detail="a documented secondary cause may explain the low IgG")
    negative_hiv = [x for x in hiv if x.qualitative == "negative"]
    ev = [lab_evidence(x, "HIV test") for x in negative_hiv[-1:]] + [lab_evidence(x) for x in latest.values()]
    lacking = []
    if not negative_hiv:
        lacking.append("a negative HIV test")
    abnormal = [f"{states[k][1]}" for k in latest if states[k][0] != "normal"]
    if not latest:
        lacking.append("a protein-loss screen (serum albumin, urine protein or protein electrophoresis)")
    elif abnormal:
        lacking.append("a normal protein-loss screen, or a work-up explaining the abnormal result ("
                       + ", ".join(abnormal) + ")")
    if not lacking:
        return Result(MET, ev, detail="HIV negative and a normal protein-loss screen; no lymphoid "
                      "malignancy or causative drug recorded")
    return Result(MISSING, ev, [_item(c, "Document the exclusion of secondary hypogammaglobulinemia:",
                  " and ".join(lacking) + ".")])


def check_start_date(c: m.StartDateCheck, ctx: Context) -> Result:
    if ctx.tl.status != "continuation":
        return Result(NA)
    if ctx.tl.first_dose is not None:
        return Result(MET, [Evidence(ctx.tl.first_dose_ref or "", f"first immune globulin dose "
                      f"{ctx.tl.first_dose.isoformat()}")])
    return Result(MISSING, [Evidence(r, "prior immune globulin exposure, undated") for r in ctx.tl.exposure_refs],
                  [_item(c, "The patient is already on immune globulin: document the date of the first "
                         "dose (the first administration, or the start date in the medication history).")])


def check_clinical_response(c: m.ClinicalResponseCheck, ctx: Context) -> Result:
    if ctx.tl.status != "continuation":
        return Result(NA)
    start = ctx.tl.first_dose
    if start is None:
        return Result(MISSING, [], [Missing("ivig-start-date", "Document the date immune globulin "
                      "was first given: the response to therapy cannot be judged without it.")])
    return _infection_response(ctx, start, c.missing)


def check_body_weight(c: m.BodyWeightCheck, ctx: Context) -> Result:
    if ctx.tl.order is None:
        unread = ctx.facts.unreadable_orders
        if not unread:
            return Result(NA)
        # An order whose product cannot be read may be the immune globulin order: its dose
        # and the weight it needs cannot be shown to be in order.
        recent, _ = latest_weight(ctx.facts, ctx.as_of, c.within_days)
        weight = "" if recent is not None else f", and a body weight from the last {c.within_days} days"
        return Result(MISSING, [Evidence(r, "order whose medication is not in the record") for r in unread],
                      [Missing("ordered-product", (
                          f"{', '.join(unread[:3])}: the ordered medication cannot be read (its Medication "
                          "is not in the record), so the app cannot tell whether it is the immune globulin "
                          "order or check its dose. Record the product on the order (or make its "
                          f"Medication readable){weight}."))])
    recent, latest = latest_weight(ctx.facts, ctx.as_of, c.within_days)
    if recent is not None:
        return Result(MET, [lab_evidence(recent, "Weight")])
    stale = f" The latest weight is from {_d(latest.date)}." if latest else ""
    return Result(MISSING, [lab_evidence(latest, "Weight")] if latest else [], [_item(c,
                  f"Record a body weight from the {c.within_days} days before "
                  f"{ctx.as_of.isoformat()} to check mg/kg dosing.", stale)])


def check_dose(c: m.DoseCheck, ctx: Context) -> Result:
    dose = ctx.dose
    if dose.status == "not-applicable":
        return Result(NA)
    ev = [Evidence(ctx.tl.order.ref, _dose_summary(dose))] if ctx.tl.order else []
    if dose.status == "within-range":
        return Result(MET, ev, detail=_dose_summary(dose))
    if dose.status in {"above-range", "below-range"}:
        return Result(MISSING, ev, [_item(c, f"{_dose_summary(dose)} is "
                      f"{dose.status.replace('-', ' ')}; document why (e.g. end-organ damage, "
                      "breakthrough infections, trough target) or adjust the dose.")])
    # Unknown: either no range for this indication (no item) or a missing input, which
    # its own criterion (body weight, order) reports.
    return Result(MISSING if dose.range_mg_per_kg else NA, ev, detail=dose.note)


def _dose_summary(dose: DoseResult) -> str:
    if dose.mg_per_kg is None:
        return dose.note or "dose could not be computed"
    unit = "mg/kg per 4 weeks" if dose.basis == "per-4-weeks" else "mg/kg per course"
    rng = f" (policy range {dose.range_mg_per_kg[0]:g}–{dose.range_mg_per_kg[1]:g})" if dose.range_mg_per_kg else ""
    return f"{dose.mg_per_kg:.0f} {unit}{rng}"


def check_course(c: m.CourseCheck, ctx: Context) -> Result:
    order = ctx.tl.order
    if order is None:
        return Result(NA)
    ev = [Evidence(order.ref, f"{order.product}: " + (
        f"{order.course_count} dose(s)" if order.course_count else
        f"every {order.interval_days:g} days" if order.interval_days else "no schedule"))]
    if order.course_count:
        daily = order.interval_days is None or order.interval_days <= 1
        if order.course_count <= c.max_doses and daily:
            return Result(MET, ev, detail=f"acute course of {order.course_count} daily dose(s)")
        return Result(NOT_MET, ev, detail=f"{order.course_count} doses every "
                      f"{order.interval_days or 1:g} days is not an acute course of ≤ {c.max_doses} days")
    if order.interval_days:
        return Result(NOT_MET, ev, detail=f"recurring every {order.interval_days:g} days: maintenance")
    return Result(MISSING, ev, [_item(c, f"Record the order's schedule: an acute course of "
                  f"{c.max_doses} days or fewer (dosage timing with a count of doses).")])


def _confirmed(d: Diagnosis) -> bool:
    """verificationStatus confirmed; or none recorded and the entry's own words do not hedge
    it (a problem-list entry usually carries no status; "probable ITP" is not a diagnosis)."""
    return d.verification == "confirmed" or (d.verification is None and not d.hedged)


def check_diagnosis_confirmed(c: m.DiagnosisConfirmedCheck, ctx: Context) -> Result:
    if not ctx.diagnoses:
        return Result(NA)
    confirmed = [d for d in ctx.diagnoses if _confirmed(d)]
    if confirmed:
        return Result(MET, [dx_evidence(d) for d in confirmed])
    states = "; ".join(sorted({
        f"verification status {d.verification}" if d.verification else f"its words are hedged ('{d.hedged}')"
        for d in ctx.diagnoses}))
    return Result(MISSING, [dx_evidence(d) for d in ctx.diagnoses[:2]], [_item(c,
                  "Confirm the diagnosis (Condition verification status confirmed) once the "
                  "work-up establishes it.", f"The diagnosis is not shown to be confirmed: {states}.")])


def check_appeal(c: m.AppealCheck, ctx: Context) -> Result:
    return Result(MISSING, [], [_item(c, f"{ctx.indication.label} is "
                  f"{ctx.indication.coverage} under this policy: coverage needs an individual "
                  "appeal with a letter of medical necessity, the supporting literature and "
                  "the treatment history. The record cannot show a filed appeal, so this item "
                  "stays open until the request is decided.")])


LEAF: dict[type, Callable[..., Result]] = {
    m.AppealCheck: check_appeal,
    m.IggCheck: check_igg,
    m.IggRecentCheck: check_igg_recent,
    m.InfectionsCheck: check_infections,
    m.VaccineResponseCheck: check_vaccine_response,
    m.SubclassCheck: check_igg_subclass,
    m.AgeCheck: check_age,
    m.PlateletCheck: check_platelets,
    m.DocumentedCheck: check_documented,
    m.PriorTherapyCheck: check_prior_therapy,
    m.SeverityCheck: check_severity,
    m.DiagnosisAgeCheck: check_diagnosis_age,
    m.ReevaluationCheck: check_reevaluation,
    m.SecondaryCausesCheck: check_secondary_causes,
    m.StartDateCheck: check_start_date,
    m.ClinicalResponseCheck: check_clinical_response,
    m.BodyWeightCheck: check_body_weight,
    m.DoseCheck: check_dose,
    m.CourseCheck: check_course,
    m.DiagnosisConfirmedCheck: check_diagnosis_confirmed,
}


def evaluate_check(check: m.Check, ctx: Context) -> Result:
    """Three-valued logic over any/all groups.

    all: not-met if any part is not-met; else missing if any is missing; else met.
    any: met if any part is met; else missing if any is missing; else not-met
    (not-applicable parts are ignored; all parts not-applicable gives not-applicable).
    For a missing ``any``, the items asked for come from the branch needing the fewest
    items (ties: the order in the policy), so the checklist shows one path to approval
    rather than every alternative.
    """
    if isinstance(check, (m.AnyOf, m.AllOf)):
        parts = [evaluate_check(sub, ctx) for sub in check.of]
        live = [p for p in parts if p.status != NA]
        evidence = _dedupe([e for p in parts for e in p.evidence])
        if not live:
            return Result(NA, evidence, components=parts)
        statuses = {p.status for p in live}
        if isinstance(check, m.AllOf):
            if NOT_MET in statuses:
                status = NOT_MET
            elif MISSING in statuses:
                status = MISSING
            else:
                status = MET
            missing = [x for p in live if p.status == MISSING for x in p.missing] if status == MISSING else []
        else:
            if MET in statuses:
                status = MET
            elif MISSING in statuses:
                status = MISSING
            else:
                status = NOT_MET
            missing = []
            if status == MISSING:
                candidates = [p for p in live if p.status == MISSING]
                best = min(candidates, key=lambda p: len({x.code for x in p.missing}) or 99)
                missing = best.missing
        shown = [p for p in live if p.status == status] if status == MET else live
        detail = _join([p.detail for p in shown])
        if any(e.origin != "record" for e in evidence):
            # An attestation is the group's evidence only where it decided the group's status.
            evidence = _dedupe([e for p in parts for e in p.evidence if e.origin == "record" or p.status == status])
            detail = _join([p.detail for p in shown if p.status == status or not p.detail.startswith("attested:")])
        return Result(status, evidence, list(dict.fromkeys(missing)), detail, parts)
    result = LEAF[type(check)](check, ctx)
    if check.attestable is not None and ctx.attestations:
        from .attested import apply_attestation

        result = apply_attestation(check, result, ctx)
    return result
