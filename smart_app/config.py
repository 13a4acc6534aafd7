"""Web-app configuration (CONTRACT §5), read once from the environment.

A ``.env``-style file (``IVIG_ENV_FILE``, else ``./.env`` when present) may add values;
the real environment always wins. Bad values fail at start-up with one clear line, never
mid-launch.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from .engine.model import RulesetError, get_ruleset
from .payers import PayerMapError, load_payer_map
from .questionnaire import DEFAULT_CANONICAL_BASE
from .task import DEFAULT_TASK_IDENTIFIER_SYSTEM

log = logging.getLogger(__name__)

DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_RULESET = "bcbsmt-ig-2013"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s]+$")
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


class ConfigError(ValueError):
    """A configuration value is unusable; the message names the variable."""


def normalize_base(url: str) -> str:
    """A FHIR base URL as compared against the allow-list: no trailing slash, lower-case
    scheme and host (paths stay case-sensitive)."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if parts.query or parts.fragment or "@" in parts.netloc or url.strip().endswith(("?", "#")):
        raise ValueError(f"a FHIR base URL has no query, fragment or user name: {url!r}")
    path = parts.path.rstrip("/")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}"


def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and ``#`` comments ignored; optional quotes stripped."""
    values: dict[str, str] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{n}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


@dataclass(frozen=True)
class DemoPatient:
    id: str
    label: str
    ruleset: str | None = None
    determination: str | None = None  # what the app computes for it (shown as a hint)
    name: str = ""  # the patient's (synthetic) name
    indication: str = ""  # the primary indication's label, "" when there is none
    policy: str = ""  # the policy's citation, as a person names it
    policy_chosen: str = ""  # "from Coverage" | "requested" | "default"


@dataclass(frozen=True)
class CdsClient:
    """A CDS client (EHR) allowed to call the CDS Hooks service: the ``iss`` of its JWTs and
    the URL of the JWK Set holding its public keys (IVIG_CDS_CLIENTS)."""

    iss: str
    jwks_url: str


def parse_cds_clients(value: str) -> tuple[CdsClient, ...]:
    """``ISS|JWKS_URL`` pairs, comma-separated (``|`` cannot appear unescaped in a URL).

    The JWKS URL must be https, except on loopback (tests, the demo)."""
    clients: dict[str, CdsClient] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        iss, sep, jwks_url = (part.strip() for part in item.partition("|"))
        if not sep or not iss or not jwks_url:
            raise ConfigError(f"IVIG_CDS_CLIENTS: expected ISS|JWKS_URL, got {item.strip()!r}")
        parts = urlsplit(jwks_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"IVIG_CDS_CLIENTS: not an http(s) JWKS URL: {jwks_url!r}")
        if parts.scheme != "https" and not is_loopback(jwks_url):
            raise ConfigError(f"IVIG_CDS_CLIENTS: the JWKS URL of {iss} must be https")
        if iss in clients:
            raise ConfigError(f"IVIG_CDS_CLIENTS: {iss} is listed twice")
        clients[iss] = CdsClient(iss, jwks_url)
    return tuple(clients.values())


