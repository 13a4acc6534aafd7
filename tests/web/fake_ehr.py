"""A mocked EHR for the web-flow tests: SMART discovery, token endpoint and a FHIR API,
served through ``responses`` so the app's real HTTP code (requests, authlib) runs.

It checks what a real EHR would: PKCE S256, single-use codes, redirect_uri, client
authentication, and bearer tokens on every FHIR call. Task writes honour
``If-None-Exist`` and ``If-Match`` like a conforming server.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses
from joserfc import jwt
from joserfc.jwk import RSAKey

ISS = "https://ehr.example.org/fhir"
AUTHORIZE = "https://ehr.example.org/auth/authorize"
TOKEN = "https://ehr.example.org/auth/token"
JWKS = "https://ehr.example.org/auth/jwks"
FHIR_USER = "Practitioner/dr-7"
_SIGNING_KEY = RSAKey.generate_key(2048, parameters={"kid": "ehr-1"})
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def example_resources(name: str) -> list[dict[str, Any]]:
    bundle = json.loads((EXAMPLES / name).read_text())
    return [e["resource"] for e in bundle["entry"]]


class FakeEhr:
    def __init__(self, rsps: responses.RequestsMock, *, example: str = "01-cvid-seed-002.json",
                 discovery: str = "v2", grant: str | None = None, client_secret: str | None = None,
                 refresh_ok: bool = True, expires_in: int = 3600, style: bool = True):
        self.rsps = rsps
        self.discovery = discovery  # v2 | v1 | capability-statement | open
        self.grant = grant  # scope string the token endpoint grants (None = as requested)
        self.client_secret = client_secret
        self.refresh_ok = refresh_ok
        self.expires_in = expires_in
        self.style = style
        # The id_token (issued for "openid fhirUser"): signed with id_token_key, published at
        # JWKS. Tests spoil it with id_token_claims (a function of the claims) or sign it with
        # id_token_signer (a key the EHR never published).
        self.id_token_key = _SIGNING_KEY
        self.id_token_signer: RSAKey | None = None
        self.id_token_claims = None
        self.resources = example_resources(example)
        self.patient_id = next(r["id"] for r in self.resources if r["resourceType"] == "Patient")
        self.codes: dict[str, dict[str, Any]] = {}
        self.tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.token_requests: list[dict[str, list[str]]] = []
        self.fhir_calls: list[tuple[str, str]] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        self.task_ids = itertools.count(1)
        # Next FHIR GET answers: (status, headers, body), or an exception to raise (a timeout).
        self.fail_next: list[Any] = []
        # A hostile server: every search Bundle names this as its next page.
        self.next_link: str | None = None
        self.lock = threading.Lock()
        self._register()

    # --- registration -----------------------------------------------------------------------
    def _register(self) -> None:
        r = self.rsps
        if self.discovery in ("v2", "v1"):
            caps = ["launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
                    "context-ehr-patient", "sso-openid-connect", f"permission-{self.discovery}"]
            r.add(responses.GET, f"{ISS}/.well-known/smart-configuration", json={
                "issuer": ISS, "jwks_uri": JWKS,
                "authorization_endpoint": AUTHORIZE, "token_endpoint": TOKEN, "capabilities": caps,
                "code_challenge_methods_supported": ["S256"]})
            r.add_callback(responses.GET, JWKS, callback=lambda _req: (
                200, {"Content-Type": "application/json"},
                json.dumps({"keys": [self.id_token_key.as_dict(private=False)]})))
        else:
            r.add(responses.GET, f"{ISS}/.well-known/smart-configuration", status=404)
        security = {}
        if self.discovery == "capability-statement":
            security = {"extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                                       "extension": [{"url": "authorize", "valueUri": AUTHORIZE},
                                                     {"url": "token", "valueUri": TOKEN}]}]}
        r.add(responses.GET, f"{ISS}/metadata", json={
            "resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
            "fhirVersion": "4.0.1", "format": ["json"], "rest": [{"mode": "server", "security": security}]})
        r.add_callback(responses.POST, TOKEN, callback=self._token)
        r.add(responses.GET, "https://ehr.example.org/style.json",
              json={"color_background": "#fafafa", "color_text": "#111", "font_family_body": "Georgia, serif",
                    "color_highlight": "url(javascript:alert(1))"})
        r.add_callback(responses.GET, re.compile(re.escape(ISS) + r"/(?!metadata|\.well-known).*"),
                       callback=self._fhir_get)
        # POST {type}/_search: the same search as GET, its parameters in the form body.
        r.add_callback(responses.POST, re.compile(re.escape(ISS) + r"/[A-Za-z]+/_search"),
                       callback=self._fhir_search_post)
        r.add_callback(responses.POST, f"{ISS}/Task", callback=self._task_post)
        r.add_callback(responses.PUT, re.compile(re.escape(ISS) + r"/Task/.*"), callback=self._task_put)

    # --- authorization server ------------------------------------------------------------------
    def approve(self, authorize_url: str, *, patient: str | None = None) -> tuple[str, str]:
        """What the EHR's authorize screen does: check the request, issue a code."""
        assert authorize_url.startswith(AUTHORIZE + "?")
        q = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        assert q["response_type"] == "code" and q["code_challenge_method"] == "S256"
        assert q["aud"] == ISS
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": q["code_challenge"], "redirect_uri": q["redirect_uri"],
                            "scope": q["scope"], "client_id": q["client_id"],
                            "patient": patient or self.patient_id, "nonce": q.get("nonce")}
        return code, q["state"]

    def _issue(self, scope: str, patient: str) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        self.tokens.add(access)
        self.refresh_tokens.add(refresh)
        body = {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in,
                "scope": self.grant if self.grant is not None else scope, "refresh_token": refresh,
                "patient": patient, "need_patient_banner": True}
        if self.style:
            body["smart_style_url"] = "https://ehr.example.org/style.json"
        return body

    def _token(self, request):
        form = {k: v for k, v in parse_qs(request.body).items()}
        self.token_requests.append({**form, "_auth": [request.headers.get("Authorization", "")]})
        get = lambda k: (form.get(k) or [None])[0]  # noqa: E731
        if self.client_secret is not None:
            expected = "Basic " + base64.b64encode(f"app:{self.client_secret}".encode()).decode()
            if request.headers.get("Authorization") != expected:
                return 401, {}, json.dumps({"error": "invalid_client"})
        if get("grant_type") == "authorization_code":
            grant = self.codes.pop(get("code") or "", None)
            if grant is None or s256(get("code_verifier") or "") != grant["challenge"] \
                    or get("redirect_uri") != grant["redirect_uri"]:
                return 400, {}, json.dumps({"error": "invalid_grant"})
            body = self._issue(grant["scope"], grant["patient"])
            if {"openid", "fhirUser"} <= set(body["scope"].split()):
                body["id_token"] = self.id_token(grant["client_id"], grant["nonce"])
            return 200, {"Content-Type": "application/json"}, json.dumps(body)
        if get("grant_type") == "refresh_token":
            if not self.refresh_ok or get("refresh_token") not in self.refresh_tokens:
                return 400, {}, json.dumps({"error": "invalid_grant"})
            self.refresh_tokens.discard(get("refresh_token"))
            body = self._issue("", self.patient_id)
            body.pop("patient")
            body["scope"] = self.grant or "launch openid fhirUser patient/*.rs patient/Task.crus"
            return 200, {"Content-Type": "application/json"}, json.dumps(body)
        return 400, {}, json.dumps({"error": "unsupported_grant_type"})

    def id_token(self, client_id: str, nonce: str | None) -> str:
        now = int(time.time())
        claims = {"iss": ISS, "sub": "dr-7", "aud": client_id, "iat": now, "exp": now + 300,
                  "fhirUser": f"{ISS}/{FHIR_USER}"}
        if nonce:
            claims["nonce"] = nonce
        if self.id_token_claims is not None:
            claims = self.id_token_claims(claims)
        key = self.id_token_signer or self.id_token_key
        return jwt.encode({"alg": "RS256", "kid": key.kid or "ehr-1"}, claims, key)

    def expire_tokens(self) -> None:
        self.tokens.clear()

    # --- FHIR API ------------------------------------------------------------------------------
    def _authorized(self, request) -> bool:
        if self.discovery == "open":
            return True
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.tokens

    def _unauthorized(self):
        return 401, {}, json.dumps({"resourceType": "OperationOutcome",
                                    "issue": [{"severity": "error", "code": "login"}]})

    def _fhir_search_post(self, request):
        body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
        path = urlsplit(request.url).path[len(urlsplit(ISS).path) + 1:-len("/_search")]
        return self._fhir_get(request, path=path, query=parse_qs(body))

    def _fhir_get(self, request, path: str | None = None, query: dict | None = None):
        if path is None:
            path = urlsplit(request.url).path[len(urlsplit(ISS).path) + 1:]
            query = parse_qs(urlsplit(request.url).query)
        with self.lock:
            self.fhir_calls.append(("GET", path))
            if self.fail_next:
                failure = self.fail_next.pop(0)
                if isinstance(failure, Exception):
                    raise failure
                return failure
        if not self._authorized(request):
            return self._unauthorized()
        if "/" in path:
            rtype, rid = path.split("/", 1)
            found = [r for r in self._all() if r["resourceType"] == rtype and r["id"] == rid]
            if not found:
                return 404, {}, json.dumps({"resourceType": "OperationOutcome",
                                            "issue": [{"severity": "error", "code": "not-found"}]})
            return 200, {"Content-Type": "application/fhir+json"}, json.dumps(found[0])
        if path == "Task":
            ident = (query.get("identifier") or [""])[0]
            matches = [t for t in self.tasks.values() if _ident(t) == ident]
        else:
            matches = [r for r in self.resources if r["resourceType"] == path]
            if path == "MedicationRequest" and "_include" in query:
                matches += [r for r in self.resources if r["resourceType"] == "Medication"]
            if path == "Coverage" and "_include" in query:
                matches += [r for r in self.resources if r["resourceType"] == "Organization"]
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(matches),
                  "entry": [{"resource": r} for r in matches]}
        if self.next_link and path != "Task":
            bundle["link"] = [{"relation": "next", "url": self.next_link}]
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(bundle)

    def _all(self) -> list[dict[str, Any]]:
        return self.resources + list(self.tasks.values())

    def _task_post(self, request):
        with self.lock:
            self.fhir_calls.append(("POST", "Task"))
            if not self._authorized(request):
                return self._unauthorized()
            task = json.loads(request.body)
            cond = request.headers.get("If-None-Exist", "")
            ident = parse_qs(cond).get("identifier", [""])[0]
            existing = [t for t in self.tasks.values() if _ident(t) == ident]
            if existing:
                return 200, {"Content-Type": "application/fhir+json"}, json.dumps(existing[0])
            tid = str(next(self.task_ids))
            task["id"] = tid
            task["meta"] = {"versionId": "1"}
            self.tasks[tid] = task
            return 201, {"Content-Type": "application/fhir+json", "Location": f"{ISS}/Task/{tid}/_history/1"}, \
                json.dumps(task)

    def _task_put(self, request):
        with self.lock:
            self.fhir_calls.append(("PUT", "Task"))
            if not self._authorized(request):
                return self._unauthorized()
            tid = urlsplit(request.url).path.rsplit("/", 1)[1]
            current = self.tasks.get(tid)
            version = (current or {}).get("meta", {}).get("versionId")
            if current is None or request.headers.get("If-Match") != f'W/"{version}"':
                return 412, {}, json.dumps({"resourceType": "OperationOutcome",
                                            "issue": [{"severity": "error", "code": "conflict"}]})
            task = json.loads(request.body)
            task["meta"] = {"versionId": str(int(version) + 1)}
            self.tasks[tid] = task
            return 200, {"Content-Type": "application/fhir+json"}, json.dumps(task)


def _ident(task: dict[str, Any]) -> str:
    i = (task.get("identifier") or [{}])[0]
    return f"{i.get('system')}|{i.get('value')}"
