"""A test-only SMART App Launch authorization server in front of a real FHIR server.

``SmartStub(upstream_base)`` runs a werkzeug server in a thread on 127.0.0.1 and plays the EHR:

* ``{base}/.well-known/smart-configuration`` - discovery (404 with ``smart_configuration=False``).
* ``{root}/authorize`` - auto-approves a valid request and redirects with ``code`` and ``state``.
* ``{root}/token`` - ``authorization_code`` (PKCE S256, single-use codes) and ``refresh_token``.
* ``{base}/smart-style.json`` - a small SMART style document.
* ``{root}/jwks`` - the key set that verifies the ``id_token`` issued with ``openid fhirUser``
  (RS256, signed with ``id_token_key``; claims ``iss`` = ``base_url``, ``aud`` = client id,
  ``nonce`` from the authorize request, ``fhirUser`` = ``fhir_user``). ``id_token_claims``
  (a function of the claims) lets a test forge or spoil them; ``id_token_signer`` signs
  with another key.
* ``{base}/metadata`` - upstream CapabilityStatement (public), with the SMART ``oauth-uris``
  security extension added when SMART is on.
* everything else under ``{base}`` - reverse proxy to ``upstream_base``; needs
  ``Authorization: Bearer <valid access token>`` unless ``smart_configuration=False``.

``base_url`` (``http://127.0.0.1:PORT/fhir``) is the ``iss`` to launch the app with. Nothing here is
meant to be secure: it exists to exercise an app's SMART client code against a real FHIR server.

Recorded for assertions (all lists are appended under a lock):

* ``authorize_requests``: one dict per ``/authorize`` call (query parameters plus ``error`` if refused).
* ``token_requests``: one dict per ``/token`` call: ``grant_type``, ``auth_method``
  (``none`` / ``client_secret_basic`` / ``private_key_jwt``), ``client_id``, ``client_secret``,
  ``client_assertion``, ``client_assertion_claims`` (unverified), ``form`` and ``error``.
* ``fhir_requests``: ``(method, path_and_query)`` for each proxied request, the path relative to
  the base (``"Observation?patient=ex01-patient"``, ``"Patient/ex01-patient"``).
* ``rejected_requests``: the same for FHIR requests refused with 401.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import unquote_plus, urlencode

import requests
import requests.adapters
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    """No per-request lines on stderr (they would carry codes and tokens in URLs)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass
from werkzeug.wrappers import Request, Response

__all__ = ["DEFAULT_CAPABILITIES", "SMART_STYLE", "SmartStub", "pkce_pair", "s256"]

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
    "client-confidential-asymmetric", "context-ehr-patient", "context-standalone-patient",
    "permission-v2", "permission-v1", "permission-patient", "sso-openid-connect",
)
SMART_STYLE: dict[str, Any] = {
    "color_background": "#edeae3",
    "color_error": "#9e2d2d",
    "color_highlight": "#69b5ce",
    "color_modal_backdrop": "",
    "color_success": "#498e49",
    "color_text": "#303030",
    "dim_border_radius": "6px",
    "dim_font_size": "13px",
    "dim_spacing_size": "20px",
    "font_family_body": "Georgia, Times, 'Times New Roman', serif",
    "font_family_heading": "'HelveticaNeue-Light', Helvetica, Arial, 'Lucida Grande', sans-serif",
}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept", "If-None-Exist", "If-Match", "If-None-Match",
                             "If-Modified-Since", "Prefer")
PASSED_RESPONSE_HEADERS = ("ETag", "Last-Modified", "Content-Location", "Location")
FHIR_JSON = "application/fhir+json"


