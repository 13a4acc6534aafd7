"""Fault injection: what the FHIR client and the web layer do when the EHR misbehaves.

Every fault is injected through ``responses`` into an in-memory FHIR server (``FakeFhir``
below), and checked twice where it makes sense:

* at the ``FhirClient`` level (``patient_record``, ``search_all``, ``upsert_task``), and
* at the web level (``GET /api/report`` and ``POST /task`` after an open-server launch).

The rules checked for every fault:

* a fault that ends in success gives exactly the fault-free report ("never a wrong
  determination"), and the Task it writes reflects the fault-free report;
* a fault that ends in failure gives a clear one-line error and no report at all (the web
  route answers an error status and a JSON ``error``, never a partial report);
* no fault ever leaves two Tasks with the same identifier.

Each scenario is appended to ``RESULTS``; with ``IVIG_FAULTS_REPORT=path`` set, a JSON
summary is written there when the module finishes.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import responses

from fhir_mappings.bundle import PatientRecord, record_from_bundle
from smart_app import fhir_client as fc
from smart_app.config import load_config
from smart_app.fhir_client import FhirAuthError, FhirClient, FhirRefused, FhirUnreachable
from smart_app.report import evaluate_record
from smart_app.task import build_task
from smart_app.web import create_app
from tests.support.launch_client import LaunchClient

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLES = ("01-cvid-seed-002.json", "07-cidp-missing-diagnostics.json")
BASE = "https://fhir.faults.example/r4"
APP_BASE = "http://127.0.0.1:8000"
RULESET = "bcbsmt-ig-2013"
AS_OF = date(2025, 6, 30)
TIMEOUT = 7.5  # seconds: FhirClient timeout, and IVIG_FHIR_TIMEOUT for the web app
RETRIES = 3
BACKOFF = 0.25
NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
FHIR_JSON = {"Content-Type": "application/fhir+json"}

RESULTS: list[dict[str, Any]] = []


# =============================================================================================
# The in-memory FHIR server
# =============================================================================================
@dataclass
class Call:
    method: str
    path: str  # relative to BASE, without the query: "Observation", "Patient/x", "Task/3"
    query: dict[str, list[str]]
    headers: dict[str, str]
    url: str
    body: str | None


Answer = tuple[int, dict[str, str], str]
# What an injected fault does: a canned answer, an exception to raise (a timeout), or a
# function of (server, request, call) that may use the server's normal handling.
Respond = Answer | Exception | Callable[["FakeFhir", Any, Call], Answer]


@dataclass
class Fault:
    method: str
    path: str  # regular expression, full match against Call.path
    respond: Respond
    times: int | None = 1  # None: every matching request, for ever

    def matches(self, call: Call) -> bool:
        return call.method == self.method and re.fullmatch(self.path, call.path) is not None


def _ident_key(task: dict[str, Any]) -> str:
    ident = (task.get("identifier") or [{}])[0]
    return f"{ident.get('system')}|{ident.get('value')}"


def example_resources(name: str) -> list[dict[str, Any]]:
    bundle = json.loads((EXAMPLES_DIR / name).read_text())
    return [e["resource"] for e in bundle["entry"]]


class FakeFhir:
    """A single-patient FHIR R4 server: reads, searches (with ``_include`` of Medication),
    and Task writes that honour ``If-None-Exist`` (conditional create) and ``If-Match``
    (versioned update) under a lock. Faults are consumed in order of registration."""

    def __init__(self, example: str):
        self.resources = example_resources(example)
        self.patient_id = next(r["id"] for r in self.resources if r["resourceType"] == "Patient")
        self.lock = threading.Lock()
        self.tasks: dict[str, dict[str, Any]] = {}
        self._task_ids = itertools.count(1)
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.injected = 0  # answers that came from a fault

    # --- wiring -------------------------------------------------------------------------
    def install(self, rsps: responses.RequestsMock) -> None:
        # One callback per method for everything under BASE (overlapping registrations in
        # ``responses`` pop each other), routed here.
        pattern = re.compile(re.escape(BASE) + r"/.*")
        for method in (responses.GET, responses.POST, responses.PUT):
            rsps.add_callback(method, pattern, callback=self._dispatch)

    def inject(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def calls_to(self, method: str, path: str, since: int = 0) -> list[Call]:
        with self.lock:
            return [c for c in self.calls[since:] if c.method == method and re.fullmatch(path, c.path)]

    def duplicate_tasks(self) -> int:
        with self.lock:
            counts = Counter(_ident_key(t) for t in self.tasks.values())
        return sum(n - 1 for n in counts.values() if n > 1)

    def _dispatch(self, request):
        parts = urlsplit(request.url)
        path = parts.path[len(urlsplit(BASE).path) + 1:]
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        call = Call(request.method, path, parse_qs(parts.query), dict(request.headers), request.url, body)
        if request.method == "POST" and path.endswith("/_search"):
            # POST {type}/_search is the same search as GET {type}?{form}: handled, faulted
            # and counted as that GET (its next links are GETs too).
            rtype, form = path[: -len("/_search")], body or ""
            call = Call("GET", rtype, parse_qs(form), dict(request.headers), f"{BASE}/{rtype}?{form}", None)
        with self.lock:
            self.calls.append(call)
            fault = next((f for f in self.faults if f.matches(call)), None)
            if fault is not None:
                self.injected += 1
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
        if fault is None:
            return self.handle(request, call)
        if isinstance(fault.respond, Exception):
            raise fault.respond
        if callable(fault.respond):
            return fault.respond(self, request, call)
        return fault.respond

    # --- normal behaviour -------------------------------------------------------------------
    def handle(self, request, call: Call) -> Answer:
        if call.path == ".well-known/smart-configuration":
            return 404, {}, ""
        if call.path == "metadata":  # no security extension: an open server
            return 200, FHIR_JSON, json.dumps({
                "resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
                "fhirVersion": "4.0.1", "format": ["json"], "rest": [{"mode": "server"}]})
        if call.method == "POST" and call.path == "Task":
            return self._create_task(call)
        if call.method == "PUT" and call.path.startswith("Task/"):
            return self._update_task(call)
        if call.method != "GET":
            return 405, FHIR_JSON, _oo("not-supported", "method not allowed")
        if "/" in call.path:
            rtype, rid = call.path.split("/", 1)
            with self.lock:
                found = [r for r in self.resources + list(self.tasks.values())
                         if r["resourceType"] == rtype and r["id"] == rid]
            if not found:
                return 404, FHIR_JSON, _oo("not-found", f"{rtype}/{rid} is not known")
            return 200, FHIR_JSON, json.dumps(found[0])
        return 200, FHIR_JSON, json.dumps(self.search_bundle(call))

    def search_bundle(self, call: Call) -> dict[str, Any]:
        rtype = call.path
        q = call.query
        with self.lock:
            if rtype == "Task":
                ident = (q.get("identifier") or [""])[0]
                matches = [copy.deepcopy(t) for t in self.tasks.values() if _ident_key(t) == ident]
            elif (q.get("patient") or [None])[0] != self.patient_id:
                matches = []
            else:
                matches = [r for r in self.resources if r["resourceType"] == rtype]
                if rtype == "MedicationRequest" and "_include" in q:
                    matches += [r for r in self.resources if r["resourceType"] == "Medication"]
                if rtype == "Coverage" and "_include" in q:
                    matches += [r for r in self.resources if r["resourceType"] == "Organization"]
        return {"resourceType": "Bundle", "type": "searchset", "total": len(matches),
                "link": [{"relation": "self", "url": call.url}],
                "entry": [{"fullUrl": f"{BASE}/{r['resourceType']}/{r['id']}", "resource": r}
                          for r in matches]}

    def store_task(self, task: dict[str, Any]) -> dict[str, Any]:
        """Store a new Task (the caller holds the lock)."""
        tid = f"task-{next(self._task_ids)}"
        task = {**copy.deepcopy(task), "id": tid, "meta": {"versionId": "1"}}
        self.tasks[tid] = task
        return task

    def _create_task(self, call: Call) -> Answer:
        task = json.loads(call.body or "{}")
        cond = call.headers.get("If-None-Exist")
        with self.lock:
            if cond:
                ident = (parse_qs(cond).get("identifier") or [""])[0]
                existing = [t for t in self.tasks.values() if _ident_key(t) == ident]
                if len(existing) > 1:
                    return 412, FHIR_JSON, _oo("duplicate", "more than one Task matches If-None-Exist")
                if existing:
                    return 200, FHIR_JSON, json.dumps(existing[0])
            stored = self.store_task(task)
        return 201, {**FHIR_JSON, "Location": f"{BASE}/Task/{stored['id']}/_history/1"}, json.dumps(stored)

    def _update_task(self, call: Call) -> Answer:
        tid = call.path.split("/", 1)[1]
        task = json.loads(call.body or "{}")
        with self.lock:
            current = self.tasks.get(tid)
            if current is None:
                return 404, FHIR_JSON, _oo("not-found", f"Task/{tid} is not known")
            version = current["meta"]["versionId"]
            match = call.headers.get("If-Match")
            if match is not None and match != f'W/"{version}"':
                return 412, FHIR_JSON, _oo("conflict", f"version {version} is current")
            task["id"] = tid
            task["meta"] = {"versionId": str(int(version) + 1)}
            self.tasks[tid] = task
        return 200, FHIR_JSON, json.dumps(task)


def _oo(code: str, diagnostics: str) -> str:
    return json.dumps({"resourceType": "OperationOutcome",
                       "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]})


# --- fault builders ---------------------------------------------------------------------------
def status(code: int, headers: dict[str, str] | None = None, body: str | None = None) -> Answer:
    return code, {**FHIR_JSON, **(headers or {})}, body if body is not None else _oo("exception", f"HTTP {code}")


def truncated(server: FakeFhir, request, call: Call) -> Answer:
    code, headers, body = server.handle(request, call)
    return code, headers, body[: len(body) // 2]


def next_to_itself(server: FakeFhir, request, call: Call) -> Answer:
    bundle = server.search_bundle(call)
    bundle["link"].append({"relation": "next", "url": call.url})
    return 200, FHIR_JSON, json.dumps(bundle)


def _page_url(call: Call, page: int | None) -> str:
    query = {k: v for k, v in call.query.items() if k != "page"}
    if page is not None:
        query["page"] = [str(page)]
    return f"{BASE}/{call.path}?{urlencode(query, doseq=True)}"


def two_page_cycle(server: FakeFhir, request, call: Call) -> Answer:
    """Page 1 holds the first half and links to page 2; page 2 holds the rest and links
    back to page 1 (as an absolute URL, as servers write links)."""
    bundle = server.search_bundle(call)
    entries = bundle["entry"]
    half = len(entries) // 2
    if "page" in call.query:
        bundle["entry"] = entries[half:]
        bundle["link"].append({"relation": "next", "url": _page_url(call, None)})
    else:
        bundle["entry"] = entries[:half]
        bundle["link"].append({"relation": "next", "url": _page_url(call, 2)})
    return 200, FHIR_JSON, json.dumps(bundle)


def endless_pages(server: FakeFhir, request, call: Call) -> Answer:
    """Page n (the first page has every match) links to page n+1, for ever."""
    bundle = server.search_bundle(call)
    page = int((call.query.get("page") or ["1"])[0])
    if page > 1:
        bundle["entry"] = []
    bundle["link"].append({"relation": "next", "url": _page_url(call, page + 1)})
    return 200, FHIR_JSON, json.dumps(bundle)


def operation_outcome_200(diagnostics: str) -> Answer:
    return 200, FHIR_JSON, _oo("processing", diagnostics)


def then(respond_after_storing: Answer | Exception) -> Callable[[FakeFhir, Any, Call], Answer]:
    """The server does the write, then the answer is lost (a 5xx or a timeout instead)."""
    def respond(server: FakeFhir, request, call: Call) -> Answer:
        server.handle(request, call)
        if isinstance(respond_after_storing, Exception):
            raise respond_after_storing
        return respond_after_storing
    return respond


def created_with_empty_body(server: FakeFhir, request, call: Call) -> Answer:
    code, headers, _ = server.handle(request, call)
    return code, {"Location": headers.get("Location", "")}, ""


def another_writer_first(server: FakeFhir, request, call: Call) -> Answer:
    """A concurrent evaluation stores the same Task just before this POST arrives, so the
    conditional create answers 200 with the existing Task."""
    with server.lock:
        server.store_task(json.loads(call.body))
    return server.handle(request, call)


def search_lags(server: FakeFhir, request, call: Call) -> Answer:
    """A Task search that does not see Tasks yet (a lagging search index)."""
    bundle = server.search_bundle(call)
    bundle["entry"], bundle["total"] = [], 0
    return 200, FHIR_JSON, json.dumps(bundle)


# =============================================================================================
# Helpers: baseline reports, clients, the web app
# =============================================================================================
_BASELINES: dict[str, dict[str, Any]] = {}


def json_roundtrip(data: Any) -> Any:
    return json.loads(json.dumps(data))


def recording_client(sleeps: list[float], **kw: Any) -> FhirClient:
    return FhirClient(BASE, timeout=TIMEOUT, retries=RETRIES, backoff=BACKOFF, sleep=sleeps.append, **kw)


def baseline(example: str) -> dict[str, Any]:
    """The fault-free report for an example, fetched through the fake server."""
    if example not in _BASELINES:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            server = FakeFhir(example)
            server.install(rsps)
            record = recording_client([]).patient_record(server.patient_id)
            _BASELINES[example] = json_roundtrip(evaluate_record(record, RULESET, AS_OF))
    return copy.deepcopy(_BASELINES[example])


def degraded_baseline(example: str, hidden: str) -> dict[str, Any]:
    """The correct report when the token may not read ``hidden``: the record without that
    type, marked not accessible."""
    resources = example_resources(example)
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    record = PatientRecord(patient=patient,
                           resources=[r for r in resources if r["resourceType"] not in ("Patient", hidden)],
                           not_accessible={hidden})
    return json_roundtrip(evaluate_record(record, RULESET, AS_OF))


def missing_codes(report: dict[str, Any]) -> list[str]:
    return [m["code"] for m in report["missing_documentation"]]


def task_codes(task: dict[str, Any]) -> list[str]:
    return [i["type"]["coding"][0]["code"] for i in task.get("input") or []]


def duplicate_resources(resources: list[dict[str, Any]]) -> int:
    counts = Counter(f"{r.get('resourceType')}/{r.get('id')}" for r in resources)
    return sum(n - 1 for n in counts.values() if n > 1)


def assert_clear_message(message: str, pattern: str) -> None:
    assert message and "\n" not in message, f"not one line: {message!r}"
    assert len(message) < 300, f"too long: {message!r}"
    assert "Traceback" not in message and "Exception" not in message, message
    assert re.search(pattern, message), f"{message!r} does not match {pattern!r}"


def record_result(level: str, fault: str, example: str, outcome: str, server: FakeFhir,
                  **extra: Any) -> dict[str, Any]:
    entry = {"fault": fault, "level": level, "example": example, "outcome": outcome,
             "injected_answers": server.injected, "duplicate_tasks": server.duplicate_tasks(),
             "duplicate_resources": 0, "as_expected": False, **extra}
    RESULTS.append(entry)
    return entry


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@dataclass
class Web:
    app: Any
    client: Any
    server: FakeFhir
    sleeps: list[float] = field(default_factory=list)

    def csrf(self) -> str:
        return self.app.extensions["ivig"].store.get(f"launch:{self.client.ctx}")["csrf"]

    def post_task(self):
        return self.client.post("/task", data={"csrf_token": self.csrf()},
                                headers={"Accept": "application/json"})


def launch_web(tmp_path: Path, server: FakeFhir) -> Web:
    """The app in open-server mode, launched for the server's patient."""
    environ = {"IVIG_OPEN_ISSUERS": BASE, "IVIG_CLIENT_ID": "app", "IVIG_PUBLIC_BASE_URL": APP_BASE,
               "IVIG_SECRET_KEY": "fault-injection-secret-0123456789", "IVIG_AS_OF": AS_OF.isoformat(),
               "IVIG_FHIR_TIMEOUT": str(TIMEOUT), "IVIG_SESSION_DB": str(tmp_path / "sessions.sqlite")}
    app = create_app(load_config(environ))
    app.testing = True
    app.test_client_class = LaunchClient
    web = Web(app, app.test_client(), server)
    app.extensions["ivig"].client_options = {"backoff": BACKOFF, "retries": RETRIES, "sleep": web.sleeps.append}
    resp = web.client.get("/launch", query_string={"iss": BASE, "patient": server.patient_id, "ruleset": RULESET})
    assert resp.status_code == 302 and "/report?ctx=" in resp.headers["Location"], resp.data[:300]
    return web


