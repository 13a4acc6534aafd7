"""The report (CONTRACT §2) as a JSON-ready dict, and a readable text form. Pure."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from fhir_mappings import PatientFacts, PatientRecord, extract_facts
from fhir_mappings.dates import years_between

from .engine.checks import Result
from .engine.evaluate import Evaluation, IndicationResult, evaluate
from .engine.model import documentation_codes, get_ruleset
from .engine.timeline import ORDER_STATUSES, choose_order
from .payers import PayerMap, choose_ruleset, load_payer_map

REPORT_VERSION = "1"


def _result_json(result: Result) -> dict[str, Any]:
    return {
        "status": result.status,
        "evidence": [{"reference": e.reference, "summary": e.summary} for e in result.evidence],
        "detail": result.detail,
    }


def _missing_json(items) -> list[dict[str, str]]:
    codes = documentation_codes()
    return [
        {"code": x.code, "display": codes[x.code].display if x.code in codes else x.code, "detail": x.detail}
        for x in items
    ]


def _criteria_json(res: IndicationResult, ruleset) -> list[dict[str, Any]]:
    out = []
    for cr in res.criteria:
        item = {
            "id": cr.criterion.id,
            "description": cr.criterion.description,
            **_result_json(cr.result),
            "source": ruleset.cite(cr.criterion.cite),
        }
        if cr.result.components:
            item["components"] = [_result_json(c) for c in cr.result.components]
        if cr.result.missing and cr.result.status == "missing":
            item["missing"] = [x.code for x in cr.result.missing]
        out.append(item)
    return out


def _indication_json(res: IndicationResult, ruleset) -> dict[str, Any]:
    ind = res.indication
    return {
        "id": ind.id,
        "label": ind.label,
        "coverage": ind.coverage,
        "evidence": [d.ref for d in res.diagnoses],
        "source": ruleset.cite(ind.cite),
        "named_by_order": res.named_by_order,
    }


def dose_json(ev: Evaluation) -> dict[str, Any]:
    dose = ev.dose
    return {
        "status": dose.status,
        "basis": dose.basis,
        "weight_kg": round(dose.weight.value, 1) if dose.weight and dose.weight.value else None,
        "weight_date": dose.weight.date.isoformat() if dose.weight and dose.weight.date else None,
        "weight_reference": dose.weight.ref if dose.weight else None,
        "mg_per_kg": round(dose.mg_per_kg) if dose.mg_per_kg is not None else None,
        "range_mg_per_kg": list(dose.range_mg_per_kg) if dose.range_mg_per_kg else None,
        "note": dose.note,
    }


def build_report(ev: Evaluation) -> dict[str, Any]:
    facts, tl = ev.facts, ev.timeline
    order = tl.order
    age = years_between(facts.birth_date, ev.as_of) if facts.birth_date else None
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "as_of": ev.as_of.isoformat(),
        "ruleset": {
            "id": ev.ruleset.id,
            "version": ev.ruleset.version,
            "title": ev.ruleset.title,
            "source": ev.ruleset.source,
        },
        "patient": {"reference": facts.patient_ref, "age_years": age},
        "order": None
        if order is None
        else {
            "reference": order.ref,
            "status": order.status,
            "product": order.product,
            "route": order.route,
            "dose_g": round(order.dose_g, 2) if order.dose_g is not None else None,
            "dose_mg_per_kg": order.dose_mg_per_kg,
            "interval_days": round(order.interval_days, 2) if order.interval_days else None,
            "course_doses": order.course_count,
            "dose_note": order.dose_note,
        },
        "therapy": {
            "status": tl.status,
            "first_dose_date": tl.first_dose.isoformat() if tl.first_dose else None,
            "first_dose_reference": tl.first_dose_ref,
            "prior_exposure": list(tl.exposure_refs),
        },
        "indication": _indication_json(ev.primary, ev.ruleset) if ev.primary else None,
        "determination": ev.determination,
        "criteria": _criteria_json(ev.primary, ev.ruleset) if ev.primary else [],
        "missing_documentation": _missing_json(ev.missing),
        "dose_check": dose_json(ev),
        "other_indications": [
            {
                **_indication_json(o, ev.ruleset),
                "determination": o.determination,
                "criteria": _criteria_json(o, ev.ruleset),
                "missing_documentation": _missing_json(o.missing),
            }
            for o in ev.others
        ],
        "warnings": list(ev.warnings),
        "not_accessible": sorted(facts.not_accessible),
    }
    return degrade_for_access(report)


def degrade_for_access(report: dict[str, Any]) -> dict[str, Any]:
    """Items the app could not check because it may not read their source types.

    With reduced scopes an item like ``vaccine-response`` is not known to be missing: the
    app was not allowed to look. Such items move from ``missing_documentation`` (which
    becomes the Task) to ``not_checked``, and their criteria get the status
    ``not-accessible`` with the types named, so nobody is asked to document what may
    already be in the chart. The determination is kept but flagged provisional.
    """
    hidden = set(report.get("not_accessible") or ())
    codes = documentation_codes()

    def blocked(code: str) -> list[str]:
        return sorted(hidden & set(codes[code].sources)) if hidden and code in codes else []

    def split(section: dict[str, Any]) -> None:
        keep, moved = [], []
        for item in section["missing_documentation"]:
            types = blocked(item["code"])
            (moved if types else keep).append({**item, "not_accessible": types} if types else item)
        section["missing_documentation"] = keep
        section["not_checked"] = moved
        for cr in section["criteria"]:
            if cr["status"] == "missing" and cr.get("missing") and all(blocked(c) for c in cr["missing"]):
                cr["status"] = "not-accessible"
                cr["not_accessible"] = sorted({t for c in cr["missing"] for t in blocked(c)})

    split(report)
    for other in report["other_indications"]:
        split(other)
    if report["not_checked"] or any(c["status"] == "not-accessible" for c in report["criteria"]):
        report["warnings"].append(
            "The EHR did not let the app read " + ", ".join(sorted(hidden))
            + "; criteria that depend on them could not be checked, so this determination is provisional."
        )
    return report


STATUS_MARK = {"met": "[met]    ", "not-met": "[NOT MET]", "missing": "[missing]", "not-applicable": "[n/a]    "}


def render_text(report: dict[str, Any]) -> str:
    """A plain-text rendering for terminals and pipeline logs of the clinician's view."""
    lines = []
    rs = report["ruleset"]
    lines.append(f"IVIG coverage check — {rs['id']} (version {rs['version']}), as of {report['as_of']}")
    if report.get("payer"):
        lines.append(f"Policy choice: {report['payer']['detail']}")
    ind = report["indication"]
    if ind:
        lines.append(f"Indication: {ind['label']} [{ind['coverage']}] ({', '.join(ind['evidence']) or 'named by the order'})")
    order = report["order"]
    if order:
        dose = f"{order['dose_g']:g} g" if order["dose_g"] is not None else (
            f"{order['dose_mg_per_kg']:g} mg/kg" if order["dose_mg_per_kg"] is not None else "dose unknown")
        every = f" every {order['interval_days']:g} days" if order["interval_days"] else ""
        lines.append(f"Order: {order['product']} {order['route'] or ''} {dose}{every} ({order['reference']})")
    th = report["therapy"]
    lines.append(f"Therapy: {th['status']}, first dose {th['first_dose_date'] or 'not documented'}")
    lines.append(f"Determination: {report['determination'].upper()}")
    lines.append("")
    for c in report["criteria"]:
        lines.append(f"  {STATUS_MARK.get(c['status'], c['status'])} {c['description']}")
        for e in c["evidence"][:4]:
            lines.append(f"             - {e['summary']} ({e['reference']})")
    dc = report["dose_check"]
    if dc["status"] != "not-applicable":
        rng = dc["range_mg_per_kg"]
        lines.append("")
        lines.append(
            f"Dose check: {dc['status']}"
            + (f", {dc['mg_per_kg']} mg/kg ({dc['basis']})" if dc["mg_per_kg"] is not None else "")
            + (f", range {rng[0]:g}–{rng[1]:g}" if rng else "")
            + (f", weight {dc['weight_kg']} kg on {dc['weight_date']}" if dc["weight_kg"] else "")
            + (f" — {dc['note']}" if dc.get("note") else "")
        )
    if report["missing_documentation"]:
        lines.append("")
        lines.append("Missing documentation:")
        for item in report["missing_documentation"]:
            lines.append(f"  [ ] {item['code']}: {item['display']} — {item['detail']}")
    if report["other_indications"]:
        lines.append("")
        lines.append("Other indications in the record:")
        for o in report["other_indications"]:
            lines.append(f"  - {o['label']} [{o['coverage']}]: {o['determination']}")
    if report["warnings"]:
        lines.append("")
        lines.append("Warnings:")
        lines.extend(f"  ! {w}" for w in report["warnings"])
    return "\n".join(lines) + "\n"


