"""The authorization and token requests, field by field, for each kind of client (SMART App
Launch 2.x; what Inferno's STU2.2 client checks look at), so they keep passing."""

from __future__ import annotations

import base64
import re
import time
from urllib.parse import unquote_plus, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fake_ehr import AUTHORIZE, ISS, TOKEN, FakeEhr, s256
from joserfc import jwt
from joserfc.jwk import KeySet
from web_helpers import BASE, authorize_params, make_app, start_launch

UNRESERVED = re.compile(r"^[A-Za-z0-9\-._~]+$")  # RFC 7636 §4.1


def _key_file(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "key.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return str(pem)


@pytest.fixture(params=["public", "confidential-symmetric", "confidential-asymmetric"])
def kind(request):
    return request.param


def _app(tmp_path, kind):
    env = {"public": {}, "confidential-symmetric": {"IVIG_CLIENT_SECRET": "s3cret-value"},
           "confidential-asymmetric": {"IVIG_PRIVATE_KEY_FILE": _key_file(tmp_path), "IVIG_KEY_ID": "k1"}}[kind]
    return make_app(tmp_path, **env)


@pytest.mark.parametrize("launch", ["launch-abc", None], ids=["ehr-launch", "standalone"])
def test_authorization_and_token_requests_field_by_field(tmp_path, rsps, kind, launch):
    app = _app(tmp_path, kind)
    client = app.test_client()
    ehr = FakeEhr(rsps, client_secret="s3cret-value" if kind == "confidential-symmetric" else None)
    url = start_launch(client, launch=launch)

    # --- the authorization request ---------------------------------------------------------
    assert url.startswith(AUTHORIZE + "?")
    q = authorize_params(url)
    expected = {"response_type", "client_id", "redirect_uri", "scope", "state", "aud", "code_challenge",
                "code_challenge_method", "nonce"} | ({"launch"} if launch else set())
    assert set(q) == expected
    assert q["response_type"] == "code"
    assert q["client_id"] == "app"
    assert q["redirect_uri"] == f"{BASE}/callback"
    assert q["aud"] == ISS
    if launch:
        assert q["launch"] == launch
    scopes = q["scope"].split()
    assert ("launch" in scopes) == bool(launch) and ("launch/patient" in scopes) != bool(launch)
    assert {"openid", "fhirUser", "offline_access", "patient/Task.crus"} <= set(scopes)
    assert len(q["state"]) >= 22 and UNRESERVED.match(q["state"])  # >= 128 bits, URL-safe
    assert q["code_challenge_method"] == "S256"
    assert re.fullmatch(r"[A-Za-z0-9_\-]{43}", q["code_challenge"])  # base64url(SHA-256), no padding
    assert q["nonce"] and q["nonce"] != q["state"]
    again = authorize_params(start_launch(client, launch=launch))
    assert again["state"] != q["state"] and again["code_challenge"] != q["code_challenge"]

    # --- the token request -----------------------------------------------------------------
    code, state = ehr.approve(url)
    assert state == q["state"]
    resp = client.get("/callback", query_string={"code": code, "state": state})
    assert resp.status_code == 302 and urlsplit(resp.headers["Location"]).path == "/report"
    form = {k: v[0] for k, v in ehr.token_requests[-1].items() if k != "_auth"}
    auth = ehr.token_requests[-1]["_auth"][0]
    assert form["grant_type"] == "authorization_code"
    assert form["code"] == code
    assert form["redirect_uri"] == q["redirect_uri"]
    verifier = form["code_verifier"]
    assert 43 <= len(verifier) <= 128 and UNRESERVED.match(verifier)
    assert s256(verifier) == q["code_challenge"]
    assert "client_secret" not in form  # never in the body
    if kind == "public":
        assert set(form) == {"grant_type", "code", "redirect_uri", "code_verifier", "client_id"}
        assert form["client_id"] == "app" and auth == ""
    elif kind == "confidential-symmetric":
        assert set(form) <= {"grant_type", "code", "redirect_uri", "code_verifier", "client_id"}
        scheme, _, value = auth.partition(" ")
        user, _, password = base64.b64decode(value).decode().partition(":")
        assert scheme == "Basic" and unquote_plus(user) == "app" and unquote_plus(password) == "s3cret-value"
    else:
        assert set(form) == {"grant_type", "code", "redirect_uri", "code_verifier", "client_assertion_type",
                             "client_assertion"} | ({"client_id"} & set(form))
        assert auth == ""
        assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        jwks = client.get("/.well-known/jwks.json").get_json()
        token = jwt.decode(form["client_assertion"], KeySet.import_key_set(jwks), algorithms=["RS384"])
        assert token.header["alg"] == "RS384" and token.header["kid"] == "k1" and token.header["typ"] == "JWT"
        claims = token.claims
        assert claims["iss"] == claims["sub"] == "app" and claims["aud"] == TOKEN
        assert 0 < claims["exp"] - time.time() <= 300 and claims["jti"]

    # --- the refresh request ---------------------------------------------------------------
    ehr.expire_tokens()
    assert client.get("/api/report").status_code == 200
    refresh = {k: v[0] for k, v in ehr.token_requests[-1].items() if k != "_auth"}
    assert refresh["grant_type"] == "refresh_token" and refresh["refresh_token"]
    assert "client_secret" not in refresh and "code_verifier" not in refresh
    if kind == "confidential-symmetric":
        assert ehr.token_requests[-1]["_auth"][0].startswith("Basic ")
    elif kind == "confidential-asymmetric":
        assert refresh["client_assertion_type"].endswith("jwt-bearer")
    else:
        assert refresh["client_id"] == "app"
