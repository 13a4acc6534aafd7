"""Pin the behaviours of the real FHIR server (sekmet-fhir 0.1.1) that our FHIR client relies on,
and check that the SMART stub works end to end in front of it.

Write tests create their own Patient / Task / MedicationRequest so they never change the loaded
example records that the read tests look at.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.support.fhir_server import EXAMPLES_DIR, collection_to_transaction
from tests.support.smart_stub import SmartStub, pkce_pair

FHIR_JSON = "application/fhir+json"
H_JSON = {"Accept": FHIR_JSON}
H_WRITE = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}


def _example(prefix: str) -> dict:
    (path,) = Path(EXAMPLES_DIR).glob(f"{prefix}-*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _ids_of(bundle: dict, rtype: str) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])
            if e["resource"]["resourceType"] == rtype}


def _new_patient(base: str) -> str:
    pid = f"it-{uuid.uuid4().hex[:12]}"
    r = requests.put(f"{base}/Patient/{pid}", headers=H_WRITE, timeout=10,
                     json={"resourceType": "Patient", "id": pid, "name": [{"family": "Integration"}]})
    assert r.status_code == 201, r.text  # PUT to a new id creates it (update-as-create)
    return pid


def _task(pid: str, system: str, value: str) -> dict:
    return {"resourceType": "Task", "status": "requested", "intent": "order",
            "identifier": [{"system": system, "value": value}],
            "for": {"reference": f"Patient/{pid}"}, "description": "integration test"}


# --- reads -----------------------------------------------------------------------------------

def test_metadata_is_fhir_r4(sekmet_base: str) -> None:
    r = requests.get(f"{sekmet_base}/metadata", headers=H_JSON, timeout=10)
    assert r.status_code == 200
    cap = r.json()
    assert cap["resourceType"] == "CapabilityStatement"
    assert cap["fhirVersion"] == "4.0.1"


def test_every_example_patient_is_readable_with_version(sekmet_base: str,
                                                        example_patient_ids: list[str]) -> None:
    assert len(example_patient_ids) == len(list(Path(EXAMPLES_DIR).glob("*.json")))
    with requests.Session() as s:
        for pid in example_patient_ids:
            r = s.get(f"{sekmet_base}/Patient/{pid}", headers=H_JSON, timeout=10)
            assert r.status_code == 200, pid
            assert r.headers["Content-Type"].startswith(FHIR_JSON)
            body = r.json()
            assert body["id"] == pid
            assert body["meta"]["versionId"] == "1"  # meta.versionId is always present
            assert body["meta"]["lastUpdated"]
            assert r.headers["ETag"] == 'W/"1"'


def test_unknown_resource_is_404_with_operation_outcome(sekmet_base: str) -> None:
    r = requests.get(f"{sekmet_base}/Patient/does-not-exist", headers=H_JSON, timeout=10)
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"


def test_observation_search_by_patient(sekmet_base: str) -> None:
    expected = _ids_of(_example("01"), "Observation")
    assert expected
    for value in ("ex01-patient", "Patient/ex01-patient"):  # both reference forms work
        r = requests.get(f"{sekmet_base}/Observation", params={"patient": value, "_count": 200},
                         headers=H_JSON, timeout=10)
        assert r.status_code == 200
        bundle = r.json()
        assert bundle["type"] == "searchset"
        assert bundle["total"] == len(expected)
        assert _ids_of(bundle, "Observation") == expected
        # fullUrl is absolute on the server's base
        assert all(e["fullUrl"].startswith(sekmet_base + "/Observation/") for e in bundle["entry"])


def test_medication_request_include_medication(sekmet_base: str) -> None:
    """_include=MedicationRequest:medication IS supported: the Medication comes back with
    search.mode 'include' and does not count in total."""
    r = requests.get(f"{sekmet_base}/MedicationRequest", headers=H_JSON, timeout=10, params={
        "patient": "ex03-patient", "_include": "MedicationRequest:medication", "_count": 200})
    assert r.status_code == 200
    bundle = r.json()
    modes = {(e["resource"]["resourceType"], e["resource"]["id"]): e["search"]["mode"]
             for e in bundle["entry"]}
    assert modes == {("MedicationRequest", "ex03-ivig-order"): "match",
                     ("Medication", "ex03-gammagard"): "include"}
    assert bundle["total"] == 1


def test_paging_with_count_follows_next_links(sekmet_base: str) -> None:
    expected = _ids_of(_example("01"), "Observation")
    assert len(expected) > 4
    url: str | None = f"{sekmet_base}/Observation?patient=ex01-patient&_count=2"
    seen: list[str] = []
    pages = 0
    with requests.Session() as s:
        while url:
            r = s.get(url, headers=H_JSON, timeout=10)
            assert r.status_code == 200, url
            bundle = r.json()
            assert bundle["total"] == len(expected)
            entries = bundle.get("entry", [])
            assert 0 < len(entries) <= 2
            seen += [e["resource"]["id"] for e in entries]
            links = {link["relation"]: link["url"] for link in bundle.get("link", [])}
            url = links.get("next")
            if url:  # absolute, on the same base; sekmet pages with _count + _offset
                assert url.startswith(sekmet_base + "/Observation?")
            pages += 1
            assert pages <= 20
    assert pages == -(-len(expected) // 2)
    assert sorted(seen) == sorted(expected)  # every match once, none twice


# --- writes ----------------------------------------------------------------------------------

def test_task_identifier_search_and_conditional_create(sekmet_base: str) -> None:
    """If-None-Exist IS supported. The second POST with a matching identifier does not create a
    duplicate: it answers **200** (not 412) with the existing Task in the body and in Location."""
    pid = _new_patient(sekmet_base)
    system, value = "urn:example:it-task", uuid.uuid4().hex
    headers = {**H_WRITE, "If-None-Exist": f"identifier={system}|{value}"}
    first = requests.post(f"{sekmet_base}/Task", json=_task(pid, system, value), headers=headers,
                          timeout=10)
    assert first.status_code == 201, first.text
    tid = first.json()["id"]
    assert first.headers["Location"] == f"{sekmet_base}/Task/{tid}/_history/1"
    assert first.headers["ETag"] == 'W/"1"'

    second = requests.post(f"{sekmet_base}/Task", json=_task(pid, system, value), headers=headers,
                           timeout=10)
    assert second.status_code == 200  # sekmet: 200 + existing resource, never 412 for one match
    assert second.json()["id"] == tid
    assert second.json()["meta"]["versionId"] == "1"  # the existing Task is left untouched

    found = requests.get(f"{sekmet_base}/Task", params={"identifier": f"{system}|{value}"},
                         headers=H_JSON, timeout=10).json()
    assert found["total"] == 1
    assert _ids_of(found, "Task") == {tid}
    # a different value of the same system finds nothing
    none = requests.get(f"{sekmet_base}/Task", params={"identifier": f"{system}|other"},
                        headers=H_JSON, timeout=10).json()
    assert none["total"] == 0

    # If two resources already match, conditional create answers 412 (multiple-matches).
    plain = {**H_WRITE}
    for _ in range(2):
        r = requests.post(f"{sekmet_base}/Task", json=_task(pid, system, "dup-" + value),
                          headers=plain, timeout=10)
        assert r.status_code == 201
    r = requests.post(f"{sekmet_base}/Task", json=_task(pid, system, "dup-" + value), timeout=10,
                      headers={**H_WRITE, "If-None-Exist": f"identifier={system}|dup-{value}"})
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"


def test_update_with_if_match(sekmet_base: str) -> None:
    """If-Match IS supported: the current W/"<versionId>" succeeds, a stale one gets 412."""
    pid = _new_patient(sekmet_base)
    system, value = "urn:example:it-task", uuid.uuid4().hex
    created = requests.post(f"{sekmet_base}/Task", json=_task(pid, system, value), headers=H_WRITE,
                            timeout=10)
    assert created.status_code == 201
    task = created.json()
    version = task["meta"]["versionId"]
    assert version == "1"

    task["status"] = "cancelled"
    ok = requests.put(f"{sekmet_base}/Task/{task['id']}", json=task, timeout=10,
                      headers={**H_WRITE, "If-Match": f'W/"{version}"'})
    assert ok.status_code == 200, ok.text
    assert ok.json()["meta"]["versionId"] == "2"
    assert ok.json()["status"] == "cancelled"
    assert ok.headers["ETag"] == 'W/"2"'

    stale = requests.put(f"{sekmet_base}/Task/{task['id']}", json=task, timeout=10,
                         headers={**H_WRITE, "If-Match": f'W/"{version}"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    current = requests.get(f"{sekmet_base}/Task/{task['id']}", headers=H_JSON, timeout=10).json()
    assert current["meta"]["versionId"] == "2"  # the stale write changed nothing

    # without If-Match an update is last-writer-wins
    blind = requests.put(f"{sekmet_base}/Task/{task['id']}", json=task, headers=H_WRITE, timeout=10)
    assert blind.status_code == 200
    assert blind.json()["meta"]["versionId"] == "3"


def test_transaction_with_put_is_atomic(sekmet_base: str) -> None:
    """Transactions of PUT Type/id keep ids (load_bundle relies on it) and roll back as a whole."""
    pid = f"it-{uuid.uuid4().hex[:12]}"
    good = {"resourceType": "Patient", "id": pid}
    bad = {"resourceType": "Observation", "id": f"{pid}-obs", "status": "final",
           "code": {"text": "x"}, "subject": {"reference": f"Patient/{pid}"}, "bogus": 1}
    tx = collection_to_transaction({"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"resource": good}, {"resource": bad}]})
    r = requests.post(sekmet_base, json=tx, headers=H_WRITE, timeout=10)
    assert r.status_code == 400  # strict structural validation refuses the unknown element
    assert r.json()["resourceType"] == "OperationOutcome"
    assert requests.get(f"{sekmet_base}/Patient/{pid}", headers=H_JSON, timeout=10).status_code == 404

    del bad["bogus"]
    r = requests.post(sekmet_base, json=tx, headers=H_WRITE, timeout=10)
    assert r.status_code == 200, r.text
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["201 Created", "201 Created"]
    assert requests.get(f"{sekmet_base}/Observation/{pid}-obs", headers=H_JSON,
                        timeout=10).json()["subject"]["reference"] == f"Patient/{pid}"


def test_validation_is_structural_only(sekmet_base: str) -> None:
    """sekmet validates structure (unknown elements, datatypes) but not code values: an invalid
    Observation.status is stored as sent. Do not rely on the server to catch bad codes."""
    obs = {"resourceType": "Observation", "status": "not-a-status", "code": {"text": "x"}}
    r = requests.post(f"{sekmet_base}/Observation", json=obs, headers=H_WRITE, timeout=10)
    assert r.status_code == 201
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "effectiveDateTime": "yesterday"}
    r = requests.post(f"{sekmet_base}/Observation", json=obs, headers=H_WRITE, timeout=10)
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "structure"


def test_simulator_is_disabled(sekmet_base: str) -> None:
    """With the simulator on, sekmet dispenses an active MedicationRequest order and touches Tasks
    ~2 s after they are written. run_sekmet() turns it off: nothing changes."""
    pid = _new_patient(sekmet_base)
    mr = {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
          "medicationCodeableConcept": {"text": "immune globulin"},
          "subject": {"reference": f"Patient/{pid}"}}
    r_mr = requests.post(f"{sekmet_base}/MedicationRequest", json=mr, headers=H_WRITE, timeout=10)
    r_task = requests.post(f"{sekmet_base}/Task", json=_task(pid, "urn:example:it-sim", pid),
                           headers=H_WRITE, timeout=10)
    assert r_mr.status_code == r_task.status_code == 201
    time.sleep(3.0)  # the simulator's default delay is 2 s
    for rtype, resp in (("MedicationRequest", r_mr), ("Task", r_task)):
        now = requests.get(f"{sekmet_base}/{rtype}/{resp.json()['id']}", headers=H_JSON,
                           timeout=10).json()
        assert now["meta"]["versionId"] == "1", rtype
        assert now["status"] == resp.json()["status"]
    for rtype in ("MedicationDispense", "MedicationAdministration", "Task"):
        found = requests.get(f"{sekmet_base}/{rtype}", params={"patient": pid}, headers=H_JSON,
                             timeout=10).json()
        assert found["total"] == (1 if rtype == "Task" else 0), rtype


# --- SMART stub ------------------------------------------------------------------------------

REDIRECT = "http://127.0.0.1:9/callback"


def _authorize(stub: SmartStub, *, client_id: str = "ivig-app", scope: str,
               launch: str | None = None, **extra: str) -> tuple[str, str]:
    """Run /authorize like a browser would; return (code, verifier)."""
    verifier, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
              "scope": scope, "state": "st-" + uuid.uuid4().hex, "aud": stub.base_url,
              "code_challenge": challenge, "code_challenge_method": "S256"}
    if launch:
        params["launch"] = launch
    params.update(extra)
    r = requests.get(stub.authorize_url, params=params, allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    loc = r.headers["Location"]
    assert loc.startswith(REDIRECT + "?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()}
    assert q["state"] == params["state"]
    assert "error" not in q, q
    return q["code"], verifier


def _bearer(token: str) -> dict[str, str]:
    return {**H_JSON, "Authorization": f"Bearer {token}"}


def test_smart_stub_end_to_end(smart_stub: SmartStub, sekmet_base: str) -> None:
    stub = smart_stub
    assert stub.base_url.startswith("http://127.0.0.1:") and stub.base_url.endswith("/fhir")

    # discovery
    conf = requests.get(f"{stub.base_url}/.well-known/smart-configuration", timeout=10).json()
    assert conf["authorization_endpoint"] == stub.authorize_url
    assert conf["token_endpoint"] == stub.token_url
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert "launch-ehr" in conf["capabilities"]
    cap = requests.get(f"{stub.base_url}/metadata", headers=H_JSON, timeout=10).json()  # public
    assert cap["rest"][0]["security"]["extension"][0]["extension"][1]["valueUri"] == stub.token_url

    # EHR launch: authorize -> token (PKCE, public client)
    launch = stub.new_launch("ex01-patient")
    code, verifier = _authorize(stub, scope="launch openid fhirUser patient/*.rs", launch=launch)
    assert stub.authorize_requests[-1]["launch"] == launch
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": "ivig-app", "code_verifier": verifier}
    tok = requests.post(stub.token_url, data=form, timeout=10)
    assert tok.status_code == 200, tok.text
    body = tok.json()
    assert body["token_type"] == "Bearer"
    assert body["patient"] == "ex01-patient"
    assert body["scope"] == "launch openid fhirUser patient/*.rs"
    assert body["need_patient_banner"] is True
    assert body["smart_style_url"] == f"{stub.base_url}/smart-style.json"
    # openid fhirUser: a signed id_token for the launching user, verifiable with the stub's JWKS
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import KeySet

    assert conf["jwks_uri"] == f"{stub.root_url}/jwks" and conf["issuer"] == stub.base_url
    keys = KeySet.import_key_set(requests.get(conf["jwks_uri"], timeout=10).json())
    claims = jose_jwt.decode(body["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["iss"] == stub.base_url and claims["aud"] == "ivig-app"
    assert claims["fhirUser"] == f"{stub.base_url}/Practitioner/stub-practitioner"
    assert stub.token_requests[-1]["auth_method"] == "none"
    # the code is single-use
    again = requests.post(stub.token_url, data=form, timeout=10)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    style = requests.get(body["smart_style_url"], timeout=10).json()
    assert "color_background" in style

    # proxied FHIR calls, with upstream URLs rewritten to the stub's base
    access = body["access_token"]
    r = requests.get(f"{stub.base_url}/Patient/ex01-patient", headers=_bearer(access), timeout=10)
    assert r.status_code == 200 and r.json()["id"] == "ex01-patient"
    assert r.headers["ETag"] == 'W/"1"'
    page = requests.get(f"{stub.base_url}/Observation?patient=ex01-patient&_count=2",
                        headers=_bearer(access), timeout=10)
    assert sekmet_base not in page.text
    links = {link["relation"]: link["url"] for link in page.json()["link"]}
    assert links["next"].startswith(stub.base_url + "/Observation?")
    assert requests.get(links["next"], headers=_bearer(access), timeout=10).status_code == 200
    assert ("GET", "Patient/ex01-patient") in stub.fhir_requests
    assert ("GET", "Observation?patient=ex01-patient&_count=2") in stub.fhir_requests

    # writes go through too, with conditional headers and a rewritten Location
    pid = _new_patient(sekmet_base)
    system, value = "urn:example:it-stub", uuid.uuid4().hex
    hdrs = {**_bearer(access), "Content-Type": FHIR_JSON,
            "If-None-Exist": f"identifier={system}|{value}"}
    created = requests.post(f"{stub.base_url}/Task", json=_task(pid, system, value), headers=hdrs,
                            timeout=10)
    assert created.status_code == 201
    assert created.headers["Location"].startswith(f"{stub.base_url}/Task/")
    dup = requests.post(f"{stub.base_url}/Task", json=_task(pid, system, value), headers=hdrs,
                        timeout=10)
    assert dup.status_code == 200 and dup.json()["id"] == created.json()["id"]

    # no / bad token -> 401 OperationOutcome, nothing forwarded
    for headers in (H_JSON, _bearer("nope")):
        r = requests.get(f"{stub.base_url}/Patient/ex01-patient", headers=headers, timeout=10)
        assert r.status_code == 401
        assert r.json()["resourceType"] == "OperationOutcome"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")

    # refresh -> new access token
    refresh = body["refresh_token"]
    r = requests.post(stub.token_url, timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": refresh, "client_id": "ivig-app"})
    assert r.status_code == 200, r.text
    access2 = r.json()["access_token"]
    assert access2 != access and r.json()["patient"] == "ex01-patient"
    assert requests.get(f"{stub.base_url}/Patient/ex01-patient", headers=_bearer(access2),
                        timeout=10).status_code == 200

    # expired access tokens -> 401, a refresh fixes it
    stub.expire_access_tokens()
    assert requests.get(f"{stub.base_url}/Patient/ex01-patient", headers=_bearer(access2),
                        timeout=10).status_code == 401
    r = requests.post(stub.token_url, timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": r.json()["refresh_token"],
        "client_id": "ivig-app"})
    assert r.status_code == 200
    assert requests.get(f"{stub.base_url}/Patient/ex01-patient",
                        headers=_bearer(r.json()["access_token"]), timeout=10).status_code == 200

    # revoked refresh tokens -> 400 invalid_grant
    stub.revoke_refresh_tokens()
    r = requests.post(stub.token_url, timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": refresh, "client_id": "ivig-app"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_smart_stub_standalone_confidential_clients(sekmet_base: str) -> None:
    with SmartStub(sekmet_base, grant_scope=lambda s: "launch/patient patient/Observation.rs",
                   access_token_lifetime=120) as stub:
        stub.default_patient = "ex02-patient"

        # confidential symmetric: client_secret_basic
        code, verifier = _authorize(stub, client_id="conf", scope="launch/patient patient/*.rs")
        basic = base64.b64encode(b"conf:s3cret").decode()
        r = requests.post(stub.token_url, headers={"Authorization": f"Basic {basic}"}, timeout=10,
                          data={"grant_type": "authorization_code", "code": code,
                                "redirect_uri": REDIRECT, "code_verifier": verifier})
        assert r.status_code == 200, r.text
        assert r.json()["patient"] == "ex02-patient"
        assert r.json()["scope"] == "launch/patient patient/Observation.rs"  # grant_scope applied
        assert r.json()["expires_in"] == 120
        rec = stub.token_requests[-1]
        assert (rec["auth_method"], rec["client_id"], rec["client_secret"]) == (
            "client_secret_basic", "conf", "s3cret")

        # confidential asymmetric: private_key_jwt (signature not checked while stub.jwks is None)
        def part(d: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

        assertion = ".".join([part({"alg": "RS384", "typ": "JWT"}),
                              part({"iss": "asym", "sub": "asym", "aud": stub.token_url,
                                    "jti": uuid.uuid4().hex, "exp": int(time.time()) + 60}),
                              "c2ln"])
        code, verifier = _authorize(stub, client_id="asym", scope="launch/patient patient/*.rs")
        r = requests.post(stub.token_url, timeout=10, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_assertion": assertion,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
        assert r.status_code == 200, r.text
        assert stub.token_requests[-1]["auth_method"] == "private_key_jwt"
        assert stub.token_requests[-1]["client_assertion"] == assertion

        # PKCE verifier mismatch and redirect_uri mismatch are refused
        code, _ = _authorize(stub, client_id="pub", scope="launch/patient patient/*.rs")
        r = requests.post(stub.token_url, timeout=10, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": "pub", "code_verifier": "wrong-verifier-" + "x" * 40})
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        code, verifier = _authorize(stub, client_id="pub", scope="launch/patient patient/*.rs")
        r = requests.post(stub.token_url, timeout=10, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT + "x",
            "client_id": "pub", "code_verifier": verifier})
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("change,error", [
    ({"aud": "http://127.0.0.1:1/fhir"}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"launch": "not-issued"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"state": ""}, "invalid_request"),
])
def test_smart_stub_authorize_refuses_bad_requests(smart_stub: SmartStub, change: dict,
                                                   error: str) -> None:
    _, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": "ivig-app", "redirect_uri": REDIRECT,
              "scope": "launch patient/*.rs", "state": "s1", "aud": smart_stub.base_url,
              "code_challenge": challenge, "code_challenge_method": "S256", **change}
    r = requests.get(smart_stub.authorize_url, params=params, allow_redirects=False, timeout=10)
    assert r.status_code == 302
    q = parse_qs(urlsplit(r.headers["Location"]).query)
    assert q["error"] == [error]
    assert "code" not in q
    assert smart_stub.authorize_requests[-1]["error"] == error
    no_redirect = requests.get(smart_stub.authorize_url, allow_redirects=False, timeout=10,
                               params={k: v for k, v in params.items() if k != "redirect_uri"})
    assert no_redirect.status_code == 400


def test_smart_stub_open_server_mode_and_delay(sekmet_base: str) -> None:
    with SmartStub(sekmet_base, smart_configuration=False, delay=0.2) as stub:
        assert requests.get(f"{stub.base_url}/.well-known/smart-configuration",
                            timeout=10).status_code == 404
        t0 = time.monotonic()
        r = requests.get(f"{stub.base_url}/Patient/ex03-patient", headers=H_JSON, timeout=10)
        assert time.monotonic() - t0 >= 0.2
        assert r.status_code == 200 and r.json()["id"] == "ex03-patient"  # no token needed
        assert stub.fhir_requests == [("GET", "Patient/ex03-patient")]


def test_smart_stub_verifies_assertions_when_jwks_set(sekmet_base: str) -> None:
    jwt = pytest.importorskip("jwt")
    ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "k1"
    with SmartStub(sekmet_base) as stub:
        stub.jwks = {"keys": [jwk]}

        def token_with(signing_key) -> requests.Response:
            code, verifier = _authorize(stub, client_id="asym", scope="launch/patient patient/*.rs")
            assertion = jwt.encode({"iss": "asym", "sub": "asym", "aud": stub.token_url,
                                    "jti": uuid.uuid4().hex, "exp": int(time.time()) + 60},
                                   signing_key, algorithm="ES384", headers={"kid": "k1"})
            return requests.post(stub.token_url, timeout=10, data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "code_verifier": verifier, "client_assertion": assertion,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})

        assert token_with(key).status_code == 200
        other = token_with(ec.generate_private_key(ec.SECP384R1()))
        assert other.status_code == 401 and other.json()["error"] == "invalid_client"
