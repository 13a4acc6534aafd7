"""Pages that need no launch: the launch page, the health check, the app's JWKS and the
CodeSystem of documentation items."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, redirect, render_template, url_for

from ..runtime import cfg, rt
from ..task import documentation_codesystem

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    return redirect(url_for("pages.launch_page"))


@bp.get("/launch.html")
def launch_page():
    config = cfg()
    demo = None
    if config.demo_iss:
        demo = {"iss": config.demo_iss,
                "patients": [{"id": p.id, "label": p.label, "ruleset": p.ruleset,
                              "determination_hint": p.determination} for p in config.demo_patients]}
    return render_template("launch.html", public_base_url=config.public_base_url,
                           allowed_issuers=list(dict.fromkeys(config.allowed_issuers + config.open_issuers)),
                           default_client_id=config.client_id, sandbox=config.sandbox, demo=demo)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/.well-known/jwks.json")
def jwks():
    keys = rt().jwks
    if keys is None:
        abort(404, "This app authenticates without a key pair (no IVIG_PRIVATE_KEY_FILE).")
    return jsonify(keys)


@bp.get("/fhir/CodeSystem/ivig-documentation")
def codesystem():
    """The app's CodeSystem of documentation items (CONTRACT §3), as FHIR R4 JSON."""
    return jsonify(documentation_codesystem(cfg().public_base_url))
