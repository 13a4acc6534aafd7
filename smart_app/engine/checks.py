"""Leaf checks: one function per check ``type`` of the ruleset schema.

Each takes the check's parameters (from the ruleset file) and the evaluation context and
returns a three-valued Result: ``met`` (the record shows it), ``not-met`` (documented
data contradicts it), ``missing`` (the record does not show it either way; absent data is
never ``not-met``), or ``not-applicable``. Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from fhir_mappings.dates import years_between
from fhir_mappings.facts import Diagnosis, Lab, PatientFacts, Therapy
from fhir_mappings.normalize import DOCUMENTED_FAILURE

from . import model as m
from .timeline import Timeline, igg_results, latest_weight, pretreatment_igg

MET, NOT_MET, MISSING, NA = "met", "not-met", "missing", "not-applicable"


@dataclass(frozen=True)
class Evidence:
    reference: str
    summary: str


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


def lab_evidence(lab: Lab, name: str | None = None) -> Evidence:
    return Evidence(lab.ref, f"{name or lab.label or lab.kind} {lab.shown()} on {_d(lab.date)}")


def dx_evidence(dx: Diagnosis) -> Evidence:
    when = dx.when.isoformat() if dx.when else "undated"
    return Evidence(dx.ref, f"{dx.display or dx.code} ({when})")


def therapy_evidence(t: Therapy) -> Evidence:
    reason = f": {t.reason}" if t.reason else ""
    return Evidence(t.ref, f"{t.display} — {t.kind} {t.status} {_d(t.date)}{reason}")


def _bound(lab: Lab) -> float:
    """A comparator result counts by its bound (CONTRACT §4)."""
    assert lab.value is not None
    return lab.value


# --- IgG ---------------------------------------------------------------------------------
def check_igg(c: m.IggCheck, ctx: Context) -> Result:
    if c.timing == "pretreatment":
        labs = pretreatment_igg(ctx.facts, ctx.tl)
        if labs is None:
            found = igg_results(ctx.facts, ctx.as_of)
            note = (
                f" {len(found)} IgG result(s) were found, but the patient is already on immune "
                "globulin with no documented start date: they may be on-therapy troughs."
                if found
                else ""
            )
            return Result(
                MISSING,
                [lab_evidence(x, "IgG (timing vs. therapy unknown)") for x in found[-3:]],
                [
                    Missing(c.missing, "Document a total IgG drawn before immune globulin was "
                            "started." + note),
                    Missing("ivig-start-date", "Document the date immune globulin was first "
                            "given, so baseline and on-treatment IgG can be told apart."),
                ],
                "Pre-treatment status of IgG cannot be established." + note,
            )
    else:
        labs = igg_results(ctx.facts, ctx.as_of)
    labs = [x for x in labs if x.value is not None]
    if not labs:
        what = "before the first immune globulin dose" if c.timing == "pretreatment" else ""
        return Result(MISSING, [], [Missing(c.missing, f"Document a total serum IgG level {what}".strip() + ".")])
    lab = labs[-1]  # the latest qualifying result (the baseline closest to therapy)
    ev = [lab_evidence(x, "IgG") for x in labs[-3:]]
    value = _bound(lab)
    if c.below_mg_dl is not None:
        ok = value < c.below_mg_dl or (lab.comparator in {"<", "<="} and value <= c.below_mg_dl)
        if not ok and c.below_reference_range_counts and lab.low:
            return Result(MET, ev, detail=f"IgG {lab.shown()} is below the laboratory's reference "
                          "range for age (taken as > 2 SD below the age mean)")
        if lab.comparator in {">", ">="} and value < c.below_mg_dl:
            return Result(MISSING, ev, [Missing(c.missing, "IgG was reported only as a lower "
                          "bound; document the measured value.")])
        return Result(MET if ok else NOT_MET, ev,
                      detail=f"latest IgG {lab.shown()} vs. < {c.below_mg_dl:g} mg/dL")
    if c.normal:
        if lab.low:
            return Result(NOT_MET, ev, detail=f"IgG {lab.shown()} is below the laboratory's range")
        if lab.ref_low is None:
            return Result(MISSING, ev, [Missing(c.missing, "Document the IgG with the "
                          "laboratory's age-specific reference range to show it is normal.")])
        return Result(MET, ev, detail=f"IgG {lab.shown()} within the laboratory's range")
    assert c.at_least_mg_dl is not None
    if lab.comparator in {"<", "<="} and value > c.at_least_mg_dl:
        return Result(MISSING, ev, [Missing(c.missing, "IgG was reported only as an upper "
                      "bound; document the measured value.")])
    ok = value >= c.at_least_mg_dl and lab.comparator not in {"<", "<="}
    return Result(MET if ok else NOT_MET, ev,
                  detail=f"latest IgG {lab.shown()} vs. ≥ {c.at_least_mg_dl:g} mg/dL")


def check_igg_recent(c: m.IggRecentCheck, ctx: Context) -> Result:
    since = days_before(ctx.as_of, c.within_days)
    recent = [x for x in igg_results(ctx.facts, ctx.as_of) if x.date is not None and x.date >= since]
    if recent:
        return Result(MET, [lab_evidence(x, "IgG") for x in recent[-3:]])
    return Result(MISSING, [], [Missing(c.missing, f"Document an IgG trough level drawn within "
                  f"{c.within_days} days before {ctx.as_of.isoformat()}.")])


# --- infections ------------------------------------------------------------------------------
def infection_list(ctx: Context, serious_only: bool = False) -> list[Diagnosis]:
    vs = "serious_bacterial_infection" if serious_only else "bacterial_infection"
    return [d for d in ctx.facts.diagnoses_in(vs) if d.when is None or d.when <= ctx.as_of]


def check_infections(c: m.InfectionsCheck, ctx: Context) -> Result:
    # Infections before therapy began are the ones that justify it; for a new start the
    # window ends at the evaluation date.
    end = ctx.tl.first_dose or ctx.as_of
    infections = infection_list(ctx, c.serious_only)
    if c.within_days is not None:
        start = days_before(end, c.within_days)
        infections = [d for d in infections if d.when is not None and start <= d.when <= end]
    ev = [dx_evidence(d) for d in infections]
    kind = "serious bacterial infection" if c.serious_only else "bacterial infection"
    window = f" within {c.within_days} days before {end.isoformat()}" if c.within_days else ""
    if len(infections) >= c.min_count:
        return Result(MET, ev, detail=f"{len(infections)} {kind}(s){window}")
    need = f"at least {c.min_count} {kind}(s){window}"
    return Result(MISSING, ev, [Missing(c.missing, f"Document {need} (found {len(infections)}).")])


# --- vaccine response ------------------------------------------------------------------------
ANTIGEN = {
    # antigen: (vaccine value sets, titer kind, post window days)
    "pneumococcal": (("vaccine_pneumococcal_polysaccharide",), "pneumococcal_igg", (21, 42)),
    "tetanus": (("vaccine_tetanus",), "tetanus_igg", (21, 28)),
    "diphtheria": (("vaccine_diphtheria",), "diphtheria_igg", (21, 28)),
}
PRE_WINDOW_DAYS = 365
UNTESTED = "no dated"


def _antigen_response(c: m.VaccineResponseCheck, ctx: Context, antigen: str) -> Result:
    vaccine_sets, kind, (lo, hi) = ANTIGEN[antigen]
    vaccinations = [
        v for v in ctx.facts.vaccinations
        if v.date is not None and v.date <= ctx.as_of and set(vaccine_sets) & v.kinds
    ]
    titers = [x for x in ctx.facts.lab(kind) if x.date is not None and x.value is not None]
    if not vaccinations:
        return Result(MISSING, [lab_evidence(t) for t in titers[-3:]],
                      detail=f"{UNTESTED} {antigen} vaccination to pair titers with")
    best: Result | None = None
    for vac in sorted(vaccinations, key=lambda v: v.date, reverse=True):
        post = [t for t in titers if lo <= (t.date - vac.date).days <= hi]
        pre = [t for t in titers if 0 <= (vac.date - t.date).days <= PRE_WINDOW_DAYS]
        ev = [Evidence(vac.ref, f"{vac.display} on {_d(vac.date)}")]
        if not post:
            res = Result(MISSING, ev, detail=f"no {antigen} titer {lo}–{hi} days after the "
                         f"vaccination of {_d(vac.date)}")
            best = best or res
            continue
        ev += [lab_evidence(t) for t in pre + post]
        inadequate, adequate, uninterpretable = [], [], []
        for t in post:
            protective = c.protective_pneumococcal_ug_ml if antigen == "pneumococcal" else t.ref_low
            baseline = next((p for p in reversed(pre) if p.label == t.label), None)
            if protective is None:
                uninterpretable.append(t)
                continue
            low = t.value < protective
            if baseline is None or baseline.value is None:
                if not c.require_pre_titer and low:
                    inadequate.append(t)
                elif not low:
                    adequate.append(t)
                else:
                    uninterpretable.append(t)
                continue
            rise = t.value >= 4 * baseline.value if baseline.value > 0 else t.value > 0
            (inadequate if (low and not rise) else adequate).append(t)
        label = antigen
        if inadequate:
            return Result(MET, ev, detail=f"inadequate {label} response: {len(inadequate)} "
                          f"of {len(post)} post-vaccination titer(s) below protective level "
                          "without a 4-fold rise")
        if adequate and not uninterpretable:
            res = Result(NOT_MET, ev, detail=f"adequate {label} response documented")
        else:
            why = ("no pre-vaccination titer for a fold-rise" if c.require_pre_titer
                   else "no protective level stated by the laboratory")
            res = Result(MISSING, ev, detail=f"{label} titers not interpretable: {why}")
        if best is None or best.status == MISSING:
            best = res
    assert best is not None
    return best


def check_vaccine_response(c: m.VaccineResponseCheck, ctx: Context) -> Result:
    parts = [_antigen_response(c, ctx, a) for a in c.antigens]
    evidence = [e for p in parts for e in p.evidence]
    details = "; ".join(p.detail for p in parts if p.detail)
    if any(p.status == MET for p in parts):
        return Result(MET, evidence, detail=details)
    tested = [p for p in parts if not p.detail.startswith(UNTESTED)]
    if tested and all(p.status == NOT_MET for p in tested):
        return Result(NOT_MET, evidence, detail=details)
    pre = "pre- and " if c.require_pre_titer else ""
    return Result(MISSING, evidence, [Missing(c.missing, f"Document {pre}post-vaccination "
                  "antibody titers paired with the vaccination (pneumococcal polysaccharide: "
                  "3–6 weeks after; tetanus/diphtheria: 3–4 weeks after)." +
                  (f" Found: {details}." if details else ""))], details)


# --- subclasses, age, platelets --------------------------------------------------------------
def check_igg_subclass(c: m.SubclassCheck, ctx: Context) -> Result:
    labs = [x for x in ctx.facts.lab("igg_subclasses") if x.date is not None and x.date <= ctx.as_of]
    by_day: dict[date, list[Lab]] = {}
    for lab in labs:
        by_day.setdefault(lab.date, []).append(lab)
    low_days = [d for d, xs in by_day.items() if any(x.low for x in xs)]
    ev = [lab_evidence(x) for x in labs[-8:]]
    if len(low_days) >= c.occasions:
        return Result(MET, ev, detail=f"subclass deficiency on {len(low_days)} occasions")
    interpretable = [d for d, xs in by_day.items() if any(x.ref_low is not None or x.interpretation for x in xs)]
    if len(interpretable) >= c.occasions and not low_days:
        return Result(NOT_MET, ev, detail="IgG subclasses within the reference range")
    return Result(MISSING, ev, [Missing(c.missing, f"Document IgG subclass levels (with the "
                  f"laboratory's age-specific range) on at least {c.occasions} occasions while "
                  f"free of infection (found {len(low_days)} low).")])


def check_age(c: m.AgeCheck, ctx: Context) -> Result:
    born = ctx.facts.birth_date
    if born is None:
        return Result(MISSING, [], [Missing(c.missing, "Record the patient's date of birth.")])
    years = years_between(born, ctx.as_of)
    days = (ctx.as_of - born).days
    ev = [Evidence(ctx.facts.patient_ref, f"age {years} years on {ctx.as_of.isoformat()}")]
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
        return Result(MISSING, [], [Missing(c.missing, f"Document a platelet count from the last "
                      f"{c.within_days} days.")])
    lab = recent[-1]
    ok = lab.value < c.below_per_ul
    return Result(MET if ok else NOT_MET, [lab_evidence(lab, "Platelets")],
                  detail=f"{lab.value:,.0f}/µL vs. < {c.below_per_ul:,.0f}/µL")


# --- documented findings, therapies, severity -------------------------------------------------
def check_documented(c: m.DocumentedCheck, ctx: Context) -> Result:
    wanted = set(c.valuesets)
    since = days_before(ctx.as_of, c.within_days) if c.within_days else None

    def in_window(day: date | None) -> bool:
        return since is None or (day is not None and since <= day <= ctx.as_of)

    ev: list[Evidence] = []
    negative: list[Evidence] = []
    for dx in ctx.facts.diagnoses:
        if wanted & dx.valuesets and dx.active and in_window(dx.when):
            ev.append(dx_evidence(dx))
    for f in ctx.facts.findings:
        if wanted & f.valuesets and in_window(f.date):
            conclusion = f": {f.conclusion}" if f.conclusion else ""
            ev.append(Evidence(f.ref, f"{f.display} on {_d(f.date)}{conclusion}"))
    for t in ctx.facts.therapies:
        if wanted & t.valuesets and in_window(t.date):
            ev.append(therapy_evidence(t))
    limit = c.value_below
    if limit is not None and c.value_below_if_hiv is not None and _hiv_positive(ctx.facts):
        limit = c.value_below_if_hiv
    for kind in wanted:
        for lab in ctx.facts.lab(kind):
            if not in_window(lab.date):
                continue
            if limit is not None:
                if lab.value is None:
                    continue
                (ev if lab.value < limit else negative).append(lab_evidence(lab))
            elif c.lab_result == "any" or lab.qualitative == c.lab_result:
                ev.append(lab_evidence(lab))
            elif lab.qualitative is not None:
                negative.append(lab_evidence(lab))
    if ev:
        return Result(MET, ev)
    if negative:
        why = f"not below {limit:g}" if limit is not None else f"not {c.lab_result}"
        return Result(NOT_MET, negative, detail=f"result is {why}")
    return Result(MISSING, [], [Missing(c.missing, "Not found in the record as a coded "
                  "diagnosis, procedure, report or result.")])


def _hiv_positive(facts: PatientFacts) -> bool:
    return bool(facts.diagnoses_in("hiv_infection")) or any(
        x.qualitative == "positive" for x in facts.lab("hiv_test"))


FAILED_STATUSES = {"stopped", "completed", "cancelled", "on-hold", "not-taken"}


def check_prior_therapy(c: m.PriorTherapyCheck, ctx: Context) -> Result:
    wanted = set(c.valuesets)
    if c.any_documented_failure:
        wanted.add(DOCUMENTED_FAILURE)
    tried = [t for t in ctx.facts.therapies if wanted & t.valuesets]
    good = [
        t for t in tried
        if t.kind == "intolerance"
        or t.status in FAILED_STATUSES
        or (c.accept_active and t.status in {"active", "intended"})
    ]
    if good:
        return Result(MET, [therapy_evidence(t) for t in good])
    return Result(MISSING, [therapy_evidence(t) for t in tried], [Missing(c.missing,
                  "Document that standard therapy failed, was not tolerated or is "
                  f"contraindicated ({', '.join(sorted(wanted - {DOCUMENTED_FAILURE}))}).")])


def check_severity(c: m.SeverityCheck, ctx: Context) -> Result:
    severe = [d for d in ctx.diagnoses if d.severe]
    if severe:
        return Result(MET, [dx_evidence(d) for d in severe])
    return Result(MISSING, [dx_evidence(d) for d in ctx.diagnoses[:1]], [Missing(c.missing,
                  "Record the condition as severe (Condition.severity) with the findings that "
                  "make it so.")])


def check_diagnosis_age(c: m.DiagnosisAgeCheck, ctx: Context) -> Result:
    dated = [d for d in ctx.diagnoses if d.when is not None]
    if not dated:
        return Result(MISSING, [dx_evidence(d) for d in ctx.diagnoses[:1]],
                      [Missing(c.missing, "Record the date of diagnosis (onset or recorded date).")])
    first = min(dated, key=lambda d: d.when)
    days = (ctx.as_of - first.when).days
    ok = (c.min_days is None or days > c.min_days) and (c.max_days is None or days <= c.max_days)
    needs = []
    if c.min_days is not None:
        needs.append(f"more than {c.min_days}")
    if c.max_days is not None:
        needs.append(f"at most {c.max_days}")
    return Result(MET if ok else NOT_MET, [dx_evidence(first)],
                  detail=f"{days} days since {first.display or first.code} (needs {' and '.join(needs)})")


def check_reevaluation(c: m.ReevaluationCheck, ctx: Context) -> Result:
    if ctx.tl.status != "continuation":
        return Result(NA)
    start = ctx.tl.first_dose
    if start is None:
        return Result(MISSING, [], [Missing("ivig-start-date", "The re-evaluation deadline "
                      "(18 months after starting) cannot be checked without the start date.")])
    if (ctx.as_of - start).days <= c.after_days:
        return Result(NA, detail=f"within {c.after_days} days of starting therapy")
    kinds = ("pneumococcal_igg", "tetanus_igg", "diphtheria_igg")
    retested = [x for k in kinds for x in ctx.facts.lab(k) if x.date is not None and start < x.date <= ctx.as_of]
    if retested:
        return Result(MET, [lab_evidence(x) for x in retested[-3:]],
                      detail="antibody response re-tested after therapy began")
    return Result(MISSING, [], [Missing(c.missing, "Therapy began more than 18 months ago: "
                  "re-assess the response to protein and polysaccharide antigens after at least "
                  "four months off immune globulin (Re-Evaluation Table).")])


# --- aaaai-pi specifics ------------------------------------------------------------------------
CAUSE_DRUGS = {"anti_cd20", "hypogam_drug", "systemic_immunosuppressant"}


def check_secondary_causes(c: m.SecondaryCausesCheck, ctx: Context) -> Result:
    facts = ctx.facts
    causes: list[Evidence] = []
    for dx in facts.diagnoses:
        if dx.active and dx.valuesets & {"lymphoid_malignancy", "hiv_infection", "protein_loss_condition"}:
            causes.append(dx_evidence(dx))
    for t in facts.therapies:
        if t.valuesets & CAUSE_DRUGS and t.kind == "medication" and t.status in {"active", "intended", "on-hold"}:
            causes.append(therapy_evidence(t))
    hiv = [x for x in facts.lab("hiv_test") if x.qualitative is not None]
    causes += [lab_evidence(x, "HIV test") for x in hiv if x.qualitative == "positive"]
    if causes:
        return Result(NOT_MET, causes, detail="a documented secondary cause may explain the low IgG")
    negative_hiv = [x for x in hiv if x.qualitative == "negative"]
    screens = [x for k in ("serum_albumin", "urine_protein", "protein_electrophoresis") for x in facts.lab(k)]
    ev = [lab_evidence(x, "HIV test") for x in negative_hiv[-1:]] + [lab_evidence(x) for x in screens[-2:]]
    lacking = []
    if not negative_hiv:
        lacking.append("a negative HIV test")
    if not screens:
        lacking.append("a protein-loss screen (serum albumin, urine protein or protein electrophoresis)")
    if not lacking:
        return Result(MET, ev, detail="HIV negative and protein-loss screen documented; no "
                      "lymphoid malignancy or causative drug recorded")
    return Result(MISSING, ev, [Missing(c.missing, "Document exclusion of secondary "
                  "hypogammaglobulinemia: " + " and ".join(lacking) + ".")])


def check_start_date(c: m.StartDateCheck, ctx: Context) -> Result:
    if ctx.tl.status != "continuation":
        return Result(NA)
    if ctx.tl.first_dose is not None:
        return Result(MET, [Evidence(ctx.tl.first_dose_ref or "", f"first immune globulin dose "
                      f"{ctx.tl.first_dose.isoformat()}")])
    return Result(MISSING, [Evidence(r, "prior immune globulin exposure, undated") for r in ctx.tl.exposure_refs],
                  [Missing(c.missing, "The patient is already on immune globulin; document the "
                           "date of the first dose.")])


def check_clinical_response(c: m.ClinicalResponseCheck, ctx: Context) -> Result:
    if ctx.tl.status != "continuation":
        return Result(NA)
    start = ctx.tl.first_dose
    if start is None:
        return Result(MISSING, [], [Missing("ivig-start-date", "Response to therapy cannot be "
                      "judged without the date immune globulin started.")])
    infections = [d for d in infection_list(ctx) if d.when is not None]
    span = max((ctx.as_of - start).days, 1)
    before = [d for d in infections if days_before(start, span) <= d.when < start]
    after = [d for d in infections if start <= d.when <= ctx.as_of]
    ev = [dx_evidence(d) for d in before + after]
    detail = f"{len(before)} bacterial infection(s) in the {span} days before therapy, {len(after)} since"
    if before and len(after) < len(before):
        return Result(MET, ev, detail=detail)
    if after and len(after) >= len(before):
        return Result(NOT_MET, ev, detail=detail)
    return Result(MISSING, ev, [Missing(c.missing, "Document the infection history before and "
                  "since immune globulin started (frequency and severity).")], detail)


def check_body_weight(c: m.BodyWeightCheck, ctx: Context) -> Result:
    if ctx.tl.order is None:
        return Result(NA)
    recent, latest = latest_weight(ctx.facts, ctx.as_of, c.within_days)
    if recent is not None:
        return Result(MET, [lab_evidence(recent, "Weight")])
    stale = f" The latest weight is from {_d(latest.date)}." if latest else ""
    return Result(MISSING, [lab_evidence(latest, "Weight")] if latest else [], [Missing(c.missing,
                  f"Record a body weight from the {c.within_days} days before "
                  f"{ctx.as_of.isoformat()} to check mg/kg dosing.{stale}")])


def check_dose(c: m.DoseCheck, ctx: Context) -> Result:
    dose = ctx.dose
    if dose.status == "not-applicable":
        return Result(NA)
    ev = [Evidence(ctx.tl.order.ref, _dose_summary(dose))] if ctx.tl.order else []
    if dose.status == "within-range":
        return Result(MET, ev, detail=_dose_summary(dose))
    if dose.status in {"above-range", "below-range"}:
        return Result(MISSING, ev, [Missing(c.missing, f"{_dose_summary(dose)} is "
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


def check_appeal(c: m.AppealCheck, ctx: Context) -> Result:
    return Result(MISSING, [], [Missing(c.missing, f"{ctx.indication.label} is "
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
        evidence = list(dict.fromkeys(e for p in parts for e in p.evidence))
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
        detail = "; ".join(p.detail for p in live if p.detail)
        return Result(status, evidence, missing, detail, parts)
    return LEAF[type(check)](check, ctx)
