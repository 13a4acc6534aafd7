"""The report (CONTRACT §2) as a JSON-ready dict, and a readable text form. Pure."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from fhir_mappings import PatientFacts, PatientRecord, extract_facts
from fhir_mappings.dates import years_between

from .attestation import Responses, attestation_json
from .engine import model as m
from .engine.checks import Result
from .engine.evaluate import Evaluation, IndicationResult, evaluate
from .engine.model import documentation_codes, get_ruleset
from .engine.timeline import ORDER_STATUSES, choose_order
from .payers import PayerMap, choose_ruleset, load_payer_map
from .questionnaire import DEFAULT_CANONICAL_BASE
from .report_extras import dose_calculation, igg_history, vaccine_responses

REPORT_VERSION = "1"


def _once(items):
    """The items in order, each once."""
    return list(dict.fromkeys(items))


def _detail_once(detail: str) -> str:
    """A detail whose "; "-joined parts are each said once (an "any of" criterion gathers
    the details of its branches, and branches share parts)."""
    return "; ".join(_once(p for p in (detail or "").split("; ") if p))


def _result_json(result: Result) -> dict[str, Any]:
    return {
        "status": result.status,
        "evidence": [{"reference": ref, "summary": summary, "origin": origin}
                     for ref, summary, origin in _once((e.reference, e.summary, e.origin) for e in result.evidence)],
        "detail": _detail_once(result.detail),
    }


def _missing_json(items) -> list[dict[str, str]]:
    codes = documentation_codes()
    return [
        {"code": x.code, "display": codes[x.code].display if x.code in codes else x.code, "detail": x.detail}
        for x in items
    ]


def _criterion_source(cr, res: IndicationResult, ruleset) -> tuple[str, str]:
    """(the criterion's citation, its section): for the dose criterion, the range that
    applies to this indication, or the statement that the policy gives none (a common dose
    criterion otherwise cites another indication's range)."""
    cite = cr.criterion.cite
    if isinstance(cr.criterion.check, m.DoseCheck):
        rng = res.indication.dose
        if rng is None:
            text = f"{ruleset.citation}: no dose range is given for {res.indication.label}"
            return text, text
        cite = rng.cite
    return ruleset.cite(cite), f"{ruleset.citation} — {cite.section}"


def _criteria_json(res: IndicationResult, ruleset) -> list[dict[str, Any]]:
    out = []
    for cr in res.criteria:
        source, section = _criterion_source(cr, res, ruleset)
        item = {
            "id": cr.criterion.id,
            "description": cr.criterion.description,
            **_result_json(cr.result),
            "source": source,
            "source_section": section,
        }
        if cr.result.components:
            item["components"] = [_result_json(c) for c in cr.result.components]
        if cr.result.missing and cr.result.status == "missing":
            item["missing"] = _once(x.code for x in cr.result.missing)
        if cr.criterion.id in res.attested_criteria:
            item["rests_on_attestation"] = True
        out.append(item)
    return out


def _indication_json(res: IndicationResult, ruleset) -> dict[str, Any]:
    ind = res.indication
    return {
        "id": ind.id,
        "label": ind.label,
        "coverage": ind.coverage,
        "evidence": [d.ref for d in res.diagnoses],
        "diagnoses": [{"reference": d.ref, "display": d.display or d.code,
                       "onset": d.onset.isoformat() if d.onset else None,
                       "recorded": d.recorded.isoformat() if d.recorded else None} for d in res.diagnoses],
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
        **dose_calculation(ev),
    }


def build_report(ev: Evaluation, canonical_base: str = DEFAULT_CANONICAL_BASE) -> dict[str, Any]:
    facts, tl = ev.facts, ev.timeline

    def attestation(res: IndicationResult) -> dict[str, Any]:
        return attestation_json(res, ev.ruleset, facts.patient_ref, canonical_base)

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
            "authored_on": order.authored.isoformat() if order.authored else None,
        },
        "therapy": {
            "status": tl.status,
            "first_dose_date": tl.first_dose.isoformat() if tl.first_dose else None,
            "first_dose_reference": tl.first_dose_ref,
            "prior_exposure": list(tl.exposure_refs),
        },
        "indication": _indication_json(ev.primary, ev.ruleset) if ev.primary else None,
        "determination": ev.determination,
        "attestation": attestation(ev.primary) if ev.primary else None,
        "criteria": _criteria_json(ev.primary, ev.ruleset) if ev.primary else [],
        "missing_documentation": _missing_json(ev.missing),
        "dose_check": dose_json(ev),
        "igg_history": igg_history(ev),
        "vaccine_responses": vaccine_responses(ev),
        "other_indications": [
            {
                **_indication_json(o, ev.ruleset),
                "determination": o.determination,
                "criteria": _criteria_json(o, ev.ruleset),
                "missing_documentation": _missing_json(o.missing),
                "attestation": attestation(o),
            }
            for o in ev.others
        ],
        "warnings": list(ev.warnings),
        "not_accessible": sorted(facts.not_accessible),
        "not_available": sorted(facts.not_available - facts.not_accessible),
    }
    return degrade_for_access(report)


