"""The attestation Questionnaire of a ruleset and indication, generated from the ruleset. Pure.

One Questionnaire per ruleset + indication, holding the indication's attestable leaves
(``model.Attestable``: qualifiers the policy leaves to clinical judgement) in policy order:
a group per item, with the question in the policy's words (Yes/No), the justification
(required for Yes), and read-only *attested on* / *attested by* answers the app fills in.
Its canonical URL is ``{canonical base}/Questionnaire/{id}`` and its version the ruleset's,
so a QuestionnaireResponse names exactly the policy version it answered. Lab values,
weights, dates, test results and diagnoses are never asked: the schema refuses
``attestable`` on those (``model.record_fact_reason``).

Indications not listed in the policy (``unlisted-…``, named after the patient's diagnosis)
share one Questionnaire per ruleset (``{ruleset}.unlisted``): its id never carries a
diagnosis. Every Questionnaire is validated with ``fhir.resources.R4B``.
"""

from __future__ import annotations

import re
from typing import Any

from fhir.resources.R4B.questionnaire import Questionnaire

from .engine import model as m

# A deployment-independent identifier, never an address (the app serves its Questionnaires
# at {IVIG_PUBLIC_BASE_URL}/fhir/Questionnaire/{id}); IVIG_CANONICAL_BASE overrides it, once,
# before the first QuestionnaireResponse is written (responses name their Questionnaire).
DEFAULT_CANONICAL_BASE = "https://ivig-coverage-check.invalid/fhir"
UNLISTED = "unlisted"
JUSTIFICATION_MAX = 1000  # characters


def is_unlisted(indication_id: str) -> bool:
    """An unlisted diagnosis (``unlisted-…``), or the shared Questionnaire's own key."""
    return indication_id == UNLISTED or indication_id.startswith("unlisted-")


def questionnaire_id(ruleset_id: str, indication_id: str) -> str:
    """``{ruleset}.{indication}`` (``{ruleset}.unlisted`` for an unlisted diagnosis)."""
    return f"{ruleset_id}.{UNLISTED if is_unlisted(indication_id) else indication_id}"


def questionnaire_url(canonical_base: str, qid: str) -> str:
    return f"{canonical_base.rstrip('/')}/Questionnaire/{qid}"


def questionnaire_canonical(canonical_base: str, ruleset: m.Ruleset, indication_id: str) -> str:
    """The versioned canonical a QuestionnaireResponse names (``url|version``)."""
    return f"{questionnaire_url(canonical_base, questionnaire_id(ruleset.id, indication_id))}|{ruleset.version}"


def criteria_for(ruleset: m.Ruleset, coverage: str, indication: m.Indication | None) -> list[m.Criterion]:
    """The criteria evaluated for an indication of this coverage (engine/evaluate.py)."""
    if coverage in ("labeled", "off-label") and indication is not None:
        return [*indication.criteria, *ruleset.common_criteria]
    return list(ruleset.not_covered_criteria)


def attestable_for(ruleset: m.Ruleset, indication_id: str) -> list[tuple[m.Criterion, m.Leaf]]:
    """(criterion, attestable leaf) of the indication, in policy order."""
    if is_unlisted(indication_id):
        return m.attestable_leaves(criteria_for(ruleset, "unlisted", None))
    ind = ruleset.indication(indication_id)
    if ind is None:
        return []
    return m.attestable_leaves(criteria_for(ruleset, ind.coverage, ind))


def link_ids(aid: str) -> dict[str, str]:
    """The linkIds of one attestable item's group and its answers."""
    return {"group": aid, "policy": f"{aid}.policy", "answer": f"{aid}.answer",
            "justification": f"{aid}.justification", "on": f"{aid}.attested-on", "by": f"{aid}.attested-by"}


def _name(text: str) -> str:
    """A computable name: letters and digits, starting with a capital (FHIR que-0)."""
    return "IvigAttestation" + "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", text) if part)


def _group(ruleset: m.Ruleset, criterion: m.Criterion, leaf: m.Leaf) -> dict[str, Any]:
    att = leaf.attestable
    assert att is not None
    ids = link_ids(att.id)
    return {
        "linkId": ids["group"],
        "type": "group",
        "text": criterion.description,
        "item": [
            {"linkId": ids["policy"], "type": "display",
             "text": f"Policy: “{att.policy_words}” ({ruleset.citation} — {criterion.cite.section})"},
            {"linkId": ids["answer"], "type": "boolean", "text": att.question, "required": True},
            {"linkId": ids["justification"], "type": "text", "required": True, "maxLength": JUSTIFICATION_MAX,
             "text": "Clinical justification (required for Yes): what in the patient's course shows it",
             "enableWhen": [{"question": ids["answer"], "operator": "=", "answerBoolean": True}]},
            {"linkId": ids["on"], "type": "dateTime", "text": "Attested on", "readOnly": True},
            {"linkId": ids["by"], "type": "reference", "text": "Attested by", "readOnly": True},
        ],
    }


def build_questionnaire(ruleset: m.Ruleset, indication_id: str, canonical_base: str) -> dict[str, Any] | None:
    """The Questionnaire for this ruleset and indication (None: no such indication)."""
    unlisted = is_unlisted(indication_id)
    ind = None if unlisted else ruleset.indication(indication_id)
    if ind is None and not unlisted:
        return None
    qid = questionnaire_id(ruleset.id, indication_id)
    label = "an indication this policy does not list" if ind is None else ind.label
    items = attestable_for(ruleset, indication_id)
    questionnaire: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": qid,
        "url": questionnaire_url(canonical_base, qid),
        "version": ruleset.version,
        "name": _name(qid)[:255],
        "title": f"Clinician attestation — {label} ({ruleset.citation})",
        "status": "active",
        "subjectType": ["Patient"],
        "publisher": "IVIG Coverage Check",
        "description": (f"The qualifiers for {label} that {ruleset.citation} (version {ruleset.version}) "
                        "leaves to clinical judgement, for the clinician to attest when the record does "
                        "not show them."),
        "purpose": ("An attested Yes (with its justification) or No answers only what the record leaves "
                    "open, and is always labelled as attested. Laboratory values, weights, dates, test "
                    "results and diagnoses are never asked: they must come from the record."),
    }
    if items:
        questionnaire["item"] = [_group(ruleset, criterion, leaf) for criterion, leaf in items]
    Questionnaire.model_validate(questionnaire)
    return questionnaire


def questionnaire_for_id(qid: str, rulesets: dict[str, m.Ruleset], canonical_base: str) -> dict[str, Any] | None:
    """The Questionnaire an id names (``{ruleset}.{indication}``), or None."""
    ruleset_id, sep, indication_id = qid.partition(".")
    ruleset = rulesets.get(ruleset_id)
    if not sep or ruleset is None or not indication_id:
        return None
    return build_questionnaire(ruleset, indication_id, canonical_base)
