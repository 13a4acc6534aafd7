"""SMART App Launch 2.x client side: discovery, scopes, authorisation and tokens.

authlib does the OAuth 2.0 mechanics (PKCE S256, client authentication, refresh); this
module adds what SMART specifies on top: discovery from
``.well-known/smart-configuration`` with the CapabilityStatement ``oauth-uris`` fallback,
v2 scopes with a v1 fallback, ``aud``, reading the granted scopes back, and asymmetric
client authentication (``private_key_jwt`` with RS384/ES384 and a JWKS to publish).

Nothing here logs a token, a code or a patient id.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from .config import is_loopback

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
# Resource types the app reads; Task is also written.
READ_TYPES = ("Patient", "Observation", "Condition", "MedicationRequest", "Medication",
              "MedicationAdministration", "MedicationDispense", "MedicationStatement",
              "Immunization", "Procedure", "DiagnosticReport", "AllergyIntolerance", "Coverage")
ASSERTION_LIFETIME = 300  # SMART: the client assertion expires within five minutes
ID_TOKEN_ALGS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]
ID_TOKEN_LEEWAY = 60  # seconds of clock skew accepted on exp / iat
MAX_DOCUMENT = 256 * 1024  # bytes of a discovery or JWKS document the app reads


class SmartError(Exception):
    """Launch or token failure. ``str()`` is one line, safe to show (no token, no code)."""


@dataclass(frozen=True)
class SmartConfiguration:
    authorization_endpoint: str
    token_endpoint: str
    capabilities: frozenset[str] = frozenset()
    scopes_supported: tuple[str, ...] = ()
    from_capability_statement: bool = False
    issuer: str | None = None  # the OpenID Connect issuer (the id_token's ``iss``)
    jwks_uri: str | None = None  # where the keys that sign id_tokens are published

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


NO_SMART = ("the FHIR server offers no SMART App Launch (discovery failed); if it needs no "
            "authorization, an administrator can list it in IVIG_OPEN_ISSUERS")


def discover(http: requests.Session, iss: str, timeout: float) -> SmartConfiguration:
    """The server's SMART configuration; ``SmartError`` when there is none.

    ``{iss}/.well-known/smart-configuration`` first; if that is absent, the
    CapabilityStatement's ``oauth-uris`` security extension. A server without either is
    an error, never an open server: open servers are configured (IVIG_OPEN_ISSUERS).
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
                if not _offers_app_launch(doc):  # e.g. backend services only
                    raise SmartError("the FHIR server's SMART configuration offers no app launch "
                                     "(authorization code grant)")
                caps = doc.get("capabilities") or []
                scopes = doc.get("scopes_supported") or []
                return SmartConfiguration(
                    authorization_endpoint=_check_endpoint(doc.get("authorization_endpoint"),
                                                           "authorization endpoint"),
                    token_endpoint=_check_endpoint(doc.get("token_endpoint"), "token endpoint"),
                    capabilities=frozenset(c for c in caps if isinstance(c, str)),
                    scopes_supported=tuple(s for s in scopes if isinstance(s, str)),
                    issuer=doc["issuer"] if isinstance(doc.get("issuer"), str) else None,
                    jwks_uri=(_check_endpoint(doc["jwks_uri"], "jwks_uri")
                              if isinstance(doc.get("jwks_uri"), str) else None),
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
        raise SmartError(NO_SMART)
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
    # The clinician's attestations (read by id, written by PUT to a deterministic id) and the
    # letter of medical necessity (created once, as a preliminary DocumentReference).
    if v2:
        scopes += ["patient/QuestionnaireResponse.cru", "patient/DocumentReference.c"]
    else:
        scopes += ["patient/QuestionnaireResponse.read", "patient/QuestionnaireResponse.write",
                   "patient/DocumentReference.write"]
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


def _granted(granted: str, rtype: str) -> set[str]:
    perms = _permissions(granted)
    return perms.get(rtype, set()) | perms.get("*", set())


def can_read_responses(granted: str) -> bool:
    """The attestations can be read back (by id)."""
    return "r" in _granted(granted, "QuestionnaireResponse")


def can_attest(granted: str) -> bool:
    """The attestation QuestionnaireResponse can be read, created and updated."""
    return {"c", "r", "u"} <= _granted(granted, "QuestionnaireResponse")


def can_write_documents(granted: str) -> bool:
    """A DocumentReference (the letter draft) can be created."""
    return "c" in _granted(granted, "DocumentReference")


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
    nonce: str | None = None  # sent when the scope asks for an id_token (openid)


def authorization_request(smart: SmartConfiguration, creds: ClientCredentials, *, iss: str,
                          redirect_uri: str, scope: str, launch: str | None) -> PendingAuthorization:
    verifier = generate_token(64)
    state = generate_token(43)
    extra: dict[str, str] = {"aud": iss}
    if launch:
        extra["launch"] = launch
    nonce = generate_token(32) if "openid" in scope.split() else None
    if nonce:
        extra["nonce"] = nonce
    oauth = _oauth(creds, smart.token_endpoint, None, redirect_uri=redirect_uri, scope=scope)
    url, _ = oauth.create_authorization_url(smart.authorization_endpoint, state=state,
                                            code_verifier=verifier, **extra)
    return PendingAuthorization(url, state, verifier, nonce)


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
                                  timeout=timeout, allow_redirects=False)  # credentials stay put
    except requests.RequestException:
        raise SmartError("the authorization server did not answer the token request") from None
    except Exception as exc:  # noqa: BLE001 - authlib OAuthError, bad JSON: one safe line
        raise SmartError(f"the authorization server refused the token request ({_oauth_error(exc)})") from None
    fields = _token_fields(dict(token), requested_scope)
    context = {
        "patient": token.get("patient") if isinstance(token.get("patient"), str) else None,
        "need_patient_banner": token.get("need_patient_banner") is True,
        "smart_style_url": token.get("smart_style_url") if isinstance(token.get("smart_style_url"), str) else None,
        "id_token": token.get("id_token") if isinstance(token.get("id_token"), str) else None,
    }
    return fields, context


