"""Helpers for the web-flow tests (imported by name; fixtures live in conftest.py)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from fake_ehr import ISS, FakeEhr

from smart_app.config import load_config
from smart_app.web import create_app
from tests.support.launch_client import LaunchClient

BASE = "http://127.0.0.1:8000"


def make_app(tmp_path, **env):
    environ = {"IVIG_ALLOWED_ISSUERS": ISS, "IVIG_CLIENT_ID": "app", "IVIG_PUBLIC_BASE_URL": BASE,
               "IVIG_SECRET_KEY": "test-secret-key-0123456789", "IVIG_AS_OF": "2025-06-30",
               "IVIG_SESSION_DB": str(tmp_path / "sessions.sqlite"), "IVIG_REPORT_CACHE_SECONDS": "0", **env}
    app = create_app(load_config(environ))
    app.testing = True
    app.test_client_class = LaunchClient
    return app


def start_launch(client, *, launch: str | None = "launch-123", **params):
    query = {"iss": ISS, **({"launch": launch} if launch else {}), **params}
    resp = client.get("/launch", query_string=query)
    assert resp.status_code == 302, resp.data[:500]
    return resp.headers["Location"]


def complete_launch(client, ehr: FakeEhr, *, launch: str | None = "launch-123", **params):
    """EHR launch -> authorize (auto-approved by the fake EHR) -> callback; returns the
    callback response (a redirect to /report when all went well)."""
    authorize_url = start_launch(client, launch=launch, **params)
    code, state = ehr.approve(authorize_url)
    return client.get("/callback", query_string={"code": code, "state": state})


def authorize_params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def csrf_of(html: bytes) -> str:
    m = re.search(rb'name="csrf_token" value="([^"]+)"', html)
    assert m, "report page has no csrf_token field"
    return m.group(1).decode()


def nothing_missing(monkeypatch) -> None:
    """From now on every evaluation finds nothing missing (as if the chart were completed)."""
    from smart_app import retrieval as web  # the views evaluate through retrieval.fetch_report

    original = web.evaluate_record

    def complete(record, ruleset, as_of, **kw):
        report = original(record, ruleset, as_of, **kw)
        report["missing_documentation"] = []
        report["determination"] = "criteria-met"
        return report

    monkeypatch.setattr(web, "evaluate_record", complete)
