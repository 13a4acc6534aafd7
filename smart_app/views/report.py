"""The report: ``/report`` (HTML), ``/api/report`` (JSON, CONTRACT §2) and the EHR's
style sheet (``smart_style_url``) as CSS custom properties."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for

from ..engine.model import available_rulesets
from ..runtime import cfg, rt
from .common import FHIR_ID, AppError
from .launched import can_write, evaluate, launched
from .sources import SOURCE_TYPES

log = logging.getLogger(__name__)
bp = Blueprint("report", __name__)


@bp.get("/report")
def report_page():
    sid, data = launched()
    if "ruleset" in request.args:  # the clinician switches policy (GET form); "" = the payer's
        chosen = request.args["ruleset"].strip() or None
        if chosen is not None and chosen not in available_rulesets():
            raise AppError(400, "That ruleset is not available.", "Choose one from the list on the report.")
        data["ruleset"] = chosen
        data.pop("cache", None)
        rt().store.save(sid, data)
        return redirect(url_for("report.report_page"), code=303)
    report, banner, _ = evaluate(sid, data, fresh=request.args.get("refresh") == "1")
    flash = data.pop("flash", None)
    if flash is not None:
        rt().store.save(sid, data)
    show_banner = data.get("need_patient_banner") or data.get("standalone")
    return render_template(
        "report.html", report=report, banner=banner if show_banner else None,
        source_href=lambda ref: source_href(data, ref), csrf_token=data["csrf"],
        can_write_task=can_write(data), task_result=(flash or {}).get("task_result"),
        error=(flash or {}).get("error"), fhir_base=data["iss"],
        launched_at=data.get("fetched_at") or data["launched_at"],
        rulesets=[(r.id, r.title) for r in available_rulesets().values()],
        ruleset_requested=data.get("ruleset"),
        # The stylesheet link only; the EHR's style document is fetched when the browser
        # asks for /smart-style.css, off the report's critical path.
        style_vars=bool(data.get("smart_style_url") or data.get("style")),
    )


@bp.get("/api/report")
def api_report():
    sid, data = launched()
    report, _, _ = evaluate(sid, data)
    return jsonify(report)


def source_href(data: dict[str, Any], reference: str) -> str:
    rtype, _, rid = reference.partition("/")
    if rtype in SOURCE_TYPES and FHIR_ID.match(rid):
        return url_for("sources.source", rtype=rtype, rid=rid)
    return url_for("report.report_page")


# --- the EHR's styles ------------------------------------------------------------------------
@bp.get("/smart-style.css")
def smart_style_css():
    sid, data = launched()
    style = _style_vars(sid, data)
    body = ":root {\n" + "".join(f"  {k}: {v};\n" for k, v in style.items()) + "}\n"
    return Response(body, mimetype="text/css")


_COLOR = re.compile(r"^#[0-9A-Fa-f]{3,8}$|^rgba?\([0-9., %]{5,40}\)$")
_FONT = re.compile(r"^[A-Za-z0-9 ,\-\"']{1,120}$")
_STYLE_KEYS = {"color_background": ("--smart-bg", _COLOR), "color_text": ("--smart-text", _COLOR),
               "color_highlight": ("--smart-accent", _COLOR), "font_family_body": ("--smart-font", _FONT)}


def style_vars(style: Any) -> dict[str, str]:
    """CSS custom properties from a SMART style document; anything unexpected is dropped."""
    out: dict[str, str] = {}
    if not isinstance(style, dict):
        return out
    for key, (var, pattern) in _STYLE_KEYS.items():
        value = style.get(key)
        if isinstance(value, str) and pattern.match(value.strip()):
            out[var] = value.strip()
    return out


def _style_vars(sid: str, data: dict[str, Any]) -> dict[str, str]:
    """The EHR's ``smart_style_url`` styles, fetched once per session (best effort)."""
    if "style" in data:
        return data["style"]
    url = data.get("smart_style_url")
    style: dict[str, str] = {}
    if url and (urlsplit(url).scheme == "https" or cfg().local_development):
        try:
            resp = rt().http.get(url, timeout=3, headers={"Accept": "application/json"})
            if resp.status_code == 200:
                style = style_vars(resp.json())
        except (requests.RequestException, ValueError):
            log.info("smart_style_url could not be read; default styles used")
    data["style"] = style
    rt().store.save(sid, data)
    return style
