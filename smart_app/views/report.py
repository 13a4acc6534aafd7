"""The report: ``/report`` (HTML), ``/api/report`` (JSON, CONTRACT §2) and the EHR's
style sheet (``smart_style_url``) as CSS custom properties. Every link and form of the
page carries the launch's handle (``ctx``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for

from ..charts import igg_chart
from ..engine.model import available_rulesets
from ..fhir_client import is_fhir_id
from ..runtime import cfg, rt
from ..style import fetch_style
from .common import AppError
from .launched import CONTEXT, Launch, can_write, evaluate, launched, may
from .sources import SOURCE_TYPES

bp = Blueprint("report", __name__)


@bp.get("/report")
def report_page():
    launch = launched()
    data = launch.data
    if "ruleset" in request.args:  # the clinician switches policy (GET form); "" = the payer's
        chosen = request.args["ruleset"].strip() or None
        if chosen is not None and chosen not in available_rulesets():
            raise AppError(400, "That ruleset is not available.", "Choose one from the list on the report.")
        data["ruleset"] = chosen
        data.pop("cache", None)
        launch.save()
        return redirect(url_for("report.report_page", **{CONTEXT: launch.handle}), code=303)
    report, banner, _ = evaluate(launch, fresh=request.args.get("refresh") == "1")
    flash = data.pop("flash", None)
    if flash is not None:
        launch.save()
    show_banner = data.get("need_patient_banner") or data.get("standalone")
    rulesets = available_rulesets()
    return render_template(
        "report.html", report=report, banner=banner if show_banner else None,
        source_href=lambda ref: source_href(launch.handle, ref), csrf_token=data["csrf"],
        ctx=launch.handle, can_write_task=can_write(data), task_result=(flash or {}).get("task_result"),
        error=(flash or {}).get("error"), fhir_base=data["iss"],
        can_attest=may(data, "attest"), attest_result=(flash or {}).get("attest_result"),
        launched_at=data.get("fetched_at") or data["launched_at"],
        rulesets=[(r.id, r.title) for r in rulesets.values()],
        ruleset_titles={r.id: r.title for r in rulesets.values()},
        ruleset_requested=data.get("ruleset"),
        igg_chart=igg_chart(report.get("igg_history") or {}),
        patient_list_href=demo_list_href(),
        identity_unverified=bool(data.get("identity_unverified")),
        # The stylesheet link only; the EHR's style document is fetched when the browser
        # asks for /smart-style.css, off the report's critical path.
        style_vars=bool(data.get("smart_style_url") or data.get("style")),
    )


@bp.get("/api/report")
def api_report():
    report, _, _ = evaluate(launched())
    return jsonify(report)


def demo_list_href() -> str | None:
    """The demo's patient list (on the launch page); None outside the demo."""
    return url_for("pages.launch_page", _anchor="demo-heading") if cfg().demo_iss else None


def source_href(handle: str, reference: str) -> str:
    rtype, _, rid = reference.partition("/")
    if rtype in SOURCE_TYPES and is_fhir_id(rid):
        return url_for("sources.source", rtype=rtype, rid=rid, **{CONTEXT: handle})
    return url_for("report.report_page", **{CONTEXT: handle})


@bp.get("/smart-style.css")
def smart_style_css():
    style = _style_vars(launched())
    body = ":root {\n" + "".join(f"  {k}: {v};\n" for k, v in style.items()) + "}\n"
    return Response(body, mimetype="text/css")


def _style_vars(launch: Launch) -> dict[str, str]:
    """The EHR's ``smart_style_url`` styles, fetched once per launch (best effort), only
    from the FHIR server's origin or a configured one."""
    data: dict[str, Any] = launch.data
    if "style" in data:
        return data["style"]
    url = data.get("smart_style_url")
    data["style"] = fetch_style(rt().http, url, (data["iss"], *cfg().style_origins)) if url else {}
    launch.save()
    return data["style"]
