"""Hardening (issue 11) against the real FHIR server behind the SMART stub: a hostile next
link to a second loopback port, two tabs in one browser, the id_token and the requester."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import requests
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from smart_app.config import load_config
from smart_app.web import create_app
from tests.support.launch_client import LaunchClient, handle_of

BASE = "http://127.0.0.1:8000"


def make_app(tmp_path, iss: str):
    app = create_app(load_config({
        "IVIG_ALLOWED_ISSUERS": iss, "IVIG_CLIENT_ID": "ivig-hardening", "IVIG_PUBLIC_BASE_URL": BASE,
        "IVIG_SECRET_KEY": "hardening-secret-0123456789", "IVIG_AS_OF": "2025-06-30",
        "IVIG_SESSION_DB": str(tmp_path / "sessions.sqlite"), "IVIG_REPORT_CACHE_SECONDS": "0"}))
    app.test_client_class = LaunchClient
    return app


def launch(client, stub, patient_id: str) -> str:
    """An EHR launch in this browser (client); returns the launch handle."""
    resp = client.get("/launch", query_string={"iss": stub.base_url, "launch": stub.new_launch(patient_id)})
    assert resp.status_code == 302, resp.data[:300]
    answer = requests.get(resp.headers["Location"], allow_redirects=False, timeout=10)
    q = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    back = client.get("/callback", query_string=q)
    assert back.status_code == 302, back.data[:300]
    return handle_of(back.headers["Location"])


@contextmanager
def listener() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A second server on another loopback port; yields (its base URL, the headers it got)."""
    got: list[dict[str, str]] = []

    def app(environ, start_response):
        got.append(dict(Request(environ).headers))
        return Response('{"resourceType": "Bundle", "type": "searchset"}',
                        content_type="application/fhir+json")(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", got
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_hostile_next_link_to_a_second_loopback_port_gets_no_authorization(tmp_path, smart_stub):
    app = make_app(tmp_path, smart_stub.base_url)
    client = app.test_client()
    launch(client, smart_stub, "ex01-patient")
    with listener() as (other, got):
        smart_stub.next_link = f"{other}/fhir/Observation?patient=ex01-patient&page=2"
        resp = client.get("/api/report")
        smart_stub.next_link = None
    assert resp.status_code == 502
    assert "next-page link points to another server" in resp.get_json()["error"]
    assert not [h for h in got if "Authorization" in h]  # never the token
    assert got == []  # nor any request at all
    assert client.get("/api/report").status_code == 200  # the same launch works once the server behaves


def test_two_tabs_in_one_browser_keep_their_own_patients(tmp_path, smart_stub, sekmet_base):
    app = make_app(tmp_path, smart_stub.base_url)
    browser = app.test_client()
    browser.auto_ctx = False
    first = launch(browser, smart_stub, "ex01-patient")
    second = launch(browser, smart_stub, "ex05-patient")
    page = browser.get("/report", query_string={"ctx": first}).data.decode()
    assert browser.get("/api/report", query_string={"ctx": first}).get_json()["patient"]["reference"] \
        == "Patient/ex01-patient"
    assert browser.get("/api/report", query_string={"ctx": second}).get_json()["patient"]["reference"] \
        == "Patient/ex05-patient"
    # "fetch again" on the older tab still shows its own patient
    again = browser.get("/api/report", query_string={"ctx": first, "refresh": "1"}).get_json()
    assert again["patient"]["reference"] == "Patient/ex01-patient"
    # the older tab's source links and Task button act on its patient
    assert "/source/Observation/ex01-igg-1?ctx=" + first in page
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    task = browser.post("/task", data={"ctx": first, "csrf_token": token},
                        headers={"Accept": "application/json"}).get_json()["task"]
    assert task["for"]["reference"] == "Patient/ex01-patient"


def _fhir_user(app, client):
    return app.extensions["ivig"].store.get(f"launch:{client.ctx}")["fhir_user"]


def test_verified_id_token_names_the_requester_and_a_forged_one_does_not(tmp_path, smart_stub, sekmet_base):
    app = make_app(tmp_path, smart_stub.base_url)
    client = app.test_client()
    launch(client, smart_stub, "ex01-patient")
    assert _fhir_user(app, client) == "Practitioner/stub-practitioner"
    token = client.get("/report").data.decode().split('name="csrf_token" value="')[1].split('"')[0]
    task = client.post("/task", data={"csrf_token": token}, headers={"Accept": "application/json"}).get_json()
    stored = requests.get(f"{sekmet_base}/Task/{task['task']['id']}", timeout=10).json()
    assert stored["requester"] == {"reference": "Practitioner/stub-practitioner"}

    # the same EHR now signs with a key it never published, for an impostor
    smart_stub.id_token_signer = RSAKey.generate_key(2048, parameters={"kid": "stub-1"})
    smart_stub.fhir_user = "Practitioner/impostor"
    other = app.test_client()
    launch(other, smart_stub, "ex07-patient")
    assert _fhir_user(app, other) is None
    page = other.get("/report").data.decode()
    assert "could not be verified" in page
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    task = other.post("/task", data={"csrf_token": token}, headers={"Accept": "application/json"}).get_json()
    stored = requests.get(f"{sekmet_base}/Task/{task['task']['id']}", timeout=10).json()
    assert stored.get("requester") != {"reference": "Practitioner/impostor"}
