"""A small FHIR R4 REST client on ``requests``: the only module here that talks to a server.

* Independent searches run concurrently, so a patient costs about one round trip.
* ``next`` links are followed (bounded, and a link seen twice stops the loop) only on the
  FHIR server's own origin; the access token is never sent anywhere else, nor are
  redirects to another origin followed.
* 429 and 5xx answers and timeouts are retried with exponential backoff, honouring
  ``Retry-After``; other errors are raised at once as ``FhirError`` subclasses whose
  message is one human-readable line without PHI.
* A search the token may not run (401/403) marks the type "not accessible", which the
  report shows as such and never as "missing"; a search the server does not offer (absent
  from its CapabilityStatement, or refused with 400/404/405) marks it "not available".
* What is searched is a ``search_plan.SearchPlan`` (built from the CapabilityStatement,
  pure); this module only runs it.
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

import requests

from fhir_mappings.bundle import PatientRecord, operation_outcome_message

from .origins import same_origin
from .search_plan import (MEDICATION_TYPES, OPTIONAL_TYPES, UNKNOWN, Search, SearchPlan,
                          ServerCapabilities, build_search_plan, parse_capability_statement)

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
FORM = "application/x-www-form-urlencoded"
# Answers meaning "this server does not support that search" (degrade, do not fail).
UNSUPPORTED = {400, 404, 405, 501}
MAX_PAGES = 50
MAX_PAYOR_READS = 4  # payor Organizations read one by one when a server ignores _include
MAX_REDIRECTS = 5
REDIRECTS = {301, 302, 303, 307, 308}
# A FHIR id (R4 ``id`` datatype), but never "." or "..": those walk to other paths.
FHIR_ID = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9\-.]{1,64}$")


def is_fhir_id(value: object) -> bool:
    return isinstance(value, str) and FHIR_ID.match(value) is not None


class FhirError(Exception):
    """A FHIR server could not be used. ``str()`` is safe to show to a user."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class FhirUnreachable(FhirError):
    """Network failure, timeout, or retries exhausted: worth trying again later."""


class FhirRefused(FhirError):
    """The server answered with an error that retrying will not fix (4xx)."""


class FhirAuthError(FhirRefused):
    """401: the token is missing, expired or revoked."""


class PreconditionFailed(FhirRefused):
    """412: a conditional write lost a race (stale version, or the match changed)."""


def pooled_session(size: int) -> requests.Session:
    """A Session keeping up to ``size`` connections per host: as many as the searches that
    run at once, so none is opened only to be discarded ("connection pool is full")."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(size, 1))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _causes(exc: BaseException):
    """The exception and what it wraps (requests -> urllib3 -> socket)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [x for x in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args)
                 if isinstance(x, BaseException)]


def unreachable_message(base_url: str, exc: BaseException, timeout: float) -> str:
    """Why a request never got an answer, in words (no exception class names), naming the
    server's base URL (never the request's query: it holds the patient id)."""
    where = base_url.rstrip("/")
    causes = list(_causes(exc))
    if any(isinstance(e, requests.Timeout | TimeoutError) for e in causes):
        return f"FHIR server {where} did not answer within {timeout:g} s"
    if any(isinstance(e, socket.gaierror) or type(e).__name__ == "NameResolutionError" for e in causes):
        why = "its host name was not found"
    elif any(isinstance(e, ConnectionRefusedError) for e in causes):
        why = "the connection was refused (is the server running, and is the port right?)"
    elif any(isinstance(e, ssl.SSLError) or isinstance(e, requests.exceptions.SSLError) for e in causes):
        why = "the secure (TLS) connection failed"
    elif any(isinstance(e, ConnectionResetError) for e in causes):
        why = "the connection was reset"
    else:
        why = "the connection failed"
    return f"FHIR server {where} could not be reached: {why}"


