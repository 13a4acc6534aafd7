"""Clinician attestations as FHIR QuestionnaireResponses: identity, reading, writing. Pure.

One QuestionnaireResponse per patient + indication + ruleset answers that indication's
Questionnaire (``questionnaire.py``). Its logical id and identifier are deterministic (a
hash, like the Task's: it carries no patient id), so the app finds it by a plain read and
writes it with a PUT to that id: never a second one, also under concurrent writes. Each
item keeps its own answer, justification, date and author, so answers given at different
times keep their own dates (recency windows are measured from them).

Reading back (on every evaluation, from a server or a Bundle) counts a response only when
it is about the same patient, has a given status (``completed`` / ``amended``), carries the
identifier for the indication and ruleset evaluated, and names the ruleset's Questionnaire
*with its version*. Inside it, only the Questionnaire's attestable items count, and only a
Yes/No answer: any other item or value — an IgG level, a weight, a date typed into a
response — is ignored, with a warning. What an answer may then change is decided in
``engine/attested.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from fhir_mappings import PatientRecord
from fhir_mappings.dates import parse_date

from .engine import model as m
from .engine.attested import Attestation
from .engine.evaluate import IndicationResult
from .questionnaire import (JUSTIFICATION_MAX, attestable_for, link_ids, questionnaire_canonical,
                            questionnaire_id)
from .task import digest, fhir_string

# QuestionnaireResponse.identifier.system: fixed, the same wherever the app runs.
RESPONSE_IDENTIFIER_SYSTEM = "urn:uuid:222846b2-7ff4-4c10-9410-788343748dc1"
GIVEN = {"completed", "amended"}
RTYPE = "QuestionnaireResponse"


def response_identifier(patient_ref: str, indication_id: str, ruleset_id: str) -> dict[str, str]:
    return {"system": RESPONSE_IDENTIFIER_SYSTEM,
            "value": digest([RTYPE, patient_ref, indication_id, ruleset_id])}


def response_id(patient_ref: str, indication_id: str, ruleset_id: str) -> str:
    """The response's logical id: its identifier's value (40 hex digits, a FHIR id)."""
    return response_identifier(patient_ref, indication_id, ruleset_id)["value"]


# --- reading ---------------------------------------------------------------------------------
def _single_answer(item: dict[str, Any] | None, key: str) -> Any:
    """The value ``key`` of the item's one answer, else None (no answer, several, another type)."""
    answers = item.get("answer") if isinstance(item, dict) else None
    if not isinstance(answers, list) or len(answers) != 1 or not isinstance(answers[0], dict):
        return None
    return answers[0].get(key)


def _full_date(value: object) -> date | None:
    """A dateTime's day; a partial date (``2025``) is not a day an answer was given on."""
    return parse_date(value) if isinstance(value, str) and len(value) >= 10 else None


def _who(reference: object) -> str:
    if not isinstance(reference, dict):
        return ""
    ref, display = reference.get("reference"), reference.get("display")
    ref = ref if isinstance(ref, str) else ""
    display = display if isinstance(display, str) else ""
    if display and ref:
        return fhir_string(f"{display} ({ref})", ref)
    return fhir_string(display or ref, "") if (display or ref) else ""


