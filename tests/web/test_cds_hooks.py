"""CDS Hooks 2.0 service: discovery, order-sign / order-select with prefetch, the client's JWT,
allow-listed fhirServer, and the card, each shape checked field by field against the spec."""

from __future__ import annotations

import re
import time
from datetime import date
from pathlib import Path

import pytest
import responses
from fake_ehr import ISS, FakeEhr
from web_helpers import complete_launch, make_app

from fhir_mappings import load_record
from smart_app.cds_hooks import PREFETCH_TYPE, SERVICE_ID, build_card, card_summary, md
from smart_app.search_plan import OPTIONAL_TYPES, PATIENT_TYPES
from smart_app.report import evaluate_record
from tests.support.cds_client import NON_IG_DRAFT, CdsTestClient, hook_request

BASE = "http://127.0.0.1:8000"
SERVICE = f"{BASE}/cds-services/{SERVICE_ID}"
JWKS_URL = "https://ehr.example.org/.well-known/jwks.json"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AS_OF = date(2025, 6, 30)
IVIG_EXAMPLES = [p.name for p in sorted(EXAMPLES.glob("[0-9][0-9]-*.json")) if not p.name.startswith("12-")]

# CDS Hooks 2.0 attributes (specification, "Discovery", "Calling a CDS Service", "CDS Service
# Response", "Card Attributes", "Source", "Link").
SERVICE_FIELDS = {"hook": True, "title": False, "description": True, "id": True, "prefetch": False,
                  "usageRequirements": False}
RESPONSE_FIELDS = {"cards", "systemActions"}
CARD_FIELDS = {"uuid": False, "summary": True, "detail": False, "indicator": True, "source": True,
               "suggestions": False, "selectionBehavior": False, "overrideReasons": False, "links": False,
               "extension": False}
SOURCE_FIELDS = {"label": True, "url": False, "icon": False, "topic": False}
LINK_FIELDS = {"label": True, "url": True, "type": True, "appContext": False}


@pytest.fixture
def ehr_client():
    return CdsTestClient()


@pytest.fixture
def cds(tmp_path, rsps, ehr_client):
    """(app, test client, CDS test client) with that client registered and its JWKS served."""
    rsps.add(responses.GET, JWKS_URL, json=ehr_client.jwks())
    app = make_app(tmp_path, IVIG_CDS_CLIENTS=f"{ehr_client.iss}|{JWKS_URL}")
    app.extensions["ivig"].client_options = {"backoff": 0}
    return app, app.test_client(), ehr_client


def call(test_client, ehr, body, *, token=None, service=SERVICE_ID):
    token = token if token is not None else ehr.token(f"{BASE}/cds-services/{service}")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return test_client.post(f"/cds-services/{service}", json=body, headers=headers)


def check_fields(obj: dict, spec: dict[str, bool], what: str) -> None:
    assert set(obj) <= set(spec), f"{what}: fields not in CDS Hooks 2.0: {set(obj) - set(spec)}"
    for name, required in spec.items():
        if required:
            assert name in obj, f"{what}: {name} is REQUIRED"
        if name in obj:  # "JSON elements SHALL NOT be null or empty"
            assert obj[name] not in (None, "", [], {}), f"{what}: {name} is null or empty"


def check_card(card: dict) -> None:
    check_fields(card, CARD_FIELDS, "card")
    assert isinstance(card["summary"], str) and len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    check_fields(card["source"], SOURCE_FIELDS, "card.source")
    assert isinstance(card["source"]["label"], str)
    assert "suggestions" not in card and "selectionBehavior" not in card
    for link in card.get("links", []):
        check_fields(link, LINK_FIELDS, "card.link")
        assert link["type"] in ("absolute", "smart")
    if "detail" in card:
        assert isinstance(card["detail"], str)
    if "extension" in card:
        assert isinstance(card["extension"], dict)


