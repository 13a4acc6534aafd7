"""The letter of medical necessity: a draft built only from the report. Pure (HTML and PDF
rendering included: no I/O).

The letter says what the report says, in a letter's words: the patient, the diagnosis with
its dates, the treatment requested, the policy and each criterion with the evidence the
record (or a clinician's attestation, always labelled so) holds, the weight and the dose
calculation, and, in a box of their own, the items still missing (not claimed). For an
indication the policy does not cover it is framed as a request for individual
consideration: off-label or unlisted use, what has been tried, and a marked place for the
physician's reasons. It never states a fact the report does not hold: every number and
date it prints comes from the report (a test checks this), and nothing is computed that
the report does not show. It is a draft: the physician reviews, edits and signs it in the
EHR (written back, it is a ``DocumentReference`` with ``docStatus`` preliminary).
"""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path
from typing import Any

from fhir.resources.R4B.documentreference import DocumentReference
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .task import digest

TEMPLATES = Path(__file__).parent / "templates"
LETTER_CSS = Path(__file__).parent / "static" / "letter.css"
EVIDENCE_SHOWN = 4  # evidence lines per criterion; the report holds the rest
COVERAGE_WORDS = {
    "labeled": "an FDA-labeled indication",
    "off-label": "an off-label indication the policy covers when its criteria are met",
    "experimental": "listed by the policy as experimental, investigational and unproven",
    "unlisted": "not listed in the policy",
}
STATUS_WORDS = {"met": "Met", "not-met": "Not met as documented", "missing": "Not yet documented",
                "not-accessible": "Not checked (not accessible to the app)",
                "not-available": "Not checked (not offered by the FHIR server)"}
ROUTE_WORDS = {"IV": "intravenously", "SC": "subcutaneously"}
BASIS_WORDS = {"per-4-weeks": "per 4 weeks", "per-course": "per course"}
DOSE_WORDS = {"within-range": "within the policy's range", "above-range": "above the policy's range",
              "below-range": "below the policy's range", "unknown": "not checked against a range"}
# The appeal path's own item is this letter: it is not listed as missing from it.
SELF, SELF_ITEM = "appeal-letter", "letter-of-medical-necessity"
LOINC_LETTER = {"system": "http://loinc.org", "code": "51852-2", "display": "Letter"}
DOCUMENT_IDENTIFIER_SYSTEM = "urn:uuid:5d1f9b0c-2a6e-4f4b-8f1e-6a9c3e7b2d41"


def patient_name(patient: dict[str, Any]) -> str | None:
    """The Patient's current name as written (``text``, else given names and family)."""
    for hn in patient.get("name") or []:
        if not isinstance(hn, dict) or hn.get("use") == "old":
            continue
        family = hn.get("family") if isinstance(hn.get("family"), str) else ""
        name = hn.get("text") or " ".join(
            [*[g for g in hn.get("given") or [] if isinstance(g, str)], family]).strip()
        if isinstance(name, str) and name:
            return name
    return None


def _num(x: float | int) -> str:
    return f"{x:g}"