def s256(verifier: str) -> str:
    """PKCE S256 code challenge: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_pair() -> tuple[str, str]:
    """A fresh (code_verifier, code_challenge) pair, for tests that play the client."""
    verifier = secrets.token_urlsafe(48)
    return verifier, s256(verifier)


def _b64url_json(part: str) -> dict[str, Any]:
    padded = part + "=" * (-len(part) % 4)
    value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    if not isinstance(value, dict):
        raise TypeError("not a JSON object")
    return value


def _operation_outcome(code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


class _OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    patient: str | None
    launch: str | None
    issued: float = field(default_factory=time.time)
    nonce: str | None = None


@dataclass
class _Token:
    client_id: str
    scope: str
    patient: str | None
    expires_at: float
    valid: bool = True


class SmartStub:
    """SMART authorization server + authenticating reverse proxy for ``upstream_base``.

    Settable attributes (between requests): ``default_patient`` (patient for standalone launches),
    ``jwks`` (a JWK Set dict: when set, ``private_key_jwt`` assertions are signature-checked with
    PyJWT), ``client_secrets`` (``{client_id: secret}``; listed clients must present that secret
    with ``client_secret_basic``), ``rotate_refresh_tokens`` (issue a new refresh token on every
    refresh and invalidate the old one), ``delay`` and ``grant_scope``.
    """

    def __init__(
        self,
        upstream_base: str,
        *,
        capabilities: Iterable[str] = DEFAULT_CAPABILITIES,
        grant_scope: Callable[[str], str] | None = None,
        delay: float = 0.0,
        access_token_lifetime: int = 3600,
        smart_configuration: bool = True,
    ):
        self.upstream_base = upstream_base.rstrip("/")
        self.capabilities = list(capabilities)
        self.grant_scope = grant_scope
        self.delay = delay
        self.access_token_lifetime = access_token_lifetime
        self.smart_configuration = smart_configuration
        self.default_patient: str | None = None
        self.jwks: dict[str, Any] | None = None
        self.client_secrets: dict[str, str] = {}
        self.rotate_refresh_tokens = False
        self.id_token_key = RSAKey.generate_key(2048, parameters={"kid": "stub-1", "use": "sig"})
        self.id_token_signer: RSAKey | None = None  # another key: a forged signature
        self.id_token_claims: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.fhir_user = "Practitioner/stub-practitioner"
        # A hostile server: every proxied search Bundle names this URL as its next page.
        self.next_link: str | None = None

        self.authorize_requests: list[dict[str, Any]] = []
        self.token_requests: list[dict[str, Any]] = []
        self.fhir_requests: list[tuple[str, str]] = []
        self.rejected_requests: list[tuple[str, str]] = []

        self._lock = threading.Lock()
        self._launches: dict[str, str] = {}
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._upstream: requests.Session | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self.root_url = ""
        self.base_url = ""

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> str:
        if self._server is not None:
            raise RuntimeError("SmartStub already started")
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True,
                                   request_handler=_QuietHandler)
        self.port = self._server.server_port
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root_url}/fhir"
        self._thread = threading.Thread(target=self._server.serve_forever, name="smart-stub",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            upstream, self._upstream = self._upstream, None
        if upstream is not None:
            upstream.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- endpoints and test controls -----------------------------------------------------
    @property
    def authorize_url(self) -> str:
        return f"{self.root_url}/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.root_url}/token"

    def new_launch(self, patient_id: str) -> str:
        """An opaque ``launch`` value for an EHR launch in the context of ``patient_id``."""
        launch = secrets.token_urlsafe(12)
        with self._lock:
            self._launches[launch] = patient_id
        return launch

    def issue_token(self, client_id: str, scope: str, patient: str | None = None) -> dict[str, Any]:
        """A token response issued without a launch: what the EHR's authorization server hands a
        registered CDS service for one hook call (CDS Hooks ``fhirAuthorization``)."""
        return self._issue(client_id, scope, patient)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (the next FHIR call gets 401)."""
        with self._lock:
            for tok in self._access.values():
                tok.valid = False

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token issued so far is refused (400 invalid_grant)."""
        with self._lock:
            for tok in self._refresh.values():
                tok.valid = False

    def smart_config(self) -> dict[str, Any]:
        return {
            "issuer": self.base_url,
            "authorization_endpoint": self.authorize_url,
            "token_endpoint": self.token_url,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt", "none"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "scopes_supported": [
                "openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
                "patient/*.rs", "patient/*.read", "user/*.rs", "user/*.read",
                "patient/Task.cruds", "patient/Task.write",
            ],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "capabilities": list(self.capabilities),
            "jwks_uri": f"{self.root_url}/jwks",
        }

    # --- WSGI ----------------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            response = self._route(request)
        except Exception as exc:  # noqa: BLE001 - a stub bug must fail the test, not hang it
            response = self._json(500, _operation_outcome("exception", f"SmartStub error: {exc!r}"),
                                  FHIR_JSON)
        if self.delay:  # simulated network latency, on every answer (FHIR, discovery, OAuth)
            time.sleep(self.delay)
        return response(environ, start_response)

    def _route(self, req: Request) -> Response:
        path = req.path
        if path == "/authorize" and req.method in ("GET", "POST"):
            return self._authorize(req)
        if path == "/token" and req.method == "POST":
            return self._token(req)
        if path == "/jwks" and req.method == "GET":
            return self._json(200, {"keys": [{**self.id_token_key.as_dict(private=False), "alg": "RS256"}]})
        if path == "/fhir/.well-known/smart-configuration" and req.method == "GET":
            if not self.smart_configuration:
                return self._json(404, {"error": "not_found"})
            return self._json(200, self.smart_config())
        if path == "/fhir/smart-style.json" and req.method == "GET":
            return self._json(200, SMART_STYLE)
        if path == "/fhir" or path.startswith("/fhir/"):
            return self._proxy(req, path[len("/fhir"):].lstrip("/"))
        return self._json(404, {"error": "not_found", "path": path})

    @staticmethod
    def _json(status: int, body: Any, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(body), status=status, content_type=content_type,
                        headers=headers or {})

    # --- /authorize ------------------------------------------------------------------------
    def _authorize(self, req: Request) -> Response:
        params = {k: v for k, v in (req.values.items(multi=False))}
        record: dict[str, Any] = dict(params)
        with self._lock:
            self.authorize_requests.append(record)
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri or not params.get("client_id"):
            # RFC 6749 4.1.2.1: never redirect to an unverified redirect_uri
            record["error"] = "invalid_request"
            return self._json(400, {"error": "invalid_request",
                                    "error_description": "client_id and redirect_uri are required"})
        state = params.get("state")

        def fail(error: str, description: str) -> Response:
            record["error"] = error
            query = {"error": error, "error_description": description}
            if state:
                query["state"] = state
            sep = "&" if "?" in redirect_uri else "?"
            return Response(status=302, headers={"Location": f"{redirect_uri}{sep}{urlencode(query)}"})

        if params.get("response_type") != "code":
            return fail("unsupported_response_type", "response_type must be 'code'")
        if not state:
            return fail("invalid_request", "state is required")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
        if (params.get("aud") or "").rstrip("/") != self.base_url:
            return fail("invalid_request", f"aud must be {self.base_url}")
        scope = params.get("scope", "")
        launch = params.get("launch")
        patient: str | None = None
        if launch:
            with self._lock:
                patient = self._launches.get(launch)
            if patient is None:
                return fail("invalid_request", "unknown launch")
        elif "launch/patient" in scope.split():
            patient = self.default_patient
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(params["client_id"], redirect_uri, params["code_challenge"],
                                      scope, patient, launch, nonce=params.get("nonce"))
        record["code"] = code
        sep = "&" if "?" in redirect_uri else "?"
        return Response(status=302, headers={
            "Location": f"{redirect_uri}{sep}{urlencode({'code': code, 'state': state})}"})

    # --- /token ------------------------------------------------------------------------------
    def _token(self, req: Request) -> Response:
        form = {k: v for k, v in req.form.items(multi=False)}
        record: dict[str, Any] = {"grant_type": form.get("grant_type"), "form": form}
        with self._lock:
            self.token_requests.append(record)
        try:
            client_id = self._client_auth(req, form, record)
            grant = form.get("grant_type")
            if grant == "authorization_code":
                body = self._grant_code(form, client_id)
            elif grant == "refresh_token":
                body = self._grant_refresh(form, client_id)
            else:
                raise _OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported")
        except _OAuthError as exc:
            record["error"] = exc.error
            headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
            if exc.status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="smart-stub"'
            return self._json(exc.status, {"error": exc.error, "error_description": exc.description},
                              headers=headers)
        record["response"] = body
        return self._json(200, body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _client_auth(self, req: Request, form: dict[str, str], record: dict[str, Any]) -> str:
        """Identify the client (none / client_secret_basic / private_key_jwt); return client_id."""
        auth = req.headers.get("Authorization", "")
        if form.get("client_secret"):
            raise _OAuthError("invalid_client", "client_secret_post is not supported", 401)
        if auth.lower().startswith("basic "):
            try:
                raw = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise _OAuthError("invalid_client", "malformed Basic credentials", 401) from exc
            cid, sep, secret = raw.partition(":")
            if not sep or not cid:
                raise _OAuthError("invalid_client", "malformed Basic credentials", 401)
            # RFC 6749 2.3.1: id and secret are form-encoded before Basic encoding
            cid, secret = unquote_plus(cid), unquote_plus(secret)
            record.update(auth_method="client_secret_basic", client_id=cid, client_secret=secret)
            expected = self.client_secrets.get(cid)
            if expected is not None and not secrets.compare_digest(expected, secret):
                raise _OAuthError("invalid_client", "wrong client secret", 401)
            if form.get("client_id") and form["client_id"] != cid:
                raise _OAuthError("invalid_client", "client_id differs from Basic credentials", 401)
            return cid
        if "client_assertion" in form:
            assertion = form["client_assertion"]
            record.update(auth_method="private_key_jwt", client_assertion=assertion)
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise _OAuthError("invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}", 401)
            parts = assertion.split(".")
            try:
                if len(parts) != 3:
                    raise ValueError("not a compact JWS")
                header, claims = _b64url_json(parts[0]), _b64url_json(parts[1])
            except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
                raise _OAuthError("invalid_client", f"malformed client_assertion: {exc}", 401) from exc
            record["client_assertion_header"] = header
            record["client_assertion_claims"] = claims
            cid = claims.get("iss")
            record["client_id"] = cid
            if not cid or claims.get("sub") != cid:
                raise _OAuthError("invalid_client", "client_assertion iss and sub must be the client_id", 401)
            aud = claims.get("aud")
            if self.token_url not in (aud if isinstance(aud, list) else [aud]):
                raise _OAuthError("invalid_client", f"client_assertion aud must be {self.token_url}", 401)
            if form.get("client_id") and form["client_id"] != cid:
                raise _OAuthError("invalid_client", "client_id differs from client_assertion iss", 401)
            if self.jwks is not None:
                self._verify_assertion(assertion, header)
            return cid
        cid = form.get("client_id")
        record.update(auth_method="none", client_id=cid)
        if not cid:
            raise _OAuthError("invalid_client", "no client authentication and no client_id", 401)
        return cid

    def _verify_assertion(self, assertion: str, header: dict[str, Any]) -> None:
        import jwt  # PyJWT: needed only when a test sets stub.jwks

        keys = [k for k in (self.jwks or {}).get("keys", [])
                if not header.get("kid") or k.get("kid") == header.get("kid")]
        last = "no matching key in stub.jwks"
        for jwk in keys:
            try:
                key = jwt.PyJWK.from_dict(jwk).key
                jwt.decode(assertion, key, algorithms=["RS384", "ES384", "RS256", "ES256"],
                           audience=self.token_url, options={"require": ["exp", "iss", "sub", "jti"]})
                return
            except jwt.PyJWTError as exc:
                last = str(exc)
        raise _OAuthError("invalid_client", f"client_assertion verification failed: {last}", 401)

    def _issue(self, client_id: str, scope: str, patient: str | None,
               refresh_token: str | None = None) -> dict[str, Any]:
        access = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self._access[access] = _Token(client_id, scope, patient, now + self.access_token_lifetime)
            if refresh_token is None:
                refresh_token = secrets.token_urlsafe(32)
                self._refresh[refresh_token] = _Token(client_id, scope, patient, float("inf"))
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_token_lifetime,
            "scope": scope,
            "need_patient_banner": True,
            "smart_style_url": f"{self.base_url}/smart-style.json",
            "refresh_token": refresh_token,
        }
        if patient is not None:
            body["patient"] = patient
        return body

    def _grant_code(self, form: dict[str, str], client_id: str) -> dict[str, Any]:
        code_value = form.get("code", "")
        with self._lock:
            code = self._codes.pop(code_value, None)  # single use, even when the request fails
        if code is None:
            raise _OAuthError("invalid_grant", "unknown or already used authorization code")
        if code.client_id != client_id:
            raise _OAuthError("invalid_grant", "code was issued to another client")
        if form.get("redirect_uri") != code.redirect_uri:
            raise _OAuthError("invalid_grant", "redirect_uri does not match the authorize request")
        verifier = form.get("code_verifier")
        if not verifier:
            raise _OAuthError("invalid_request", "code_verifier is required (PKCE)")
        if s256(verifier) != code.code_challenge:
            raise _OAuthError("invalid_grant", "code_verifier does not match code_challenge")
        scope = self.grant_scope(code.scope) if self.grant_scope else code.scope
        body = self._issue(client_id, scope, code.patient)
        if {"openid", "fhirUser"} <= set(scope.split()):
            body["id_token"] = self.id_token(client_id, code.nonce)
        return body

    def id_token(self, client_id: str, nonce: str | None) -> str:
        """An OpenID Connect id_token for the launching user (see the module docstring)."""
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.base_url, "sub": "stub-user", "aud": client_id, "iat": now,
                                  "exp": now + 300, "fhirUser": f"{self.base_url}/{self.fhir_user}"}
        if nonce is not None:
            claims["nonce"] = nonce
        if self.id_token_claims is not None:
            claims = self.id_token_claims(claims)
        key = self.id_token_signer or self.id_token_key
        return jwt.encode({"alg": "RS256", "kid": key.kid or "stub-1"}, claims, key)

    def _grant_refresh(self, form: dict[str, str], client_id: str) -> dict[str, Any]:
        value = form.get("refresh_token", "")
        with self._lock:
            tok = self._refresh.get(value)
            if tok is None or not tok.valid:
                tok = None
            elif self.rotate_refresh_tokens:
                tok.valid = False
        if tok is None:
            raise _OAuthError("invalid_grant", "refresh token is unknown, revoked or already used")
        if tok.client_id != client_id:
            raise _OAuthError("invalid_grant", "refresh token was issued to another client")
        scope = tok.scope
        if form.get("scope"):
            asked = form["scope"].split()
            if not set(asked) <= set(scope.split()):
                raise _OAuthError("invalid_scope", "refresh may not widen the granted scope")
            scope = " ".join(asked)
        return self._issue(client_id, scope, tok.patient,
                           refresh_token=None if self.rotate_refresh_tokens else value)

    # --- FHIR reverse proxy ----------------------------------------------------------------
    def _session(self) -> requests.Session:
        # one pooled session shared by the handler threads (urllib3's pool is thread-safe; no
        # cookies or auth are kept on it)
        with self._lock:
            if self._upstream is None:
                self._upstream = requests.Session()
                adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=64)
                self._upstream.mount("http://", adapter)
                self._upstream.mount("https://", adapter)
            return self._upstream

    def _valid_bearer(self, req: Request) -> bool:
        scheme, _, token = req.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        with self._lock:
            tok = self._access.get(token.strip())
            return tok is not None and tok.valid and tok.expires_at > time.time()

    def _rewrite(self, text: str) -> str:
        return text.replace(self.upstream_base, self.base_url)

    def _proxy(self, req: Request, rel: str) -> Response:
        query = req.query_string.decode("latin-1")
        rel_q = f"{rel}?{query}" if query else rel
        public = rel == "metadata" and req.method in ("GET", "HEAD")
        if self.smart_configuration and not public and not self._valid_bearer(req):
            with self._lock:
                self.rejected_requests.append((req.method, rel_q))
            return self._json(
                401, _operation_outcome("login", "missing, invalid or expired access token"), FHIR_JSON,
                headers={"WWW-Authenticate": 'Bearer realm="smart-stub", error="invalid_token"'})
        with self._lock:
            self.fhir_requests.append((req.method, rel_q))
        url = f"{self.upstream_base}/{rel}" if rel else self.upstream_base
        if query:
            url = f"{url}?{query}"
        headers = {h: req.headers[h] for h in FORWARDED_REQUEST_HEADERS if h in req.headers}
        body = req.get_data() if req.method in ("POST", "PUT", "PATCH") else None
        try:
            upstream = self._session().request(req.method, url, data=body, headers=headers,
                                               timeout=60, allow_redirects=False)
        except requests.RequestException as exc:
            return self._json(502, _operation_outcome("transient", f"upstream unreachable: {exc}"),
                              FHIR_JSON)
        content = upstream.content
        ctype = upstream.headers.get("Content-Type", "")
        if content and ("json" in ctype or "xml" in ctype or ctype.startswith("text/")):
            text = self._rewrite(content.decode(upstream.encoding or "utf-8", errors="replace"))
            if public and self.smart_configuration and "json" in ctype:
                text = self._with_oauth_uris(text)
            elif self.next_link and req.method == "GET" and "/" not in rel and "json" in ctype:
                text = self._with_next_link(text)
            content = text.encode("utf-8")
        out_headers = {}
        for h in PASSED_RESPONSE_HEADERS:
            if h in upstream.headers:
                out_headers[h] = self._rewrite(upstream.headers[h])
        response = Response(content, status=upstream.status_code, headers=out_headers)
        if ctype:
            response.headers["Content-Type"] = ctype
        elif not content:
            del response.headers["Content-Type"]
        return response

    def _with_next_link(self, text: str) -> str:
        try:
            bundle = json.loads(text)
        except ValueError:
            return text
        if isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle":
            bundle["link"] = [lk for lk in bundle.get("link", []) if lk.get("relation") != "next"]
            bundle["link"].append({"relation": "next", "url": self.next_link})
        return json.dumps(bundle)

    def _with_oauth_uris(self, text: str) -> str:
        """Advertise SMART in the CapabilityStatement (rest.security), as SMART servers do."""
        try:
            cap = json.loads(text)
        except ValueError:
            return text
        if not isinstance(cap, dict) or cap.get("resourceType") != "CapabilityStatement":
            return text
        cap = copy.deepcopy(cap)
        for rest in cap.get("rest", []):
            sec = rest.setdefault("security", {})
            sec["service"] = [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR"}]}]
            sec["extension"] = [{
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": "authorize", "valueUri": self.authorize_url},
                              {"url": "token", "valueUri": self.token_url}],
            }]
            sec["description"] = "SMART App Launch (test stub)"
        return json.dumps(cap)