# =============================================================================================
# Module summary
# =============================================================================================
@pytest.fixture(scope="module", autouse=True)
def faults_summary():
    yield
    path = os.environ.get("IVIG_FAULTS_REPORT")
    if not path:
        return
    outcomes = Counter(r["outcome"] for r in RESULTS)
    summary = {
        "faults_injected": len(RESULTS),
        "injected_answers": sum(r["injected_answers"] for r in RESULTS),
        "retried_and_succeeded": outcomes["retried-and-succeeded"],
        "handled_without_retry": outcomes["succeeded"],
        "degraded_not_accessible": outcomes["degraded"],
        "failed_clearly": outcomes["failed-clearly"],
        "duplicates": sum(r["duplicate_tasks"] + r["duplicate_resources"] for r in RESULTS),
        "duplicate_tasks": sum(r["duplicate_tasks"] for r in RESULTS),
        "duplicate_resources": sum(r["duplicate_resources"] for r in RESULTS),
        "not_as_expected": [f"{r['level']}:{r['fault']}:{r['example']}" for r in RESULTS if not r["as_expected"]],
        "by_level": dict(Counter(r["level"] for r in RESULTS)),
        "scenarios": RESULTS,
    }
    Path(path).write_text(json.dumps(summary, indent=2) + "\n")


