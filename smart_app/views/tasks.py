"""``POST /task``: write or update the launched patient's Task (CONTRACT §3, §5), and
``GET /task/<id>``: that Task as a readable page."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, url_for

from ..fhir_client import FhirAuthError, FhirError, is_fhir_id
from ..runtime import cfg, rt
from ..task import build_task, task_identifier
from .common import AppError, require_csrf, wants_json, write_lock_key
from .launched import CONTEXT, auth_refused, can_write, evaluate, fhir_client, launched, write_or_back
from .report import source_href

log = logging.getLogger(__name__)
bp = Blueprint("tasks", __name__)


@bp.post("/task")
def post_task():
    launch = launched()
    data = launch.data
    require_csrf(data)
    if not can_write(data):
        raise AppError(403, "The EHR did not grant this app permission to write Tasks.")
    report, _, client = evaluate(launch, fresh=True)  # the Task reflects the record as it is now
    assert client is not None
    config = cfg()
    base, system = config.public_base_url, config.task_identifier_system
    now = datetime.now(timezone.utc)
    requester = data.get("fhir_user")
    ident = task_identifier(report, system=system)
    back = url_for("report.report_page", **{CONTEXT: launch.handle})

    seen: list[dict | None] = []  # the stored Task each attempt was built on

    def build(existing):
        seen.append(existing)
        return build_task(report, base, now=now, requester=requester, existing=existing,
                          identifier_system=system)

    def write():
        with rt().store.lock(write_lock_key("Task", ident)):
            return client.upsert_task(build(None) or {"identifier": [ident]}, build)

    written, failed = write_or_back(launch, write, failure="The Task could not be written", back=back,
                                    busy="Another request is still writing this Task; nothing was written.")
    if failed is not None:
        return failed
    stored, created = written
    outcome = write_outcome(stored, created, seen[-1] if seen else None)
    log.info("Task %s (status %s)", outcome, stored.get("status") if stored else "-")
    if wants_json():
        return jsonify({"task": stored, "created": created, "outcome": outcome})
    result = {"outcome": outcome}
    if stored:
        result.update({"reference": f"Task/{stored.get('id')}", "status": stored.get("status"),
                       "created": created, "version": version_of(stored),
                       "href": task_page_href(stored, launch.handle)})
    data["flash"] = {"task_result": result}
    launch.save()
    return redirect(back, code=303)


def version_of(task: dict[str, Any] | None) -> str | None:
    version = ((task or {}).get("meta") or {}).get("versionId")
    return str(version) if version else None


def write_outcome(stored: dict[str, Any] | None, created: bool, last_seen: dict[str, Any] | None) -> str:
    """What the write did, in the words the page uses: ``created``, ``updated``,
    ``unchanged`` (the stored Task already said this; nothing was written) or ``not-needed``
    (nothing is missing and no Task exists)."""
    if stored is None:
        return "not-needed"
    if created:
        return "created"
    if last_seen is not None and (stored is last_seen or (
            version_of(stored) is not None and version_of(stored) == version_of(last_seen)
            and stored.get("id") == last_seen.get("id"))):
        return "unchanged"
    return "updated"


def task_page_href(task: dict[str, Any], handle: str) -> str | None:
    tid = task.get("id")
    if not is_fhir_id(tid):
        return None
    return url_for("tasks.task_page", rid=tid, **{CONTEXT: handle})


@bp.get("/task/<rid>")
def task_page(rid: str):
    """The launched patient's Task as the FHIR server holds it, readable: status, the items
    it asks for, and links back to the report and to the raw JSON."""
    if not is_fhir_id(rid):
        raise AppError(404, "That is not a Task of this app.")
    launch = launched()
    data = launch.data
    try:
        task = fhir_client(launch).read("Task", rid)
    except FhirAuthError:
        raise auth_refused(data) from None
    except FhirError as exc:
        raise AppError(502, f"The FHIR server could not return the Task: {exc}.") from None
    if (task.get("for") or {}).get("reference") != f"Patient/{data['patient']}":
        # One patient per tab: a Task of another patient is not shown here.
        raise AppError(404, "That Task is not about the patient of this launch.",
                       "Open it from this patient's report.")
    return render_template(
        "task.html", task=task, version=version_of(task), ctx=launch.handle,
        report_href=url_for("report.report_page", **{CONTEXT: launch.handle}),
        json_href=url_for("sources.source", rtype="Task", rid=rid, **{CONTEXT: launch.handle}),
        source_href=lambda ref: source_href(launch.handle, ref),
        style_vars=bool(data.get("smart_style_url") or data.get("style")))
