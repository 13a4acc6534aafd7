"""Clinician attestation and the letter of medical necessity.

* ``GET /fhir/Questionnaire/<id>``: the attestation Questionnaire of a ruleset and indication
  (``{ruleset}.{indication}``), generated from the ruleset; no launch needed.
* ``POST /attest``: the clinician's Yes/No answers (a justification for each Yes), CSRF
  protected; writes the one QuestionnaireResponse of the patient + indication + ruleset
  (deterministic id: read, then PUT; ``If-Match`` on update; one writer at a time across
  instances), then updates the Task if one exists, so its items follow the answers.
* ``GET /letter``, ``GET /letter.pdf``: the draft letter of medical necessity from the
  report; ``POST /letter/document`` writes it back once as a preliminary DocumentReference.

What the scopes do not allow becomes a notice on the page, never a failed write.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for

from .. import letter as lt
from ..attestation import RTYPE as RESPONSE, build_response, response_identifier
from ..engine.model import available_rulesets, get_ruleset
from ..fhir_client import FhirClient, FhirError
from ..questionnaire import JUSTIFICATION_MAX, questionnaire_for_id
from ..runtime import cfg, rt
from ..task import build_task, task_identifier
from .common import AppError, now_iso, require_csrf, wants_json, write_lock_key
from .launched import (CONTEXT, Launch, can_write, evaluate, fetch_report, fhir_client, launched, may,
                       report_of, write_or_back)

log = logging.getLogger(__name__)
bp = Blueprint("attest", __name__)
FHIR_JSON = "application/fhir+json"


@bp.get("/fhir/Questionnaire/<qid>")
def questionnaire(qid: str):
    found = questionnaire_for_id(qid, available_rulesets(), cfg().canonical_base)
    if found is None:
        raise AppError(404, "There is no attestation Questionnaire with that id.",
                       "Ids are {ruleset}.{indication}, e.g. bcbsmt-ig-2013.multiple-sclerosis.")
    return Response(_json(found), mimetype=FHIR_JSON)


def _json(resource: dict[str, Any]) -> str:
    import json

    return json.dumps(resource, ensure_ascii=False, indent=2)


# --- attestation ---------------------------------------------------------------------------------
def _section(report: dict[str, Any], indication_id: str) -> dict[str, Any] | None:
    """The attestation section of the report's indication with this id."""
    for part in [report, *(report.get("other_indications") or [])]:
        ind = part.get("indication") if part is report else part
        if ind and ind.get("id") == indication_id and part.get("attestation"):
            return part["attestation"]
    return None


