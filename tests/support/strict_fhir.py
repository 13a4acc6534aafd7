"""A strict EHR in front of sekmet-fhir, for tests: the SMART stub plus the refusals of real EHRs.

``StrictFhir(upstream_base, ...)`` is a ``SmartStub`` (SMART launch, token checks, reverse
proxy to the real FHIR server) that also behaves as strict production EHRs do:

* ``Observation`` searches US Core does not require are refused with 400 and an
  OperationOutcome: a search (GET or ``POST Observation/_search``) with neither ``code`` nor
  ``category`` — the bare ``Observation?patient=`` a chart of ten thousand vital signs
  would page through.
* ``drop_types``: types the server does not offer. They are removed from the
  CapabilityStatement, and a search for one answers 404 (as an unsupported type does).
* ``includes=False``: no ``_include``. ``searchInclude`` is removed from the
  CapabilityStatement and a search carrying ``_include`` answers 400.

Refused requests are recorded in ``refused`` as ``(method, path_and_query, status)``, and
every FHIR request's ``(arrived, answered)`` times (``time.perf_counter()``, the answer
after the stub's delay) in ``timeline``, so a benchmark can count a launch's sequential
round trips.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from werkzeug.wrappers import Request, Response

from tests.support.smart_stub import FHIR_JSON, SmartStub, _operation_outcome

__all__ = ["StrictFhir"]


class StrictFhir(SmartStub):
    def __init__(self, upstream_base: str, *, drop_types: Iterable[str] = (), includes: bool = True,
                 **kwargs: Any):
        super().__init__(upstream_base, **kwargs)
        self.drop_types = frozenset(drop_types)
        self.includes = includes
        self.refused: list[tuple[str, str, int]] = []
        self.timeline: list[tuple[float, float]] = []
        self._refused_lock = threading.Lock()

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        arrived = time.perf_counter()
        response = super()._wsgi(environ, start_response)  # routing, the proxy, the delay
        if environ.get("PATH_INFO", "").startswith("/fhir/"):
            with self._refused_lock:
                self.timeline.append((arrived, time.perf_counter()))
        return response

    def _proxy(self, req: Request, rel: str) -> Response:
        rtype = rel.split("/", 1)[0]
        is_search = (req.method == "GET" and "/" not in rel and rtype not in ("", "metadata")) or (
            req.method == "POST" and rel.endswith("/_search"))
        if is_search:
            params = parse_qs(req.get_data(as_text=True)) if req.method == "POST" else parse_qs(
                req.query_string.decode("latin-1"))
            refusal = self._refusal(rtype, params)
            if refusal is not None:
                status, text = refusal
                query = req.query_string.decode("latin-1")
                with self._refused_lock:
                    self.refused.append((req.method, f"{rel}?{query}" if query else rel, status))
                return self._json(status, _operation_outcome("not-supported", text), FHIR_JSON)
        response = super()._proxy(req, rel)
        if rel == "metadata" and response.status_code == 200:
            response.set_data(json.dumps(self._capability_statement(json.loads(response.get_data()))))
        return response

    def _refusal(self, rtype: str, params: dict[str, list[str]]) -> tuple[int, str] | None:
        if rtype in self.drop_types:
            return 404, f"Resource type {rtype} is not supported by this server"
        if not self.includes and any(k.startswith("_include") for k in params):
            return 400, "_include is not supported by this server"
        if rtype == "Observation" and not ({"code", "category"} & set(params)):
            return 400, "Observation searches need a category or code parameter (US Core)"
        return None

    def _capability_statement(self, cs: dict[str, Any]) -> dict[str, Any]:
        for rest in cs.get("rest") or []:
            resources = [r for r in rest.get("resource") or [] if r.get("type") not in self.drop_types]
            if not self.includes:
                for r in resources:
                    r.pop("searchInclude", None)
            rest["resource"] = resources
        return cs
