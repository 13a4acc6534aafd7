"""Value sets kept as data: a TOML manifest plus one CSV per value set.

The files live in ``fhir_mappings/data/`` (see the README there). They are loaded
strictly: an unknown manifest key, an unknown CSV column, an unknown code system or a
status other than ``verified``/``unverified`` fails at load time with the file and line.

Matching rules (documented here because they are the semantics of the data):

* ICD-10-CM entries match the code itself and every descendant: ICD-10-CM is
  hierarchical by prefix, so ``D80`` matches ``D80.1`` and ``D80.1`` matches ``D80.1x``.
  Dots and case are ignored when comparing.
* Every other system matches the exact code.
* The pseudo-system ``text`` matches a lower-case term as a whole word (or phrase) in a
  CodeableConcept's ``text`` or a coding's ``display``. It exists for things no verified
  code list was available for offline (medication ingredient names, product brands), and
  for qualifiers that codes do not carry (a Condition coded G35 whose text says
  "relapsing-remitting"). By default text is a fallback, consulted only when no coding of
  the concept matched any value set. A value set whose manifest entry says
  ``text_match = "always"`` is also matched on text when codes matched: experimental
  sub-conditions hidden under a broad covered code (Miller Fisher syndrome under G61.0
  Guillain-Barré) and qualifier sets are found in the record's own words.
* Rows marked ``unverified`` still match, but the match says so, so the report can warn.
"""

from __future__ import annotations

import csv
import re
import tomllib
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
TEXT = "text"
SYSTEMS = {
    "http://loinc.org": "LOINC",
    ICD10CM: "ICD-10-CM",
    "http://snomed.info/sct": "SNOMED CT",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://hl7.org/fhir/sid/ndc": "NDC",
    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": "HCPCS",
    "http://www.ama-assn.org/go/cpt": "CPT",
    "http://hl7.org/fhir/sid/cvx": "CVX",
    "http://unitsofmeasure.org": "UCUM",
    TEXT: "free text",
}
# Other spellings of the same systems seen in EHR data.
SYSTEM_ALIASES = {
    "http://hl7.org/fhir/sid/icd-10": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": (
        "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
    ),
    "urn:oid:2.16.840.1.113883.6.285": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "urn:oid:2.16.840.1.113883.6.12": "http://www.ama-assn.org/go/cpt",
    "urn:oid:2.16.840.1.113883.6.88": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "urn:oid:2.16.840.1.113883.12.292": "http://hl7.org/fhir/sid/cvx",
}
CSV_COLUMNS = ("system", "code", "display", "status", "source", "note")
MANIFEST_KEYS = {"description", "file", "source", "text_match", "temporality"}
TEXT_MATCH = {"fallback", "always"}
TEMPORALITY = {"any", "current"}
STATUSES = {"verified", "unverified"}


class TerminologyError(ValueError):
    """A value-set data file is malformed (raised at load time)."""


@dataclass(frozen=True)
class Concept:
    system: str
    code: str
    display: str
    status: str
    source: str
    note: str = ""

    @property
    def verified(self) -> bool:
        return self.status == "verified"


@dataclass(frozen=True)
class Match:
    """A coding (or text) of a resource that fell into a value set."""

    valueset: str
    concept: Concept
    matched: str  # the code or text that matched, for evidence summaries


@dataclass
class ValueSet:
    name: str
    description: str
    source: str
    concepts: list[Concept] = field(default_factory=list)
    text_always: bool = False  # matched on text even when a coding matched (see module doc)
    current_only: bool = False  # temporality = "current": a past or planned mention does not count


CONTEXT_KINDS = ("negation", "hedge", "planned", "history", "carriage")
CLAUSE_END = re.compile(r"[.;,\n]|\bbut\b|\bhowever\b")
WORDS = re.compile(r"[a-z0-9][a-z0-9/'+-]*|\?")