# =============================================================================================
# Report faults: patient_record and GET /api/report
# =============================================================================================
@dataclass(frozen=True)
class ReportFault:
    name: str
    faults: Callable[[], list[Fault]]
    outcome: str  # retried-and-succeeded | succeeded | degraded | failed-clearly
    path: str  # the faulted request (method GET), for counting attempts
    attempts: int | None = None  # requests to ``path`` the client makes (per fetch)
    sleeps: tuple[float, ...] | None = None  # exactly what the client sleeps
    error: type[Exception] | None = None
    message: str | None = None  # regular expression the error message must match
    web_status: int = 200
    hidden: str | None = None  # degraded: the type that becomes not accessible


OBS, COND, PATIENT = "Observation", "Condition", r"Patient/.+"
BACKOFFS = tuple(BACKOFF * 2**i for i in range(RETRIES))
DIAG = "Search parameter 'patient' is not supported by this server"

REPORT_FAULTS = [
    ReportFault("connect-timeout-once", lambda: [Fault("GET", OBS, requests.exceptions.ConnectTimeout("connect"))],
                "retried-and-succeeded", OBS, attempts=2, sleeps=BACKOFFS[:1]),
    ReportFault("connect-timeout", lambda: [Fault("GET", OBS, requests.exceptions.ConnectTimeout("connect"), None)],
                "failed-clearly", OBS, attempts=RETRIES + 1, sleeps=BACKOFFS, error=FhirUnreachable,
                message=rf"did not answer within {TIMEOUT:g} s", web_status=504),
    ReportFault("read-timeout-once", lambda: [Fault("GET", PATIENT, requests.exceptions.ReadTimeout("read"))],
                "retried-and-succeeded", PATIENT, attempts=2, sleeps=BACKOFFS[:1]),
    ReportFault("read-timeout", lambda: [Fault("GET", PATIENT, requests.exceptions.ReadTimeout("read"), None)],
                "failed-clearly", PATIENT, attempts=RETRIES + 1, sleeps=BACKOFFS, error=FhirUnreachable,
                message=rf"did not answer within {TIMEOUT:g} s", web_status=504),
    ReportFault("connection-refused",
                lambda: [Fault("GET", COND, requests.exceptions.ConnectionError(
                    ConnectionRefusedError(111, "Connection refused")), None)],
                "failed-clearly", COND, attempts=RETRIES + 1, sleeps=BACKOFFS, error=FhirUnreachable,
                message=r"^FHIR server \S+ could not be reached: the connection was refused", web_status=504),
    ReportFault("500-then-200", lambda: [Fault("GET", OBS, status(500))],
                "retried-and-succeeded", OBS, attempts=2, sleeps=BACKOFFS[:1]),
    ReportFault("503-retry-after-2", lambda: [Fault("GET", "MedicationRequest", status(503, {"Retry-After": "2"}))],
                "retried-and-succeeded", "MedicationRequest", attempts=2, sleeps=(2.0,)),
    ReportFault("429-retry-after-1", lambda: [Fault("GET", COND, status(429, {"Retry-After": "1"}))],
                "retried-and-succeeded", COND, attempts=2, sleeps=(1.0,)),
    ReportFault("429-forever", lambda: [Fault("GET", OBS, status(429, {"Retry-After": "1"}), None)],
                "failed-clearly", OBS, attempts=RETRIES + 1, sleeps=(1.0,) * RETRIES, error=FhirUnreachable,
                message=rf"answered 429 after {RETRIES + 1} attempts", web_status=504),
    ReportFault("truncated-json-search", lambda: [Fault("GET", OBS, truncated, None)],
                "failed-clearly", OBS, attempts=1, sleeps=(), error=FhirRefused,
                message=r"not JSON", web_status=502),
    ReportFault("truncated-json-patient-read", lambda: [Fault("GET", PATIENT, truncated, None)],
                "failed-clearly", PATIENT, attempts=1, sleeps=(), error=FhirRefused,
                message=r"not JSON", web_status=502),
    ReportFault("next-link-to-itself", lambda: [Fault("GET", OBS, next_to_itself, None)],
                "succeeded", OBS, sleeps=()),
    ReportFault("next-links-cycle-of-two", lambda: [Fault("GET", OBS, two_page_cycle, None)],
                "succeeded", OBS, sleeps=()),
    ReportFault("next-chain-never-ends", lambda: [Fault("GET", OBS, endless_pages, None)],
                "failed-clearly", OBS, attempts=fc.MAX_PAGES, sleeps=(), error=FhirRefused,
                message=rf"more than {fc.MAX_PAGES} pages", web_status=502),
    ReportFault("operation-outcome-200-search", lambda: [Fault("GET", COND, operation_outcome_200(DIAG), None)],
                "failed-clearly", COND, attempts=1, sleeps=(), error=FhirRefused,
                message=re.escape(DIAG), web_status=502),
    ReportFault("operation-outcome-200-patient-read",
                lambda: [Fault("GET", PATIENT, operation_outcome_200("Patient access suspended"), None)],
                "failed-clearly", PATIENT, attempts=1, sleeps=(), error=FhirRefused,
                message=r"Patient access suspended", web_status=502),
    ReportFault("401-search-no-refresh-hook", lambda: [Fault("GET", OBS, status(401), None)],
                "failed-clearly", OBS, attempts=1, sleeps=(), error=FhirAuthError,
                message=r"401|authori[sz]ation", web_status=502),
    ReportFault("403-Immunization", lambda: [Fault("GET", "Immunization", status(403), None)],
                "degraded", "Immunization", attempts=1, sleeps=(), hidden="Immunization"),
    ReportFault("403-Procedure", lambda: [Fault("GET", "Procedure", status(403), None)],
                "degraded", "Procedure", attempts=1, sleeps=(), hidden="Procedure"),
]


