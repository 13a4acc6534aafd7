"""Pages that need no launch: the launch page, the health check, the app's JWKS and the
CodeSystem of documentation items."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for

from ..runtime import cfg, rt
from ..task import determination_codesystem, documentation_codesystem

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    return redirect(url_for("pages.launch_page"))


PACKAGE_DIR = Path(__file__).resolve().parent.parent


def launch_page_file() -> Path:
    """``launch.html``: the repository's top-level file in a checkout (or an editable
    install), else the copy the wheel ships inside the package (see setup.py)."""
    root = PACKAGE_DIR.parent
    candidates = ([root / "launch.html"] if (root / "pyproject.toml").is_file() else []) + [PACKAGE_DIR / "launch.html"]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError("launch.html is not installed with the app")


def load_launch_page(name: str):
    """Jinja loader function: the launch page by its name, nothing else."""
    if name != "launch.html":
        return None
    path = launch_page_file()
    mtime = path.stat().st_mtime
    return path.read_text(encoding="utf-8"), str(path), lambda: path.stat().st_mtime == mtime


@bp.get("/launch.html")
def launch_page():
    # Registered as the SMART launch URL: an EHR launch (iss + launch) goes straight to the
    # app's launch, which checks the issuer before anything else.
    if request.args.get("iss") and request.args.get("launch"):
        return redirect(url_for("auth.launch", iss=request.args["iss"], launch=request.args["launch"]))
    config = cfg()
    demo = None
    if config.demo_iss:
        demo = {"iss": config.demo_iss,
                "patients": [{"id": p.id, "label": p.label, "ruleset": p.ruleset,
                              "determination_hint": p.determination, "indication": p.indication,
                              "policy": p.policy, "policy_chosen": p.policy_chosen}
                             for p in config.demo_patients]}
    return render_template("launch.html", public_base_url=config.public_base_url,
                           allowed_issuers=list(dict.fromkeys(config.allowed_issuers + config.open_issuers)),
                           default_client_id=config.client_id, sandbox=config.sandbox, demo=demo,
                           iss_given=request.args.get("iss", "")[:2000])


@bp.get("/favicon.ico")
def favicon():
    return redirect(url_for("static", filename="favicon.svg"), code=301)


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


@bp.get("/fhir/CodeSystem/ivig-determination")
def determination_codes():
    """The CodeSystem of ``Task.businessStatus``: the report's determinations."""
    return jsonify(determination_codesystem(cfg().public_base_url))
