"""``/source/<type>/<id>``: one resource, fetched live with the session's token, so a
clinician can check the evidence behind a criterion."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from flask import Blueprint, render_template, url_for

from ..fhir_client import FhirAuthError, FhirError
from ..smart import READ_TYPES
from .common import FHIR_ID, AppError
from .launched import auth_refused, fhir_client, launched

bp = Blueprint("sources", __name__)
SOURCE_TYPES = set(READ_TYPES) | {"Task"}


@bp.get("/source/<rtype>/<rid>")
def source(rtype: str, rid: str):
    sid, data = launched()
    if rtype not in SOURCE_TYPES or not FHIR_ID.match(rid):
        raise AppError(404, "The app does not show that kind of resource.")
    try:
        resource = fhir_client(sid, data).read(rtype, rid)
    except FhirAuthError:
        raise auth_refused(data) from None
    except FhirError as exc:
        raise AppError(502, f"The FHIR server could not return {rtype}/{rid}: {exc}.") from None
    return render_template("source.html", reference=f"{rtype}/{rid}",
                           server_url=f"{data['iss']}/{rtype}/{quote(rid, safe='')}",
                           resource_json=json.dumps(resource, indent=2, ensure_ascii=False),
                           back_href=url_for("report.report_page"),
                           style_vars=bool(data.get("smart_style_url") or data.get("style")))


def task_href(task: dict[str, Any]) -> str | None:
    """The app's view of the stored Task: fetched live from the FHIR server, readable in
    the browser (a raw FHIR URL would download as a file, and needs the token)."""
    tid = task.get("id")
    if not isinstance(tid, str) or not FHIR_ID.match(tid):
        return None
    return url_for("sources.source", rtype="Task", rid=tid)