@dataclass(frozen=True)
class Config:
    public_base_url: str = DEFAULT_PUBLIC_BASE_URL
    allowed_issuers: tuple[str, ...] = ()
    # Servers used without authorization (no SMART): only these, never a server whose
    # discovery failed. They are allowed issuers too.
    open_issuers: tuple[str, ...] = ()
    client_id: str | None = None
    client_secret: str | None = None
    private_key_file: str | None = None
    key_id: str | None = None
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    ruleset: str = DEFAULT_RULESET
    scopes: str | None = None
    frame_ancestors: str | None = None
    session_db: str | None = None  # SQLite file of the session store (IVIG_SESSION_DB)
    # sqlite:///path or redis://[:password@]host:port/db (IVIG_SESSION_URL); may hold a password
    session_url: str | None = field(default=None, repr=False)
    session_ttl: int = 3600
    fhir_timeout: float = 15.0
    report_cache_seconds: float = 30.0  # a session's report is reused this long (0 = never)
    # Fixes "today" for every recency window (the demo's example records are dated).
    as_of: date | None = None
    task_identifier_system: str = DEFAULT_TASK_IDENTIFIER_SYSTEM
    # Base of the attestation Questionnaires' canonical URLs (IVIG_CANONICAL_BASE): stable,
    # whatever the app's address; QuestionnaireResponses name it.
    canonical_base: str = DEFAULT_CANONICAL_BASE
    # A sandbox deployment's launch form may name another (public) client id; a production
    # deployment always uses the configured client.
    sandbox: bool = False
    # Origins besides the issuer's from which the EHR's smart_style_url may be fetched.
    style_origins: tuple[str, ...] = ()
    # Set by ``ivig-check demo``: the open FHIR server and the example patients it holds.
    demo_iss: str | None = None
    demo_patients: tuple[DemoPatient, ...] = ()
    # Payer -> ruleset map (None: the shipped smart_app/data/payers.toml).
    payer_map: str | None = None
    # CDS Hooks: the clients whose signed JWTs the service accepts.
    cds_clients: tuple[CdsClient, ...] = ()

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_base_url}/callback"

    @property
    def local_development(self) -> bool:
        """Served over plain http on loopback: cookies cannot be ``Secure`` there."""
        return self.public_base_url.startswith("http://") and is_loopback(self.public_base_url)

    @property
    def csp_frame_ancestors(self) -> str:
        """Who may frame the report: configured, else this app and the allowed EHRs."""
        if self.frame_ancestors:
            return self.frame_ancestors
        origins = ["'self'"]
        for iss in self.allowed_issuers + self.open_issuers:
            p = urlsplit(iss)
            origin = f"{p.scheme}://{p.netloc}"
            if origin not in origins:
                origins.append(origin)
        return " ".join(origins)

    def cds_client(self, iss: str) -> CdsClient | None:
        return next((c for c in self.cds_clients if c.iss == iss), None)

    def issuer_allowed(self, iss: str) -> bool:
        """``iss``, normalised (``normalize_base``), is on the allow-list or the open list."""
        try:
            iss = normalize_base(iss)
        except ValueError:
            return False
        return iss in self.allowed_issuers or iss in self.open_issuers

    def issuer_open(self, iss: str) -> bool:
        """``iss`` (normalised) is configured as a server used without authorization."""
        return iss in self.open_issuers


def _url_list(value: str | None, name: str) -> tuple[str, ...]:
    """A comma-separated list of http(s) URLs, each normalised, duplicates dropped."""
    out = []
    for item in (value or "").split(","):
        if item.strip():
            try:
                out.append(normalize_base(item))
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None
    return tuple(dict.fromkeys(out))