def _evidence(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    shown = [{"text": e["summary"], "reference": e["reference"], "attested": e.get("origin") == "attested"}
             for e in items[:EVIDENCE_SHOWN]]
    return shown, len(items) > EVIDENCE_SHOWN


def _payer(report: dict[str, Any]) -> str:
    payer = report.get("payer") or {}
    payor = payer.get("payor") or {}
    return payor.get("display") or payer.get("payer_label") or "The patient's health plan"


def _order_text(order: dict[str, Any] | None) -> str | None:
    if not order:
        return None
    if order.get("dose_g") is not None:
        dose = f"{_num(order['dose_g'])} g"
    elif order.get("dose_mg_per_kg") is not None:
        dose = f"{_num(order['dose_mg_per_kg'])} mg/kg"
    else:
        dose = "a dose the order does not state in a readable form"
    text = f"{order['product']}, {dose}"
    if order.get("route") in ROUTE_WORDS:
        text += f" {ROUTE_WORDS[order['route']]}"
    if order.get("course_doses"):
        text += f", a course of {order['course_doses']} dose" + ("" if order["course_doses"] == 1 else "s")
    elif order.get("interval_days"):
        text += f" every {_num(order['interval_days'])} days"
    return text


def _dose_lines(report: dict[str, Any]) -> list[str]:
    dc = report.get("dose_check") or {}
    if dc.get("status") in (None, "not-applicable"):
        return []
    lines = []
    if dc.get("weight_kg") is not None:
        lines.append(f"Body weight {_num(dc['weight_kg'])} kg on {dc['weight_date']}.")
    if dc.get("calculation"):  # the worked calculation, when the report carries it
        lines.append(f"Dose calculation: {dc['calculation']}.")
    elif dc.get("mg_per_kg") is not None:
        lines.append(f"Calculated dose: {_num(dc['mg_per_kg'])} mg/kg {BASIS_WORDS.get(dc.get('basis'), '')}.".replace(" .", "."))
    rng = dc.get("range_mg_per_kg")
    if rng and dc.get("mg_per_kg") is not None:
        lines.append(f"The policy's range for this indication is {_num(rng[0])}–{_num(rng[1])} mg/kg "
                     f"{BASIS_WORDS.get(dc.get('basis'), '')}; the ordered dose is "
                     f"{DOSE_WORDS.get(dc['status'], dc['status'])}.")
    elif dc.get("note"):
        lines.append(f"The dose could not be checked: {dc['note']}.")
    return lines


def _igg_lines(report: dict[str, Any]) -> list[str]:
    """IgG results with their timing against the first dose, when the report carries them."""
    history = report.get("igg_history") or {}
    timing = {"pre-treatment": "before the first immune globulin dose", "on-treatment": "on immune globulin",
              "unknown": "timing against the first dose not documented"}
    return [f"IgG {r.get('comparator') or ''}{_num(r['value_mg_dl'])} mg/dL on {r['date'] or 'an undocumented date'} "
            f"({timing.get(r.get('timing'), r.get('timing'))})" for r in history.get("results") or []
            if r.get("value_mg_dl") is not None]


def build_letter(report: dict[str, Any], *, patient_name: str | None = None) -> dict[str, Any]:
    """The letter's content (a dict the templates render) from the report alone.
    ``patient_name``: shown in the salutation; the report holds no name."""
    ind = report.get("indication")
    ruleset = report["ruleset"]
    order = report.get("order")
    therapy = report.get("therapy") or {}
    age = (report.get("patient") or {}).get("age_years")
    who = patient_name or "my patient"
    covered = bool(ind) and ind["coverage"] in ("labeled", "off-label")
    product = order["product"] if order else "immune globulin"

    if ind is None:
        opening = (f"I am writing about {who}'s need for {product}. The record does not yet hold a diagnosis "
                   f"that {ruleset['title']} lists, so the request cannot be framed against the policy.")
    elif covered:
        opening = (f"I am writing to request coverage of {product} for {who}"
                   + (f", aged {age} years" if age is not None else "")
                   + f", for {ind['label']}, {COVERAGE_WORDS[ind['coverage']]}, under {ruleset['title']}.")
    else:
        opening = (f"I am writing to request individual consideration of coverage of {product} for {who}"
                   + (f", aged {age} years" if age is not None else "")
                   + f", for {ind['label']}, which is {COVERAGE_WORDS[ind['coverage']]} "
                   f"({ruleset['title']}).")

    diagnoses = []
    for d in (ind or {}).get("diagnoses") or []:
        dates = [f"onset {d['onset']}"] if d.get("onset") else []
        if d.get("recorded"):
            dates.append(f"recorded {d['recorded']}")
        diagnoses.append({"text": d["display"] + (f" ({', '.join(dates)})" if dates else " (undated)"),
                          "reference": d["reference"]})

    treatment = []
    if order_text := _order_text(order):
        treatment.append(f"Requested: {order_text} (order {order['reference']}).")
    if therapy.get("status") == "continuation":
        treatment.append(f"Immune globulin was first given on {therapy['first_dose_date']}."
                         if therapy.get("first_dose_date") else
                         "The patient already receives immune globulin; the date of the first dose is not documented.")
    elif therapy.get("status") == "new-start":
        treatment.append("This is a new start: the record shows no earlier immune globulin.")

    met, open_items = [], []
    for c in report.get("criteria") or []:
        if c["status"] == "not-applicable" or c["id"] == SELF:
            continue
        evidence, more = _evidence(c.get("evidence") or [])
        entry = {"description": c["description"], "status": STATUS_WORDS.get(c["status"], c["status"]),
                 "evidence": evidence, "more": more, "source": c.get("source") or "",
                 "attested": bool(c.get("rests_on_attestation"))}
        (met if c["status"] == "met" else open_items).append(entry)

    appeal = None
    if ind is not None and not covered:
        tried = next((c for c in report.get("criteria") or [] if c["id"] == "appeal-prior-therapy"), None)
        evidence, more = _evidence((tried or {}).get("evidence") or [])
        appeal = {"basis": ind.get("source") or "", "tried": evidence, "more": more,
                  "coverage": COVERAGE_WORDS[ind["coverage"]]}

    attestation = report.get("attestation") or {}
    return {
        "date": report["as_of"],
        "to": _payer(report),
        "patient_name": patient_name,
        "patient_reference": (report.get("patient") or {}).get("reference"),
        "age": age,
        "subject": (f"Letter of medical necessity: {product} for {ind['label']}" if ind
                    else f"Letter of medical necessity: {product}"),
        "opening": opening,
        "diagnoses": diagnoses,
        "treatment": treatment,
        "igg": _igg_lines(report),
        "dose": _dose_lines(report),
        "policy": {"title": ruleset["title"], "version": ruleset["version"], "source": ruleset.get("source") or "",
                   "indication_source": (ind or {}).get("source") or ""},
        "met": met,
        "open": open_items,
        "missing": [{"display": m["display"], "detail": m["detail"]} for m in report.get("missing_documentation") or []
                    if m["code"] != SELF_ITEM],
        "not_checked": [{"display": m["display"]} for m in report.get("not_checked") or []],
        "appeal": appeal,
        "attestation_summary": attestation.get("summary") if attestation.get("criteria_attested") else "",
        "determination": report["determination"],
    }


# --- rendering ---------------------------------------------------------------------------------
@cache
def _env() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))