def degrade_for_access(report: dict[str, Any]) -> dict[str, Any]:
    """Items the app could not check because it could not read their source types.

    With reduced scopes (``not_accessible``), or on a server that does not offer a type or
    search (``not_available``), an item like ``vaccine-response`` is not known to be
    missing: the app could not look. Such items move from ``missing_documentation`` (which
    becomes the Task) to ``not_checked``, and their criteria get the status
    ``not-accessible`` (scopes; it wins when both apply) or ``not-available`` (server) with
    the types named, so nobody is asked to document what may already be in the chart. The
    determination is kept but flagged provisional.
    """
    no_access = set(report.get("not_accessible") or ())
    no_server = set(report.get("not_available") or ())
    codes = documentation_codes()

    def blocked(code: str, hidden: set[str]) -> list[str]:
        return sorted(hidden & set(codes[code].sources)) if hidden and code in codes else []

    def marked(item: dict[str, Any], code: str) -> dict[str, Any] | None:
        access, server = blocked(code, no_access), blocked(code, no_server)
        if not access and not server:
            return None
        out = dict(item)
        if access:
            out["not_accessible"] = access
        if server:
            out["not_available"] = server
        return out

    def split(section: dict[str, Any]) -> None:
        keep, moved = [], []
        for item in section["missing_documentation"]:
            unchecked = marked(item, item["code"])
            (moved if unchecked else keep).append(unchecked or item)
        section["missing_documentation"] = keep
        section["not_checked"] = moved
        for cr in section["criteria"]:
            if cr["status"] != "missing" or not cr.get("missing"):
                continue
            if not all(blocked(c, no_access) or blocked(c, no_server) for c in cr["missing"]):
                continue
            access = sorted({t for c in cr["missing"] for t in blocked(c, no_access)})
            server = sorted({t for c in cr["missing"] for t in blocked(c, no_server)})
            cr["status"] = "not-accessible" if access else "not-available"
            if access:
                cr["not_accessible"] = access
            if server:
                cr["not_available"] = server

    split(report)
    for other in report["other_indications"]:
        split(other)
    affected = report["not_checked"] or any(
        c["status"] in ("not-accessible", "not-available") for c in report["criteria"])
    if affected and no_access:
        report["warnings"].append(
            "The EHR did not let the app read " + ", ".join(sorted(no_access))
            + "; criteria that depend on them could not be checked, so this determination is provisional."
        )
    if affected and no_server:
        report["warnings"].append(
            "This FHIR server does not offer " + ", ".join(sorted(no_server))
            + "; criteria that depend on them could not be checked, so this determination is provisional."
        )
    return report


STATUS_MARK = {"met": "[met]      ", "not-met": "[NOT MET]  ", "missing": "[missing]  ",
               "not-applicable": "[n/a]      ", "not-accessible": "[no access]", "not-available": "[no data]  "}
