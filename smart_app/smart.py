"""SMART App Launch 2.x client side: discovery, scopes, authorisation and tokens.

authlib does the OAuth 2.0 mechanics (PKCE S256, client authentication, refresh); this
module adds what SMART specifies on top: discovery from
``.well-known/smart-configuration`` with the CapabilityStatement ``oauth-uris`` fallback,
v2 scopes with a v1 fallback, ``aud``, reading the granted scopes back, and asymmetric
client authentication (``private_key_jwt`` with RS384/ES384 and a JWKS to publish).

Nothing here logs a token, a code or a patient id.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import ECKey, RSAKey

from .config import is_loopback

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
# Resource types the app reads; Task is also written.
READ_TYPES = ("Patient", "Observation", "Condition", "MedicationRequest", "Medication",
              "MedicationAdministration", "MedicationDispense", "MedicationStatement",
              "Immunization", "Procedure", "DiagnosticReport", "AllergyIntolerance", "Coverage")
ASSERTION_LIFETIME = 300  # SMART: the client assertion expires within five minutes


class SmartError(Exception):
    """Launch or token failure. ``str()`` is one line, safe to show (no token, no code)."""


@dataclass(frozen=True)
class SmartConfiguration:
    authorization_endpoint: str
    token_endpoint: str
    capabilities: frozenset[str] = frozenset()
    scopes_supported: tuple[str, ...] = ()
    from_capability_statement: bool = False

    @property
    def v2_scopes(self) -> bool:
        """v2 (``.rs``) scopes when advertised; v1 (``.read``) for servers that only know v1."""
        if "permission-v2" in self.capabilities:
            return True
        if "permission-v1" in self.capabilities:
            return False
        return any(re.search(r"\.[cruds]+$", s) for s in self.scopes_supported)


def _check_endpoint(url: Any, what: str) -> str:
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise SmartError(f"the server's SMART configuration has no usable {what}")
    if url.startswith("http://") and not is_loopback(url):
        raise SmartError(f"the server's {what} is not https; refusing to send credentials to it")
    return url


def discover(http: requests.Session, iss: str, timeout: float) -> SmartConfiguration | None:
    """The server's SMART configuration, or None for an open server (no authorisation).

    ``{iss}/.well-known/smart-configuration`` first; if that is absent, the
    CapabilityStatement's ``oauth-uris`` security extension.
    """
    base = iss.rstrip("/")
    try:
        resp = http.get(f"{base}/.well-known/smart-configuration",
                        headers={"Accept": "application/json"}, timeout=timeout)
        if resp.status_code == 200:
            try:
                doc = resp.json()
            except ValueError:
                doc = None
            if isinstance(doc, dict) and doc.get("authorization_endpoint"):
                if not _offers_app_launch(doc):
                    return None  # e.g. backend services only: no user-facing authorisation
                caps = doc.get("capabilities") or []
                scopes = doc.get("scopes_supported") or []
                return SmartConfiguration(
                    authorization_endpoint=_check_endpoint(doc.get("authorization_endpoint"),
                                                           "authorization endpoint"),
                    token_endpoint=_check_endpoint(doc.get("token_endpoint"), "token endpoint"),
                    capabilities=frozenset(c for c in caps if isinstance(c, str)),
                    scopes_supported=tuple(s for s in scopes if isinstance(s, str)),
                )
        meta = http.get(f"{base}/metadata", headers={"Accept": "application/fhir+json"}, timeout=timeout)
    except requests.RequestException:
        raise SmartError("the FHIR server did not answer (discovery failed)") from None
    if meta.status_code != 200:
        raise SmartError(f"the FHIR server answered {meta.status_code} to /metadata (discovery failed)")
    try:
        cs = meta.json()
    except ValueError:
        raise SmartError("the FHIR server's /metadata is not JSON (discovery failed)") from None
    if not isinstance(cs, dict) or cs.get("resourceType") != "CapabilityStatement":
        raise SmartError("the FHIR server's /metadata is not a CapabilityStatement (discovery failed)")
    uris = _oauth_uris(cs)
    if uris is None:
        return None
    return SmartConfiguration(
        authorization_endpoint=_check_endpoint(uris.get("authorize"), "authorization endpoint"),
        token_endpoint=_check_endpoint(uris.get("token"), "token endpoint"),
        from_capability_statement=True,
    )


def _offers_app_launch(doc: dict[str, Any]) -> bool:
    """False when the configuration plainly offers no authorisation-code launch (a server
    that only serves backend services with client_credentials, say)."""
    caps = doc.get("capabilities")
    grants = doc.get("grant_types_supported")
    if isinstance(caps, list) and {"launch-ehr", "launch-standalone"} & set(caps):
        return True
    return not (isinstance(grants, list) and "authorization_code" not in grants)


def _oauth_uris(cs: dict[str, Any]) -> dict[str, str] | None:
    for rest in cs.get("rest") or []:
        security = rest.get("security") if isinstance(rest, dict) else None
        for ext in (security or {}).get("extension") or []:
            if isinstance(ext, dict) and ext.get("url") == OAUTH_URIS:
                return {sub.get("url"): sub.get("valueUri") for sub in ext.get("extension") or []
                        if isinstance(sub, dict)}
    return None


# --- scopes --------------------------------------------------------------------------------
def requested_scopes(smart: SmartConfiguration, *, standalone: bool) -> str:
    """Read access to every type the criteria use, Task create/update, identity, refresh."""
    v2 = smart.v2_scopes
    read = ".rs" if v2 else ".read"
    scopes = ["openid", "fhirUser", "launch/patient" if standalone else "launch", "offline_access"]
    scopes += [f"patient/{t}{read}" for t in READ_TYPES]
    scopes.append("patient/Task.crus" if v2 else "patient/Task.write")
    if not v2:
        scopes.append("patient/Task.read")
    return " ".join(scopes)


_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Za-z]+)\.(read|write|\*|[cruds]+)$")


def _permissions(granted: str) -> dict[str, set[str]]:
    """Resource type (or ``*``) -> the letters of c/r/u/d/s granted (v1 mapped onto v2)."""
    perms: dict[str, set[str]] = {}
    for scope in granted.split():
        m = _SCOPE.match(scope)
        if not m or m.group(1) == "system":
            continue
        rtype, action = m.group(2), m.group(3)
        letters = {"read": "rs", "write": "cud", "*": "cruds"}.get(action, action)
        perms.setdefault(rtype, set()).update(letters)
    return perms


def readable_types(granted: str) -> set[str]:
    """The types in READ_TYPES the granted scopes let the app search."""
    perms = _permissions(granted)
    wild = perms.get("*", set())
    return {t for t in READ_TYPES if {"r", "s"} <= (perms.get(t, set()) | wild)
            or (t == "Patient" and "r" in (perms.get(t, set()) | wild))}


def can_write_tasks(granted: str) -> bool:
    perms = _permissions(granted)
    have = perms.get("Task", set()) | perms.get("*", set())
    return {"c", "u", "s"} <= have or ({"c", "u"} <= have and "r" in have)


# --- client authentication -------------------------------------------------------------------
class SmartPrivateKeyJWT(PrivateKeyJWT):
    """``private_key_jwt`` with the short lifetime and ``kid`` SMART asks for."""

    def __init__(self, token_endpoint: str, alg: str, kid: str):
        super().__init__(token_endpoint, headers={"kid": kid, "typ": "JWT"}, alg=alg)

    def sign(self, auth, token_endpoint):
        self.claims = {"exp": int(time.time()) + ASSERTION_LIFETIME}
        return super().sign(auth, token_endpoint)


@dataclass(frozen=True)
class ClientCredentials:
    """How the app authenticates at the token endpoint."""

    client_id: str
    secret: str | None = None
    private_key: RSAKey | ECKey | None = field(default=None, repr=False)
    key_id: str | None = None

    @property
    def method(self) -> str:
        if self.private_key is not None:
            return "private_key_jwt"
        return "client_secret_basic" if self.secret else "none"

    @property
    def alg(self) -> str:
        return "ES384" if isinstance(self.private_key, ECKey) else "RS384"


def load_private_key(path: str) -> RSAKey | ECKey:
    pem = open(path, "rb").read()
    for kind in (RSAKey, ECKey):
        try:
            return kind.import_key(pem)
        except Exception:  # noqa: BLE001 - joserfc raises several types for a wrong kind
            continue
    raise SmartError(f"{path}: not an RSA or EC private key in PEM form")


def public_jwks(key: RSAKey | ECKey, kid: str) -> dict[str, Any]:
    alg = "ES384" if isinstance(key, ECKey) else "RS384"
    public = {k: v for k, v in key.as_dict(private=False).items() if k in
              {"kty", "n", "e", "crv", "x", "y"}}
    return {"keys": [{**public, "kid": kid, "alg": alg, "use": "sig", "key_ops": ["verify"]}]}


def _oauth(creds: ClientCredentials, token_endpoint: str, http: requests.Session | None,
           **kw: Any) -> OAuth2Session:
    secret: Any = creds.private_key if creds.private_key is not None else creds.secret
    oauth = OAuth2Session(creds.client_id, secret, token_endpoint_auth_method=creds.method,
                          code_challenge_method="S256", **kw)
    if creds.private_key is not None:
        oauth.register_client_auth_method(SmartPrivateKeyJWT(token_endpoint, creds.alg, creds.key_id or ""))
    if http is not None:  # share adapters (and test mocks) with the caller
        oauth.mount("https://", http.get_adapter("https://"))
        oauth.mount("http://", http.get_adapter("http://"))
    return oauth


# --- the flow --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PendingAuthorization:
    authorize_url: str
    state: str
    code_verifier: str


def authorization_request(smart: SmartConfiguration, creds: ClientCredentials, *, iss: str,
                          redirect_uri: str, scope: str, launch: str | None) -> PendingAuthorization:
    verifier = generate_token(64)
    state = generate_token(43)
    extra: dict[str, str] = {"aud": iss}
    if launch:
        extra["launch"] = launch
    oauth = _oauth(creds, smart.token_endpoint, None, redirect_uri=redirect_uri, scope=scope)
    url, _ = oauth.create_authorization_url(smart.authorization_endpoint, state=state,
                                            code_verifier=verifier, **extra)
    return PendingAuthorization(url, state, verifier)


def _token_fields(token: dict[str, Any], requested_scope: str) -> dict[str, Any]:
    if not token.get("access_token") or str(token.get("token_type", "")).lower() != "bearer":
        raise SmartError("the token endpoint did not return a Bearer access token")
    expires_in = token.get("expires_in")
    try:
        expires_at = time.time() + float(expires_in) if expires_in is not None else None
    except (TypeError, ValueError):
        expires_at = None
    return {
        "access_token": token["access_token"],
        "refresh_token": token.get("refresh_token"),
        "expires_at": expires_at,
        # RFC 6749 §5.1: an omitted scope means the requested scope was granted.
        "scope": token.get("scope") or requested_scope,
    }


def exchange_code(http: requests.Session, smart_token_endpoint: str, creds: ClientCredentials, *,
                  code: str, code_verifier: str, redirect_uri: str, requested_scope: str,
                  timeout: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Authorisation code -> (token fields to keep server-side, launch context)."""
    oauth = _oauth(creds, smart_token_endpoint, http, redirect_uri=redirect_uri)
    try:
        token = oauth.fetch_token(smart_token_endpoint, grant_type="authorization_code", code=code,
                                  code_verifier=code_verifier, redirect_uri=redirect_uri,
                                  timeout=timeout)
    except requests.RequestException:
        raise SmartError("the authorization server did not answer the token request") from None
    except Exception as exc:  # noqa: BLE001 - authlib OAuthError, bad JSON: one safe line
        raise SmartError(f"the authorization server refused the token request ({_oauth_error(exc)})") from None
    fields = _token_fields(dict(token), requested_scope)
    context = {
        "patient": token.get("patient") if isinstance(token.get("patient"), str) else None,
        "need_patient_banner": token.get("need_patient_banner") is True,
        "smart_style_url": token.get("smart_style_url") if isinstance(token.get("smart_style_url"), str) else None,
        "fhir_user": _fhir_user(token.get("id_token")),
    }
    return fields, context