@dataclass
class FhirClient:
    base_url: str
    token: str | None = None
    timeout: float = 15.0
    retries: int = 3
    backoff: float = 0.5
    max_workers: int = 16  # >= searches + 1, so one patient is one wave of requests
    session: requests.Session | None = None  # default: pooled_session(max_workers)
    # Refresh hook, called with the token that was refused; returns the token to retry with.
    on_unauthorized: Callable[[str | None], str | None] | None = None
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/") + "/"
        if self.session is None:
            self.session = pooled_session(self.max_workers)

    # --- low level ------------------------------------------------------------------------
    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": FHIR_JSON}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def url(self, path: str) -> str:
        return urljoin(self.base_url, path)

    def request(self, method: str, path_or_url: str, *, body: Any = None, form: str | None = None,
                headers: dict[str, str] | None = None) -> requests.Response:
        url = self._on_server(path_or_url)
        data = json.dumps(body) if body is not None else form
        extra = dict(headers or {})
        if data is not None:
            extra.setdefault("Content-Type", FHIR_JSON if form is None else FORM)
        refreshed = False
        attempt = 0
        while True:
            used = self.token
            try:
                resp = self._send(method, url, data, self._headers(extra))
            except requests.RequestException as exc:  # timeouts, refused connections, resets
                if attempt < self.retries:
                    self.sleep(self.backoff * 2**attempt)
                    attempt += 1
                    continue
                raise FhirUnreachable(unreachable_message(self.base_url, exc, self.timeout)) from exc
            if resp.status_code == 429 or resp.status_code >= 500:
                if attempt < self.retries:
                    self.sleep(_retry_after(resp, self.backoff * 2**attempt))
                    attempt += 1
                    continue
                raise FhirUnreachable(
                    f"FHIR server answered {resp.status_code} after {self.retries + 1} attempts",
                    resp.status_code,
                )
            if resp.status_code == 401 and self.on_unauthorized and not refreshed:
                new = self.on_unauthorized(used)
                refreshed = True
                if new:
                    self.token = new
                    continue
            if resp.status_code == 401:
                raise FhirAuthError("FHIR server refused the access token (401)", 401)
            if resp.status_code == 412:
                raise PreconditionFailed("FHIR server rejected a conditional write (412)", 412)
            if resp.status_code >= 400:
                raise FhirRefused(f"FHIR server answered {resp.status_code}: {_oo_text(resp)}",
                                  resp.status_code)
            return resp

    # --- the token stays on the FHIR server's origin -----------------------------------------
    def _on_server(self, path_or_url: str) -> str:
        """The absolute URL for a path or URL, refused unless it is on the FHIR server's origin
        (scheme, host and port): an absolute link, ``//host`` or an http link for an https
        server is never sent the access token."""
        url = urljoin(self.base_url, path_or_url)
        if not same_origin(url, self.base_url):
            raise FhirRefused("the FHIR server named a URL on another server; the app does not "
                              "send requests (or the access token) there")
        return url

    def _send(self, method: str, url: str, data: str | None, headers: dict[str, str]) -> requests.Response:
        """One request; redirects are followed only on the FHIR server's origin (at most
        MAX_REDIRECTS), so neither the token nor the request leaves it."""
        for _ in range(MAX_REDIRECTS + 1):
            resp = self.session.request(method, url, data=data, headers=headers, timeout=self.timeout,
                                        allow_redirects=False)
            location = resp.headers.get("Location")
            if resp.status_code not in REDIRECTS or not location:
                return resp
            target = urljoin(url, location)
            if not same_origin(target, self.base_url):
                raise FhirRefused(f"FHIR server redirected ({resp.status_code}) to another server; "
                                  "not followed", resp.status_code)
            if resp.status_code == 303 or (resp.status_code in (301, 302) and method != "GET"):
                method, data = "GET", None
            url = target
        raise FhirRefused(f"FHIR server redirected more than {MAX_REDIRECTS} times; stopped")

    def json(self, method: str, path_or_url: str, **kw: Any) -> Any:
        resp = self.request(method, path_or_url, **kw)
        if not resp.content:
            return None
        try:
            data = resp.json()
        except (ValueError, RecursionError):
            raise FhirRefused("FHIR server sent a response that is not JSON", resp.status_code) from None
        return data

    # --- reads ----------------------------------------------------------------------------
    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        if not is_fhir_id(rid):
            raise FhirRefused(f"not a FHIR id: {rtype} ids are 1-64 letters, digits, '-' or '.'")
        data = self.json("GET", f"{rtype}/{quote(rid, safe='')}")
        if not isinstance(data, dict) or data.get("resourceType") != rtype:
            if isinstance(data, dict) and data.get("resourceType") == "OperationOutcome":
                raise FhirRefused(f"FHIR server sent an OperationOutcome: {operation_outcome_message(data)}")
            raise FhirRefused(f"FHIR server did not return a {rtype}")
        return data

    def search_all(self, path: str, form: str | None = None) -> list[dict[str, Any]]:
        """Every resource of a search, following ``next`` links (bounded, loop-safe).

        ``form``: the search's parameters for ``POST {path}`` (``Type/_search``); the pages
        after the first are the server's ``next`` links, read with GET.
        """
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        url: str | None = path
        pages = 0
        while url:
            try:
                url = self._on_server(url)
            except FhirRefused:
                raise FhirRefused("the FHIR server's next-page link points to another server; paging "
                                  "stopped (the access token is only sent to the FHIR server)") from None
            if url in seen:
                log.warning("search paging loop detected; stopped")
                break
            seen.add(url)
            pages += 1
            if pages > MAX_PAGES:
                raise FhirRefused(f"search returned more than {MAX_PAGES} pages; stopped")
            bundle = self.json("POST", url, form=form) if form is not None and pages == 1 else self.json("GET", url)
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                if isinstance(bundle, dict) and bundle.get("resourceType") == "OperationOutcome":
                    raise FhirRefused(
                        f"FHIR server sent an OperationOutcome: {operation_outcome_message(bundle)}"
                    )
                raise FhirRefused("FHIR server answered a search without a Bundle")
            for entry in bundle.get("entry") or []:
                res = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(res, dict) and res.get("resourceType") not in (None, "OperationOutcome"):
                    out.append(res)
            url = next(
                (lk.get("url") for lk in bundle.get("link") or []
                 if isinstance(lk, dict) and lk.get("relation") == "next"),
                None,
            )
        return out

    def capabilities(self) -> ServerCapabilities:
        """The server's searches from its CapabilityStatement (``GET metadata``, public: no
        token is sent). One attempt: when it fails or is not a CapabilityStatement the result
        is UNKNOWN (every search is tried and refusals degrade); the searches then meet any
        real outage themselves."""
        try:
            resp = self.session.get(self.url("metadata"), headers={"Accept": FHIR_JSON}, timeout=self.timeout,
                                    allow_redirects=False)
            cs = resp.json() if resp.status_code == 200 else None
        except (requests.RequestException, ValueError, RecursionError):
            cs = None
        caps = parse_capability_statement(cs)
        if not caps.known:
            log.info("no usable CapabilityStatement; searches are not pre-checked")
        return caps

    def run_search(self, search: Search) -> tuple[list[dict[str, Any]] | None, str]:
        """(resources, outcome) of one search and, if the server refuses it as unsupported,
        of its alternatives: outcome ``ok``, ``not-accessible`` (403) or ``not-available``."""
        try:
            if search.post:
                return self.search_all(search.path, form=search.query), "ok"
            return self.search_all(search.path), "ok"
        except FhirAuthError:
            raise
        except FhirRefused as exc:
            if exc.status == 403:
                return None, "not-accessible"
            if exc.status not in UNSUPPORTED:
                raise
            log.info("%s search (%s) refused with %d; trying what else the plan allows",
                     search.rtype, search.purpose, exc.status)
        for group in search.alternatives:
            outcomes = [self.run_search(alt) for alt in group]
            found = [res for res, outcome in outcomes if outcome == "ok"]
            if found:
                return [r for part in found for r in part], "ok"
            if any(outcome == "not-accessible" for _, outcome in outcomes):
                return None, "not-accessible"
        return None, "not-available"

    def fetch(self, plan: SearchPlan) -> PatientRecord:
        """The Patient and every search of the plan's first wave, concurrently; then, if
        some medication resource names a Medication the answers did not include, those
        Medications by id (one more round trip, only on servers without ``_include``)."""
        warnings: list[str] = []

        def run(search: Search) -> tuple[list[dict[str, Any]] | None, str]:
            if search.rtype not in OPTIONAL_TYPES:
                return self.run_search(search)
            try:  # the criteria do not read it: a failure costs a warning, never the report
                return self.run_search(search)
            except FhirRefused as exc:
                if isinstance(exc, FhirAuthError):
                    raise
                warnings.append(f"The FHIR server did not answer the {search.rtype} search ({exc})")
                return [], "ok"

        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(plan.searches) + 1)) as pool:
            patient_future = pool.submit(self.read, "Patient", plan.patient_id)
            results = list(pool.map(run, plan.searches))
            patient = patient_future.result()
        record = PatientRecord(patient=patient, resources=[], warnings=warnings,
                               not_accessible=set(plan.not_accessible), not_available=set(plan.not_available))
        _merge(record, plan.searches, results)
        if plan.medications_readable:
            self._add_medications(record)
        seen = {f"{r.get('resourceType')}/{r.get('id')}" for r in record.resources}
        record.resources += self.payors_not_included(record.resources, seen)
        return record

    def extend(self, record: PatientRecord, searches: list[Search], medications: bool = True) -> list[str]:
        """Run further searches (the plan's fallback) and add what they find to ``record``.

        A further search that the server refuses, or that pages beyond the limit, loses
        nothing already found: it is named in the returned notes instead.
        """
        notes: list[str] = []

        def run(search: Search) -> tuple[list[dict[str, Any]] | None, str]:
            try:
                return self.run_search(search)
            except FhirRefused as exc:
                if isinstance(exc, FhirAuthError):
                    raise
                return None, f"failed: {exc}"

        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(searches) or 1)) as pool:
            results = list(pool.map(run, searches))
        for search, (found, outcome) in zip(searches, results, strict=True):
            if found is None:
                notes.append(f"The FHIR server did not answer the {search.rtype} search by "
                             f"{search.purpose.replace(':', ' ')} ({outcome.replace('-', ' ')}); "
                             "results it holds only under local codes could not be looked for.")
        _merge(record, searches, [(found or [], "ok") for found, _ in results])
        if medications:
            self._add_medications(record)
        return notes

    def _add_medications(self, record: PatientRecord) -> None:
        have = {f"{r.get('resourceType')}/{r.get('id')}" for r in record.resources}
        wanted = sorted({ref for r in record.resources if r.get("resourceType") in MEDICATION_TYPES
                         for ref in [_medication_reference(r)] if ref and ref not in have})
        if not wanted:
            return
        ids = [ref.split("/", 1)[1] for ref in wanted]
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), 50):
            chunk = ",".join(ids[start:start + 50])
            res, outcome = self.run_search(Search("Medication", (("_id", chunk), ("_count", "50")), "id"))
            if outcome != "ok":  # no Medication search: read them one by one
                res = []
                for rid in ids[start:start + 50]:
                    try:
                        res.append(self.read("Medication", rid))
                    except FhirRefused:
                        continue  # the normaliser warns that the Medication is not in the record
            found.extend(res or [])
        _merge(record, [Search("Medication", ())], [(found, "ok")])

    def payors_not_included(self, resources: list[dict[str, Any]], seen: set[str]) -> list[dict[str, Any]]:
        """The payor Organizations of active Coverages that the search did not include
        (a server that ignores ``_include``): read concurrently, best effort. Without
        them the payer is known only by the reference's display or identifier."""
        wanted: list[str] = []
        for cov in resources:
            if cov.get("resourceType") != "Coverage" or cov.get("status") != "active":
                continue
            for payor in cov.get("payor") or []:
                ref = payor.get("reference") if isinstance(payor, dict) else None
                if isinstance(ref, str) and ref.startswith(self.base_url):  # this server, absolute
                    ref = ref[len(self.base_url):]
                m = re.fullmatch(r"Organization/([A-Za-z0-9\-.]{1,64})", ref or "")
                if m and f"Organization/{m.group(1)}" not in seen and m.group(1) not in wanted:
                    wanted.append(m.group(1))
        if not wanted:
            return []

        def read(oid: str) -> dict[str, Any] | None:
            try:
                return self.read("Organization", oid)
            except FhirError:
                return None

        with ThreadPoolExecutor(max_workers=MAX_PAYOR_READS) as pool:
            found = list(pool.map(read, wanted[:MAX_PAYOR_READS]))
        return [org for org in found if org is not None]

    def patient_record(self, patient_id: str, readable: set[str] | None = None,
                       capabilities: ServerCapabilities = UNKNOWN) -> PatientRecord:
        """The Patient and every resource of the first wave of the search plan for this
        server (``capabilities``) and these scopes (``readable``: None = all types)."""
        return self.fetch(build_search_plan(patient_id, capabilities, readable))

    # --- write-back: Task, QuestionnaireResponse, DocumentReference -------------------------
    def upsert_task(self, task: dict[str, Any], build: Callable[[dict[str, Any] | None], dict[str, Any] | None]
                    ) -> tuple[dict[str, Any] | None, bool]:
        """The Task by its identifier (``upsert``). Returns (task, created)."""
        return self.upsert("Task", task["identifier"][0], build)

    def upsert(self, rtype: str, ident: dict[str, str],
               build: Callable[[dict[str, Any] | None], dict[str, Any] | None], *,
               rid: str | None = None) -> tuple[dict[str, Any] | None, bool]:
        """Create the resource if none carries ``ident``, else update it in place.

        ``build(existing)`` makes the body given the stored one (or None; None from it: write
        nothing). Found by an identifier search and created by a conditional create
        (``If-None-Exist``); or, with ``rid`` (a deterministic logical id), read by that id
        and created with a PUT to it, so neither a search nor a second resource is possible.
        An update carries ``If-Match`` with the stored version, and a 412 (someone else
        wrote first) re-reads and retries, so concurrent writers never make two. A stored
        resource the body would not change is left alone. Returns (resource, created).
        """
        query = _identifier_query(ident)
        known: dict[str, Any] | None = None  # a resource the server just handed back
        for attempt in range(8):
            if attempt and known is None:  # lost a race: let the other writer finish first
                self.sleep(random.uniform(0, 0.05 * attempt))
            if known is not None:
                current, known = known, None
            else:
                current = self._stored(rtype, query, ident, rid)
            body = build(current)
            if body is None:
                return None, False
            try:
                if current is None and rid is not None:
                    body["id"] = rid
                    resp = self.request("PUT", f"{rtype}/{quote(rid, safe='')}", body=body)
                    return _body_or_none(resp) or body, resp.status_code == 201
                if current is None:
                    stored, created = self.create_once(rtype, body, ident)
                    if created:
                        return stored, True
                    known = stored  # it already existed: update that one
                    continue
                if _same_content(current, body):  # e.g. a concurrent writer stored this already
                    return current, False
                version = (current.get("meta") or {}).get("versionId")
                headers = {"If-Match": f'W/"{version}"'} if version else {}
                body["id"] = current["id"]
                resp = self.request("PUT", f"{rtype}/{quote(current['id'], safe='')}", body=body,
                                    headers=headers)
                return _body_or_none(resp) or body, False
            except PreconditionFailed:
                continue
        raise FhirRefused(f"could not write the {rtype}: it kept changing on the server (412)")

    def create_once(self, rtype: str, body: dict[str, Any], ident: dict[str, str]
                    ) -> tuple[dict[str, Any] | None, bool]:
        """A conditional create (``If-None-Exist`` on the identifier): (the resource,
        True) when created, (the one that already carries the identifier, False) else."""
        query = _identifier_query(ident)
        resp = self.request("POST", rtype, body=body, headers={"If-None-Exist": query})
        stored = self._written(rtype, resp, query, ident)
        if resp.status_code == 201:
            return stored or body, True
        return stored, False

    def read_existing(self, rtype: str, ids: list[str]) -> list[dict[str, Any]]:
        """The resources with these ids that exist and may be read (concurrent reads; a
        404, 410 or 403 is skipped)."""
        def read(rid: str) -> dict[str, Any] | None:
            try:
                return self.read(rtype, rid)
            except FhirAuthError:
                raise
            except FhirRefused as exc:
                if exc.status in (403, 404, 410):
                    return None
                raise

        with ThreadPoolExecutor(max_workers=max(1, min(self.max_workers, len(ids)))) as pool:
            return [r for r in pool.map(read, ids) if r is not None]

    def _stored(self, rtype: str, query: str, ident: dict[str, str], rid: str | None) -> dict[str, Any] | None:
        """The stored resource: read by its id, else searched by identifier (kept only if it
        really carries it: a server that ignores the parameter answers with everything)."""
        if rid is not None:
            found = self.read_existing(rtype, [rid])
            return found[0] if found else None
        existing = [r for r in self.search_all(f"{rtype}?{query}") if _carries(r, ident)]
        if len(existing) > 1:
            log.warning("more than one %s carries the same identifier; updating the first", rtype)
        return existing[0] if existing else None

    def _written(self, rtype: str, resp: requests.Response, query: str, ident: dict[str, str]
                 ) -> dict[str, Any] | None:
        """The resource a create answered with: its body, else the one its Location names,
        else a search by identifier."""
        stored = _body_or_none(resp)
        if stored is not None and stored.get("resourceType") == rtype and stored.get("id"):
            return stored
        location = resp.headers.get("Location") or resp.headers.get("Content-Location") or ""
        m = re.search(rf"(?:^|/){rtype}/([A-Za-z0-9\-.]{{1,64}})(?:/_history/[^/]+)?/?$", location)
        if m:
            try:
                return self.read(rtype, m.group(1))
            except FhirError:
                pass
        found = [r for r in self.search_all(f"{rtype}?{query}") if _carries(r, ident)]
        return found[0] if found else None


