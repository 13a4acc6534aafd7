"""Which searches to send for one patient: US Core search shapes, limited to what the server
declares in its CapabilityStatement. Pure (data in, data out); ``fhir_client`` runs the plan.

Shapes (US Core 3.1 – 7: the searches a US Core server SHALL support):

* ``Observation``: ``patient`` + ``code`` with every LOINC code of the lab value sets the
  normaliser reads (derived from the loaded terminology, never listed here), one page of up
  to ``CODED_PAGE_SIZE``; sent as ``POST Observation/_search`` when the query would make a
  long URL. ``patient`` + ``category`` (``laboratory``, ``vital-signs``) finds what codes
  cannot: results coded only locally or by text. Those category searches are the
  *fallback*: run only when the coded searches left a documentation item that an
  Observation could supply (see ``fallback_categories``), so a chart of ten thousand vital
  signs costs one round trip when the codes found what the criteria need.
* every other type: ``patient`` (``subject`` when only that is declared), with
  ``_include`` of the Medication for the medication types when the server declares it,
  and of the payor Organizations for ``Coverage``.

A type the server does not offer (no ``search-type`` interaction, or no patient search
parameter) is *not available* (reported like "not accessible": never "missing", never a
failure). With no CapabilityStatement (unreadable ``/metadata``) every search is tried and
a 400/404/405 answer degrades the same way, through each search's alternatives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlencode

OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LOINC = "http://loinc.org"
PAGE_SIZE = 200
CODED_PAGE_SIZE = 1000  # a server may cap it lower; paging then follows
MAX_URL_QUERY = 1800  # longer queries go as POST _search (URLs over ~2 KB are refused by some proxies)
FALLBACK_CATEGORIES = ("laboratory", "vital-signs")
# Resource types searched for one patient (besides the Patient read), in a fixed order.
PATIENT_TYPES = ("Observation", "Condition", "MedicationRequest", "MedicationAdministration",
                 "MedicationDispense", "MedicationStatement", "Immunization", "Procedure",
                 "DiagnosticReport", "AllergyIntolerance")
MEDICATION_TYPES = ("MedicationRequest", "MedicationAdministration", "MedicationDispense",
                    "MedicationStatement")
# Searched too, but not read by the criteria (who pays: smart_app/payers.py chooses the
# ruleset): a failed search costs a warning, never the report.
OPTIONAL_TYPES = ("Coverage",)


# --- what the server offers ------------------------------------------------------------------
@dataclass(frozen=True)
class ServerCapabilities:
    """Searches a CapabilityStatement declares. ``known`` False: none was read (assume all).

    ``params[type]`` is None when the type is searchable but its parameters are not listed.
    """

    known: bool = False
    params: Mapping[str, frozenset[str] | None] = field(default_factory=dict)
    includes: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def offers(self, rtype: str) -> bool:
        return not self.known or rtype in self.params

    def supports(self, rtype: str, param: str) -> bool:
        if not self.known:
            return True
        if rtype not in self.params:
            return False
        declared = self.params[rtype]
        return declared is None or param in declared

    def includes_param(self, rtype: str, include: str) -> bool:
        """True when ``searchInclude`` declares ``include`` (or ``*``) for ``rtype``."""
        declared = self.includes.get(rtype, frozenset())
        return include in declared or "*" in declared


UNKNOWN = ServerCapabilities()


def parse_capability_statement(cs: Any) -> ServerCapabilities:
    """The searches of a CapabilityStatement's server ``rest`` entries; UNKNOWN if unreadable."""
    if not isinstance(cs, dict) or cs.get("resourceType") != "CapabilityStatement":
        return UNKNOWN
    params: dict[str, frozenset[str] | None] = {}
    includes: dict[str, frozenset[str]] = {}
    rests = [r for r in cs.get("rest") or [] if isinstance(r, dict) and r.get("mode", "server") == "server"]
    if not rests:
        return UNKNOWN
    for rest in rests:
        for res in rest.get("resource") or []:
            if not isinstance(res, dict) or not isinstance(res.get("type"), str):
                continue
            interactions = res.get("interaction")
            if isinstance(interactions, list) and not any(
                    isinstance(i, dict) and i.get("code") == "search-type" for i in interactions):
                continue  # readable perhaps, but not searchable
            declared = res.get("searchParam")
            names = (frozenset(p["name"] for p in declared if isinstance(p, dict) and isinstance(p.get("name"), str))
                     if isinstance(declared, list) else None)
            rtype = res["type"]
            previous = params.get(rtype, frozenset())
            params[rtype] = None if names is None or previous is None else previous | names
            incs = res.get("searchInclude")
            if isinstance(incs, list):
                includes[rtype] = includes.get(rtype, frozenset()) | {i for i in incs if isinstance(i, str)}
    if not params and not any(isinstance(r.get("resource"), list) and r["resource"] for r in rests):
        return UNKNOWN  # a CapabilityStatement that lists no resources describes no searches
    return ServerCapabilities(True, params, includes)