DEFAULT_RULESET = "bcbsmt-ig-2013"  # CONTRACT §1
PAYER_TYPES = {"Coverage", "Organization"}  # read to choose the ruleset, never criteria data


def focus_order(facts: PatientFacts, order_ref: str) -> PatientFacts:
    """Make ``order_ref`` the order evaluated (the draft being signed, CDS Hooks).

    Other open IVIG requests are read as what they are next to a new order: history. An
    active or on-hold one becomes ``completed`` (both count as prior exposure, CONTRACT §4,
    so the therapy status does not change); another draft is dropped (a draft is not
    exposure, and only one order is evaluated). Facts are copied, never changed in place.
    """
    if not any(o.ref == order_ref for o in facts.ig_orders):
        return facts
    orders = []
    for o in facts.ig_orders:
        if o.ref == order_ref or o.status not in ORDER_STATUSES:
            orders.append(o)
        elif o.status != "draft":
            orders.append(dataclasses.replace(o, status="completed"))
    return dataclasses.replace(facts, ig_orders=orders)


def evaluate_record(record: PatientRecord, ruleset_id: str | None, as_of: date, *,
                    default_ruleset: str = DEFAULT_RULESET, payer_map: PayerMap | None = None,
                    order_ref: str | None = None) -> dict[str, Any]:
    """Record -> report dict: the whole pure pipeline (payer, facts, criteria, report).

    ``ruleset_id`` None: the primary Coverage's payer chooses the ruleset through
    ``payer_map`` (default: the shipped map), else ``default_ruleset``. The report's
    ``payer`` says which and why. ``order_ref``: evaluate that IVIG order (see focus_order).
    """
    coverage_readable = "Coverage" not in record.not_accessible
    if record.not_accessible & PAYER_TYPES:  # payer data is not criteria data: not "provisional"
        record = dataclasses.replace(record, not_accessible=record.not_accessible - PAYER_TYPES)
    facts = extract_facts(record)
    if order_ref:
        facts = focus_order(facts, order_ref)
    order = choose_order(facts)
    day = order.authored if order is not None and order.authored is not None else as_of
    choice = choose_ruleset([record.patient, *record.resources], payer_map or load_payer_map(), day,
                            requested=ruleset_id, default=default_ruleset,
                            coverage_readable=coverage_readable, full_urls=record.full_urls)
    report = build_report(evaluate(facts, get_ruleset(choice.ruleset), as_of))
    report["warnings"].extend(w for w in choice.warnings if w not in report["warnings"])
    # "payer" right after "ruleset", where a reader looks for it.
    ordered: dict[str, Any] = {}
    for key, value in report.items():
        ordered[key] = value
        if key == "ruleset":
            ordered["payer"] = choice.to_json()
    return ordered