def _expected_report(row: ReportFault, example: str) -> dict[str, Any]:
    return degraded_baseline(example, row.hidden) if row.hidden else baseline(example)


@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("row", REPORT_FAULTS, ids=lambda r: r.name)
def test_report_fault_client(row: ReportFault, example: str, rsps):
    expected = _expected_report(row, example)
    server = FakeFhir(example)
    server.install(rsps)
    server.inject(*row.faults())
    sleeps: list[float] = []
    client = recording_client(sleeps)
    record = error = None
    try:
        record = client.patient_record(server.patient_id)
    except Exception as exc:  # noqa: BLE001 - the type is asserted below
        error = exc
    attempts = len(server.calls_to("GET", row.path))
    if error is not None:
        entry = record_result("client", row.name, example, "failed-clearly", server,
                              attempts=attempts, message=str(error), error_type=type(error).__name__)
    else:
        entry = record_result("client", row.name, example,
                              "degraded" if record.not_accessible else
                              "retried-and-succeeded" if sleeps else "succeeded", server, attempts=attempts)
        entry["duplicate_resources"] = duplicate_resources(record.resources)

    if row.attempts is not None:
        assert attempts == row.attempts, f"{attempts} requests to {row.path}"
    if row.sleeps is not None:
        assert sorted(sleeps) == sorted(row.sleeps)
    if row.error is not None:
        assert isinstance(error, row.error), f"expected {row.error.__name__}, got {error!r}"
        assert_clear_message(str(error), row.message)
    else:
        assert error is None, f"unexpected {error!r}"
        assert entry["duplicate_resources"] == 0
        report = json_roundtrip(evaluate_record(record, RULESET, AS_OF))
        assert report == expected  # never a wrong determination
        if row.hidden:
            assert report["not_accessible"] == [row.hidden]
            assert record.not_accessible == {row.hidden}
            if report["determination"] != baseline(example)["determination"]:
                assert any("provisional" in w for w in report["warnings"])
    assert entry["outcome"] == row.outcome
    entry["as_expected"] = True