def load_config(environ: Mapping[str, str] | None = None, **overrides: object) -> Config:
    """The Config from the environment (plus an optional .env file), validated."""
    env: dict[str, str] = {}
    source = os.environ if environ is None else environ
    env_file = source.get("IVIG_ENV_FILE")
    if env_file:
        path = Path(env_file)
        if not path.is_file():
            raise ConfigError(f"IVIG_ENV_FILE: no such file: {env_file}")
        env.update(read_env_file(path))
    elif environ is None and Path(".env").is_file():
        env.update(read_env_file(Path(".env")))
    env.update({k: v for k, v in source.items() if k.startswith("IVIG_")})

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    kw: dict[str, object] = {}
    if base := get("IVIG_PUBLIC_BASE_URL"):
        try:
            kw["public_base_url"] = normalize_base(base)
        except ValueError as exc:
            raise ConfigError(f"IVIG_PUBLIC_BASE_URL: {exc}") from None
    kw["allowed_issuers"] = _url_list(get("IVIG_ALLOWED_ISSUERS"), "IVIG_ALLOWED_ISSUERS")
    kw["open_issuers"] = _url_list(get("IVIG_OPEN_ISSUERS"), "IVIG_OPEN_ISSUERS")
    kw["style_origins"] = _url_list(get("IVIG_STYLE_ORIGINS"), "IVIG_STYLE_ORIGINS")
    for name, attr in (("IVIG_CLIENT_ID", "client_id"), ("IVIG_CLIENT_SECRET", "client_secret"),
                       ("IVIG_KEY_ID", "key_id"), ("IVIG_SCOPES", "scopes"),
                       ("IVIG_FRAME_ANCESTORS", "frame_ancestors"), ("IVIG_SESSION_DB", "session_db"),
                       ("IVIG_SESSION_URL", "session_url")):
        if (value := get(name)) is not None:
            kw[attr] = value
    if (system := get("IVIG_TASK_IDENTIFIER_SYSTEM")) is not None:
        if not _URI.match(system):
            raise ConfigError(f"IVIG_TASK_IDENTIFIER_SYSTEM: not an absolute URI: {system!r}")
        kw["task_identifier_system"] = system
    if (canonical := get("IVIG_CANONICAL_BASE")) is not None:
        try:
            kw["canonical_base"] = normalize_base(canonical)
        except ValueError as exc:
            raise ConfigError(f"IVIG_CANONICAL_BASE: {exc}") from None
    if (sandbox := get("IVIG_SANDBOX")) is not None:
        if sandbox.lower() not in ("1", "true", "yes", "0", "false", "no"):
            raise ConfigError(f"IVIG_SANDBOX: expected 1/true/yes or 0/false/no, got {sandbox!r}")
        kw["sandbox"] = sandbox.lower() in ("1", "true", "yes")
    if key_file := get("IVIG_PRIVATE_KEY_FILE"):
        if not Path(key_file).is_file():
            raise ConfigError(f"IVIG_PRIVATE_KEY_FILE: no such file: {key_file}")
        kw["private_key_file"] = key_file
    if secret := get("IVIG_SECRET_KEY"):
        if len(secret) < 16:
            raise ConfigError("IVIG_SECRET_KEY: use at least 16 random characters")
        kw["secret_key"] = secret
    if ruleset := get("IVIG_RULESET"):
        try:
            get_ruleset(ruleset)
        except RulesetError as exc:
            raise ConfigError(f"IVIG_RULESET: {exc}") from None
        kw["ruleset"] = ruleset
    for name, attr, cast in (("IVIG_SESSION_TTL", "session_ttl", int),
                             ("IVIG_FHIR_TIMEOUT", "fhir_timeout", float),
                             ("IVIG_REPORT_CACHE_SECONDS", "report_cache_seconds", float)):
        if (value := get(name)) is not None:
            try:
                number = cast(value)
            except ValueError:
                raise ConfigError(f"{name}: expected a number, got {value!r}") from None
            if number < 0 or (number == 0 and attr != "report_cache_seconds"):
                raise ConfigError(f"{name}: must be positive")
            kw[attr] = number
    if payer_map := get("IVIG_PAYER_MAP"):
        kw["payer_map"] = payer_map
    if clients := get("IVIG_CDS_CLIENTS"):
        kw["cds_clients"] = parse_cds_clients(clients)
    if as_of := get("IVIG_AS_OF"):
        try:
            kw["as_of"] = date.fromisoformat(as_of)
        except ValueError:
            raise ConfigError(f"IVIG_AS_OF: expected YYYY-MM-DD, got {as_of!r}") from None
    kw.update(overrides)
    config = Config(**kw)  # type: ignore[arg-type]
    if config.client_secret and config.private_key_file:
        raise ConfigError("set IVIG_CLIENT_SECRET or IVIG_PRIVATE_KEY_FILE, not both")
    try:
        load_payer_map(config.payer_map)  # a bad payer map fails at start-up, not mid-launch
    except PayerMapError as exc:
        raise ConfigError(f"IVIG_PAYER_MAP: {exc}") from None
    if config.session_url is not None:
        if config.session_db is not None:
            raise ConfigError("set IVIG_SESSION_URL or IVIG_SESSION_DB, not both")
        if not config.session_url.startswith(("sqlite://", "redis://", "rediss://")):
            raise ConfigError("IVIG_SESSION_URL: expected sqlite:///PATH, redis://HOST:PORT/DB or rediss://…")
    if config.private_key_file and not config.key_id:
        raise ConfigError("IVIG_PRIVATE_KEY_FILE needs IVIG_KEY_ID (the kid published in the JWKS)")
    if not config.allowed_issuers and not config.open_issuers:
        log.warning("IVIG_ALLOWED_ISSUERS is empty: every launch will be refused")
    return config
