"""The hardening findings of issue 11, each against the mocked EHR (``responses``): a hostile
or broken EHR/FHIR server, and a browser with several launches. One test (or one
parametrised test) per finding; the threat list in docs/RELIABILITY.md names them.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from urllib.parse import urlsplit

import pytest
import responses
from fake_ehr import AUTHORIZE, FHIR_USER, ISS, TOKEN, FakeEhr
from joserfc.jwk import RSAKey
from web_helpers import authorize_params, complete_launch, csrf_of, make_app, start_launch

from tests.support.launch_client import handle_of

EVIL = "https://evil.example.net"


def _record_off_origin(rsps) -> list:
    """Answers (and records the headers of) every request to a host other than the EHR's
    https origin: another host, plain http, another port."""
    seen: list = []

    def answer(request):
        seen.append(dict(request.headers))
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(
            {"resourceType": "Bundle", "type": "searchset", "entry": []})

    for pattern in (r"https?://evil\.example\.net/.*", r"http://ehr\.example\.org/.*",
                    r"https://ehr\.example\.org:8443/.*"):
        rsps.add_callback(responses.GET, re.compile(pattern), callback=answer)
    return seen


# --- 1. the bearer token stays on the FHIR server's origin ------------------------------------
@pytest.mark.parametrize("next_url", [
    f"{EVIL}/fhir/Observation?page=2",  # another host
    "//evil.example.net/fhir/Observation?page=2",  # scheme-relative
    "http://ehr.example.org/fhir/Observation?page=2",  # http for an https issuer
    "https://ehr.example.org:8443/fhir/Observation?page=2",  # another port
])
def test_finding_1_next_link_off_origin_stops_paging_and_gets_no_token(tmp_path, rsps, next_url):
    ehr = FakeEhr(rsps)
    seen = _record_off_origin(rsps)
    client = make_app(tmp_path).test_client()
    complete_launch(client, ehr)
    ehr.next_link = next_url
    resp = client.get("/api/report")
    assert resp.status_code == 502
    assert "next-page link points to another server" in resp.get_json()["error"]
    assert not seen  # nothing was sent off the FHIR server's origin, so no token either


def test_finding_1_redirect_off_origin_is_not_followed(tmp_path, rsps):
    ehr = FakeEhr(rsps)
    seen = _record_off_origin(rsps)
    client = make_app(tmp_path).test_client()
    complete_launch(client, ehr)
    ehr.fail_next = [(302, {"Location": f"{EVIL}/steal"}, "")]
    resp = client.get("/api/report")
    assert resp.status_code == 502 and "redirected" in resp.get_json()["error"]
    assert not seen


def test_finding_1_the_client_follows_redirects_only_on_origin(rsps):
    from smart_app.fhir_client import FhirClient, FhirRefused

    seen = _record_off_origin(rsps)
    rsps.add(responses.GET, f"{ISS}/Patient/p1", status=307, headers={"Location": "/fhir/Patient/p1-moved"})
    rsps.add(responses.GET, f"{ISS}/Patient/p1-moved", json={"resourceType": "Patient", "id": "p1-moved"})
    rsps.add(responses.GET, f"{ISS}/Patient/p2", status=301, headers={"Location": f"{EVIL}/fhir/Patient/p2"})
    client = FhirClient(ISS, token="secret-token", retries=0)
    assert client.read("Patient", "p1")["id"] == "p1-moved"
    assert rsps.calls[-1].request.headers["Authorization"] == "Bearer secret-token"
    with pytest.raises(FhirRefused, match="redirected"):
        client.read("Patient", "p2")
    with pytest.raises(FhirRefused, match="another server"):
        client.json("GET", f"{EVIL}/fhir/Patient/p3")  # an absolute URL elsewhere: refused
    assert not seen


# --- 2. one patient per tab --------------------------------------------------------------------
def test_finding_2_each_launch_keeps_its_patient_and_a_stale_handle_shows_no_other(tmp_path, rsps):
    ehr = FakeEhr(rsps)
    app = make_app(tmp_path)
    client = app.test_client()
    client.auto_ctx = False
    first = handle_of(complete_launch(client, ehr).headers["Location"])
    # a second tab of the same browser launches the app for another patient
    code, state = ehr.approve(start_launch(client), patient="other-patient")
    second = handle_of(client.get("/callback", query_string={"code": code, "state": state}).headers["Location"])
    assert first and second and first != second
    assert client.get("/api/report", query_string={"ctx": first}).get_json()["patient"]["reference"] \
        == f"Patient/{ehr.patient_id}"
    page = client.get("/report", query_string={"ctx": first}).data.decode()
    # every link and form of the first tab's page names the first launch
    assert f'href="/report?refresh=1&amp;ctx={first}"' in page or f"ctx={first}" in page
    assert f'name="ctx" value="{first}"' in page and second not in page
    # the second tab reads its own patient (the fake EHR has no such Patient: a clear 502,
    # never the first patient)
    other = client.get("/api/report", query_string={"ctx": second})
    assert other.status_code == 502 and ehr.patient_id not in other.get_data(as_text=True)
    assert ("GET", "Patient/other-patient") in ehr.fhir_calls
    # a POST for the first tab acts on the first patient
    resp = client.post("/task", data={"ctx": first, "csrf_token": csrf_of(page.encode())},
                       headers={"Accept": "application/json"})
    assert resp.status_code == 200 and resp.get_json()["task"]["for"]["reference"] == f"Patient/{ehr.patient_id}"
    # the first tab's CSRF token does not work for the second launch
    assert client.post("/task", data={"ctx": second, "csrf_token": csrf_of(page.encode())},
                       headers={"Accept": "application/json"}).status_code == 403
    # a stale or made-up handle: a clear page, no patient
    stale = client.get("/report", query_string={"ctx": "x" * 43})
    assert stale.status_code == 401 and b"has ended" in stale.data and ehr.patient_id.encode() not in stale.data
    assert client.get("/report").status_code == 400  # no handle: which launch?


def test_finding_2_a_handle_is_worthless_in_another_browser(tmp_path, rsps):
    ehr = FakeEhr(rsps)
    app = make_app(tmp_path)
    victim = app.test_client()
    handle = handle_of(complete_launch(victim, ehr).headers["Location"])
    attacker = app.test_client()
    complete_launch(attacker, ehr)  # a browser session of its own
    resp = attacker.get("/api/report", query_string={"ctx": handle})
    assert resp.status_code == 401 and "another browser session" in resp.get_json()["error"]
    assert app.test_client().get("/api/report", query_string={"ctx": handle}).status_code == 401


# --- 3. the id_token is verified before fhirUser names the Task's requester --------------------
def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _requester_after_launch(tmp_path, rsps, caplog, spoil=None, signer=None, unsigned=False):
    """(Task.requester, report page) after a launch whose id_token was spoilt."""
    ehr = FakeEhr(rsps)
    ehr.id_token_claims = spoil
    ehr.id_token_signer = signer
    if unsigned:  # "alg": "none": no signature at all
        signed = ehr.id_token
        ehr.id_token = lambda client_id, nonce: (
            f"{_b64({'alg': 'none'})}.{signed(client_id, nonce).split('.')[1]}.")
    app = make_app(tmp_path)
    client = app.test_client()
    caplog.set_level(logging.INFO)
    assert complete_launch(client, ehr).status_code == 302
    page = client.get("/report").data
    task = client.post("/task", data={"csrf_token": csrf_of(page)},
                       headers={"Accept": "application/json"}).get_json()["task"]
    return task.get("requester"), page


def test_finding_3_a_valid_id_token_names_the_requester(tmp_path, rsps, caplog):
    requester, page = _requester_after_launch(tmp_path, rsps, caplog)
    assert requester == {"reference": FHIR_USER}
    assert b"could not be verified" not in page


@pytest.mark.parametrize("how", ["forged-signature", "wrong-iss", "wrong-aud", "expired", "wrong-nonce",
                                 "no-nonce", "alg-none"])
def test_finding_3_a_forged_or_spoilt_id_token_names_no_requester(tmp_path, rsps, caplog, how):
    forged = {"fhirUser": f"{ISS}/Practitioner/impostor"}
    spoil = {
        "forged-signature": lambda c: {**c, **forged},
        "wrong-iss": lambda c: {**c, **forged, "iss": EVIL},
        "wrong-aud": lambda c: {**c, **forged, "aud": "another-app"},
        "expired": lambda c: {**c, **forged, "exp": int(time.time()) - 3600},
        "wrong-nonce": lambda c: {**c, **forged, "nonce": "not-the-one-sent"},
        "no-nonce": lambda c: {k: v for k, v in {**c, **forged}.items() if k != "nonce"},
        "alg-none": lambda c: {**c, **forged},
    }[how]
    signer = RSAKey.generate_key(2048, parameters={"kid": "ehr-1"}) if how == "forged-signature" else None
    requester, page = _requester_after_launch(tmp_path, rsps, caplog, spoil, signer, unsigned=how == "alg-none")
    assert requester is None  # never the forged one
    assert b"could not be verified" in page
    assert any("id_token not accepted" in r.getMessage() for r in caplog.records)


def test_finding_3_the_authorize_request_carries_a_nonce_kept_server_side(client, rsps):
    FakeEhr(rsps)
    first = authorize_params(start_launch(client))["nonce"]
    second = authorize_params(start_launch(client))["nonce"]
    assert len(first) >= 32 and first != second


# --- 4. open-server mode only for configured issuers; failed discovery is not cached -----------
def test_finding_4_failed_discovery_is_an_error_not_an_open_server_and_is_not_cached(client, rsps):
    rsps.add(responses.GET, f"{ISS}/.well-known/smart-configuration", status=503)
    rsps.add(responses.GET, f"{ISS}/metadata", json={"resourceType": "CapabilityStatement", "status": "active",
                                                     "rest": [{"mode": "server"}]})
    resp = client.get("/launch", query_string={"iss": ISS, "patient": "any-patient-id"})
    assert resp.status_code == 502 and b"IVIG_OPEN_ISSUERS" in resp.data
    assert "Set-Cookie" not in resp.headers and client.get("/api/report").status_code == 401
    # the EHR recovers: the next launch discovers again at once (nothing was cached)
    rsps.reset()
    FakeEhr(rsps)
    assert urlsplit(start_launch(client)).path == urlsplit(AUTHORIZE).path


def test_finding_4_an_open_issuer_needs_no_discovery_and_others_still_need_smart(tmp_path, rsps):
    open_server = "https://open.example.org/fhir"
    client = make_app(tmp_path, IVIG_OPEN_ISSUERS=open_server).test_client()
    rsps.add(responses.GET, f"{open_server}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    resp = client.get("/launch", query_string={"iss": open_server, "patient": "p1"})
    assert resp.status_code == 302 and handle_of(resp.headers["Location"])
    assert not any("well-known" in c.request.url for c in rsps.calls)


# --- 5. no id, path or query with an id in any log line ----------------------------------------
def test_finding_5_refused_and_failed_requests_log_route_patterns_not_ids(client, rsps, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    ehr = FakeEhr(rsps)
    complete_launch(client, ehr)
    client.get("/source/Binary/secret-binary-77")  # 404: a type the app does not show
    client.get("/source/Observation/secret-obs-55", query_string={"ctx": "y" * 43})  # 401: stale launch
    client.get("/source/Observation/secret-obs-66")  # 502: the FHIR server has no such resource

    def boom(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr("smart_app.views.sources.fhir_client", boom)
    client.get("/source/Observation/secret-obs-88")  # 500
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "request refused: GET /source/<rtype>/<rid> -> 404" in text
    assert "unexpected RuntimeError" in text
    for secret in ("secret-binary-77", "secret-obs-55", "secret-obs-66", "secret-obs-88", ehr.patient_id,
                   client.ctx):
        assert secret not in text


# --- 6. bounded, purged state; caches keyed by the normalised issuer ---------------------------
def test_finding_6_anonymous_launches_store_no_session_and_expired_rows_are_purged(app, rsps, monkeypatch):
    import sqlite3

    FakeEhr(rsps)
    store = app.extensions["ivig"].store
    for _ in range(30):
        app.test_client().get("/launch", query_string={"iss": ISS, "launch": "x"})  # no cookie, no login
    db = sqlite3.connect(store.path)
    assert db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 0  # nothing but states
    assert db.execute("SELECT COUNT(*) FROM states").fetchone()[0] == 30
    real = time.time
    monkeypatch.setattr("smart_app.sessions.time.time", lambda: real() + 601)
    store._purged = 0
    app.test_client().get("/launch", query_string={"iss": ISS, "launch": "x"})
    assert db.execute("SELECT COUNT(*) FROM states").fetchone()[0] == 1  # the expired 30 are gone


def test_finding_6_pending_states_are_bounded(app, rsps):
    FakeEhr(rsps)
    app.extensions["ivig"].store.max_pending = 5
    codes = [app.test_client().get("/launch", query_string={"iss": ISS, "launch": "x"}).status_code
             for _ in range(7)]
    assert codes == [302] * 5 + [503] * 2


def test_finding_6_discovery_cache_is_keyed_by_the_normalised_issuer_and_bounded(app, client, rsps):
    FakeEhr(rsps)
    for iss in (ISS, ISS + "/", "HTTPS://EHR.EXAMPLE.ORG/fhir", "https://Ehr.Example.Org/fhir/"):
        assert client.get("/launch", query_string={"iss": iss, "launch": "x"}).status_code == 302
    assert sum(1 for c in rsps.calls if c.request.url.endswith("/.well-known/smart-configuration")) == 1
    runtime = app.extensions["ivig"]
    assert runtime.discovered.keys() == [ISS]
    assert runtime.discovered.size <= 64 and runtime.jwks_cache.size <= 64


# --- 7. smart_style_url: the issuer's origin only, bounded ---------------------------------------
@pytest.mark.parametrize("style_url", [
    "https://internal.example.net/style.json",  # another host: blind SSRF
    "http://ehr.example.org/style.json",  # plain http
    "https://ehr.example.org:9443/style.json",  # another port
    "https://ehr.example.org/redirect-style",  # on origin, but redirects off it
])
def test_finding_7_smart_style_is_fetched_only_from_the_issuers_origin(tmp_path, rsps, style_url):
    ehr = FakeEhr(rsps, style=False)
    fetched = []

    def record(request):
        fetched.append(request.url)
        return 200, {"Content-Type": "application/json"}, json.dumps({"color_background": "#000000"})

    rsps.add_callback(responses.GET, re.compile(r"https://internal\.example\.net/.*"), callback=record)
    rsps.add_callback(responses.GET, "http://ehr.example.org/style.json", callback=record)
    rsps.add_callback(responses.GET, "https://ehr.example.org:9443/style.json", callback=record)
    rsps.add(responses.GET, "https://ehr.example.org/redirect-style", status=302,
             headers={"Location": "https://internal.example.net/style.json"})
    original = ehr._issue
    ehr._issue = lambda scope, patient: {**original(scope, patient), "smart_style_url": style_url}
    client = make_app(tmp_path).test_client()
    complete_launch(client, ehr)
    css = client.get("/smart-style.css")
    assert css.status_code == 200 and "--smart-bg" not in css.get_data(as_text=True)
    assert not fetched


def test_finding_7_oversized_style_document_is_dropped(tmp_path, rsps):
    ehr = FakeEhr(rsps)
    rsps.replace(responses.GET, "https://ehr.example.org/style.json",
                 body=json.dumps({"color_background": "#fafafa", "pad": "x" * 100_000}))
    client = make_app(tmp_path).test_client()
    complete_launch(client, ehr)
    assert "--smart-bg" not in client.get("/smart-style.css").get_data(as_text=True)


# --- 8. FHIR ids: never "." or ".." -------------------------------------------------------------
@pytest.mark.parametrize("rid", [".", "..", "%2E%2E"])
def test_finding_8_dot_ids_are_refused_before_any_request(client, rsps, rid):
    ehr = FakeEhr(rsps)
    complete_launch(client, ehr)
    before = len(rsps.calls)
    assert client.get(f"/source/Observation/{rid}").status_code == 404
    assert len(rsps.calls) == before


@pytest.mark.parametrize("patient", [".", ".."])
def test_finding_8_dot_patient_ids_are_refused(tmp_path, rsps, patient):
    client = make_app(tmp_path, IVIG_OPEN_ISSUERS=ISS).test_client()
    assert client.get("/launch", query_string={"iss": ISS, "patient": patient}).status_code == 400
    ehr = FakeEhr(rsps)
    client = make_app(tmp_path).test_client()
    code, state = ehr.approve(start_launch(client), patient=patient)
    assert client.get("/callback", query_string={"code": code, "state": state}).status_code == 400
    assert not ehr.fhir_calls


def test_finding_8_the_fhir_client_refuses_dot_ids_itself():
    from smart_app.fhir_client import FhirClient, FhirRefused

    with pytest.raises(FhirRefused, match="not a FHIR id"):
        FhirClient(ISS).read("Patient", "..")


# --- 9. one normalised issuer -----------------------------------------------------------------
def test_finding_9_one_normalised_issuer_for_check_discovery_aud_and_session(client, rsps):
    ehr = FakeEhr(rsps)
    q = authorize_params(start_launch(client, iss="HTTPS://EHR.EXAMPLE.ORG/fhir/"))
    assert q["aud"] == ISS
    # Discovery, and the CapabilityStatement read with it (search_plan), both on the one issuer.
    assert sorted(c.request.url for c in rsps.calls) == [f"{ISS}/.well-known/smart-configuration",
                                                         f"{ISS}/metadata"]
    code, state = ehr.approve(start_launch(client, iss="https://Ehr.Example.Org/fhir//"))
    client.get("/callback", query_string={"code": code, "state": state})
    assert client.get("/api/report").status_code == 200
    assert all(c.request.url.startswith((ISS + "/", "https://ehr.example.org/auth/",
                                         "https://ehr.example.org/style.json")) for c in rsps.calls)
    sid_data = [v for v in _store_rows(client) if v.get("patient")]
    assert sid_data and all(v["iss"] == ISS for v in sid_data)


def _store_rows(client):
    store = client.application.extensions["ivig"].store
    keys = [k for (k,) in store._db().execute("SELECT sid FROM sessions")]
    return [store.get(k) for k in keys]


# --- 10. the configured client is the client ----------------------------------------------------
@pytest.mark.parametrize("launch", ["ehr-launch-1", None])
def test_finding_10_a_client_id_parameter_never_replaces_the_configured_client(tmp_path, rsps, launch):
    client = make_app(tmp_path, IVIG_CLIENT_SECRET="s3cret").test_client()
    ehr = FakeEhr(rsps, client_secret="s3cret")
    url = start_launch(client, launch=launch, client_id="public-impostor")
    assert authorize_params(url)["client_id"] == "app"
    code, state = ehr.approve(url)
    assert client.get("/callback", query_string={"code": code, "state": state}).status_code == 302
    assert ehr.token_requests[-1]["_auth"][0].startswith("Basic ")
    assert b'name="client_id"' not in client.get("/launch.html").data


# --- Task identifier: stable wherever the app runs ----------------------------------------------
def test_task_identifier_system_does_not_depend_on_the_public_base_url(tmp_path, rsps):
    ehr = FakeEhr(rsps)
    systems = set()
    for n, base in enumerate(("http://127.0.0.1:8000", "http://localhost:8001")):
        (tmp_path / str(n)).mkdir()
        app = make_app(tmp_path / str(n), IVIG_PUBLIC_BASE_URL=base)
        client = app.test_client()
        complete_launch(client, ehr)
        body = client.post("/task", data={"csrf_token": csrf_of(client.get("/report").data)},
                           headers={"Accept": "application/json"}).get_json()
        assert "task" in body, body
        systems.add(body["task"]["identifier"][0]["system"])
    assert len(ehr.tasks) == 1  # the second app found the first one's Task
    assert systems == {"urn:uuid:3c0d9f4e-6f5b-4c1e-9a57-1b8e2f7d4a90"}


def test_task_identifier_system_is_configurable(tmp_path, rsps):
    ehr = FakeEhr(rsps)
    client = make_app(tmp_path, IVIG_TASK_IDENTIFIER_SYSTEM="https://hospital.example/ids/ivig-task").test_client()
    complete_launch(client, ehr)
    body = client.post("/task", data={"csrf_token": csrf_of(client.get("/report").data)},
                       headers={"Accept": "application/json"}).get_json()
    assert body["task"]["identifier"][0]["system"] == "https://hospital.example/ids/ivig-task"


def test_task_identifier_system_must_be_an_absolute_uri(tmp_path):
    from smart_app.config import ConfigError

    with pytest.raises(ConfigError, match="IVIG_TASK_IDENTIFIER_SYSTEM"):
        make_app(tmp_path, IVIG_TASK_IDENTIFIER_SYSTEM="not a uri")


# --- configuration: fail at start-up, with the variable's name ----------------------------------
@pytest.mark.parametrize("env, message", [
    ({"IVIG_SESSION_URL": "memcached://127.0.0.1"}, "IVIG_SESSION_URL"),
    ({"IVIG_SESSION_URL": "sqlite:///tmp/x.sqlite", "IVIG_SESSION_DB": "/tmp/y.sqlite"}, "not both"),
    ({"IVIG_OPEN_ISSUERS": "ftp://files.example.org"}, "IVIG_OPEN_ISSUERS"),
    ({"IVIG_ALLOWED_ISSUERS": "https://ehr.example.org/fhir?tenant=1"}, "no query"),
    ({"IVIG_SANDBOX": "maybe"}, "IVIG_SANDBOX"),
])
def test_bad_hardening_settings_fail_at_start_up(env, message):
    from smart_app.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=message):
        load_config({"IVIG_SECRET_KEY": "k" * 32, **env})


def test_a_launch_iss_with_a_query_or_user_is_refused_before_any_request(client, rsps):
    for iss in (ISS + "?x=1", "https://user@ehr.example.org/fhir", "javascript:alert(1)"):
        assert client.get("/launch", query_string={"iss": iss, "launch": "x"}).status_code == 403
    assert not rsps.calls


def test_the_token_request_is_not_redirected_with_its_credentials(tmp_path, rsps):
    client = make_app(tmp_path, IVIG_CLIENT_SECRET="s3cret").test_client()
    ehr = FakeEhr(rsps, client_secret="s3cret")
    seen = _record_off_origin(rsps)
    rsps.add_callback(responses.POST, re.compile(r"https://evil\.example\.net/.*"),
                      callback=lambda req: (seen.append(dict(req.headers)) or (200, {}, "{}")))
    code, state = ehr.approve(start_launch(client))
    rsps.replace(responses.POST, TOKEN, status=307, headers={"Location": f"{EVIL}/token"})
    resp = client.get("/callback", query_string={"code": code, "state": state})
    assert resp.status_code == 502 and b"Sign-in failed" in resp.data
    assert not seen