@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("row", REPORT_FAULTS, ids=lambda r: r.name)
def test_report_fault_web(row: ReportFault, example: str, rsps, tmp_path):
    expected = _expected_report(row, example)
    server = FakeFhir(example)
    server.install(rsps)
    web = launch_web(tmp_path, server)
    start = len(server.calls)
    server.inject(*row.faults())
    resp = web.client.get("/api/report")
    body = resp.get_json()
    # The Observation searches by category run after the report is known (for items still
    # missing); the faulted search is the first wave's.
    attempts = len([c for c in server.calls_to("GET", row.path, since=start) if "category" not in c.query])
    failed = resp.status_code >= 400
    entry = record_result("web", row.name, example,
                          "failed-clearly" if failed else
                          "degraded" if body.get("not_accessible") else
                          "retried-and-succeeded" if web.sleeps else "succeeded",
                          server, attempts=attempts, http_status=resp.status_code,
                          message=body.get("error") if failed else None)

    assert resp.status_code == row.web_status, body
    assert resp.is_json
    if row.attempts is not None:
        assert attempts == row.attempts, f"{attempts} requests to {row.path}"
    if row.sleeps is not None:
        assert sorted(web.sleeps) == sorted(row.sleeps)
    if row.error is not None:
        # An error, and no report (not even part of one).
        assert set(body) <= {"error", "hint"}, sorted(body)
        assert_clear_message(body["error"], row.message)
    else:
        assert body == expected  # identical to the fault-free report (or the degraded one)
    assert entry["outcome"] == row.outcome
    entry["as_expected"] = True