@dataclass(frozen=True)
class TextContext:
    """What the words around a term do to it (``data/text_context.toml``)."""

    window: int
    before: dict[str, tuple[tuple[str, ...], ...]]  # kind -> trigger word sequences
    after: dict[str, tuple[tuple[str, ...], ...]]
    disclaimers: tuple[tuple[str, ...], ...] = ()

    def kinds(self, low: str, start: int, end: int) -> set[str]:
        """The context kinds acting on the term at ``low[start:end]``, within its clause."""
        head = CLAUSE_END.split(low[:start])[-1]
        tail = CLAUSE_END.split(low[end:])[0]
        before = WORDS.findall(head)[-self.window:]
        after = WORDS.findall(tail)[:self.window]
        return {k for k in CONTEXT_KINDS
                if _find(before, self.before.get(k, ())) or _find(after, self.after.get(k, ()))}

    @staticmethod
    def _first(text: str, triggers: tuple[tuple[str, ...], ...]) -> str:
        # Memoised per (text, triggers) for texts of a note's size: a record repeats its
        # Condition texts and displays, and every one is read for hedges and disclaimers.
        return _first_trigger(text, triggers) if len(text) <= 2_000 else _first_trigger.__wrapped__(text, triggers)

    @cached_property
    def _hedges(self) -> tuple[tuple[str, ...], ...]:
        return self.before.get("hedge", ()) + self.after.get("hedge", ())

    def hedge(self, text: str) -> str:
        """The first hedging words in ``text`` ("probable", "r/o", "work-up pending"), or ""."""
        return self._first(text, self._hedges)

    def disclaimer(self, text: str) -> str:
        """Words by which a report disclaims itself ("equivocal, not diagnostic"), or ""."""
        return self._first(text, self.disclaimers)


def _find(words: list[str], triggers: tuple[tuple[str, ...], ...]) -> str:
    """The first trigger (a word sequence) that occurs in ``words``, joined, or ""."""
    for trig in triggers:
        n = len(trig)
        if any(tuple(words[i:i + n]) == trig for i in range(len(words) - n + 1)):
            return " ".join(trig)
    return ""


@lru_cache(maxsize=16_384)
def _first_trigger(text: str, triggers: tuple[tuple[str, ...], ...]) -> str:
    """The first trigger word sequence found in ``text``, or "" (TextContext._first)."""
    return _find(WORDS.findall(text.lower()), triggers)


def load_text_context(path: Path | None = None) -> TextContext:
    path = path or DATA_DIR / "text_context.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    unknown = set(data) - {"version", "window", "disclaimer", *CONTEXT_KINDS}
    if unknown:
        raise TerminologyError(f"{path.name}: unknown keys {sorted(unknown)}")
    disclaimer = data.get("disclaimer", {})
    if set(disclaimer) - {"phrases"}:
        raise TerminologyError(f"{path.name}: [disclaimer] may only have 'phrases'")
    before: dict[str, tuple[tuple[str, ...], ...]] = {}
    after: dict[str, tuple[tuple[str, ...], ...]] = {}
    for kind in CONTEXT_KINDS:
        table = data.get(kind, {})
        if set(table) - {"before", "after"}:
            raise TerminologyError(f"{path.name}: [{kind}] may only have 'before' and 'after'")
        before[kind] = tuple(tuple(WORDS.findall(t.lower())) for t in table.get("before", []))
        after[kind] = tuple(tuple(WORDS.findall(t.lower())) for t in table.get("after", []))
    return TextContext(int(data.get("window", 6)), before, after,
                       tuple(tuple(WORDS.findall(t.lower())) for t in disclaimer.get("phrases", [])))


def _norm_icd(code: str) -> str:
    return code.replace(".", "").strip().upper()


