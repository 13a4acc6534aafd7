"""The attestation Questionnaires (generated from the rulesets, valid FHIR R4, served by the
app) and the QuestionnaireResponse the app writes."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests" / "web") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "web"))

from smart_app.attestation import RESPONSE_IDENTIFIER_SYSTEM, build_response, response_id  # noqa: E402
from smart_app.engine import model as m  # noqa: E402
from smart_app.engine.model import available_rulesets, get_ruleset  # noqa: E402
from smart_app.fhir_client import is_fhir_id  # noqa: E402
from smart_app.questionnaire import (DEFAULT_CANONICAL_BASE, attestable_for, build_questionnaire,  # noqa: E402
                                     questionnaire_id)

BASE = "https://fhir.example.org/ivig"
ALL = [(rs.id, ind.id) for rs in available_rulesets().values() for ind in rs.indications] + \
      [(rs_id, "unlisted-chronic-urticaria") for rs_id in available_rulesets()]


@pytest.mark.parametrize("ruleset_id,indication_id", ALL)
def test_every_questionnaire_is_valid_r4_and_asks_only_judgement(ruleset_id, indication_id):
    rs = get_ruleset(ruleset_id)
    q = build_questionnaire(rs, indication_id, BASE)
    Questionnaire.model_validate(q)  # fhir.resources R4B
    qid = questionnaire_id(ruleset_id, indication_id)
    assert q["id"] == qid and is_fhir_id(qid)
    if indication_id.startswith("unlisted-"):  # the patient's diagnosis never names a Questionnaire
        assert qid == f"{ruleset_id}.unlisted"
    assert q["url"] == f"{BASE}/Questionnaire/{qid}" and q["version"] == rs.version
    assert q["status"] == "active" and q["subjectType"] == ["Patient"]
    leaves = {leaf.attestable.id: leaf for _, leaf in attestable_for(rs, indication_id)}
    groups = q.get("item") or []
    assert [g["linkId"] for g in groups] == list(leaves)
    link_ids = [i["linkId"] for g in groups for i in [g, *g["item"]]]
    assert len(link_ids) == len(set(link_ids))
    for g in groups:
        leaf = leaves[g["linkId"]]
        assert not m.record_fact_reason(leaf)
        kinds = {i["linkId"].split(".", 1)[1]: i for i in g["item"]}
        assert kinds["answer"]["type"] == "boolean" and kinds["answer"]["text"] == leaf.attestable.question
        assert leaf.attestable.policy_words in kinds["policy"]["text"]
        just = kinds["justification"]
        assert just["required"] is True and just["enableWhen"] == [
            {"question": f"{g['linkId']}.answer", "operator": "=", "answerBoolean": True}]
        assert kinds["attested-on"]["readOnly"] and kinds["attested-by"]["readOnly"]
        # Nothing to type a number, a date or a result into: only Yes/No and text.
        assert {i["type"] for i in g["item"]} == {"display", "boolean", "text", "dateTime", "reference"}


def test_the_questionnaires_that_ask_something():
    bcbsmt = get_ruleset("bcbsmt-ig-2013")
    ms = build_questionnaire(bcbsmt, "multiple-sclerosis", DEFAULT_CANONICAL_BASE)
    assert [g["linkId"] for g in ms["item"]] == ["ms-severe", "ms-other-therapy-failed"]
    assert ms["url"] == "https://ivig-coverage-check.invalid/fhir/Questionnaire/bcbsmt-ig-2013.multiple-sclerosis"
    assert "item" not in build_questionnaire(bcbsmt, "primary-humoral-immunodeficiency", DEFAULT_CANONICAL_BASE)
    # Not-covered rows (experimental, unlisted) ask the appeal's question only.
    for ind in ("exp-alzheimers", "unlisted-anything"):
        q = build_questionnaire(bcbsmt, ind, DEFAULT_CANONICAL_BASE)
        assert [g["linkId"] for g in q["item"]] == ["standard-therapy-failed"]
    assert build_questionnaire(bcbsmt, "no-such-row", DEFAULT_CANONICAL_BASE) is None


def _answers(ruleset_id: str, indication_id: str) -> list[str]:
    return [leaf.attestable.id for _, leaf in attestable_for(get_ruleset(ruleset_id), indication_id)]


def test_the_response_the_app_writes():
    rs = get_ruleset("bcbsmt-ig-2013")
    first = build_response(ruleset=rs, indication_id="multiple-sclerosis", patient_ref="Patient/p1",
                           canonical_base=BASE, answers={"ms-severe": (True, "Three relapses with  EDSS 6.")},
                           author="Practitioner/dr-a", now=datetime(2025, 6, 1, 9, 0, tzinfo=timezone.utc))
    QuestionnaireResponse.model_validate(first)
    rid = response_id("Patient/p1", "multiple-sclerosis", "bcbsmt-ig-2013")
    assert first["id"] == rid and first["identifier"] == {"system": RESPONSE_IDENTIFIER_SYSTEM, "value": rid}
    assert first["questionnaire"] == f"{BASE}/Questionnaire/bcbsmt-ig-2013.multiple-sclerosis|{rs.version}"
    assert first["status"] == "completed" and first["subject"] == {"reference": "Patient/p1"}
    assert first["author"] == {"reference": "Practitioner/dr-a"} and first["authored"] == "2025-06-01T09:00:00+00:00"
    [group] = first["item"]
    assert {i["linkId"]: i["answer"] for i in group["item"]} == {
        "ms-severe.answer": [{"valueBoolean": True}],
        "ms-severe.justification": [{"valueString": "Three relapses with EDSS 6."}],
        "ms-severe.attested-on": [{"valueDateTime": "2025-06-01T09:00:00+00:00"}],
        "ms-severe.attested-by": [{"valueReference": {"reference": "Practitioner/dr-a"}}]}
    # A later answer to another item keeps the first, with its own date; the order is the
    # Questionnaire's.
    second = build_response(ruleset=rs, indication_id="multiple-sclerosis", patient_ref="Patient/p1",
                            canonical_base=BASE, answers={"ms-other-therapy-failed": (False, "")}, author=None,
                            now=datetime(2025, 6, 9, 9, 0, tzinfo=timezone.utc), existing={**first, "id": "srv-1"})
    QuestionnaireResponse.model_validate(second)
    assert second["id"] == "srv-1" and second["status"] == "amended" and "author" not in second
    assert [g["linkId"] for g in second["item"]] == _answers("bcbsmt-ig-2013", "multiple-sclerosis")
    assert second["item"][0] == group
    # Answers to an earlier version of the questions are dropped, not carried over.
    old = {**first, "questionnaire": first["questionnaire"].replace(rs.version, "2013.1")}
    third = build_response(ruleset=rs, indication_id="multiple-sclerosis", patient_ref="Patient/p1",
                           canonical_base=BASE, answers={"ms-other-therapy-failed": (False, "")}, author=None,
                           now=datetime(2025, 6, 9, tzinfo=timezone.utc), existing=old)
    assert [g["linkId"] for g in third["item"]] == ["ms-other-therapy-failed"]


@pytest.mark.parametrize("answers,message", [
    ({"ms-severe": (True, "   ")}, "needs a justification"),
    ({"igg-pretreatment": (True, "IgG 150 mg/dL")}, "not an attestable item"),
    ({"standard-therapy-failed": (True, "x")}, "not an attestable item"),  # another indication's
])
def test_the_response_refuses_what_the_questions_do_not_ask(answers, message):
    with pytest.raises(ValueError, match=message):
        build_response(ruleset=get_ruleset("bcbsmt-ig-2013"), indication_id="multiple-sclerosis",
                       patient_ref="Patient/p1", canonical_base=BASE, answers=answers, author=None,
                       now=datetime(2025, 6, 1, tzinfo=timezone.utc))


def test_the_app_serves_the_questionnaires(tmp_path):
    from web_helpers import make_app

    app = make_app(tmp_path, IVIG_CANONICAL_BASE="https://fhir.example.org/ivig/")
    client = app.test_client()
    resp = client.get("/fhir/Questionnaire/bcbsmt-ig-2013.multiple-sclerosis")
    assert resp.status_code == 200 and resp.mimetype == "application/fhir+json"
    body = resp.get_json()
    assert body == build_questionnaire(get_ruleset("bcbsmt-ig-2013"), "multiple-sclerosis", BASE)
    assert client.get("/fhir/Questionnaire/aaaai-pi.unlisted").get_json()["item"][0]["linkId"] == \
        "standard-treatments-failed"
    for missing in ("bcbsmt-ig-2013.no-such-row", "nope.gbs", "bcbsmt-ig-2013", "bcbsmt-ig-2013."):
        assert client.get(f"/fhir/Questionnaire/{missing}").status_code == 404