def refresh(http: requests.Session, token_endpoint: str, creds: ClientCredentials, *,
            refresh_token: str, scope: str, timeout: float) -> dict[str, Any]:
    oauth = _oauth(creds, token_endpoint, http)
    try:
        token = oauth.refresh_token(token_endpoint, refresh_token=refresh_token, timeout=timeout)
    except requests.RequestException:
        raise SmartError("the authorization server did not answer the refresh request") from None
    except Exception as exc:  # noqa: BLE001
        raise SmartError(f"the session could not be renewed ({_oauth_error(exc)})") from None
    fields = _token_fields(dict(token), scope)
    fields["refresh_token"] = fields["refresh_token"] or refresh_token
    return fields


def _oauth_error(exc: Exception) -> str:
    error = getattr(exc, "error", None)
    if isinstance(error, str) and re.fullmatch(r"[a-z_]{1,40}", error):
        return error
    return "unexpected answer"


def _fhir_user(id_token: Any) -> str | None:
    """``fhirUser`` from the id_token, as a relative reference (Practitioner/123).

    The claim only labels the Task's requester; it grants nothing, so the signature is
    not needed for that use and is not checked here.
    """
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return None
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    user = claims.get("fhirUser") if isinstance(claims, dict) else None
    if not isinstance(user, str):
        return None
    m = re.search(r"(Practitioner|PractitionerRole|Patient|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}$", user)
    return m.group(0) if m else None