class Terminology:
    """All value sets, indexed for fast lookup of a coding."""

    def __init__(self, valuesets: dict[str, ValueSet], context: TextContext | None = None):
        self.valuesets = valuesets
        self.context = context or load_text_context()
        self._current_only = frozenset(vs.name for vs in valuesets.values() if vs.current_only)
        self._exact: dict[tuple[str, str], list[tuple[str, Concept]]] = {}
        self._icd_prefix: dict[str, list[tuple[str, Concept]]] = {}
        self._text_terms: dict[str, list[tuple[str, Concept]]] = {}
        self._coding_cache: dict[tuple[str, str], tuple[Match, ...]] = {}
        self._text_cache: dict[str, tuple[Match, ...]] = {}
        self._concept_cache: dict[tuple[object, ...], tuple[Match, ...]] = {}
        self._text_always = frozenset(vs.name for vs in valuesets.values() if vs.text_always)
        for vs in valuesets.values():
            for c in vs.concepts:
                if c.system == ICD10CM:
                    self._icd_prefix.setdefault(_norm_icd(c.code), []).append((vs.name, c))
                elif c.system == TEXT:
                    self._text_terms.setdefault(c.code.lower(), []).append((vs.name, c))
                else:
                    self._exact.setdefault((c.system, c.code.strip()), []).append((vs.name, c))

        # One pass over a text finds every term: an alternation, longest terms first, run at
        # every position (terms may overlap, e.g. "immune globulin" inside a longer name).
        terms = sorted(self._text_terms, key=len, reverse=True)
        self._text_re = re.compile(
            r"(?<![a-z0-9])(?=(" + "|".join(re.escape(t) for t in terms) + r")(?![a-z0-9]))"
        ) if terms else None

    def __contains__(self, name: str) -> bool:
        return name in self.valuesets

    def current_only(self, name: str) -> bool:
        """The value set names a current state or episode (``temporality = "current"``)."""
        return name in self._current_only

    def match_coding(self, system: str | None, code: str | None) -> list[Match]:
        return list(self._coding_matches(system, code))

    def _coding_matches(self, system: object, code: object) -> tuple[Match, ...]:
        if not system or not code or not isinstance(system, str) or not isinstance(code, str):
            return ()
        key = (system, code)
        cached = self._coding_cache.get(key)
        if cached is None:
            cached = tuple(self._match_coding(SYSTEM_ALIASES.get(system, system), code))
            if len(self._coding_cache) < 100_000:  # bounded: codes seen in practice repeat
                self._coding_cache[key] = cached
        return cached

    def _match_coding(self, system: str, code: str) -> list[Match]:
        if system == ICD10CM:
            norm = _norm_icd(code)
            out = []
            for i in range(3, len(norm) + 1):
                for name, concept in self._icd_prefix.get(norm[:i], ()):
                    out.append(Match(name, concept, code))
            return out
        return [Match(n, c, code) for n, c in self._exact.get((system, code.strip()), ())]

    def match_text(self, text: str | None) -> list[Match]:
        """Every value-set term the text affirms. A term the words around it deny, hedge or
        attribute to carriage ("AMR ruled out", "r/o Miller Fisher", "MRSA colonization")
        does not match; for ``temporality = "current"`` sets neither does a past or planned
        one ("history of myasthenic crisis", "referred for stem cell transplant")."""
        return list(self._text_matches(text))

    def _text_matches(self, text: object) -> tuple[Match, ...]:
        if not text or not isinstance(text, str) or self._text_re is None:
            return ()
        cached = self._text_cache.get(text)
        if cached is None:
            cached = tuple(self._scan_text(text))
            # Memoised and bounded like the coding cache (the context rules are fixed when
            # the terminology loads): displays ("Heart rate", "Body weight") repeat across
            # resources and patients, so each distinct text is scanned once.
            if len(self._text_cache) < 100_000 and len(text) <= 1_000:
                self._text_cache[text] = cached
        return cached

    def _scan_text(self, text: str) -> list[Match]:
        low = text.lower()
        out: dict[tuple[str, str], Match] = {}
        # The lookahead is zero-width, so every start position is tried: a term inside a
        # longer one is found when it starts elsewhere; at one start the longest term wins.
        for m in self._text_re.finditer(low):
            term = m.group(1)
            kinds = self.context.kinds(low, m.start(), m.start() + len(term))
            if kinds & {"negation", "hedge", "carriage"}:
                continue
            for n, c in self._text_terms[term]:
                if n in self._current_only and kinds & {"history", "planned"}:
                    continue
                out.setdefault((n, c.code), Match(n, c, text))
        return list(out.values())

    def match_concept(self, cc: object) -> list[Match]:
        """Every value-set match of a FHIR CodeableConcept (a dict); codes before text.

        Text is consulted for every value set when no coding matched, and only for the
        ``text_match = "always"`` sets when one did.
        """
        if not isinstance(cc, dict):
            return []
        codings = cc.get("coding")
        if isinstance(codings, list) and len(codings) == 1 and isinstance(codings[0], dict):
            # The common shape (one coding, a text): memoised on its four strings, since a
            # chart repeats the same concepts (every heart rate, every weight).
            coding = codings[0]
            key = (coding.get("system"), coding.get("code"), coding.get("display"), cc.get("text"))
            try:
                cached = self._concept_cache.get(key)
            except TypeError:  # an unhashable value where a string belongs
                return self._match_concept(cc, codings)
            if cached is None:
                cached = tuple(self._match_concept(cc, codings))
                if len(self._concept_cache) < 100_000 and all(
                        v is None or (isinstance(v, str) and len(v) <= 1_000) for v in key):
                    self._concept_cache[key] = cached
            return list(cached)
        return self._match_concept(cc, codings)

    def _match_concept(self, cc: dict, codings: object) -> list[Match]:
        out: list[Match] = []
        texts = [cc.get("text")]
        if isinstance(codings, list):
            for coding in codings:
                if isinstance(coding, dict):
                    out.extend(self._coding_matches(coding.get("system"), coding.get("code")))
                    texts.append(coding.get("display"))
        coded = bool(out)
        if coded and not self._text_always:
            return out
        seen = {(m.valueset, m.concept.code) for m in out}
        for t in texts:
            for m in self._text_matches(t):
                if coded and m.valueset not in self._text_always:
                    continue
                if (m.valueset, m.concept.code) not in seen:
                    seen.add((m.valueset, m.concept.code))
                    out.append(m)
        return out

    def names_of(self, cc: object, prefix: str = "") -> set[str]:
        return {m.valueset for m in self.match_concept(cc) if m.valueset.startswith(prefix)}