def test_fault_free_report_through_the_fake_server_equals_the_bundle_evaluation():
    """The fake server is faithful: the baseline equals the example evaluated directly."""
    for example in EXAMPLES:
        record = record_from_bundle(json.loads((EXAMPLES_DIR / example).read_text()))
        assert baseline(example) == json_roundtrip(evaluate_record(record, RULESET, AS_OF))
        assert baseline(example)["missing_documentation"], "the Task tests need missing items"


# =============================================================================================
# Paging faults at the search_all level
# =============================================================================================
PAGING = {
    "next-link-to-itself": next_to_itself,
    "next-links-cycle-of-two": two_page_cycle,
}


@pytest.mark.parametrize("name", sorted(PAGING))
def test_search_all_paging_loop_returns_each_resource_once(name: str, rsps):
    """A paging loop is detected and every resource is returned once. (patient_record
    de-duplicates by type/id afterwards, so the report rows above pass either way; this
    checks search_all itself, which upsert_task also uses for the Task search.)"""
    server = FakeFhir(EXAMPLES[0])
    server.install(rsps)
    server.inject(Fault("GET", OBS, PAGING[name], None))
    path = f"Observation?patient={server.patient_id}&_count=200"
    found = recording_client([]).search_all(path)
    entry = record_result("search_all", name, EXAMPLES[0], "succeeded", server,
                          attempts=len(server.calls_to("GET", OBS)))
    entry["duplicate_resources"] = duplicate_resources(found)
    expected = sorted(r["id"] for r in server.resources if r["resourceType"] == "Observation")
    assert sorted({r["id"] for r in found}) == expected  # nothing lost
    assert entry["duplicate_resources"] == 0, (
        f"search_all returned {len(found)} resources for {len(expected)} Observations "
        f"after {entry['attempts']} page requests")
    entry["as_expected"] = True