def _identifier_query(ident: dict[str, str]) -> str:
    return f"identifier={quote(ident['system'], safe='')}|{quote(ident['value'], safe='')}"


def _carries(resource: dict[str, Any], ident: dict[str, str]) -> bool:
    """The resource carries the identifier (``identifier`` is a list on most types, a single
    Identifier on QuestionnaireResponse)."""
    found = resource.get("identifier")
    items = found if isinstance(found, list) else [found]
    return any(isinstance(i, dict) and i.get("system") == ident["system"] and i.get("value") == ident["value"]
               for i in items)


_VOLATILE = {"id", "meta", "text", "lastModified"}


def _same_content(stored: dict[str, Any], body: dict[str, Any]) -> bool:
    """True when writing ``body`` would change nothing but timestamps and bookkeeping."""
    def strip(res: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in res.items() if k not in _VOLATILE}
    return strip(stored) == strip(body)


def _body_or_none(resp: requests.Response) -> dict[str, Any] | None:
    try:
        data = resp.json() if resp.content else None
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _retry_after(resp: requests.Response, default: float) -> float:
    value = resp.headers.get("Retry-After")
    if value and value.strip().isdigit():
        return min(float(value), 30.0)
    return default


def _oo_text(resp: requests.Response) -> str:
    try:
        data = resp.json()
    except (ValueError, RecursionError):
        return "no details"
    if isinstance(data, dict) and data.get("resourceType") == "OperationOutcome":
        return operation_outcome_message(data)
    return "no details"