class Responses:
    """The QuestionnaireResponses of a record, read for each indication evaluated."""

    def __init__(self, record: PatientRecord, ruleset: m.Ruleset, canonical_base: str):
        self.ruleset = ruleset
        self.canonical_base = canonical_base
        self.patient_ref = record.patient_ref
        self.responses = [r for r in record.resources
                          if r.get("resourceType") == RTYPE and self._about_patient(r, record)]
        self.notes: dict[str, list[str]] = {}

    def _about_patient(self, qr: dict[str, Any], record: PatientRecord) -> bool:
        subject = qr.get("subject")
        ref = subject.get("reference") if isinstance(subject, dict) else None
        if not isinstance(ref, str):
            return False
        if ref == self.patient_ref or ref.endswith("/" + self.patient_ref):
            return True
        target = record.full_urls.get(ref)
        return target is record.patient

    def _note(self, indication_id: str, text: str) -> None:
        notes = self.notes.setdefault(indication_id, [])
        if text not in notes:
            notes.append(text)

    def __call__(self, indication: m.Indication) -> dict[str, Attestation]:
        """The attestations that count for this indication, by attestable id."""
        if not self.responses:
            return {}
        ident = response_identifier(self.patient_ref, indication.id, self.ruleset.id)
        canonical = questionnaire_canonical(self.canonical_base, self.ruleset, indication.id)
        url = canonical.split("|", 1)[0]
        mine = []
        for qr in self.responses:
            found = qr.get("identifier")
            if not (isinstance(found, dict) and found.get("system") == ident["system"]
                    and found.get("value") == ident["value"]):
                continue
            if qr.get("status") not in GIVEN:
                continue
            named = qr.get("questionnaire")
            if named == canonical:
                mine.append(qr)
            elif isinstance(named, str) and named.split("|", 1)[0] == url:
                self._note(indication.id, "A clinician attestation answers an earlier version of this "
                           "policy's questions; it does not count: attest again.")
        if not mine:
            return {}
        mine.sort(key=lambda qr: str(qr.get("authored") or ""))
        allowed = {leaf.attestable.id for _, leaf in attestable_for(self.ruleset, indication.id)}
        return self._answers(mine[-1], allowed, indication.id)

    def _answers(self, qr: dict[str, Any], allowed: set[str], indication_id: str) -> dict[str, Attestation]:
        reference = f"{RTYPE}/{qr.get('id')}"
        authored = _full_date(qr.get("authored"))
        author = _who(qr.get("author"))
        out: dict[str, Attestation] = {}
        ignored = False
        for group in qr.get("item") or []:
            aid = group.get("linkId") if isinstance(group, dict) else None
            if aid not in allowed:
                ignored = True
                continue
            ids = link_ids(aid)
            children = {c.get("linkId"): c for c in group.get("item") or [] if isinstance(c, dict)}
            if set(children) - set(ids.values()):
                ignored = True
            answer = _single_answer(children.get(ids["answer"]), "valueBoolean")
            if not isinstance(answer, bool):
                ignored = True
                continue
            why = _single_answer(children.get(ids["justification"]), "valueString")
            on = _full_date(_single_answer(children.get(ids["on"]), "valueDateTime")) or authored
            if on is None:
                self._note(indication_id, "A clinician attestation carries no date; it does not count.")
                continue
            by = _who(_single_answer(children.get(ids["by"]), "valueReference")) or author
            text = fhir_string(why, "")[:JUSTIFICATION_MAX] if isinstance(why, str) else ""
            out[aid] = Attestation(aid, answer, text, by, on, reference)
        if ignored:
            self._note(indication_id, "A clinician attestation holds answers that are not attestable "
                       "Yes/No items of this policy's questions; they were ignored (laboratory values, "
                       "weights, dates, test results and diagnoses count only from the record).")
        return out


# --- the report's attestation section ----------------------------------------------------------
def attestation_json(res: IndicationResult, ruleset: m.Ruleset, patient_ref: str,
                     canonical_base: str) -> dict[str, Any]:
    """What the report says about attestation for one indication (CONTRACT §2 addition)."""
    evaluated = [c for c in res.criteria if c.result.status != "not-applicable"]
    items = []
    for item in res.attestable:
        att_def = item.leaf.attestable
        entry: dict[str, Any] = {
            "id": att_def.id,
            "criterion": item.criterion.id,
            "question": att_def.question,
            "policy_words": att_def.policy_words,
            "documentation_code": getattr(item.leaf, "missing", None),
            "state": item.state,
        }
        if item.attestation is not None:
            entry.update({"reference": item.attestation.reference,
                          "attested_by": item.attestation.author or None,
                          "attested_on": item.attestation.on.isoformat(),
                          "justification": item.attestation.justification})
        items.append(entry)
    rested = list(res.attested_criteria)
    n, total = len(rested), len(evaluated)
    if n:
        names = "; ".join(c.criterion.description for c in evaluated if c.criterion.id in rested)
        noun, verb = ("criterion" if total == 1 else "criteria"), ("rests" if n == 1 else "rest")
        summary = f"{n} of {total} {noun} {verb} on clinician attestation, not on the record: {names}."
    elif items:
        summary = "No criterion rests on clinician attestation."
    else:
        summary = ""
    references = sorted({i["reference"] for i in items if i.get("reference")})
    return {
        "questionnaire": questionnaire_canonical(canonical_base, ruleset, res.indication.id),
        "questionnaire_id": questionnaire_id(ruleset.id, res.indication.id),
        "response_id": response_id(patient_ref, res.indication.id, ruleset.id),
        "response": references[0] if references else None,
        "criteria_attested": rested,
        "summary": summary,
        "items": items,
    }