# --- discovery -------------------------------------------------------------------------------
def test_discovery_lists_order_sign_and_order_select_with_prefetch(cds):
    _, client, _ = cds
    resp = client.get("/cds-services")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == {"services"}
    services = {s["id"]: s for s in body["services"]}
    assert {s["hook"] for s in services.values()} == {"order-sign", "order-select"}
    assert services[SERVICE_ID]["hook"] == "order-sign"
    for service in services.values():
        check_fields(service, SERVICE_FIELDS, "service")
        assert all(isinstance(service[k], str) for k in ("hook", "title", "description", "id", "usageRequirements"))
        prefetch = service["prefetch"]
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in prefetch.items())
        # Only root-level context tokens; everything the engine reads is asked for.
        for template in prefetch.values():
            assert "{{" not in template.replace("{{context.patientId}}", "")
    assert set(PREFETCH_TYPE.values()) == {"Patient", *PATIENT_TYPES, *OPTIONAL_TYPES}


# --- a hook call with prefetch -----------------------------------------------------------------
def test_order_sign_with_prefetch_answers_one_card(cds):
    _, client, ehr = cds
    resp = call(client, ehr, hook_request("01-cvid-seed-002.json"))
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert set(body) <= RESPONSE_FIELDS and "cards" in body
    assert len(body["cards"]) == 1
    card = body["cards"][0]
    check_card(card)
    assert card["summary"] == "IVIG (BCBS MT): 3 documentation items missing"
    assert card["indicator"] == "warning"
    assert card["source"]["label"].startswith("BCBS of Montana Medical Policy")
    assert card["links"] == [{"label": card["links"][0]["label"], "url": f"{BASE}/launch", "type": "smart"}]
    for display in ("Pre-treatment (baseline) IgG level", "Date immune globulin therapy started", "Current body weight"):
        assert f"**{md(display)}**" in card["detail"]
    ext = card["extension"]["ivig-coverage-check"]
    assert ext["missing_documentation"] == ["igg-pretreatment", "ivig-start-date", "body-weight"]
    assert (ext["ruleset"], ext["chosen_by"], ext["order"]) == ("bcbsmt-ig-2013", "coverage", "MedicationRequest/ex01-ivig-order")


@pytest.mark.parametrize("name", IVIG_EXAMPLES, ids=lambda n: n[:2])
def test_card_missing_items_equal_the_reports(cds, name):
    _, client, ehr = cds
    card = call(client, ehr, hook_request(name)).get_json()["cards"][0]
    check_card(card)
    record = load_record((EXAMPLES / name).read_bytes(), name)
    report = evaluate_record(record, None, AS_OF)
    ext = card["extension"]["ivig-coverage-check"]
    assert ext["missing_documentation"] == [m["code"] for m in report["missing_documentation"]]
    assert (ext["determination"], ext["ruleset"]) == (report["determination"], report["ruleset"]["id"])
    for item in report["missing_documentation"]:
        assert f"- **{md(item['display'])}**" in card["detail"]
    expected = {"criteria-met": "info", "documentation-missing": "warning", "no-indication": "warning",
                "criteria-not-met": "critical", "not-covered": "critical"}[report["determination"]]
    assert card["indicator"] == expected


def test_card_equals_the_report_page_of_a_smart_launch(cds, rsps):
    app, client, ehr = cds
    fake = FakeEhr(rsps)
    assert complete_launch(client, fake).status_code == 302
    report = client.get("/api/report").get_json()
    card = call(client, ehr, hook_request("01-cvid-seed-002.json")).get_json()["cards"][0]
    ext = card["extension"]["ivig-coverage-check"]
    assert ext["missing_documentation"] == [m["code"] for m in report["missing_documentation"]]
    assert (ext["ruleset"], ext["order"]) == (report["ruleset"]["id"], report["order"]["reference"])


