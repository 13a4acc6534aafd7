"""The report's at-a-glance sections (pure): the IgG history against the first dose, the
vaccine responses, and the dose as a worked calculation.

These add fields to the report JSON (CONTRACT §2 allows additions); the criteria keep
deciding. The vaccine table pairs titers with vaccinations with the same windows as the
vaccine-response criterion (``engine.checks.ANTIGEN``), so what the table shows is what the
criterion counted.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fhir_mappings.facts import Lab

from .engine import model as m
from .engine.checks import ANTIGEN, OFF_THERAPY_DAYS, PRE_WINDOW_DAYS
from .engine.evaluate import Evaluation, IndicationResult
from .engine.timeline import Timeline, igg_results

ANTIGEN_LABEL = {
    "pneumococcal": "Pneumococcal polysaccharide vaccine",
    "tetanus": "Tetanus",
    "diphtheria": "Diphtheria",
}


def _walk(check: m.Check):
    yield check
    if isinstance(check, (m.AnyOf, m.AllOf)):
        for sub in check.of:
            yield from _walk(sub)


def _leaves(res: IndicationResult | None):
    """(criterion, leaf check) of every criterion of the indication."""
    if res is None:
        return
    for cr in res.criteria:
        for leaf in _walk(cr.criterion.check):
            yield cr, leaf


def _fmt(x: float) -> str:
    return f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"


# --- IgG history ----------------------------------------------------------------------------
def igg_timing(lab: Lab, tl: Timeline) -> str:
    """``pre-treatment`` | ``on-treatment`` | ``unknown`` (CONTRACT §4's pre-treatment rule)."""
    if tl.status in {"new-start", "none"}:
        return "pre-treatment"
    if tl.first_dose is None or lab.date is None:
        return "unknown"
    return "pre-treatment" if lab.date < tl.first_dose else "on-treatment"


def igg_history(ev: Evaluation) -> dict[str, Any]:
    """Total IgG results (mg/dL, oldest first) with their timing against the first dose, the
    first dose and the order date, and the thresholds the indication's criteria apply."""
    tl = ev.timeline
    thresholds: dict[tuple[str, float], dict[str, Any]] = {}
    for cr, leaf in _leaves(ev.primary):
        if not isinstance(leaf, m.IggCheck):
            continue
        if leaf.below_mg_dl is not None:
            key = ("below", leaf.below_mg_dl)
        elif leaf.at_least_mg_dl is not None:
            key = ("at-least", leaf.at_least_mg_dl)
        else:
            continue
        entry = thresholds.setdefault(key, {"kind": key[0], "mg_dl": key[1], "criteria": []})
        if cr.criterion.id not in entry["criteria"]:
            entry["criteria"].append(cr.criterion.id)
    results = []
    for lab in igg_results(ev.facts, ev.as_of):
        if lab.value is None:
            continue
        results.append({
            "reference": lab.ref,
            "date": lab.date.isoformat() if lab.date else None,
            "value_mg_dl": round(lab.value, 1),
            "comparator": lab.comparator,
            "reference_range_low_mg_dl": round(lab.ref_low, 1) if lab.ref_low is not None else None,
            "timing": igg_timing(lab, tl),
        })
    order = tl.order
    return {
        "unit": "mg/dL",
        "results": results,
        "first_dose_date": tl.first_dose.isoformat() if tl.first_dose else None,
        "first_dose_reference": tl.first_dose_ref,
        "order_date": order.authored.isoformat() if order is not None and order.authored else None,
        "order_reference": order.ref if order is not None else None,
        "thresholds": sorted(thresholds.values(), key=lambda t: t["mg_dl"]),
    }


# --- vaccine responses ----------------------------------------------------------------------
def _on_treatment(lab: Lab, tl: Timeline) -> bool | None:
    """Drawn on immune globulin: True, False, or None when it cannot be known (already on
    therapy, no first-dose date)."""
    if tl.status != "continuation":
        return False
    if tl.first_dose is None:
        return None
    return not tl.off_therapy_at(lab.date, OFF_THERAPY_DAYS)


def _any_on(flags) -> bool | None:
    flags = list(flags)
    return True if True in flags else None if None in flags else False


def _titer(lab: Lab | None) -> dict[str, Any] | None:
    if lab is None:
        return None
    return {"reference": lab.ref, "date": lab.date.isoformat() if lab.date else None,
            "value": round(lab.value, 3) if lab.value is not None else None, "comparator": lab.comparator}


def vaccine_responses(ev: Evaluation) -> list[dict[str, Any]]:
    """Per antigen and dated vaccination: each serotype's (or antigen's) pre- and
    post-vaccination titer, fold rise and protective level, for the indications whose
    criteria judge the vaccine response. Empty when no criterion of the primary indication
    does."""
    checks = [(cr, leaf) for cr, leaf in _leaves(ev.primary) if isinstance(leaf, m.VaccineResponseCheck)]
    if not checks:
        return []
    criterion, check = checks[0]
    antigens = list(dict.fromkeys(a for _, c in checks for a in c.antigens))
    facts, tl, as_of = ev.facts, ev.timeline, ev.as_of
    out = []
    for antigen in antigens:
        vaccine_sets, kind, (lo, hi) = ANTIGEN[antigen]
        vaccinations = sorted((v for v in facts.vaccinations if v.date is not None and v.date <= as_of
                               and set(vaccine_sets) & v.kinds), key=lambda v: (v.date, v.ref))
        titers = sorted((x for x in facts.lab(kind) if x.date is not None and x.value is not None
                         and x.date <= as_of), key=lambda x: (x.date, x.ref))
        paired: set[str] = set()
        for vac in vaccinations:
            post = [t for t in titers if vac.date + timedelta(days=lo) <= t.date <= vac.date + timedelta(days=hi)]
            pre = [t for t in titers if vac.date - timedelta(days=PRE_WINDOW_DAYS) <= t.date <= vac.date]
            rows = []
            for t in post:
                baseline = next((p for p in reversed(pre) if p.label == t.label), None)
                level = check.protective_pneumococcal_ug_ml if antigen == "pneumococcal" else t.ref_low
                fold = (round(t.value / baseline.value, 1)
                        if baseline is not None and baseline.value and baseline.value > 0 else None)
                rows.append({
                    "label": t.label or ANTIGEN_LABEL[antigen],
                    "pre": _titer(baseline),
                    "post": _titer(t),
                    "fold_rise": fold,
                    "protective_level": level,
                    "protective": None if level is None else t.value >= level,
                    "on_treatment": _any_on(_on_treatment(x, tl) for x in (baseline, t) if x is not None),
                })
            post_labels = {t.label for t in post}
            latest_pre = {p.label: p for p in pre}  # oldest first: the latest of each label wins
            for label, p in latest_pre.items():  # a baseline with no post-vaccination titer
                if label not in post_labels:
                    rows.append({"label": label or ANTIGEN_LABEL[antigen], "pre": _titer(p), "post": None,
                                 "fold_rise": None, "protective_level": None, "protective": None,
                                 "on_treatment": _on_treatment(p, tl)})
            paired.update(t.ref for t in pre + post)
            with_post = [r for r in rows if r["post"] is not None]
            out.append({
                "antigen": antigen,
                "label": ANTIGEN_LABEL[antigen],
                "unit": titers[0].unit if titers else "",
                "vaccination": {"reference": vac.ref, "date": vac.date.isoformat(), "display": vac.display},
                "post_window_days": [lo, hi],
                "rows": rows,
                "post_count": len(with_post),
                "protective_count": sum(1 for r in with_post if r["protective"]),
                "four_fold_count": sum(1 for r in with_post if r["fold_rise"] is not None and r["fold_rise"] >= 4),
                "pre_titer_required": check.require_pre_titer,
            })
        unpaired = [t for t in titers if t.ref not in paired]
        if unpaired:
            out.append({
                "antigen": antigen,
                "label": ANTIGEN_LABEL[antigen],
                "unit": unpaired[0].unit,
                "vaccination": None,
                "post_window_days": [lo, hi],
                "rows": [{"label": t.label or ANTIGEN_LABEL[antigen], "pre": None, "post": _titer(t),
                          "fold_rise": None, "protective_level": None, "protective": None,
                          "on_treatment": _on_treatment(t, tl)}
                         for t in unpaired],
                "post_count": 0, "protective_count": 0, "four_fold_count": 0,
                "pre_titer_required": check.require_pre_titer,
            })
    for group in out:
        group["criterion"] = criterion.criterion.id
    return out


# --- dose -----------------------------------------------------------------------------------
def dose_calculation(ev: Evaluation) -> dict[str, Any]:
    """The dose check's arithmetic as a person would write it, and the range that applies to
    this indication (with its citation), or none."""
    dose, order = ev.dose, ev.timeline.order
    res = ev.primary
    rng = res.indication.dose if res is not None else None
    out: dict[str, Any] = {"calculation": None, "range_source": None, "range_text": None,
                           "range_indication": res.indication.label if res is not None else None}
    if rng is not None:
        out["range_source"] = ev.ruleset.cite(rng.cite)
        lo, hi = rng.range_mg_per_kg
        if rng.basis == "per-4-weeks":
            text = f"{lo:,g}–{hi:,g} mg/kg per 4 weeks"
        else:
            text = f"{lo:,g}–{hi:,g} mg/kg per course ({lo / 1000:g}–{hi / 1000:g} g/kg)"
        if order is not None and order.route == "SC" and rng.sc_range_mg_per_kg_per_week:
            slo, shi = rng.sc_range_mg_per_kg_per_week
            text = (f"{slo:g}–{shi:g} mg/kg per week for subcutaneous immune globulin "
                    f"(= {slo * 4:g}–{shi * 4:g} mg/kg per 4 weeks)")
        out["range_text"] = text
    if order is None or dose.mg_per_kg is None:
        return out
    result = f"{round(dose.mg_per_kg):,} mg/kg"
    weight = dose.weight.value if dose.weight is not None and dose.weight.value else None
    if order.dose_mg_per_kg is not None:
        amount, per_kg = f"{_fmt(order.dose_mg_per_kg)} mg/kg", True
    elif order.dose_g is not None and weight:
        amount, per_kg = f"{_fmt(order.dose_g)} g", False
    else:
        return out
    by_weight = "" if per_kg else f" ÷ {weight:.1f} kg".replace(".0 kg", " kg")
    if dose.basis == "per-4-weeks" and order.interval_days:
        every = f"{order.interval_days:g} day" + ("" if order.interval_days == 1 else "s")
        out["calculation"] = f"{amount} × 28 ÷ {every}{by_weight} = {result} per 4 weeks"
    else:
        n = order.course_count or 1
        doses = f" × {n} dose" + ("" if n == 1 else "s")
        grams = f" ({dose.mg_per_kg / 1000:.3g} g/kg)"
        out["calculation"] = f"{amount}{doses}{by_weight} = {result} per course{grams}"
    return out
