"""A test CDS client (the EHR side of CDS Hooks): keys, a JWK Set, signed JWTs, hook requests.

Test-only. ``CdsTestClient.serve_jwks()`` publishes the JWK Set over HTTP on 127.0.0.1 (a
werkzeug server in a thread, stopped on exit) for tests where the app runs as a real server;
in-process tests mock the JWKS URL with ``responses`` instead.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from smart_app.cds_hooks import PATIENT_TOKEN, PREFETCH

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class CdsTestClient:
    def __init__(self, iss: str = "https://ehr.example.org", *, alg: str = "ES384", kid: str = "ehr-key-1"):
        self.iss = iss
        self.alg = alg
        self.kid = kid
        self.key = (ECKey.generate_key("P-384") if alg.startswith("ES") else RSAKey.generate_key(2048))
        self.jwks_url: str | None = None

    def jwks(self) -> dict[str, Any]:
        public = self.key.as_dict(private=False)
        return {"keys": [{**{k: v for k, v in public.items() if k in {"kty", "crv", "x", "y", "n", "e"}},
                          "kid": self.kid, "alg": self.alg, "use": "sig"}]}

    def token(self, audience: str, *, key: Any = None, header: dict[str, Any] | None = None,
              drop: tuple[str, ...] = (), **claims: Any) -> str:
        """A signed JWT for ``audience``; ``claims`` override (``aud=…``), ``drop`` removes."""
        now = int(time.time())
        body = {"iss": self.iss, "aud": audience, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4()), **claims}
        for name in drop:
            body.pop(name, None)
        head = {"alg": self.alg, "typ": "JWT", "kid": self.kid, **(header or {})}
        return jwt.encode(head, body, key if key is not None else self.key, algorithms=[head["alg"]])

    def symmetric_token(self, aud: str) -> str:
        """An HS256 JWT: CDS Hooks forbids symmetric algorithms."""
        now = int(time.time())
        return jwt.encode({"alg": "HS256", "typ": "JWT", "kid": self.kid},
                          {"iss": self.iss, "aud": aud, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())},
                          OctKey.generate_key(256), algorithms=["HS256"])

    @contextmanager
    def serve_jwks(self) -> Iterator[str]:
        body = json.dumps(self.jwks()).encode()

        def app(environ, start_response):
            req = Request(environ)
            resp = Response(body, content_type="application/json") if req.path == "/jwks.json" else Response(status=404)
            return resp(environ, start_response)

        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.jwks_url = f"http://127.0.0.1:{server.server_port}/jwks.json"
        try:
            yield self.jwks_url
        finally:
            server.shutdown()
            thread.join(timeout=5)


def example_resources(name: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in json.loads((EXAMPLES / name).read_text())["entry"]]


def prefetch_from(resources: list[dict[str, Any]], patient_id: str) -> dict[str, Any]:
    """Every prefetch template answered from a patient's resources, as an EHR would (searchset
    Bundles, Medication and payor Organization included, null where there is nothing)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for res in resources:
        by_type.setdefault(res["resourceType"], []).append(res)
    out: dict[str, Any] = {}
    for key, template in PREFETCH.items():
        assert PATIENT_TOKEN in template
        rtype = template.split("/")[0].split("?")[0]
        if rtype == "Patient":
            out[key] = next(r for r in resources if r["resourceType"] == "Patient" and r["id"] == patient_id)
            continue
        found = list(by_type.get(rtype, []))
        if "_include=MedicationRequest:medication" in template:
            found += by_type.get("Medication", [])
        if "_include=Coverage:payor" in template:
            found += by_type.get("Organization", [])
        out[key] = ({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in found]}
                    if found else None)
    return out


def ivig_order(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """The example's IVIG order the report evaluates (active, else draft)."""
    orders = [r for r in resources if r["resourceType"] == "MedicationRequest" and r["status"] in ("active", "draft")]
    return sorted(orders, key=lambda r: r["status"] != "active")[0]


def hook_request(example: str, *, draft: dict[str, Any] | None = None, hook: str = "order-sign",
                 prefetch: bool | dict[str, Any] = True, **extra: Any) -> dict[str, Any]:
    """An order-sign (or order-select) request for an example patient: its IVIG order as the draft."""
    resources = example_resources(example)
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    if draft is None:
        draft = {k: v for k, v in copy.deepcopy(ivig_order(resources)).items() if k != "meta"}
        draft["status"] = "draft"
    context: dict[str, Any] = {"userId": "Practitioner/example", "patientId": patient["id"],
                               "encounterId": "enc-1",
                               "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                               "entry": [{"resource": draft}]}}
    if hook == "order-select":
        context["selections"] = [f"MedicationRequest/{draft['id']}"]
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch is True:
        body["prefetch"] = prefetch_from(resources, patient["id"])
    elif isinstance(prefetch, dict):
        body["prefetch"] = prefetch
    body.update(extra)
    return body


NON_IG_DRAFT = {
    "resourceType": "MedicationRequest", "id": "draft-metformin", "status": "draft", "intent": "order",
    "subject": {"reference": "Patient/ex12-patient"},
    "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                              "code": "861007", "display": "metformin 500 MG Oral Tablet"}],
                                  "text": "metformin 500 mg oral tablet"},
}