def render_html(letter: dict[str, Any]) -> str:
    """The letter as a standalone HTML document (its style sheet inlined: for the PDF, the
    CLI and a file a clinician opens)."""
    return _env().get_template("letter.html").render(letter=letter, css=LETTER_CSS.read_text(encoding="utf-8"))


def render_text(letter: dict[str, Any]) -> str:
    """The letter as plain text (the CLI's ``--format text``)."""
    lines = ["DRAFT — for the treating physician to review, edit and sign in the EHR", "",
             f"Date: {letter['date']}", f"To: {letter['to']}", f"Re: {letter['subject']}"]
    if letter["patient_name"]:
        lines.append(f"Patient: {letter['patient_name']}" + (f", aged {letter['age']} years" if letter["age"] is not None else ""))
    lines += ["", letter["opening"]]
    if letter["diagnoses"]:
        lines += ["", "Diagnosis:"] + [f"  - {d['text']} ({d['reference']})" for d in letter["diagnoses"]]
    if letter["treatment"]:
        lines += ["", "Treatment:"] + [f"  {t}" for t in letter["treatment"]]
    if letter["igg"]:
        lines += ["", "IgG levels:"] + [f"  - {t}" for t in letter["igg"]]
    if letter["dose"]:
        lines += ["", "Weight and dose:"] + [f"  {t}" for t in letter["dose"]]
    if letter["met"]:
        lines += ["", f"How the criteria of {letter['policy']['title']} are met:"]
        for c in letter["met"]:
            lines.append(f"  - {c['description']}" + (" [rests on clinician attestation]" if c["attested"] else ""))
            lines += [f"      {'[attested] ' if e['attested'] else ''}{e['text']} ({e['reference']})" for e in c["evidence"]]
    if letter["attestation_summary"]:
        lines += ["", letter["attestation_summary"]]
    if letter["appeal"]:
        a = letter["appeal"]
        lines += ["", "Request for individual consideration:",
                  f"  This use is {a['coverage']}: {a['basis']}"]
        lines += [f"  Tried: {'[attested] ' if e['attested'] else ''}{e['text']} ({e['reference']})" for e in a["tried"]]
        lines.append("  [For the physician to complete: why immune globulin is expected to help this patient, "
                     "with the supporting literature.]")
    if letter["open"] or letter["missing"]:
        lines += ["", "STILL MISSING FROM THE RECORD — not claimed in this letter:"]
        lines += [f"  [ ] {c['description']} ({c['status'].lower()})" for c in letter["open"]]
        lines += [f"      {m['display']}: {m['detail']}" for m in letter["missing"]]
    lines += ["", "Sincerely,", "", "______________________________", "Treating physician (name, signature, date)",
              "", f"Policy: {letter['policy']['title']}, version {letter['policy']['version']}. {letter['policy']['source']}"]
    return "\n".join(lines) + "\n"