def _merge(record: PatientRecord, searches: tuple[Search, ...] | list[Search],
           results: list[tuple[list[dict[str, Any]] | None, str]]) -> None:
    """Add search results to the record once each; a type no search could read is marked."""
    seen = {f"{r.get('resourceType')}/{r.get('id')}" for r in record.resources}
    read_by_type: dict[str, bool] = {}
    refused: dict[str, str] = {}
    for search, (found, outcome) in zip(searches, results, strict=True):
        if found is None:
            refused.setdefault(search.rtype, outcome)
            continue
        read_by_type[search.rtype] = True
        for res in found:
            key = f"{res.get('resourceType')}/{res.get('id')}"
            if key not in seen:
                seen.add(key)
                record.resources.append(res)
    for rtype, outcome in refused.items():
        if read_by_type.get(rtype):
            continue
        (record.not_accessible if outcome == "not-accessible" else record.not_available).add(rtype)


def _medication_reference(resource: dict[str, Any]) -> str | None:
    """``Medication/{id}`` a medication resource points at on this server, if any."""
    ref = resource.get("medicationReference")
    target = ref.get("reference") if isinstance(ref, dict) else None
    if isinstance(target, str) and re.fullmatch(r"Medication/[A-Za-z0-9\-.]{1,64}", target):
        return target
    return None