def refresh(http: requests.Session, token_endpoint: str, creds: ClientCredentials, *,
            refresh_token: str, scope: str, timeout: float) -> dict[str, Any]:
    oauth = _oauth(creds, token_endpoint, http)
    try:
        token = oauth.refresh_token(token_endpoint, refresh_token=refresh_token, timeout=timeout,
                                    allow_redirects=False)
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


# --- the id_token (OpenID Connect) ------------------------------------------------------------
def get_json_document(http: requests.Session, url: str, timeout: float, what: str) -> dict[str, Any]:
    """A small JSON document (discovery, JWKS): no redirects, at most MAX_DOCUMENT bytes."""
    try:
        with http.get(url, headers={"Accept": "application/json"}, timeout=timeout, stream=True,
                      allow_redirects=False) as resp:
            if resp.status_code != 200:
                raise SmartError(f"the {what} answered {resp.status_code}")
            body = resp.raw.read(MAX_DOCUMENT + 1, decode_content=True)
    except requests.RequestException:
        raise SmartError(f"the {what} did not answer") from None
    if len(body) > MAX_DOCUMENT:
        raise SmartError(f"the {what} is larger than {MAX_DOCUMENT // 1024} KiB")
    try:
        doc = json.loads(body)
    except ValueError:
        raise SmartError(f"the {what} is not JSON") from None
    if not isinstance(doc, dict):
        raise SmartError(f"the {what} is not a JSON object")
    return doc


def jwks_location(http: requests.Session, issuer: str, timeout: float) -> str:
    """``jwks_uri`` from the issuer's OpenID configuration (when the SMART configuration
    names none)."""
    doc = get_json_document(http, f"{issuer.rstrip('/')}/.well-known/openid-configuration", timeout,
                            "OpenID configuration")
    return _check_endpoint(doc.get("jwks_uri"), "jwks_uri")


def verify_id_token(id_token: str, jwks: dict[str, Any], *, issuer: str, client_id: str,
                    nonce: str | None) -> dict[str, Any]:
    """The id_token's claims once its signature (a key of ``jwks``), ``iss``, ``aud``, ``exp``
    and ``nonce`` (the one this app sent) check out; ``SmartError`` (one safe line) if not."""
    if not nonce:
        raise SmartError("the id_token cannot be checked: no nonce was sent")
    try:
        keys = KeySet.import_key_set(jwks)
        token = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGS)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        reason = getattr(exc, "error", None) or "unreadable"
        raise SmartError(f"the id_token's signature could not be verified ({reason})") from None
    claims = token.claims
    registry = jwt.JWTClaimsRegistry(
        leeway=ID_TOKEN_LEEWAY,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        exp={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        claim = getattr(exc, "claim", None)
        raise SmartError(f"the id_token was refused ({claim or exc.error})") from None
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != client_id:
        raise SmartError("the id_token was refused (azp)")
    return claims


def fhir_user(claims: dict[str, Any]) -> str | None:
    """``fhirUser`` of verified id_token claims, as a relative reference (Practitioner/123)."""
    user = claims.get("fhirUser")
    if not isinstance(user, str):
        return None
    m = re.search(r"(?:^|/)((Practitioner|PractitionerRole|Patient|RelatedPerson|Person)/"
                  r"(?!\.{1,2}$)[A-Za-z0-9\-.]{1,64})$", user)
    return m.group(1) if m else None
