"""The FHIR R4 Task written back to the EHR (CONTRACT §3). Pure: report in, Task out.

One Task per patient + indication + ruleset, found again by a deterministic identifier
(a hash, so the identifier itself carries no patient id). Every Task is validated with
``fhir.resources.R4B`` before it leaves this module.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Any

from fhir.resources.R4B.task import Task

DEFAULT_BASE_URL = "http://localhost:8000"
TASK_STATUSES = {"requested", "completed"}


def fhir_string(text: object, fallback: str) -> str:
    """A valid FHIR string from record-derived text: no lone surrogates, whitespace
    (including U+2028, NEL, vertical tab) folded to single spaces, never empty."""
    cleaned = " ".join(str(text).encode("utf-8", "replace").decode("utf-8").split())
    return cleaned or fallback


def codesystem_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/fhir/CodeSystem/ivig-documentation"


def indication_system(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/fhir/CodeSystem/ivig-indication"


def determination_system(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/fhir/CodeSystem/ivig-determination"


# The determinations (CONTRACT §2) as a person reads them: Task.businessStatus and note.
DETERMINATIONS = {
    "criteria-met": ("Criteria met", "Every required criterion of the policy is met."),
    "documentation-missing": ("Documentation missing",
                              "Nothing contradicts the criteria, but required documentation is missing."),
    "criteria-not-met": ("Criteria not met", "A required criterion is contradicted by the record."),
    "not-covered": ("Not covered", "The indication is experimental or not listed in the policy: "
                    "coverage needs an individual appeal."),
    "no-indication": ("No covered indication", "No diagnosis in the record matches an indication of the policy."),
}


def _policy_sections(report: dict[str, Any], code: str) -> list[str]:
    """The policy sections of the criteria that need the item ``code`` (each once)."""
    return list(dict.fromkeys(
        c["source_section"] for c in report.get("criteria") or []
        if code in (c.get("missing") or []) and c.get("source_section")))


def _input_text(report: dict[str, Any], item: dict[str, Any]) -> str:
    """What to document, why, and the policy section that asks for it."""
    text = fhir_string(item["detail"], item["display"])
    sections = _policy_sections(report, item["code"])
    if sections:
        text = f"{text.rstrip('.')}. Policy: {'; '.join(sections)}."
    return text


# Task.identifier.system: a fixed canonical, the same wherever the app runs (moving it to
# another URL, or serving it under two host names, must find the same Task). Deployments may
# set their own (IVIG_TASK_IDENTIFIER_SYSTEM) once, before the first Task is written.
DEFAULT_TASK_IDENTIFIER_SYSTEM = "urn:uuid:3c0d9f4e-6f5b-4c1e-9a57-1b8e2f7d4a90"


def digest(parts: list[str]) -> str:
    """A deterministic identifier value from its parts (40 hex digits: also a FHIR id), which
    carries none of them (no patient id in an identifier)."""
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:40]


def task_identifier(report: dict[str, Any], *, system: str = DEFAULT_TASK_IDENTIFIER_SYSTEM) -> dict[str, str]:
    indication = report["indication"]["id"] if report.get("indication") else "no-indication"
    return {"system": system, "value": digest([report["patient"]["reference"], indication, report["ruleset"]["id"]])}


def _timestamp(now: datetime | None, as_of: str) -> str:
    if now is None:
        return date.fromisoformat(as_of).isoformat()
    return now.isoformat(timespec="seconds")


def build_task(
    report: dict[str, Any],
    base_url: str = DEFAULT_BASE_URL,
    *,
    now: datetime | None = None,
    requester: str | None = None,
    existing: dict[str, Any] | None = None,
    identifier_system: str = DEFAULT_TASK_IDENTIFIER_SYSTEM,
) -> dict[str, Any] | None:
    """The Task for this report, or None when nothing is missing and no Task exists yet.

    ``existing``: the Task already on the server (same identifier); its id, authoredOn and
    requester are kept, and it becomes ``completed`` when nothing is missing any more.
    ``now``: the write time; None (the CLI) uses the as-of date so output is reproducible.
    ``identifier_system``: ``Task.identifier.system`` (IVIG_TASK_IDENTIFIER_SYSTEM).
    """
    missing = report["missing_documentation"]
    if not missing and existing is None:
        return None
    cs = codesystem_url(base_url)
    stamp = _timestamp(now, report["as_of"])
    ruleset = report["ruleset"]
    indication = report.get("indication")
    n = len(missing)
    determination = report["determination"]
    det_label, det_sentence = DETERMINATIONS.get(determination, (determination, ""))
    task: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": [task_identifier(report, system=identifier_system)],
        "status": "requested" if missing else "completed",
        "intent": "order",
        "priority": "routine",
        "code": {
            "coding": [{"system": cs, "code": "documentation-request",
                        "display": "Request for documentation supporting IVIG coverage"}],
            "text": "IVIG coverage documentation request",
        },
        "description": (
            f"IVIG coverage ({ruleset['id']}): {n} documentation item{'s' if n != 1 else ''} missing"
            if n
            else f"IVIG coverage ({ruleset['id']}): all required documentation present"
        ),
        "for": {"reference": report["patient"]["reference"]},
        "authoredOn": stamp,
        "lastModified": stamp,
        "businessStatus": {
            "coding": [{"system": determination_system(base_url), "code": determination,
                        "display": det_label}],
            "text": det_label,
        },
        "note": [
            {
                "text": f"Determination: {det_label.lower()} as of {report['as_of']}. {det_sentence} "
                f"Checked against {fhir_string(ruleset['title'], ruleset['id'])} (version {ruleset['version']}). "
                f"Source: {fhir_string(ruleset['source'], ruleset['id'])}."
            }
        ],
    }
    if report.get("order"):
        task["focus"] = {"reference": report["order"]["reference"]}
    if requester:
        task["requester"] = {"reference": requester}
    if indication:
        label = fhir_string(indication["label"], indication["id"])
        task["reasonCode"] = {
            "coding": [{"system": indication_system(base_url), "code": indication["id"],
                        "display": label[:200]}],
            "text": label,
        }
    else:
        task["reasonCode"] = {"text": "No IVIG-relevant indication documented"}
    attested = report.get("attestation") or {}
    if attested.get("summary") and (attested.get("criteria_attested") or attested.get("response")):
        task["note"].append({"text": f"Clinician attestation: {fhir_string(attested['summary'], 'attested')}"})
    if attested.get("response"):
        # What was attested, for the EHR work item (as CDex links a Task to its response).
        task["output"] = [{
            "type": {"coding": [{"system": cs, "code": "clinician-attestation",
                                 "display": "Clinician attestation"}], "text": "Clinician attestation"},
            "valueReference": {"reference": attested["response"], "display": "Clinician attestation"},
        }]
    if missing:
        task["input"] = [
            {
                "type": {"coding": [{"system": cs, "code": item["code"], "display": item["display"]}],
                         "text": item["display"]},
                "valueString": _input_text(report, item),
            }
            for item in missing
        ]
    if existing is not None:
        for key in ("id", "authoredOn", "requester"):
            if existing.get(key):
                task[key] = existing[key]
    validate_task(task)
    return task


def documentation_codesystem(base_url: str) -> dict[str, Any]:
    """The CodeSystem behind ``Task.code`` and ``Task.input.type`` (served by the app)."""
    from .engine.model import documentation_codes

    concepts = [{"code": "documentation-request",
                 "display": "Request for documentation supporting IVIG coverage",
                 "definition": "A Task asking the care team to add the listed documentation to the record."},
                {"code": "clinician-attestation", "display": "Clinician attestation",
                 "definition": "The QuestionnaireResponse in which the clinician attested qualifiers the "
                               "policy leaves to clinical judgement (Task.output)."}]
    concepts += [{"code": code, "display": item.display, "definition": item.definition}
                 for code, item in documentation_codes().items()]
    return {
        "resourceType": "CodeSystem",
        "url": codesystem_url(base_url),
        "name": "IvigDocumentation",
        "title": "IVIG coverage documentation items",
        "status": "active",
        "content": "complete",
        "caseSensitive": True,
        "count": len(concepts),
        "concept": concepts,
    }


def determination_codesystem(base_url: str) -> dict[str, Any]:
    """The CodeSystem behind ``Task.businessStatus`` (the determination, CONTRACT §2)."""
    concepts = [{"code": code, "display": label, "definition": definition}
                for code, (label, definition) in DETERMINATIONS.items()]
    return {
        "resourceType": "CodeSystem",
        "url": determination_system(base_url),
        "name": "IvigDetermination",
        "title": "IVIG coverage check determinations",
        "status": "active",
        "content": "complete",
        "caseSensitive": True,
        "count": len(concepts),
        "concept": concepts,
    }


def validate_task(task: dict[str, Any]) -> None:
    """Raise ValueError unless the Task is valid FHIR R4 (structure and the codes we use)."""
    Task.model_validate(task)  # pydantic ValidationError is a ValueError
    if task["status"] not in TASK_STATUSES or task["intent"] != "order":
        raise ValueError(f"Task status/intent not allowed: {task['status']}/{task['intent']}")