# --- writing ---------------------------------------------------------------------------------
def build_response(*, ruleset: m.Ruleset, indication_id: str, patient_ref: str, canonical_base: str,
                   answers: dict[str, tuple[bool, str]], author: str | None, now: datetime,
                   existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """The QuestionnaireResponse after these answers (attestable id -> (Yes?, justification)).

    ``existing``: the stored response; its answers to the same Questionnaire version are kept
    unless answered again (an earlier version's answers are dropped: they do not count).
    ``author``: the launching user's FHIR reference (``fhirUser``), when known. Validated
    with ``fhir.resources.R4B``; raises ValueError for an item the Questionnaire lacks or a
    Yes without a justification.
    """
    items = attestable_for(ruleset, indication_id)
    order = [leaf.attestable.id for _, leaf in items]
    by_id = {leaf.attestable.id: (criterion, leaf) for criterion, leaf in items}
    canonical = questionnaire_canonical(canonical_base, ruleset, indication_id)
    groups: dict[str, dict[str, Any]] = {}
    if existing is not None and existing.get("questionnaire") == canonical:
        for group in existing.get("item") or []:
            if isinstance(group, dict) and group.get("linkId") in by_id:
                groups[group["linkId"]] = group
    stamp = now.isoformat(timespec="seconds")
    for aid, (yes, why) in answers.items():
        if aid not in by_id:
            raise ValueError(f"{aid!r} is not an attestable item of this policy's questions")
        why = fhir_string(why or "", "")[:JUSTIFICATION_MAX]
        if yes and not why:
            raise ValueError("a Yes needs a justification")
        criterion, leaf = by_id[aid]
        ids = link_ids(aid)
        children = [{"linkId": ids["answer"], "text": leaf.attestable.question, "answer": [{"valueBoolean": yes}]}]
        if why:
            children.append({"linkId": ids["justification"], "answer": [{"valueString": why}]})
        children.append({"linkId": ids["on"], "answer": [{"valueDateTime": stamp}]})
        if author:
            children.append({"linkId": ids["by"], "answer": [{"valueReference": {"reference": author}}]})
        groups[aid] = {"linkId": aid, "text": criterion.description, "item": children}
    ident = response_identifier(patient_ref, indication_id, ruleset.id)
    response: dict[str, Any] = {
        "resourceType": RTYPE,
        "id": (existing or {}).get("id") or ident["value"],
        "identifier": ident,
        "questionnaire": canonical,
        "status": "amended" if existing is not None and existing.get("status") in GIVEN else "completed",
        "subject": {"reference": patient_ref},
        "authored": stamp,
        "item": [groups[aid] for aid in order if aid in groups],
    }
    if author:
        response["author"] = {"reference": author}
    QuestionnaireResponse.model_validate(response)
    return response


def read_back(record: PatientRecord, report: dict[str, Any],
              read: Callable[[list[str]], list[dict[str, Any]]],
              reevaluate: Callable[[PatientRecord], dict[str, Any]]) -> tuple[PatientRecord, dict[str, Any]]:
    """The record and report with the stored responses read back (from a server).

    Only when some indication has an attestable item the record leaves open is anything
    read (``read``: the responses with these ids, those that exist); an answer can change
    nothing else. A Bundle's responses are already in the record."""
    have = {r.get("id") for r in record.resources if r.get("resourceType") == RTYPE}
    sections = [report.get("attestation"), *(o.get("attestation") for o in report.get("other_indications") or [])]
    wanted = [s["response_id"] for s in sections
              if s and s.get("items") and s["response_id"] not in have]
    if not wanted:
        return record, report
    found = [r for r in read(list(dict.fromkeys(wanted))) if r.get("resourceType") == RTYPE]
    if not found:
        return record, report
    record = dataclasses.replace(record, resources=[*record.resources, *found])
    return record, reevaluate(record)