def render_pdf(html: str) -> bytes:
    """The standalone HTML as PDF (WeasyPrint; nothing is fetched: the HTML is self-contained)."""
    from weasyprint import HTML

    return HTML(string=html, url_fetcher=_no_fetch).write_pdf()


def page_count(html: str) -> int:
    from weasyprint import HTML

    return len(HTML(string=html, url_fetcher=_no_fetch).render().pages)


def _no_fetch(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    raise ValueError("the letter fetches nothing")


# --- write-back ----------------------------------------------------------------------------------
def document_identifier(report: dict[str, Any], pdf: bytes) -> dict[str, str]:
    """One DocumentReference per patient + indication + ruleset + letter content: writing the
    same draft twice finds the first."""
    ind = (report.get("indication") or {}).get("id", "no-indication")
    return {"system": DOCUMENT_IDENTIFIER_SYSTEM,
            "value": digest(["DocumentReference", report["patient"]["reference"], ind, report["ruleset"]["id"],
                             digest([base64.b64encode(pdf).decode("ascii")])])}


def build_document_reference(report: dict[str, Any], pdf: bytes, *, now: str, author: str | None = None
                             ) -> dict[str, Any]:
    """The draft letter as a FHIR R4 DocumentReference (docStatus preliminary: the clinician
    reviews and signs it in the EHR), validated with ``fhir.resources.R4B``."""
    ind = report.get("indication")
    title = f"Letter of medical necessity (draft): {ind['label']}" if ind else "Letter of medical necessity (draft)"
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "identifier": [document_identifier(report, pdf)],
        "status": "current",
        "docStatus": "preliminary",
        "type": {"coding": [LOINC_LETTER], "text": "Letter of medical necessity"},
        "subject": {"reference": report["patient"]["reference"]},
        "date": now,
        "description": title[:250],
        "content": [{"attachment": {"contentType": "application/pdf", "data": base64.b64encode(pdf).decode("ascii"),
                                    "title": title[:250], "creation": now}}],
    }
    if author:
        doc["author"] = [{"reference": author}]
    if report.get("order"):
        doc["context"] = {"related": [{"reference": report["order"]["reference"]}]}
    DocumentReference.model_validate(doc)
    return doc
