"""The Flask app factory: SMART launch, report page, report JSON, Task write-back (CONTRACT §5).

``create_app`` is the one place the blueprints of ``smart_app.views`` are registered, and
where the response headers, the access log and the error pages are set up. Views do the
I/O (FHIR server, authorization server, session store) and hand data to the pure core
(``report.evaluate_record``, ``task.build_task``). Error pages carry one plain sentence,
never a stack trace, a token or patient data, and nothing with PHI is logged.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, jsonify, render_template, request, url_for
from jinja2 import ChoiceLoader, FunctionLoader
from werkzeug.exceptions import HTTPException

from .config import Config, load_config
from .runtime import Runtime, cfg
from .views import attest, auth, pages, report, sources, tasks
from .views.common import SESSION_ENDED, AppError, wants_json

log = logging.getLogger(__name__)
access_log = logging.getLogger("smart_app.access")

# Endpoints whose answers may be cached (no session data in them).
CACHEABLE = ("static", "pages.launch_page", "pages.jwks", "pages.codesystem", "pages.determination_codes",
             "pages.favicon", "attest.questionnaire")


def create_app(config: Config | None = None) -> Flask:
    app = Flask(__name__)
    config = config or load_config()
    app.config["IVIG"] = config
    app.config["SECRET_KEY"] = config.secret_key
    app.extensions["ivig"] = Runtime(config)
    # The package's templates, and launch.html from the repository's top level.
    app.jinja_loader = ChoiceLoader([app.jinja_loader, FunctionLoader(pages.load_launch_page)])
    for blueprint in (pages.bp, auth.bp, report.bp, tasks.bp, sources.bp, attest.bp):
        app.register_blueprint(blueprint)
    from .cds_hooks import register_cds_hooks  # CDS Hooks service (+ the demo's CDS client)
    register_cds_hooks(app)
    app.before_request(_start_timer)
    app.after_request(_security_headers)
    app.after_request(_access_log)
    app.register_error_handler(AppError, _app_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


# --- headers, access log, errors ----------------------------------------------------------------
def _start_timer() -> None:
    request.environ["ivig.start"] = time.perf_counter()


def _access_log(resp: Response) -> Response:
    """Method, route pattern (never the concrete path or query: ids, codes), status, time."""
    rule = _route()
    started = request.environ.get("ivig.start", time.perf_counter())
    access_log.info("%s %s %d %.0fms", request.method, rule, resp.status_code,
                    (time.perf_counter() - started) * 1000)
    return resp


def _security_headers(resp: Response) -> Response:
    config = cfg()
    form_targets = "'self' https:"
    if config.local_development:
        form_targets += " http://127.0.0.1:* http://localhost:*"
    resp.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"object-src 'none'; base-uri 'none'; form-action {form_targets}; "
        f"frame-ancestors {config.csp_frame_ancestors}"
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint not in CACHEABLE:
        resp.headers["Cache-Control"] = "no-store"
    if config.public_base_url.startswith("https://"):
        resp.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return resp


def _error_response(status: int, message: str, hint: str | None = None) -> tuple[Any, int]:
    if wants_json():
        body: dict[str, Any] = {"error": message}
        if hint:
            body["hint"] = hint
        return jsonify(body), status
    return render_template("error.html", title=_TITLES.get(status, "Something went wrong"),
                           message=message, status=status, hint=hint,
                           relaunch_href=url_for("pages.launch_page")), status


_TITLES = {400: "The request could not be used", 401: "Your session has ended",
           403: "Not allowed", 404: "Not found", 502: "The FHIR server could not be used",
           504: "The FHIR server did not answer"}


def _route() -> str:
    """The request's route pattern (``/source/<rtype>/<rid>``), never its path or query:
    those carry resource and patient ids."""
    return request.url_rule.rule if request.url_rule else "(no route)"


def _app_error(exc: AppError):
    log.info("request refused: %s %s -> %d", request.method, _route(), exc.status)
    return _error_response(exc.status, exc.message, exc.hint)


def _http_error(exc: HTTPException):
    return _error_response(exc.code or 500, exc.description or exc.name)


def _unexpected_error(exc: Exception):
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
    # The type and place only: exception messages may quote record data.
    log.error("unexpected %s at %s on %s %s", type(exc).__name__, where, request.method, _route())
    return _error_response(500, "The app hit an unexpected error. Nothing was written to the EHR.",
                           SESSION_ENDED)
