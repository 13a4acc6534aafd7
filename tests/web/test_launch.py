"""SMART launch flows against a mocked EHR (responses): discovery, PKCE, state, scopes,
tokens, refresh, and the allow-list."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
import responses
from web_helpers import authorize_params, complete_launch, make_app, start_launch
from fake_ehr import AUTHORIZE, ISS, TOKEN, FakeEhr, s256

from smart_app.sessions import SqliteStore
from tests.support.store_checks import assert_held_key_times_out, assert_holders_exclude_each_other


def test_ehr_launch_redirects_with_every_smart_parameter(client, rsps):
    FakeEhr(rsps)
    q = authorize_params(start_launch(client, launch="abc"))
    assert q["response_type"] == "code"
    assert q["client_id"] == "app"
    assert q["redirect_uri"] == "http://127.0.0.1:8000/callback"
    assert q["aud"] == ISS
    assert q["launch"] == "abc"
    assert q["code_challenge_method"] == "S256"
    assert len(q["code_challenge"]) == 43  # base64url of a SHA-256 digest
    assert len(q["state"]) >= 32
    scopes = q["scope"].split()
    assert "launch" in scopes and "launch/patient" not in scopes
    assert "patient/Observation.rs" in scopes and "patient/Task.crus" in scopes
    assert "openid" in scopes and "fhirUser" in scopes and "offline_access" in scopes


def test_full_ehr_launch_gives_report_and_keeps_code_out_of_the_url(client, rsps):
    ehr = FakeEhr(rsps)
    resp = complete_launch(client, ehr)
    assert resp.status_code == 302
    assert urlsplit(resp.headers["Location"]).path == "/report"
    assert "code" not in resp.headers["Location"] and "state" not in resp.headers["Location"]
    page = client.get("/report")
    assert page.status_code == 200
    assert b"Missing documentation" in page.data
    report = client.get("/api/report").get_json()
    assert report["patient"]["reference"] == f"Patient/{ehr.patient_id}"
    assert report["determination"] == "documentation-missing"
    # The verifier sent to the token endpoint matches the challenge the browser carried.
    form = ehr.token_requests[0]
    assert form["grant_type"] == ["authorization_code"]
    assert form["client_id"] == ["app"]  # public client: client_id in the body, no secret


def test_report_matches_the_command_line_evaluation(client, rsps):
    from fhir_mappings import load_record
    from smart_app.report import evaluate_record
    from datetime import date
    from fake_ehr import EXAMPLES

    ehr = FakeEhr(rsps)
    complete_launch(client, ehr)
    web = client.get("/api/report").get_json()
    record = load_record((EXAMPLES / "01-cvid-seed-002.json").read_text(), "example 01")
    cli = evaluate_record(record, "bcbsmt-ig-2013", date(2025, 6, 30))
    assert web["determination"] == cli["determination"]
    assert [m["code"] for m in web["missing_documentation"]] == [m["code"] for m in cli["missing_documentation"]]


def test_standalone_launch_asks_for_patient_context(client, rsps):
    FakeEhr(rsps)
    q = authorize_params(start_launch(client, launch=None))
    assert "launch/patient" in q["scope"].split()
    assert "launch" not in q


def test_v1_only_server_gets_v1_scopes(client, rsps):
    ehr = FakeEhr(rsps, discovery="v1")
    q = authorize_params(start_launch(client))
    scopes = q["scope"].split()
    assert "patient/Observation.read" in scopes and "patient/Task.write" in scopes
    assert not any(s.endswith(".rs") for s in scopes)
    code, state = ehr.approve(start_launch(client))
    assert client.get("/callback", query_string={"code": code, "state": state}).status_code == 302
    assert client.get("/api/report").status_code == 200


def test_capability_statement_fallback_when_no_well_known(client, rsps):
    ehr = FakeEhr(rsps, discovery="capability-statement")
    url = start_launch(client)
    assert url.startswith(AUTHORIZE)
    code, state = ehr.approve(url)
    assert client.get("/callback", query_string={"code": code, "state": state}).status_code == 302
    assert client.get("/api/report").get_json()["determination"]


def test_open_server_goes_straight_to_the_report_without_tokens(tmp_path, rsps):
    client = make_app(tmp_path, IVIG_OPEN_ISSUERS=ISS).test_client()
    ehr = FakeEhr(rsps, discovery="open")
    resp = client.get("/launch", query_string={"iss": ISS, "patient": ehr.patient_id})
    assert resp.status_code == 302 and urlsplit(resp.headers["Location"]).path == "/report"
    assert client.get("/api/report").get_json()["patient"]["reference"] == f"Patient/{ehr.patient_id}"
    assert not any("Authorization" in c.request.headers for c in rsps.calls)
    assert not any("smart-configuration" in c.request.url for c in rsps.calls)  # no discovery


def test_open_server_without_patient_is_a_clear_400(tmp_path, rsps):
    client = make_app(tmp_path, IVIG_OPEN_ISSUERS=ISS).test_client()
    FakeEhr(rsps, discovery="open")
    resp = client.get("/launch", query_string={"iss": ISS})
    assert resp.status_code == 400
    assert b"patient id" in resp.data


def test_foreign_issuer_is_refused_before_any_request_or_redirect(client, rsps):
    resp = client.get("/launch", query_string={"iss": "https://evil.example.com/fhir", "launch": "x"})
    assert resp.status_code == 403
    assert "Location" not in resp.headers
    assert len(rsps.calls) == 0
    assert b"not on the app" in resp.data


def test_missing_iss_is_a_400(client):
    assert client.get("/launch").status_code == 400


@pytest.mark.parametrize("iss", [ISS + "/", ISS.upper().replace("/FHIR", "/fhir")])
def test_issuer_comparison_ignores_trailing_slash_and_host_case(client, rsps, iss):
    FakeEhr(rsps)
    assert client.get("/launch", query_string={"iss": iss, "launch": "x"}).status_code == 302


def test_forged_state_is_refused(client, rsps):
    ehr = FakeEhr(rsps)
    code, _ = ehr.approve(start_launch(client))
    resp = client.get("/callback", query_string={"code": code, "state": "forged-" + "x" * 40})
    assert resp.status_code == 400
    assert not ehr.token_requests  # nothing was exchanged


def test_replayed_state_is_refused(client, rsps):
    ehr = FakeEhr(rsps)
    code, state = ehr.approve(start_launch(client))
    assert client.get("/callback", query_string={"code": code, "state": state}).status_code == 302
    again = client.get("/callback", query_string={"code": code, "state": state})
    assert again.status_code == 400
    assert len(ehr.token_requests) == 1


def test_state_from_another_browser_session_is_refused(app, rsps):
    ehr = FakeEhr(rsps)
    victim, attacker = app.test_client(), app.test_client()
    code, state = ehr.approve(start_launch(attacker))
    resp = victim.get("/callback", query_string={"code": code, "state": state})
    assert resp.status_code == 400
    assert not ehr.token_requests


def test_expired_state_is_refused(app, client, rsps, monkeypatch):
    ehr = FakeEhr(rsps)
    code, state = ehr.approve(start_launch(client))
    real = time.time
    monkeypatch.setattr("smart_app.sessions.time.time", lambda: real() + 601)
    assert client.get("/callback", query_string={"code": code, "state": state}).status_code in (400, 401)


def test_authorization_denied_by_the_user(client, rsps):
    FakeEhr(rsps)
    start_launch(client)
    resp = client.get("/callback", query_string={"error": "access_denied", "state": "s"})
    assert resp.status_code == 403 and b"access_denied" in resp.data


def test_wrong_verifier_is_rejected_by_the_server_and_reported(client, rsps, monkeypatch):
    ehr = FakeEhr(rsps)
    code, state = ehr.approve(start_launch(client))
    ehr.codes[code]["challenge"] = s256("something else")
    resp = client.get("/callback", query_string={"code": code, "state": state})
    assert resp.status_code == 502
    assert b"invalid_grant" in resp.data
    assert code.encode() not in resp.data


def test_session_id_changes_at_login_and_cookie_is_opaque(client, rsps):
    ehr = FakeEhr(rsps)
    start_launch(client)
    before = client.get_cookie("ivig_sid").value
    code, state = ehr.approve(start_launch(client))
    client.get("/callback", query_string={"code": code, "state": state})
    after = client.get_cookie("ivig_sid")
    assert after.value != before
    assert after.http_only
    for token in ehr.tokens | ehr.refresh_tokens:
        assert token not in after.value


def test_cookie_is_secure_and_samesite_none_outside_local_development(tmp_path, rsps):
    app = make_app(tmp_path, IVIG_PUBLIC_BASE_URL="https://ivig.example.org")
    FakeEhr(rsps)
    resp = app.test_client().get("/launch", query_string={"iss": ISS, "launch": "x"},
                                 base_url="https://ivig.example.org")
    cookie = resp.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=None" in cookie
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


def test_local_development_cookie_is_lax(client, rsps):
    FakeEhr(rsps)
    cookie = client.get("/launch", query_string={"iss": ISS, "launch": "x"}).headers["Set-Cookie"]
    assert "SameSite=Lax" in cookie and "Secure" not in cookie


def test_reduced_scopes_mark_types_not_accessible_never_missing(client, rsps):
    grant = "launch openid fhirUser patient/Patient.rs patient/Condition.rs patient/MedicationRequest.rs"
    ehr = FakeEhr(rsps, grant=grant)
    complete_launch(client, ehr)
    report = client.get("/api/report").get_json()
    assert "Observation" in report["not_accessible"] and "Immunization" in report["not_accessible"]
    missing = {m["code"] for m in report["missing_documentation"]}
    not_checked = {m["code"] for m in report["not_checked"]}
    assert "body-weight" in not_checked and "body-weight" not in missing
    assert "igg-pretreatment" in not_checked
    assert all(item["not_accessible"] for item in report["not_checked"])
    statuses = {c["id"]: c["status"] for c in report["criteria"]}
    assert "not-accessible" in statuses.values()
    # The app never asked for what it may not read.
    assert not any(path.startswith("Observation") for _, path in ehr.fhir_calls)
    assert any("provisional" in w for w in report["warnings"])
    page = client.get("/report")
    assert b"not accessible" in page.data.lower()
    assert b"did not grant" in page.data  # no Task write scope: the form is replaced


def test_expired_access_token_is_refreshed_mid_session(client, rsps):
    ehr = FakeEhr(rsps)
    complete_launch(client, ehr)
    ehr.expire_tokens()
    resp = client.get("/api/report")
    assert resp.status_code == 200
    assert [r["grant_type"] for r in ehr.token_requests] == [["authorization_code"], ["refresh_token"]]


def test_token_near_expiry_is_refreshed_before_use(client, rsps):
    ehr = FakeEhr(rsps, expires_in=5)  # inside the 30 s leeway
    complete_launch(client, ehr)
    calls_before = len(ehr.fhir_calls)
    assert client.get("/api/report").status_code == 200
    assert ehr.token_requests[-1]["grant_type"] == ["refresh_token"]
    assert len(ehr.fhir_calls) > calls_before


def test_expired_refresh_token_ends_the_session_clearly(client, rsps):
    ehr = FakeEhr(rsps, refresh_ok=False)
    complete_launch(client, ehr)
    ehr.expire_tokens()
    resp = client.get("/api/report")
    assert resp.status_code == 401
    assert "could not be renewed" in resp.get_json()["error"]
    # The session is gone: the next request is told to relaunch, not retried.
    assert client.get("/report").status_code == 401


def test_confidential_client_authenticates_with_basic(tmp_path, rsps):
    app = make_app(tmp_path, IVIG_CLIENT_SECRET="s3cret")
    client = app.test_client()
    ehr = FakeEhr(rsps, client_secret="s3cret")
    assert complete_launch(client, ehr).status_code == 302
    assert ehr.token_requests[0]["_auth"][0].startswith("Basic ")
    assert "client_secret" not in ehr.token_requests[0]


def test_private_key_jwt_signs_a_short_lived_assertion_and_publishes_jwks(tmp_path, rsps):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from joserfc import jwt
    from joserfc.jwk import KeySet

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "key.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    app = make_app(tmp_path, IVIG_PRIVATE_KEY_FILE=str(pem), IVIG_KEY_ID="k1")
    client = app.test_client()
    jwks = client.get("/.well-known/jwks.json").get_json()
    assert jwks["keys"][0]["kid"] == "k1" and jwks["keys"][0]["alg"] == "RS384"
    assert "d" not in jwks["keys"][0] and "p" not in jwks["keys"][0]
    ehr = FakeEhr(rsps)
    assert complete_launch(client, ehr).status_code == 302
    form = ehr.token_requests[0]
    assert form["client_assertion_type"] == ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]
    token = jwt.decode(form["client_assertion"][0], KeySet.import_key_set(jwks), algorithms=["RS384"])
    assert token.header["kid"] == "k1" and token.header["alg"] == "RS384"
    claims = token.claims
    assert claims["iss"] == claims["sub"] == "app" and claims["aud"] == TOKEN
    assert 0 < claims["exp"] - time.time() <= 300
    assert claims["jti"]


def test_jwks_is_404_without_a_key(client):
    assert client.get("/.well-known/jwks.json").status_code == 404


def test_need_patient_banner_and_smart_style_are_honoured(client, rsps):
    ehr = FakeEhr(rsps)
    complete_launch(client, ehr)
    page = client.get("/report").data.decode()
    patient = next(r for r in ehr.resources if r["resourceType"] == "Patient")
    assert patient["name"][0]["family"] in page
    css = client.get("/smart-style.css").data.decode()
    assert "--smart-bg: #fafafa" in css and "--smart-font: Georgia, serif" in css
    assert "javascript" not in css  # the hostile highlight colour was dropped


def test_sandbox_launch_form_client_id_makes_a_public_client(tmp_path, rsps):
    client = make_app(tmp_path, IVIG_SANDBOX="1").test_client()
    assert b'name="client_id"' in client.get("/launch.html").data
    ehr = FakeEhr(rsps)
    q = authorize_params(start_launch(client, launch=None, client_id="sandbox-app"))
    assert q["client_id"] == "sandbox-app"
    code, state = ehr.approve(start_launch(client, launch=None, client_id="sandbox-app"))
    client.get("/callback", query_string={"code": code, "state": state})
    assert ehr.token_requests[-1]["client_id"] == ["sandbox-app"]


def test_discovery_failure_is_a_clear_502(client, rsps):
    rsps.add(responses.GET, f"{ISS}/.well-known/smart-configuration", status=404)
    rsps.add(responses.GET, f"{ISS}/metadata", status=500)
    resp = client.get("/launch", query_string={"iss": ISS, "launch": "x"})
    assert resp.status_code == 502 and b"discovery failed" in resp.data


def test_plain_http_authorize_endpoint_on_a_public_host_is_refused(client, rsps):
    rsps.add(responses.GET, f"{ISS}/.well-known/smart-configuration",
             json={"authorization_endpoint": "http://ehr.example.org/auth", "token_endpoint": TOKEN})
    resp = client.get("/launch", query_string={"iss": ISS, "launch": "x"})
    assert resp.status_code == 502 and b"not https" in resp.data


def test_session_store_round_trip_is_encrypted(tmp_path):
    store = SqliteStore(str(tmp_path / "s.sqlite"), "k" * 32)
    sid = store.create({"token": {"access_token": "very-secret-token"}})
    assert store.get(sid)["token"]["access_token"] == "very-secret-token"
    assert b"very-secret-token" not in (tmp_path / "s.sqlite").read_bytes()
    other = SqliteStore(str(tmp_path / "s.sqlite"), "another-secret-key-xx")
    assert other.get(sid) is None


def test_fhir_user_of_verified_claims_is_a_relative_reference():
    from smart_app.smart import fhir_user

    assert fhir_user({"fhirUser": "https://ehr.example.org/fhir/Practitioner/dr-7"}) == "Practitioner/dr-7"
    assert fhir_user({"fhirUser": "Practitioner/.."}) is None
    assert fhir_user({"fhirUser": "https://ehr.example.org/fhir/Binary/x"}) is None
    assert fhir_user({}) is None


def test_store_lock_serialises_holders_and_frees_a_dead_holders_key(tmp_path):
    store = SqliteStore(str(tmp_path / "s.sqlite"), "k" * 32)
    assert_holders_exclude_each_other(store, holders=5, hold_seconds=0.05)
    # A holder that died (never released) frees the key after its ttl.
    other = SqliteStore(str(tmp_path / "s.sqlite"), "k" * 32)
    other._db().execute("INSERT INTO locks (key, owner, expires) VALUES ('task|y', 'dead', 0)")
    with store.lock("task|y", wait=1):
        pass
    assert_held_key_times_out(store, other)