def _load_csv(path: Path, name: str) -> list[Concept]:
    if not path.is_file():
        raise TerminologyError(f"value set {name!r}: file {path.name} not found")
    concepts = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise TerminologyError(
                f"{path.name}: columns must be {','.join(CSV_COLUMNS)}, got {reader.fieldnames}"
            )
        for lineno, row in enumerate(reader, start=2):
            if None in row or any(v is None for v in row.values()):
                raise TerminologyError(f"{path.name}:{lineno}: wrong number of fields")
            if row["system"] not in SYSTEMS:
                raise TerminologyError(f"{path.name}:{lineno}: unknown system {row['system']!r}")
            if row["status"] not in STATUSES:
                raise TerminologyError(f"{path.name}:{lineno}: status must be verified/unverified")
            if not row["code"].strip() or not row["source"].strip():
                raise TerminologyError(f"{path.name}:{lineno}: code and source are required")
            concepts.append(Concept(**{k: row[k].strip() for k in CSV_COLUMNS}))
    return concepts


def load_terminology(data_dir: Path = DATA_DIR) -> Terminology:
    manifest_path = data_dir / "valuesets.toml"
    try:
        manifest = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TerminologyError(f"{manifest_path.name}: {exc}") from exc
    unknown = set(manifest) - {"version", "valuesets"}
    if unknown:
        raise TerminologyError(f"{manifest_path.name}: unknown keys {sorted(unknown)}")
    valuesets = {}
    for name, entry in manifest.get("valuesets", {}).items():
        if not isinstance(entry, dict) or set(entry) - MANIFEST_KEYS or "file" not in entry:
            raise TerminologyError(
                f"{manifest_path.name}: [valuesets.{name}] needs 'file' and may only have "
                f"{sorted(MANIFEST_KEYS)}"
            )
        text_match = entry.get("text_match", "fallback")
        if text_match not in TEXT_MATCH:
            raise TerminologyError(
                f"{manifest_path.name}: [valuesets.{name}] text_match must be one of {sorted(TEXT_MATCH)}"
            )
        temporality = entry.get("temporality", "any")
        if temporality not in TEMPORALITY:
            raise TerminologyError(
                f"{manifest_path.name}: [valuesets.{name}] temporality must be one of {sorted(TEMPORALITY)}"
            )
        concepts = _load_csv(data_dir / "valuesets" / entry["file"], name)
        valuesets[name] = ValueSet(
            name, entry.get("description", ""), entry.get("source", ""), concepts,
            text_always=text_match == "always", current_only=temporality == "current",
        )
    return Terminology(valuesets)


@cache
def default_terminology() -> Terminology:
    return load_terminology()