def _answers(section: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    """The form's answers to the section's items: ``answer-<id>`` yes/no and
    ``justification-<id>`` (required for yes). Raises AppError(400) saying what to fix."""
    answers: dict[str, tuple[bool, str]] = {}
    for item in section.get("items") or []:
        choice = (request.form.get(f"answer-{item['id']}") or "").strip().lower()
        if not choice:
            continue
        if choice not in ("yes", "no"):
            raise AppError(400, "An answer must be Yes or No.")
        why = " ".join((request.form.get(f"justification-{item['id']}") or "").split())
        if choice == "yes" and not why:
            raise AppError(400, f"A Yes needs a justification: “{item['question']}” — say what in the "
                           "patient's course shows it.", "Add the justification and submit again.")
        if len(why) > JUSTIFICATION_MAX:
            raise AppError(400, f"A justification is at most {JUSTIFICATION_MAX} characters.")
        answers[item["id"]] = (choice == "yes", why)
    if not answers:
        raise AppError(400, "Choose Yes or No for at least one item.")
    return answers


def _write_request(permission: str, what: str, page: str) -> tuple[Launch, dict[str, Any], str]:
    """The launch of a write (CSRF checked, the scopes allowing ``permission``, else 403) and
    the page to go back to."""
    launch = launched()
    require_csrf(launch.data)
    if not may(launch.data, permission):
        raise AppError(403, f"The EHR did not grant this app permission to {what}; nothing was written.")
    return launch, launch.data, url_for(page, **{CONTEXT: launch.handle})


@bp.post("/attest")
def post_attest():
    launch, data, back = _write_request("attest", "record attestations (QuestionnaireResponse)",
                                        "report.report_page")
    client = fhir_client(launch)
    record, report = fetch_report(launch, client)  # the answers apply to the record as it is now
    indication_id = request.form.get("indication") or ""
    section = _section(report, indication_id)
    try:
        if section is None:
            raise AppError(400, "That indication is not in this patient's report any more.",
                           "Reload the report and answer again.")
        answers = _answers(section)
    except AppError as exc:
        if wants_json() or exc.status != 400:
            raise
        return _back_with(launch, back, {"error": exc.message})
    ruleset = get_ruleset(report["ruleset"]["id"])
    patient_ref = report["patient"]["reference"]
    ident = response_identifier(patient_ref, indication_id, ruleset.id)
    now = _now()

    def build(existing: dict[str, Any] | None) -> dict[str, Any]:
        return build_response(ruleset=ruleset, indication_id=indication_id, patient_ref=patient_ref,
                              canonical_base=cfg().canonical_base, answers=answers,
                              author=data.get("fhir_user"), now=now, existing=existing)

    def write():
        with rt().store.lock(write_lock_key(RESPONSE, ident)):
            return client.upsert(RESPONSE, ident, build, rid=section["response_id"])

    written, failed = write_or_back(
        launch, write, failure="The attestation could not be written", back=back,
        busy="Another request is still recording an attestation for this patient; nothing was written.")
    if failed is not None:
        return failed
    stored, created = written
    # The report after the answers (the record as fetched, with the response as stored).
    assert stored is not None  # build() always makes a body
    resources = [r for r in record.resources
                 if not (r.get("resourceType") == RESPONSE and r.get("id") == stored.get("id"))]
    report = report_of(data, dataclasses.replace(record, resources=[*resources, stored]))
    task = _follow_task(launch, client, report, now)
    log.info("attestation %s (%d answer(s)); Task %s", "created" if created else "updated", len(answers),
             task["outcome"])
    result = {"reference": f"{RESPONSE}/{stored.get('id')}", "created": created,
              "answers": len(answers), "determination": report["determination"],
              "summary": (report.get("attestation") or {}).get("summary") or "", "task": task}
    if wants_json():
        return jsonify({"response": stored, "created": created, "report": report, "task": task})
    data.pop("cache", None)
    return _back_with(launch, back, {"attest_result": result})


def _now() -> datetime:
    """The time an answer is given: now, on the app's "today" (IVIG_AS_OF fixes it for demos
    and tests, and an answer dated after the evaluation date would not count)."""
    now = datetime.now(timezone.utc)
    day = cfg().as_of
    return datetime.combine(day, now.timetz()) if day is not None else now


def _follow_task(launch: Launch, client: FhirClient, report: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Update the patient's Task, if one exists, to the report after the answers (its
    attested items leave it; it is completed when nothing is missing). None is created."""
    data = launch.data
    if not can_write(data):
        return {"outcome": "not-permitted"}
    config = cfg()
    ident = task_identifier(report, system=config.task_identifier_system)

    def build(existing: dict[str, Any] | None) -> dict[str, Any] | None:
        if existing is None:
            return None
        return build_task(report, config.public_base_url, now=now, requester=data.get("fhir_user"),
                          existing=existing, identifier_system=config.task_identifier_system)

    try:
        with rt().store.lock(write_lock_key("Task", ident)):
            stored, _ = client.upsert_task({"identifier": [ident]}, build)
    except (TimeoutError, FhirError):
        return {"outcome": "failed"}
    if stored is None:
        return {"outcome": "none"}
    return {"outcome": "updated", "reference": f"Task/{stored.get('id')}", "status": stored.get("status")}


def _back_with(launch: Launch, back: str, flash: dict[str, Any]):
    launch.data["flash"] = flash
    launch.save()
    return redirect(back, code=303)


# --- the letter ------------------------------------------------------------------------------------
def _letter(launch: Launch, *, fresh: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    report, banner, _ = evaluate(launch, fresh=fresh)
    return report, lt.build_letter(report, patient_name=(banner or {}).get("name"))


@bp.get("/letter")
def letter_page():
    launch = launched()
    data = launch.data
    _, letter = _letter(launch)
    flash = data.pop("letter_flash", None)
    if flash is not None:
        launch.save()
    return render_template(
        "letter_page.html", letter=letter, ctx=launch.handle, csrf_token=data["csrf"],
        can_write_document=may(data, "write-document"), document_result=(flash or {}).get("document_result"),
        error=(flash or {}).get("error"),
        style_vars=bool(data.get("smart_style_url") or data.get("style")))


@bp.get("/letter.pdf")
def letter_pdf():
    _, letter = _letter(launched())
    pdf = lt.render_pdf(lt.render_html(letter))
    return Response(pdf, mimetype="application/pdf", headers={
        "Content-Disposition": 'attachment; filename="letter-of-medical-necessity-draft.pdf"'})


@bp.post("/letter/document")
def post_letter_document():
    launch, data, back = _write_request("write-document", "write documents (DocumentReference)",
                                        "attest.letter_page")
    report, letter = _letter(launch, fresh=True)  # the letter of the record as it is now
    pdf = lt.render_pdf(lt.render_html(letter))
    doc = lt.build_document_reference(report, pdf, now=now_iso(), author=data.get("fhir_user"))
    client = fhir_client(launch)
    written, failed = write_or_back(
        launch, lambda: client.create_once("DocumentReference", doc, doc["identifier"][0]),
        failure="The letter could not be written to the EHR", back=back, flash="letter_flash",
        busy="The letter could not be written now.")
    if failed is not None:
        return failed
    stored, created = written
    result = {"reference": f"DocumentReference/{(stored or {}).get('id')}", "created": created}
    log.info("letter DocumentReference %s", "created" if created else "already written")
    if wants_json():
        return jsonify({"document": stored, "created": created})
    data["letter_flash"] = {"document_result": result}
    launch.save()
    return redirect(back, code=303)