def test_search_all_endless_next_chain_stops_at_max_pages(rsps):
    server = FakeFhir(EXAMPLES[0])
    server.install(rsps)
    server.inject(Fault("GET", OBS, endless_pages, None))
    with pytest.raises(FhirRefused) as info:
        recording_client([]).search_all(f"Observation?patient={server.patient_id}&_count=200")
    attempts = len(server.calls_to("GET", OBS))
    entry = record_result("search_all", "next-chain-never-ends", EXAMPLES[0], "failed-clearly", server,
                          attempts=attempts, message=str(info.value))
    assert attempts == fc.MAX_PAGES
    assert_clear_message(str(info.value), rf"more than {fc.MAX_PAGES} pages")
    entry["as_expected"] = True


# =============================================================================================
# Task faults: upsert_task and POST /task
# =============================================================================================
@dataclass(frozen=True)
class TaskFault:
    name: str
    faults: Callable[[], list[Fault]]
    outcome: str  # retried-and-succeeded | succeeded | failed-clearly
    stale: bool = False  # a Task with this identifier but older content is already stored
    tasks_after: int = 1
    created: bool | None = None  # the "created" flag, where it is certain
    posts: int | None = None  # Task POSTs the client sends
    puts: int | None = None
    task_searches: int | None = None  # Task searches the client runs
    error: type[Exception] | None = None
    message: str | None = None


TASK_PUT = r"Task/.+"
TASK_FAULTS = [
    TaskFault("412-once-on-update", lambda: [Fault("PUT", TASK_PUT, status(412))],
              "retried-and-succeeded", stale=True, created=False, posts=0, puts=2, task_searches=2),
    TaskFault("412-forever-on-update", lambda: [Fault("PUT", TASK_PUT, status(412), None)],
              "failed-clearly", stale=True, posts=0, puts=8, error=FhirRefused, message=r"412"),
    TaskFault("412-once-on-create", lambda: [Fault("POST", "Task", status(412))],
              "retried-and-succeeded", created=True, posts=2, task_searches=2),
    TaskFault("412-forever-on-create", lambda: [Fault("POST", "Task", status(412), None)],
              "failed-clearly", tasks_after=0, posts=8, error=FhirRefused, message=r"412"),
    TaskFault("conditional-create-200-existing", lambda: [Fault("POST", "Task", another_writer_first)],
              "succeeded", created=False, posts=1, puts=0),
    TaskFault("201-empty-body-with-location", lambda: [Fault("POST", "Task", created_with_empty_body)],
              "succeeded", created=True, posts=1, task_searches=1),  # id read from Location
    TaskFault("500-on-create-after-storing", lambda: [Fault("POST", "Task", then(status(500)))],
              "retried-and-succeeded", posts=2, puts=0),  # created: reported False
    TaskFault("read-timeout-on-create-after-storing",
              lambda: [Fault("POST", "Task", then(requests.exceptions.ReadTimeout("read")))],
              "retried-and-succeeded", posts=2, puts=0),
    TaskFault("500-forever-on-create", lambda: [Fault("POST", "Task", status(500), None)],
              "failed-clearly", tasks_after=0, posts=RETRIES + 1, error=FhirUnreachable,
              message=rf"answered 500 after {RETRIES + 1} attempts"),
    TaskFault("500-then-200-on-task-search", lambda: [Fault("GET", "Task", status(500))],
              "retried-and-succeeded", created=True, posts=1, task_searches=2),
    TaskFault("truncated-json-on-task-search", lambda: [Fault("GET", "Task", truncated, None)],
              "failed-clearly", tasks_after=0, posts=0, error=FhirRefused, message=r"not JSON"),
    # The conditional create says "exists" (200 + the Task) but the Task search does not see
    # it yet: the client updates the Task the server handed back instead of searching again.
    TaskFault("conditional-create-200-but-search-lags",
              lambda: [Fault("POST", "Task", another_writer_first),
                       Fault("GET", "Task", search_lags, None)],
              "succeeded", created=False, posts=1, tasks_after=1),
]


def seed_stale_task(server: FakeFhir, report: dict[str, Any]) -> dict[str, Any]:
    """A Task from an older evaluation (one more item missing), stored as version 1."""
    old = build_task(report, APP_BASE, now=datetime(2025, 5, 1, tzinfo=UTC))
    old["description"] = "IVIG coverage: written by an earlier evaluation"
    old["input"] = old["input"] + [{**old["input"][0], "valueString": "an item documented since"}]
    with server.lock:
        return server.store_task(old)


def _task_counts(server: FakeFhir, start: int) -> dict[str, int]:
    return {"posts": len(server.calls_to("POST", "Task", since=start)),
            "puts": len(server.calls_to("PUT", TASK_PUT, since=start)),
            "task_searches": len(server.calls_to("GET", "Task", since=start))}