# --- the plan ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Search:
    """One search: ``GET {type}?{query}``, or ``POST {type}/_search`` with the query as form.

    ``alternatives``: what to send instead, in order, when the server refuses this search
    as unsupported (400, 404, 405); each alternative is a group of searches run together.
    """

    rtype: str
    params: tuple[tuple[str, str], ...]
    purpose: str = "patient"
    post: bool = False
    alternatives: tuple[tuple[Search, ...], ...] = ()

    @property
    def query(self) -> str:
        return urlencode(self.params, safe=":|,/")

    @property
    def path(self) -> str:
        return f"{self.rtype}/_search" if self.post else f"{self.rtype}?{self.query}"


@dataclass(frozen=True)
class SearchPlan:
    patient_id: str
    searches: tuple[Search, ...]  # the first wave, sent at once
    fallback: Mapping[str, Search]  # Observation category -> search, when codes found too little
    not_accessible: frozenset[str] = frozenset()  # scopes do not cover the type
    not_available: frozenset[str] = frozenset()  # the server does not offer the type or search
    notes: tuple[str, ...] = ()  # for the report: searches the server lacks that lose nothing yet
    medications_included: frozenset[str] = frozenset()  # types whose search includes Medication
    medications_readable: bool = True  # referenced Medications may be read (scopes)


@cache
def observation_codes() -> tuple[str, ...]:
    """LOINC codes of every value set the normaliser turns into lab facts, from the loaded
    terminology (the same value sets the rulesets' criteria read), sorted."""
    from fhir_mappings.normalize import LAB_UNITS
    from fhir_mappings.terminology import default_terminology

    tx = default_terminology()
    return tuple(sorted({c.code for name in LAB_UNITS if name in tx
                         for c in tx.valuesets[name].concepts if c.system == LOINC}))


def _patient_param(caps: ServerCapabilities, rtype: str, patient_id: str) -> tuple[str, str] | None:
    if caps.supports(rtype, "patient"):
        return ("patient", patient_id)
    if caps.supports(rtype, "subject"):
        return ("subject", f"Patient/{patient_id}")
    return None


def _coded(rtype: str, who: tuple[str, str], codes: Iterable[str], page: int) -> Search:
    codes = list(codes)
    params = (who, ("code", ",".join(f"{LOINC}|{c}" for c in codes)), ("_count", str(page)))
    long_url = len(urlencode(params, safe=":|,/")) > MAX_URL_QUERY
    gets = _chunked_gets(rtype, who, codes, page) if long_url else ()
    return Search(rtype, params, "code", post=long_url, alternatives=((gets,) if gets else ()))


def _chunked_gets(rtype: str, who: tuple[str, str], codes: list[str], page: int) -> tuple[Search, ...]:
    """The coded search as several GETs whose URLs stay short (for servers refusing POST)."""
    out, chunk = [], []
    for code in codes:
        trial = (who, ("code", ",".join(f"{LOINC}|{c}" for c in [*chunk, code])), ("_count", str(page)))
        if chunk and len(urlencode(trial, safe=":|,/")) > MAX_URL_QUERY:
            out.append(Search(rtype, (who, ("code", ",".join(f"{LOINC}|{c}" for c in chunk)),
                                      ("_count", str(page))), "code"))
            chunk = []
        chunk.append(code)
    if chunk:
        out.append(Search(rtype, (who, ("code", ",".join(f"{LOINC}|{c}" for c in chunk)),
                                  ("_count", str(page))), "code"))
    return tuple(out)


