"""``POST /task``: write or update the launched patient's Task (CONTRACT §3, §5)."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timezone

from flask import Blueprint, jsonify, redirect, request, url_for

from ..fhir_client import FhirAuthError, FhirError
from ..runtime import cfg, rt
from ..task import build_task, task_identifier
from .common import AppError, wants_json
from .launched import CONTEXT, auth_refused, can_write, evaluate, launched
from .sources import task_href

log = logging.getLogger(__name__)
bp = Blueprint("tasks", __name__)


@bp.post("/task")
def post_task():
    launch = launched()
    data = launch.data
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if not secrets.compare_digest(sent.encode(), data["csrf"].encode()):
        log.warning("Task write refused: CSRF token missing or wrong")
        raise AppError(403, "The form's security token is missing or wrong; nothing was written.",
                       "Reload the report and press the button again.")
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

    def build(existing):
        return build_task(report, base, now=now, requester=requester, existing=existing,
                          identifier_system=system)

    try:
        with rt().store.lock(f"task|{ident['system']}|{ident['value']}"):
            stored, created = client.upsert_task(build(None) or {"identifier": [ident]}, build)
    except TimeoutError:
        raise AppError(503, "Another request is still writing this Task; nothing was written.",
                       "Try again in a moment.") from None
    except FhirAuthError:
        launch.end()
        raise auth_refused(data) from None
    except FhirError as exc:
        message = f"The Task could not be written: {exc}."
        if wants_json():
            raise AppError(502, message) from None
        data["flash"] = {"error": message}
        launch.save()
        return redirect(back, code=303)
    log.info("Task %s (status %s)", "created" if created else "updated" if stored else "not needed",
             stored.get("status") if stored else "-")
    if wants_json():
        return jsonify({"task": stored, "created": created})
    result = None
    if stored:
        ref = f"Task/{stored.get('id')}"
        result = {"reference": ref, "status": stored.get("status"), "created": created,
                  "href": task_href(stored, launch.handle)}
    data["flash"] = {"task_result": result} if result else {"error": None, "task_result": None}
    launch.save()
    return redirect(back, code=303)