def _check_task_outcome(row: TaskFault, server: FakeFhir, report: dict[str, Any], stale: dict | None,
                        counts: dict[str, int], stored: dict | None, created: bool | None,
                        start: int) -> None:
    assert server.duplicate_tasks() == 0, "two Tasks carry the same identifier"
    assert len(server.tasks) == (1 if row.stale else row.tasks_after)
    for key in ("posts", "puts", "task_searches"):
        want = getattr(row, key)
        if want is not None:
            assert counts[key] == want, f"{key}: {counts[key]} != {want}"
    # Every create is conditional, on every attempt (a retried POST must not duplicate).
    for post in server.calls_to("POST", "Task", since=start):
        assert post.headers.get("If-None-Exist", "").startswith("identifier="), "POST without If-None-Exist"
    if row.error is None:
        (task,) = server.tasks.values()
        assert stored is not None and stored.get("id") == task["id"], "the stored Task's id was not found"
        # The Task reflects the fault-free report.
        assert task_codes(task) == missing_codes(report)
        assert task["businessStatus"]["coding"][0]["code"] == report["determination"]
        if row.created is not None:
            assert created is row.created
        if stale is not None:
            assert task["id"] == stale["id"] and task["meta"]["versionId"] == "2"
    elif stale is not None:  # a failed update leaves the stored Task as it was
        assert server.tasks[stale["id"]] == stale


@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("row", TASK_FAULTS, ids=lambda r: r.name)
def test_task_fault_client(row: TaskFault, example: str, rsps):
    report = baseline(example)
    server = FakeFhir(example)
    server.install(rsps)
    stale = seed_stale_task(server, report) if row.stale else None
    stale_copy = copy.deepcopy(stale)
    server.inject(*row.faults())
    sleeps: list[float] = []
    client = recording_client(sleeps)
    start = len(server.calls)
    stored = created = error = None
    try:
        stored, created = client.upsert_task(
            build_task(report, APP_BASE, now=NOW),
            lambda existing: build_task(report, APP_BASE, now=NOW, existing=existing))
    except Exception as exc:  # noqa: BLE001 - the type is asserted below
        error = exc
    counts = _task_counts(server, start)
    entry = record_result("client", f"task:{row.name}", example,
                          "failed-clearly" if error else
                          "retried-and-succeeded" if counts["posts"] + counts["puts"] > 1
                          or any(s >= BACKOFF for s in sleeps) else "succeeded",
                          server, **counts, created=created,
                          message=str(error) if error else None)
    if row.error is not None:
        assert isinstance(error, row.error), f"expected {row.error.__name__}, got {error!r}"
        assert_clear_message(str(error), row.message)
    else:
        assert error is None, f"unexpected {error!r}"
    _check_task_outcome(row, server, report, stale_copy, counts, stored, created, start)
    assert entry["outcome"] == row.outcome
    entry["as_expected"] = True


@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("row", TASK_FAULTS, ids=lambda r: r.name)
def test_task_fault_web(row: TaskFault, example: str, rsps, tmp_path):
    report = baseline(example)
    server = FakeFhir(example)
    server.install(rsps)
    web = launch_web(tmp_path, server)
    stale = seed_stale_task(server, report) if row.stale else None
    stale_copy = copy.deepcopy(stale)
    start = len(server.calls)
    server.inject(*row.faults())
    resp = web.post_task()
    body = resp.get_json()
    counts = _task_counts(server, start)
    failed = resp.status_code >= 400
    entry = record_result("web", f"task:{row.name}", example,
                          "failed-clearly" if failed else
                          "retried-and-succeeded" if counts["posts"] + counts["puts"] > 1
                          or any(s >= BACKOFF for s in web.sleeps) else "succeeded",
                          server, **counts, http_status=resp.status_code,
                          created=None if failed else body.get("created"),
                          message=body.get("error") if failed else None)
    if row.error is not None:
        assert resp.status_code == 502, body
        assert set(body) <= {"error", "hint"}, sorted(body)
        assert_clear_message(body["error"], r"^The Task could not be written: .*" + row.message)
        stored = created = None
    else:
        assert resp.status_code == 200, body
        stored, created = body["task"], body["created"]
    _check_task_outcome(row, server, report, stale_copy, counts, stored, created, start)
    assert entry["outcome"] == row.outcome
    entry["as_expected"] = True


def test_concurrent_writers_with_lost_answers_make_one_task(rsps):
    """Four writers at once; the first create's answer is lost after the server stored it."""
    report = baseline(EXAMPLES[0])
    server = FakeFhir(EXAMPLES[0])
    server.install(rsps)
    server.inject(Fault("POST", "Task", then(status(503))))
    results, errors = [], []

    def write():
        try:
            results.append(recording_client([]).upsert_task(
                build_task(report, APP_BASE, now=NOW),
                lambda existing: build_task(report, APP_BASE, now=NOW, existing=existing)))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    entry = record_result("client", "task:concurrent-writers-lost-answer", EXAMPLES[0],
                          "failed-clearly" if errors else "retried-and-succeeded", server,
                          posts=len(server.calls_to("POST", "Task")))
    assert not errors, errors
    assert server.duplicate_tasks() == 0 and len(server.tasks) == 1
    (task,) = server.tasks.values()
    assert {stored["id"] for stored, _ in results} == {task["id"]}
    entry["as_expected"] = True