STATUS_WORD = {"met": "met", "not-met": "not met", "missing": "missing", "not-applicable": "not applicable",
               "not-accessible": "not accessible", "not-available": "not available"}
DETERMINATION_TEXT = {
    "criteria-met": "CRITERIA MET",
    "documentation-missing": "DOCUMENTATION MISSING",
    "criteria-not-met": "CRITERIA NOT MET",
    "not-covered": "NOT COVERED BY THIS POLICY",
    "no-indication": "NO COVERED INDICATION FOUND",
}
COVERAGE_TEXT = {"labeled": "labeled indication", "off-label": "off-label indication",
                 "experimental": "experimental or investigational under this policy",
                 "unlisted": "not listed in this policy"}
THERAPY_TEXT = {"new-start": "new start", "continuation": "continuation of therapy",
                "none": "no immune globulin therapy documented"}
TIMING_TEXT = {"pre-treatment": "before the first dose", "on-treatment": "on treatment",
               "unknown": "timing unknown (may be on treatment)"}
DOSE_TEXT = {"within-range": "within the policy's range", "above-range": "above the policy's range",
             "below-range": "below the policy's range", "unknown": "cannot be checked",
             "not-applicable": "no order to check"}
UNIT_TEXT = {"ug/mL": "µg/mL", "[IU]/mL": "IU/mL"}
WRAP = 100


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _wrapped(text: str, indent: str, first: str = "") -> list[str]:
    import textwrap

    return textwrap.wrap(text, WRAP, initial_indent=indent + first, subsequent_indent=indent + " " * len(first),
                         break_on_hyphens=False) or [indent + first]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def render_text(report: dict[str, Any]) -> str:
    """A plain-text rendering of the clinician's view, for terminals and pipeline logs: the
    same words as the report page (no item codes), with record references in parentheses."""
    lines: list[str] = []
    rs = report["ruleset"]
    lines.append(f"IVIG coverage check, as of {report['as_of']}")
    lines.extend(_wrapped(f"{rs['title']} (version {rs['version']})", "", "Policy: "))
    payer = report.get("payer")
    if payer:
        if payer.get("chosen_by") == "coverage":
            how = f"chosen from the patient's Coverage: {payer.get('payer_label')} is the payer ({payer.get('coverage')})"
        elif payer.get("chosen_by") == "requested":
            how = "chosen by the user"
        else:
            how = f"the default policy: {payer.get('detail')}"
        lines.extend(_wrapped(how, "        "))
    ind = report["indication"]
    if ind:
        lines.extend(_wrapped(f"{ind['label']} — {COVERAGE_TEXT.get(ind['coverage'], ind['coverage'])}"
                              + (f" ({', '.join(ind['evidence'])})" if ind["evidence"] else " (named by the order)"),
                              "", "Indication: "))
    order = report["order"]
    if order:
        dose = f"{order['dose_g']:g} g" if order["dose_g"] is not None else (
            f"{order['dose_mg_per_kg']:g} mg/kg" if order["dose_mg_per_kg"] is not None else "dose not stated")
        route = {"IV": " intravenously", "SC": " subcutaneously"}.get(order["route"] or "", "")
        every = ""
        if order["interval_days"]:
            every = f" every {order['interval_days']:g} day" + ("" if order["interval_days"] == 1 else "s")
        course = f", course of {_n(order['course_doses'], 'dose', 'doses')}" if order.get("course_doses") else ""
        when = f", ordered {order['authored_on']}" if order.get("authored_on") else ""
        lines.extend(_wrapped(f"{order['product']}, {dose}{route}{every}{course}{when} ({order['reference']})",
                              "", "Order: "))
    th = report["therapy"]
    first = th["first_dose_date"] or "not documented"
    if th["status"] == "new-start" and not th["first_dose_date"]:
        lines.append("Therapy: new start (no earlier immune globulin in the record)")
    else:
        lines.append(f"Therapy: {THERAPY_TEXT.get(th['status'], th['status'])}"
                     + ("" if th["status"] == "none" else f"; first dose {first}"))
    missing = report["missing_documentation"]
    det = report["determination"]
    lines.append(f"Determination: {DETERMINATION_TEXT.get(det, det)}"
                 + (f" — {_n(len(missing), 'documentation item', 'documentation items')} missing" if missing else ""))
    if (report.get("attestation") or {}).get("summary"):
        lines.extend(_wrapped(report["attestation"]["summary"], "", "Attestation: "))
    criteria = report["criteria"]

    if missing:
        lines += ["", f"Missing documentation ({len(missing)}):"]
        for item in missing:
            lines.append(f"  [ ] {item['display']}")
            lines.extend(_wrapped(item["detail"], "      "))
            needing = [c["description"] for c in criteria if item["code"] in (c.get("missing") or [])]
            if needing:
                lines.extend(_wrapped("; ".join(needing), "      ", "Needed for: "))
    if report.get("not_checked"):
        lines += ["", "Could not be checked (the app was not allowed to read the records they come from):"]
        lines.extend(f"  ? {item['display']}" for item in report["not_checked"])

    history = report.get("igg_history") or {}
    if history.get("results"):
        thresholds = ", ".join(f"{'below' if t['kind'] == 'below' else 'at least'} {t['mg_dl']:g}"
                               for t in history.get("thresholds") or [])
        lines += ["", "IgG history (mg/dL)" + (f"; policy threshold: {thresholds}" if thresholds else "") + ":"]
        marks = []
        if history.get("first_dose_date"):
            marks.append((history["first_dose_date"], "first immune globulin dose"))
        if history.get("order_date"):
            marks.append((history["order_date"], "order date"))
        rows = [(r["date"] or "undated", f"{r['comparator'] or ''}{r['value_mg_dl']:g}",
                 TIMING_TEXT.get(r["timing"], r["timing"]), r["reference"]) for r in history["results"]]
        rows += [(d, "", f"— {what}", "") for d, what in marks]
        for day, value, timing, ref in sorted(rows, key=lambda r: r[0]):
            lines.append(f"  {day:<10} {value:>7}  {timing}" + (f" ({ref})" if ref else ""))

    for group in report.get("vaccine_responses") or []:
        unit = UNIT_TEXT.get(group["unit"], group["unit"])
        vac = group["vaccination"]
        lines.append("")
        if vac:
            lo, hi = group["post_window_days"]
            lines.append(f"Vaccine response — {group['label']}: {vac['display']} on {vac['date']} "
                         f"(post-vaccination titers {lo}–{hi} days after" + (f"; {unit}):" if unit else "):"))
        else:
            lines.append(f"Vaccine response — {group['label']}: titers with no dated vaccination to pair them with"
                         + (f" ({unit}):" if unit else ":"))
        if not group["rows"]:
            lines.append("  No titer was drawn before or after it.")
        for row in group["rows"]:
            pre = f"{row['pre']['value']:g} ({row['pre']['date']})" if row["pre"] else "none"
            post = f"{row['post']['value']:g} ({row['post']['date']})" if row["post"] else "none"
            fold = f", {row['fold_rise']:g}-fold" if row["fold_rise"] is not None else ""
            if row["protective"] is None:
                prot = ", no protective level stated" if row["post"] else ""
            elif row["protective"]:
                prot = f", protective (≥ {row['protective_level']:g})"
            else:
                prot = f", not protective (< {row['protective_level']:g})"
            lines.append(f"  {row['label']}")
            lines.append(f"      before {pre} → after {post}{fold}{prot}")
        if vac and group["post_count"]:
            lines.append(f"  Protective after vaccination: {group['protective_count']} of {group['post_count']}; "
                         f"at least a 4-fold rise: {group['four_fold_count']} of {group['post_count']}")

    dc = report["dose_check"]
    if order:
        lines += ["", f"Dose check: {DOSE_TEXT.get(dc['status'], dc['status'])}"]
        if dc.get("calculation"):
            lines.append(f"  {dc['calculation']}")
        elif dc.get("note"):
            lines.append(f"  {_sentence(dc['note'])}")
        if dc.get("weight_kg"):
            lines.append(f"  Weight {dc['weight_kg']:g} kg on {dc['weight_date']}")
        if dc.get("range_text"):
            lines.append(f"  Range for this indication: {dc['range_text']}")
        elif ind:
            lines.append(f"  This policy gives no dose range for {ind['label']}")

    if criteria:
        counts = {}
        for c in criteria:
            counts[c["status"]] = counts.get(c["status"], 0) + 1
        tally = ", ".join(f"{n} {STATUS_WORD.get(st, st)}" for st, n in counts.items())
        lines += ["", f"Criteria ({tally}):"]
        for c in criteria:
            lines.extend(_wrapped(c["description"], "  ", STATUS_MARK.get(c["status"], c["status"]) + " "))
            pad = "              "
            if c.get("detail"):
                lines.extend(_wrapped(_sentence(c["detail"]), pad))
            for e in c["evidence"][:4]:
                mark = "[attested] " if e.get("origin") == "attested" else ""
                lines.extend(_wrapped(f"{mark}{e['summary']} ({e['reference']})", pad, "- "))
            if len(c["evidence"]) > 4:
                lines.append(f"{pad}… and {len(c['evidence']) - 4} more")
            if c.get("source_section"):
                lines.extend(_wrapped(c["source_section"], pad, "Policy: "))
    if report["other_indications"]:
        lines += ["", "Other indications in the record:"]
        for o in report["other_indications"]:
            lines.append(f"  - {o['label']} ({COVERAGE_TEXT.get(o['coverage'], o['coverage'])}): "
                         f"{DETERMINATION_TEXT.get(o['determination'], o['determination']).lower()}")
    if report["warnings"]:
        lines += ["", "Warnings:"]
        for w in report["warnings"]:
            lines.extend(_wrapped(w, "  ", "! "))
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
                    order_ref: str | None = None,
                    canonical_base: str = DEFAULT_CANONICAL_BASE) -> dict[str, Any]:
    """Record -> report dict: the whole pure pipeline (payer, facts, criteria, report).

    ``ruleset_id`` None: the primary Coverage's payer chooses the ruleset through
    ``payer_map`` (default: the shipped map), else ``default_ruleset``. The report's
    ``payer`` says which and why. ``order_ref``: evaluate that IVIG order (see focus_order).
    The record's QuestionnaireResponses are the clinician's attestations (attestation.py):
    ``canonical_base`` is the base of the Questionnaires they must name.
    """
    coverage_readable = "Coverage" not in record.not_accessible | record.not_available
    if (record.not_accessible | record.not_available) & PAYER_TYPES:
        # Payer data is not criteria data: not "provisional" (the payer section says it).
        record = dataclasses.replace(record, not_accessible=record.not_accessible - PAYER_TYPES,
                                     not_available=record.not_available - PAYER_TYPES)
    facts = extract_facts(record)
    if order_ref:
        facts = focus_order(facts, order_ref)
    order = choose_order(facts)
    day = order.authored if order is not None and order.authored is not None else as_of
    choice = choose_ruleset([record.patient, *record.resources], payer_map or load_payer_map(), day,
                            requested=ruleset_id, default=default_ruleset,
                            coverage_readable=coverage_readable, full_urls=record.full_urls)
    ruleset = get_ruleset(choice.ruleset)
    responses = Responses(record, ruleset, canonical_base)
    report = build_report(evaluate(facts, ruleset, as_of, responses if responses.responses else None),
                          canonical_base)
    notes = responses.notes.get(report["indication"]["id"], []) if report.get("indication") else []
    report["warnings"].extend(w for w in [*notes, *choice.warnings] if w not in report["warnings"])
    # "payer" right after "ruleset", where a reader looks for it.
    ordered: dict[str, Any] = {}
    for key, value in report.items():
        ordered[key] = value
        if key == "ruleset":
            ordered["payer"] = choice.to_json()
    return ordered