def _category(rtype: str, who: tuple[str, str], category: str, page: int) -> Search:
    return Search(rtype, (who, ("category", f"{OBS_CATEGORY}|{category}"), ("_count", str(page))),
                  f"category:{category}")


def build_search_plan(patient_id: str, caps: ServerCapabilities = UNKNOWN,
                      readable: set[str] | None = None, codes: Iterable[str] | None = None, *,
                      page_size: int = PAGE_SIZE, coded_page_size: int = CODED_PAGE_SIZE) -> SearchPlan:
    """The searches for ``patient_id`` given what the server offers and the scopes allow.

    ``readable``: the types the granted scopes cover (None: all). ``codes``: the LOINC codes
    for the coded Observation search (default: ``observation_codes()``).
    """
    codes = tuple(observation_codes() if codes is None else codes)
    searches: list[Search] = []
    fallback: dict[str, Search] = {}
    not_accessible = {t for t in PATIENT_TYPES if readable is not None and t not in readable}
    not_available: set[str] = set()
    notes: list[str] = []
    included: set[str] = set()
    not_accessible |= {t for t in OPTIONAL_TYPES if readable is not None and t not in readable}
    for rtype in (*PATIENT_TYPES, *OPTIONAL_TYPES):
        if rtype in not_accessible:
            continue
        who = _patient_param(caps, rtype, patient_id) if caps.offers(rtype) else None
        if who is None:
            not_available.add(rtype)
            continue
        bare = Search(rtype, (who, ("_count", str(page_size))))
        if rtype == "Observation":
            by_category = {c: _category(rtype, who, c, page_size) for c in FALLBACK_CATEGORIES}
            has_code, has_category = caps.supports(rtype, "code"), caps.supports(rtype, "category")
            if has_code and codes:
                coded = _coded(rtype, who, codes, coded_page_size)
                # Refused as unsupported (no code search after all): the category searches.
                alternative = tuple(by_category.values()) if has_category else (bare,)
                searches.append(Search(coded.rtype, coded.params, coded.purpose, coded.post,
                                       (*coded.alternatives, alternative)))
                if has_category:
                    fallback.update(by_category)
                else:
                    notes.append("This FHIR server does not offer Observation search by category, so "
                                 "results it holds only under local codes could not be looked for.")
            elif has_category:
                searches.extend(by_category.values())
            else:
                searches.append(bare)
            continue
        if rtype == "Coverage":
            # Who pays (the payor Organizations included), to choose the payer's ruleset.
            payor = not caps.known or caps.includes_param(rtype, "Coverage:payor")
            small = Search(rtype, (who, ("_count", "50")))
            searches.append(Search(rtype, (who, ("_include", "Coverage:payor"), ("_count", "50")),
                                   "patient+payor", alternatives=((small,),)) if payor else small)
            continue
        # Without a CapabilityStatement only the MedicationRequest search asks for _include
        # (as US Core servers offer it); a refusal retries without it.
        include = (caps.includes_param(rtype, f"{rtype}:medication") if caps.known
                   else rtype == "MedicationRequest")
        if rtype in MEDICATION_TYPES and include:
            with_med = Search(rtype, (who, ("_include", f"{rtype}:medication"), ("_count", str(page_size))),
                              "patient+medication", alternatives=((bare,),))
            searches.append(with_med)
            included.add(rtype)
            continue
        searches.append(bare)
    return SearchPlan(patient_id, tuple(searches), fallback, frozenset(not_accessible),
                      frozenset(not_available), tuple(notes), frozenset(included),
                      medications_readable=readable is None or "Medication" in readable)


def fallback_categories(report: dict[str, Any]) -> set[str]:
    """Observation categories worth searching after the coded searches: those that could supply
    a documentation item the report still lists as missing (its own or another indication's).
    Body weight is a vital sign; every other Observation-supplied item is a laboratory result."""
    from .engine.model import documentation_codes

    codes = documentation_codes()
    sections = [report, *(report.get("other_indications") or [])]
    wanted: set[str] = set()
    for section in sections:
        for item in section.get("missing_documentation") or []:
            definition = codes.get(item.get("code"))
            if definition is not None and "Observation" in definition.sources:
                wanted.add("vital-signs" if item["code"] == "body-weight" else "laboratory")
    return wanted