def test_order_select_evaluates_the_selected_order(cds):
    _, client, ehr = cds
    body = hook_request("07-cidp-missing-diagnostics.json", hook="order-select")
    card = call(client, ehr, body).get_json()["cards"][0]
    assert card["summary"] == "IVIG (BCBS MT): 2 documentation items missing"
    # The same request on the order-select registration.
    body["hookInstance"] = "another-instance"
    assert len(call(client, ehr, body, service="ivig-coverage-select").get_json()["cards"]) == 1
    # Only a non-IVIG order selected: no card.
    body["context"]["draftOrders"]["entry"].append({"resource": {**NON_IG_DRAFT, "subject": {"reference": "Patient/ex07-patient"}}})
    body["context"]["selections"] = ["MedicationRequest/draft-metformin"]
    assert call(client, ehr, body).get_json() == {"cards": []}


def test_a_new_draft_next_to_an_active_order_is_the_order_evaluated(cds):
    _, client, ehr = cds
    body = hook_request("01-cvid-seed-002.json")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft.update(id="renewal-draft", authoredOn="2025-06-29")
    draft["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 400  # 400 g: far too high
    card = call(client, ehr, body).get_json()["cards"][0]
    ext = card["extension"]["ivig-coverage-check"]
    assert ext["order"] == "MedicationRequest/renewal-draft"  # not the stored active order


def test_non_ivig_order_gets_no_card_and_nothing_is_fetched(cds, rsps):
    _, client, ehr = cds
    body = hook_request("12-no-indication.json", draft=NON_IG_DRAFT, prefetch=False,
                        fhirServer=ISS, fhirAuthorization={"access_token": "t", "token_type": "Bearer",
                                                           "expires_in": 300, "scope": "patient/*.rs",
                                                           "subject": "ivig-cds"})
    resp = call(client, ehr, body)
    assert resp.status_code == 200 and resp.get_json() == {"cards": []}
    assert [c.request.url for c in rsps.calls if c.request.url.startswith(ISS)] == []  # no FHIR request


def test_every_examples_summary_stays_under_140_characters(cds):
    _, client, ehr = cds
    for name in IVIG_EXAMPLES:
        card = call(client, ehr, hook_request(name)).get_json()["cards"][0]
        assert len(card["summary"]) < 140 and card["summary"].startswith("IVIG (BCBS MT): ")


def test_summary_is_cut_below_140_characters():
    report = {"determination": "not-covered", "ruleset": {"id": "x" * 200, "title": "t", "version": "1"},
              "payer": {"chosen_by": "requested"}, "indication": {"coverage": "unlisted", "label": "l"},
              "missing_documentation": [], "criteria": []}
    assert len(card_summary(report)) == 139
    assert build_card(report, BASE)["summary"].endswith("…")


# --- the client's JWT -------------------------------------------------------------------------------
def _refused(resp, text):
    assert resp.status_code == 401, resp.get_json()
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert text in resp.get_json()["error"]
    return resp


@pytest.mark.parametrize("make,text", [
    (lambda ehr: "", "no Authorization"),
    (lambda ehr: "not-a-jwt", "not a JWT"),
    (lambda ehr: ehr.token(SERVICE, key=CdsTestClient().key), "signature does not verify"),
    (lambda ehr: ehr.token(SERVICE, exp=int(time.time()) - 120), "expired"),
    (lambda ehr: ehr.token(SERVICE, aud=f"{BASE}/cds-services"), f"aud must be {SERVICE}"),
    (lambda ehr: ehr.token(SERVICE, drop=("jti",)), "missing claim"),
    (lambda ehr: ehr.token(SERVICE, drop=("exp",)), "missing claim"),
    (lambda ehr: ehr.token(SERVICE, iat=int(time.time()) + 3600, exp=int(time.time()) + 3660), "iat"),
    (lambda ehr: ehr.token(SERVICE, exp=int(time.time()) + 86400), "valid for more than"),
    (lambda ehr: ehr.token(SERVICE, iss="https://evil.example.org"), "not a CDS client registered"),
    (lambda ehr: ehr.token(SERVICE, header={"jku": "https://evil.example.org/jwks.json"}), "jku"),
    (lambda ehr: ehr.token(SERVICE, header={"kid": "unknown-kid"}), "signature does not verify"),
    (lambda ehr: ehr.symmetric_token(SERVICE), "asymmetric"),
], ids=["none", "garbage", "bad-signature", "expired", "wrong-aud", "no-jti", "no-exp", "future-iat",
        "too-long-lived", "unknown-issuer", "foreign-jku", "unknown-kid", "hs256"])
def test_a_bad_jwt_is_refused_with_401(cds, make, text):
    _, client, ehr = cds
    _refused(call(client, ehr, hook_request("01-cvid-seed-002.json"), token=make(ehr) or ""), text)


def test_a_replayed_jwt_is_refused(cds):
    _, client, ehr = cds
    token = ehr.token(SERVICE)
    assert call(client, ehr, hook_request("02-cvid-complete.json"), token=token).status_code == 200
    _refused(call(client, ehr, hook_request("02-cvid-complete.json"), token=token), "already used")


def test_a_jwt_for_one_service_does_not_open_the_other(cds):
    _, client, ehr = cds
    token = ehr.token(SERVICE)
    body = hook_request("02-cvid-complete.json", hook="order-select")
    _refused(call(client, ehr, body, token=token, service="ivig-coverage-select"), "aud must be")


def test_rsa_clients_and_aud_as_an_array_are_accepted(tmp_path, rsps):
    rsa = CdsTestClient(alg="RS384", kid="rsa-1")
    rsps.add(responses.GET, JWKS_URL, json=rsa.jwks())
    app = make_app(tmp_path, IVIG_CDS_CLIENTS=f"{rsa.iss}|{JWKS_URL}")
    resp = call(app.test_client(), rsa, hook_request("02-cvid-complete.json"), token=rsa.token(SERVICE, aud=[SERVICE]))
    assert resp.status_code == 200
    assert resp.get_json()["cards"][0]["summary"] == "IVIG (BCBS MT): coverage criteria met"


def test_no_registered_client_means_every_call_is_refused(tmp_path, ehr_client):
    app = make_app(tmp_path)
    _refused(call(app.test_client(), ehr_client, hook_request("01-cvid-seed-002.json")), "not a CDS client registered")


def test_an_unreadable_jwks_is_a_refusal(tmp_path, rsps, ehr_client):
    rsps.add(responses.GET, JWKS_URL, status=500)
    app = make_app(tmp_path, IVIG_CDS_CLIENTS=f"{ehr_client.iss}|{JWKS_URL}")
    _refused(call(app.test_client(), ehr_client, hook_request("01-cvid-seed-002.json")), "JWK Set could not be read")


# --- the request ----------------------------------------------------------------------------------
@pytest.mark.parametrize("change,text", [
    (lambda b: b.pop("hookInstance"), "hookInstance"),
    (lambda b: b.update(hook="patient-view"), "hook must be"),
    (lambda b: b["context"].pop("patientId"), "patientId"),
    (lambda b: b["context"].pop("userId"), "userId"),
    (lambda b: b["context"].update(draftOrders=[]), "draftOrders"),
    (lambda b: b["prefetch"].update(patient={"resourceType": "Patient", "id": "someone-else"}), "prefetch.patient"),
    (lambda b: b["prefetch"].update(observations=["x"]), "prefetch.observations"),
    (lambda b: b.update(fhirAuthorization={"access_token": "t"}), "fhirServer is required"),
    (lambda b: b.update(fhirServer=ISS, fhirAuthorization={"access_token": "t", "token_type": "MAC", "expires_in": 1,
                                                           "scope": "s", "subject": "c"}), "token_type"),
])
def test_a_malformed_request_is_a_400(cds, change, text):
    _, client, ehr = cds
    body = hook_request("01-cvid-seed-002.json")
    change(body)
    resp = call(client, ehr, body)
    assert resp.status_code == 400 and text in resp.get_json()["error"]


def test_unknown_service_is_a_404(cds):
    _, client, ehr = cds
    resp = call(client, ehr, hook_request("01-cvid-seed-002.json"), service="nope")
    assert resp.status_code == 404 and resp.get_json()["error"]


# --- without (all of) the prefetch --------------------------------------------------------------
def _auth(scope: str = "patient/*.rs", token: str = "") -> dict:
    return {"access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": scope, "subject": "ivig-cds"}


def test_no_prefetch_and_no_fhir_server_is_a_412(cds):
    _, client, ehr = cds
    resp = call(client, ehr, hook_request("01-cvid-seed-002.json", prefetch=False))
    assert resp.status_code == 412 and "prefetch is incomplete" in resp.get_json()["error"]


def test_a_fhir_server_not_on_the_allow_list_is_refused_and_never_contacted(cds, rsps):
    _, client, ehr = cds
    evil = "https://evil.example.org/fhir"
    body = hook_request("01-cvid-seed-002.json", prefetch=False, fhirServer=evil, fhirAuthorization=_auth(token="secret"))
    resp = call(client, ehr, body)
    assert resp.status_code == 403 and "allowed FHIR servers" in resp.get_json()["error"]
    assert not [c for c in rsps.calls if c.request.url.startswith(evil)]


def test_missing_and_paged_prefetch_keys_are_fetched_with_the_hooks_token(cds, rsps):
    app, client, ehr = cds
    fake = FakeEhr(rsps)
    token = "hook-token-123"
    fake.tokens.add(token)
    body = hook_request("01-cvid-seed-002.json", fhirServer=ISS, fhirAuthorization=_auth(token=token))
    del body["prefetch"]["observations"]
    body["prefetch"]["conditions"]["link"] = [{"relation": "next", "url": f"{ISS}/Condition?page=2"}]
    resp = call(client, ehr, body)
    assert resp.status_code == 200, resp.get_json()
    fetched = {path for _, path in fake.fhir_calls}
    assert fetched == {"Observation", "Condition"}  # only what the prefetch did not hold
    assert resp.get_json()["cards"][0]["summary"] == "IVIG (BCBS MT): 3 documentation items missing"


def test_types_the_token_cannot_read_are_not_checked_not_missing(cds, rsps):
    _, client, ehr = cds
    fake = FakeEhr(rsps)
    fake.tokens.add("narrow")
    body = hook_request("01-cvid-seed-002.json", fhirServer=ISS,
                        fhirAuthorization=_auth(scope="patient/Patient.rs patient/Condition.rs", token="narrow"))
    for key in ("medicationAdministrations", "medicationDispenses", "medicationStatements"):
        del body["prefetch"][key]
    card = call(client, ehr, body).get_json()["cards"][0]
    ext = card["extension"]["ivig-coverage-check"]
    assert "ivig-start-date" in ext["not_checked"] and "ivig-start-date" not in ext["missing_documentation"]
    assert "**Could not be checked**" in card["detail"]
    assert not fake.fhir_calls  # nothing the token may not read was asked for


def test_a_token_the_fhir_server_refuses_is_a_412(cds, rsps):
    _, client, ehr = cds
    FakeEhr(rsps)
    body = hook_request("01-cvid-seed-002.json", prefetch=False, fhirServer=ISS, fhirAuthorization=_auth(token="revoked"))
    resp = call(client, ehr, body)
    assert resp.status_code == 412 and "refused" in resp.get_json()["error"]


def test_nothing_identifying_or_secret_reaches_the_log(cds, caplog):
    _, client, ehr = cds
    caplog.set_level("DEBUG")
    token = ehr.token(SERVICE)
    body = hook_request("01-cvid-seed-002.json")
    assert call(client, ehr, body, token=token).status_code == 200
    call(client, ehr, body, token=token)  # replayed: refused and logged
    text = caplog.text
    assert "CDS order-sign: warning card" in text and "replayed" in text
    for secret in (token, "ex01", "Test Patient", body["hookInstance"]):
        assert secret not in text


# --- the demo's CDS client exists only in the demo -------------------------------------------------
def test_production_has_no_demo_client_routes_or_key(tmp_path):
    app = make_app(tmp_path)
    client = app.test_client()
    assert client.post("/demo/order-sign", data={"patient": "ex01-patient"}).status_code == 404
    assert client.get("/demo/cds-client/jwks.json").status_code == 404
    assert "ivig_demo_cds_key" not in app.extensions


def test_the_demo_client_is_verified_like_any_other(tmp_path):
    from smart_app.config import load_config
    from smart_app.demo_cds import client_jwt, demo_cds_client
    from smart_app.web import create_app

    config = load_config({"IVIG_PUBLIC_BASE_URL": BASE, "IVIG_SECRET_KEY": "demo-secret-0123456789",
                          "IVIG_SESSION_DB": str(tmp_path / "d.sqlite")},
                         demo_iss="http://127.0.0.1:1/fhir", cds_clients=(demo_cds_client(BASE),))
    demo_app = create_app(config)
    client = demo_app.test_client()
    jwks = client.get("/demo/cds-client/jwks.json").get_json()
    assert [k["kid"] for k in jwks["keys"]] == ["ivig-demo-cds-client"] and "d" not in jwks["keys"][0]
    # A token signed by another key under the demo's kid and iss is refused: no bypass.
    other = CdsTestClient(iss=f"{BASE}/demo/ehr", kid="ivig-demo-cds-client")
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{BASE}/demo/cds-client/jwks.json", json=jwks)
        forged = call(client, other, hook_request("01-cvid-seed-002.json"), token=other.token(SERVICE))
        assert forged.status_code == 401
        real = client_jwt(demo_app.extensions["ivig_demo_cds_key"], f"{BASE}/demo/ehr", SERVICE)
        assert call(client, other, hook_request("01-cvid-seed-002.json"), token=real).status_code == 200


def test_markdown_blocks_keep_text_as_text():
    from smart_app.demo_cds import markdown_blocks

    blocks = markdown_blocks("**Policy:** a \\<b\\> c\n\n**Missing (1):**\n- **IgG**: x \\* y")
    assert blocks == [
        {"type": "p", "parts": [{"bold": True, "text": "Policy:"}, {"bold": False, "text": " a <b> c"}]},
        {"type": "p", "parts": [{"bold": True, "text": "Missing (1):"}]},
        {"type": "list", "items": [[{"bold": True, "text": "IgG"}, {"bold": False, "text": ": x * y"}]]},
    ]


@pytest.mark.parametrize("value,problem", [
    ("https://ehr.example.org", "expected ISS|JWKS_URL"),
    ("https://ehr.example.org|http://ehr.example.org/jwks.json", "must be https"),
    ("https://ehr.example.org|ftp://x/jwks", "not an http(s) JWKS URL"),
    ("a|https://a.example.org/j, a|https://b.example.org/j", "listed twice"),
])
def test_cds_clients_configuration_is_checked_at_start_up(value, problem):
    from smart_app.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config({"IVIG_CDS_CLIENTS": value})


def test_cds_clients_configuration_reads_pairs():
    from smart_app.config import CdsClient, load_config

    config = load_config({"IVIG_CDS_CLIENTS": "https://a.example.org|https://a.example.org/jwks.json, "
                                              "http://127.0.0.1:9000|http://127.0.0.1:9000/jwks"})
    assert config.cds_clients == (CdsClient("https://a.example.org", "https://a.example.org/jwks.json"),
                                  CdsClient("http://127.0.0.1:9000", "http://127.0.0.1:9000/jwks"))
    assert config.cds_client("https://a.example.org").jwks_url.endswith("/jwks.json")
    assert config.cds_client("https://b.example.org") is None
