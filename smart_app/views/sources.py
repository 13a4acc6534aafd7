"""``/source/<type>/<id>``: one resource, fetched live with the launch's token, so a
clinician can check the evidence behind a criterion."""

from __future__ import annotations

import json
from urllib.parse import quote

from flask import Blueprint, render_template, url_for

from ..fhir_client import FhirAuthError, FhirError, is_fhir_id
from ..smart import READ_TYPES
from .common import AppError
from .launched import CONTEXT, auth_refused, fhir_client, launched

bp = Blueprint("sources", __name__)
SOURCE_TYPES = set(READ_TYPES) | {"Task", "QuestionnaireResponse"}


@bp.get("/source/<rtype>/<rid>")
def source(rtype: str, rid: str):
    # The id is checked before the launch is looked up or anything is fetched.
    if rtype not in SOURCE_TYPES or not is_fhir_id(rid):
        raise AppError(404, "The app does not show that kind of resource.")
    launch = launched()
    data = launch.data
    try:
        resource = fhir_client(launch).read(rtype, rid)
    except FhirAuthError:
        raise auth_refused(data) from None
    except FhirError as exc:
        raise AppError(502, f"The FHIR server could not return {rtype}/{rid}: {exc}.") from None
    return render_template("source.html", reference=f"{rtype}/{rid}",
                           server_url=f"{data['iss']}/{rtype}/{quote(rid, safe='')}",
                           resource_json=json.dumps(resource, indent=2, ensure_ascii=False),
                           back_href=url_for("report.report_page", **{CONTEXT: launch.handle}),
                           ctx=launch.handle,
                           style_vars=bool(data.get("smart_style_url") or data.get("style")))

