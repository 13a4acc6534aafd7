"""Input generators for ``test_fuzz.py``: malformed Bundle text and mutated example Bundles.

Two families:

* **Loader inputs** (``loader_inputs``, ``parsed_bundles``): what ``load_record`` /
  ``record_from_bundle`` may be handed — random bytes and text, truncated or byte-flipped
  example Bundles, invalid UTF-8, BOMs and other encodings, deeply nested arrays/objects,
  huge numbers, ``NaN``/``Infinity`` literals, duplicate keys, wrong ``resourceType`` or
  ``Bundle.type``, R5-only resources and elements, no Patient or two Patients, an
  OperationOutcome instead of a Bundle.
* **Mutated examples** (``mutated_examples``): the 17 example Bundles in ``examples/`` with
  a few structurally valid but clinically odd edits (see ``MUTATIONS``).

Every mutation draws its choices through a ``Chooser`` so the same code runs under
Hypothesis (``DrawChooser``: shrinkable) and from a seeded ``random.Random``
(``RandomChooser``: used where inputs are produced outside ``@given``, e.g. for a
subprocess). Each mutation returns a one-line description of what it did, so a failing
case reads as "example + list of edits" and can be rebuilt by hand.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import copy
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_NAMES = tuple(sorted(p.name for p in EXAMPLES_DIR.glob("[0-9][0-9]-*.json")))
EXAMPLE_BYTES = {name: (EXAMPLES_DIR / name).read_bytes() for name in EXAMPLE_NAMES}
EXAMPLE_BUNDLES = {name: json.loads(data) for name, data in EXAMPLE_BYTES.items()}

VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_VER_STATUS = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration",
                    "MedicationDispense")
R5_ONLY = ("NutritionIntake", "Permission", "Transport", "DeviceUsage", "InventoryItem",
           "ImagingSelection", "RequestOrchestration", "FormularyItem", "GenomicStudy",
           "Requirements", "ActorDefinition", "TestPlan", "ArtifactAssessment")


def example_bundle(name: str) -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE_BUNDLES[name])


# --- choosers -----------------------------------------------------------------------------------
TEXT_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 .,:;/%<>=-_[]{}()*'\"\\"
    "\n\r\t\x00\x0b\x85\u2028\u2029\ufeffµé°≥≤\u200b𝔘\ud800\udfff"
)


class Chooser(ABC):
    """The choices a mutation makes; subclasses decide where they come from."""

    @abstractmethod
    def integer(self, lo: int, hi: int) -> int: ...

    @abstractmethod
    def text(self, max_size: int = 30) -> str: ...

    def choice(self, seq):
        seq = list(seq)
        return seq[self.integer(0, len(seq) - 1)]

    def boolean(self) -> bool:
        return self.integer(0, 1) == 1


class DrawChooser(Chooser):
    """Choices drawn from Hypothesis (so failing cases shrink)."""

    def __init__(self, draw: Callable[[st.SearchStrategy], Any]):
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def text(self, max_size: int = 30) -> str:
        return self.draw(st.one_of(
            st.text(max_size=max_size),
            st.text(alphabet=TEXT_ALPHABET, max_size=max_size),
        ))


class RandomChooser(Chooser):
    """Choices from a seeded ``random.Random`` (reproducible from the seed)."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def text(self, max_size: int = 30) -> str:
        return "".join(self.rng.choice(TEXT_ALPHABET) for _ in range(self.rng.randint(0, max_size)))


# --- walking resources --------------------------------------------------------------------------
@dataclass
class Spot:
    """A place inside a resource: ``container[key]`` holds ``value``; ``path`` names it."""

    container: Any
    key: Any
    path: str

    @property
    def value(self) -> Any:
        return self.container[self.key]


def entries(bundle: dict[str, Any]) -> list[Any]:
    value = bundle.get("entry")
    if not isinstance(value, list):
        value = bundle["entry"] = []
    return value


def resource_of(entry: Any) -> dict[str, Any] | None:
    res = entry.get("resource") if isinstance(entry, dict) else None
    return res if isinstance(res, dict) else None


def rtype(entry: Any) -> str | None:
    res = resource_of(entry)
    return res.get("resourceType") if res else None


def ref_of(res: dict[str, Any]) -> str:
    return f"{_plain(res.get('resourceType'))}/{_plain(res.get('id'))}"


def _plain(value: Any) -> str:
    """str() for display, safe for any JSON value (str() refuses ints beyond 4300 digits)."""
    return value if isinstance(value, str) else _short(value)


def resources(bundle: dict[str, Any], *types: str) -> list[dict[str, Any]]:
    out = [r for r in (resource_of(e) for e in entries(bundle)) if r is not None]
    return [r for r in out if not types or r.get("resourceType") in types]


def spots(obj: Any, path: str) -> Iterator[Spot]:
    """Every (container, key) under obj, depth first, in document order."""
    if isinstance(obj, dict):
        for key in list(obj):
            yield Spot(obj, key, f"{path}.{key}")
            yield from spots(obj[key], f"{path}.{key}")
    elif isinstance(obj, list):
        for i in range(len(obj)):
            yield Spot(obj, i, f"{path}[{i}]")
            yield from spots(obj[i], f"{path}[{i}]")


def find(bundle: dict[str, Any], pred: Callable[[Spot], bool], *types: str) -> list[Spot]:
    return [s for res in resources(bundle, *types) for s in spots(res, ref_of(res)) if pred(s)]


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, int) and abs(value) > 10**limit:
        digits = int(abs(value).bit_length() * 0.30102999566398120) + 1  # str() may refuse
        return f"<{'-' if value < 0 else ''}int of about {digits} digits>"
    try:
        text = repr(value)
    except ValueError:  # a container holding an int too long for str()
        return f"<{type(value).__name__} holding a very long int>"
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} chars)"


# --- pools of odd values ------------------------------------------------------------------------
DATE_KEYS = {"effectiveDateTime", "issued", "onsetDateTime", "recordedDate", "authoredOn",
             "occurrenceDateTime", "performedDateTime", "birthDate", "whenHandedOver",
             "whenPrepared", "dateAsserted", "start", "end", "abatementDateTime", "lastOccurrence",
             "date", "timestamp", "effectiveInstant"}
DATE_LIKE = re.compile(r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T.*)?)?)?$")
ODD_DATES = ["2025", "2025-13-45", "0001-01-01", "9999-12-31", "2100-01-01", "2025-02-29",
             "2024-02-29", "2025-06", "2025-06-30", "2025-07-01", "2025-06-30T23:59:59+14:00",
             "2025-06-30T00:00:00-12:00", "1900-01-01", "0000-00-00", "", " 2025-01-01 ", "2025-1-1",
             "2025-06-30T25:61:61Z", "20250630", "yesterday", "2025-06-30T10:00:00.123456789Z",
             "１２３４-01-01", "٢٠٢٥-٠١-٠١", "2019-05-00", "1970-01-01T00:00:00Z", "2025-06-31",
             "10000-01-01", "-2025-01-01", "2025-06-30T10:00", "2025-06-30Z"]
UNITS = ["g/L", "mg/L", "mg/dL", "g/dL", "mg/mL", "[lb_av]", "lb", "kg", "KG", "g", "mg", "",
         " ", "furlongs", "mg/kg", "g/kg", "mL", "L", "10*3/uL", "10*9/L", "/uL", "%", "[IU]/mL",
         "[IU]/L", "U/mL", "ug/mL", "mmol/L", "1", "{score}", "Mg/dL", "mg/(24.h)", "wk", "mo",
         "[oz_av]", "µg/mL", "mg/dl ", "g/l"]
NUMBERS: list[Any] = [0, 0.0, -0.0, -1, -380, 1e-9, 5e-324, 0.5, 1, 7, 70, 150, 380, 1000, 10**6,
                      999999999999, 10**12, 1e15, 1e300, 1.7976931348623157e308, 10**20, 10**400,
                      -(10**400), float("nan"), float("inf"), float("-inf")]
COMPARATORS = ["<", "<=", ">", ">=", "ad", "=", "~", "≤", "", "< "]
STATUSES = ["entered-in-error", "cancelled", "preliminary", "registered", "amended", "corrected",
            "final", "unknown", "draft", "active", "on-hold", "stopped", "completed", "not-done",
            "in-progress", "intended", "not-taken", "revoked", "inactive", "FINAL", "",
            "Entered-in-error", "appended", "partial", "preparation", "declined"]
VERIFICATION = ["refuted", "entered-in-error", "unconfirmed", "provisional", "differential",
                "confirmed", "presumed", "REFUTED", ""]
CLINICAL = ["active", "recurrence", "relapse", "inactive", "remission", "resolved", "unknown", ""]
SYSTEMS = ["http://loinc.org", "http://hl7.org/fhir/sid/icd-10-cm", "http://snomed.info/sct",
           "http://www.nlm.nih.gov/research/umls/rxnorm", "http://hl7.org/fhir/sid/cvx",
           "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "http://hl7.org/fhir/sid/icd-10",
           "urn:oid:2.16.840.1.113883.6.90", "http://example.org/local", "", "text"]
DANGLING = ["Condition/does-not-exist", "Medication/none", "urn:uuid:00000000-0000-0000-0000-000000000000",
            "#missing", "", "Medication/", "/", "Patient/someone-else", "http://other.example/fhir/Condition/x",
            "Condition/", "MedicationRequest/ex00-nope", "Observation/../../etc/passwd"]
EXT_URLS = ["http://example.org/fhir/StructureDefinition/x", "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
            "http://hl7.org/fhir/StructureDefinition/iso21090-SC-coding", ""]


def _all_codes() -> list[str]:
    codes = set()
    for bundle in EXAMPLE_BUNDLES.values():
        for res in resources(bundle):
            for s in spots(res, ""):
                if s.key == "code" and isinstance(s.value, str):
                    codes.add(s.value)
    return sorted(codes)


CODE_POOL = _all_codes()


def odd_date(ch: Chooser) -> str:
    pick = ch.integer(0, 3)
    if pick == 0:
        return f"{ch.integer(1, 9999):04d}-{ch.integer(1, 12):02d}-{ch.integer(1, 28):02d}"
    if pick == 1:
        return f"{ch.integer(2015, 2035):04d}-{ch.integer(1, 12):02d}-{ch.integer(1, 31):02d}"
    return ch.choice(ODD_DATES)


def odd_number(ch: Chooser) -> Any:
    pick = ch.integer(0, 3)
    if pick == 0:
        return ch.integer(-10**6, 10**6)
    if pick == 1:
        return ch.integer(-10**6, 10**6) / 1000
    return ch.choice(NUMBERS)


# --- mutations of example Bundles (structurally valid, clinically odd) --------------------------
Mutation = Callable[[dict[str, Any], Chooser], "str | None"]


def m_drop(bundle, ch):
    es = entries(bundle)
    idx = [i for i, e in enumerate(es) if rtype(e) != "Patient"]
    if not idx:
        return None
    i = ch.choice(idx)
    gone = es.pop(i)
    return f"drop entry {i} ({ref_of(resource_of(gone) or {})})"


def m_duplicate(bundle, ch):
    es = entries(bundle)
    if not es:
        return None
    i, j = ch.integer(0, len(es) - 1), ch.integer(0, len(es))
    es.insert(j, copy.deepcopy(es[i]))
    return f"copy entry {i} ({ref_of(resource_of(es[j]) or {})}) to position {j}"


def m_shuffle(bundle, ch):
    es = entries(bundle)
    for k in range(len(es) - 1, 0, -1):
        j = ch.integer(0, k)
        es[k], es[j] = es[j], es[k]
    return "shuffle entries: " + ", ".join(ref_of(resource_of(e) or {}) for e in es)


def m_date(bundle, ch):
    found = find(bundle, lambda s: isinstance(s.value, str) and (
        s.key in DATE_KEYS or bool(DATE_LIKE.match(s.value))))
    if not found:
        return None
    s = ch.choice(found)
    old, s.container[s.key] = s.value, odd_date(ch)
    return f"{s.path}: {old!r} -> {s.value!r}"


def _quantities(bundle):
    return find(bundle, lambda s: isinstance(s.value, dict) and "value" in s.value and any(
        k in s.value for k in ("unit", "code", "system", "comparator")))


def m_unit(bundle, ch):
    found = _quantities(bundle)
    if not found:
        return None
    s = ch.choice(found)
    q, unit, mode = s.value, ch.choice(UNITS), ch.integer(0, 3)
    if mode == 0:
        q["unit"] = q["code"] = unit
    elif mode == 1:
        q["code"] = unit
    elif mode == 2:
        q["unit"] = unit
        q.pop("code", None)
        q.pop("system", None)
    else:
        for k in ("unit", "code", "system"):
            q.pop(k, None)
        return f"{s.path}: unit/code removed"
    return f"{s.path}: unit/code -> {unit!r} (mode {mode})"


def m_value(bundle, ch):
    found = _quantities(bundle) + find(bundle, lambda s: s.key == "valueInteger")
    if not found:
        return None
    s = ch.choice(found)
    value = odd_number(ch)
    if isinstance(s.value, dict):
        s.value["value"] = value
    else:
        s.container[s.key] = value
    return f"{s.path}: value -> {_short(value)}"


def m_comparator(bundle, ch):
    found = _quantities(bundle)
    if not found:
        return None
    s = ch.choice(found)
    if ch.integer(0, 5) == 0:
        s.value.pop("comparator", None)
        return f"{s.path}: comparator removed"
    s.value["comparator"] = ch.choice(COMPARATORS)
    return f"{s.path}: comparator -> {s.value['comparator']!r}"


def m_status(bundle, ch):
    found = [r for r in resources(bundle) if r.get("resourceType") != "Patient"]
    if not found:
        return None
    res = ch.choice(found)
    old, res["status"] = res.get("status"), ch.choice(STATUSES)
    return f"{ref_of(res)}.status: {_short(old)} -> {res['status']!r}"


def m_verification(bundle, ch):
    found = resources(bundle, "Condition", "AllergyIntolerance")
    if not found:
        return None
    res = ch.choice(found)
    key = ch.choice(["verificationStatus", "clinicalStatus"])
    if ch.integer(0, 4) == 0:
        res.pop(key, None)
        return f"{ref_of(res)}.{key} removed"
    code = ch.choice(VERIFICATION if key == "verificationStatus" else CLINICAL)
    res[key] = {"coding": [{"system": VER_STATUS if key == "verificationStatus" else
                            "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": code}]}
    return f"{ref_of(res)}.{key} -> {code!r}"


def _concepts(bundle):
    return find(bundle, lambda s: isinstance(s.value, dict) and isinstance(s.value.get("coding"), list))


def m_strip_codings(bundle, ch):
    found = _concepts(bundle)
    if not found:
        return None
    s = ch.choice(found)
    cc, how = s.value, ch.integer(0, 6)
    if how == 0:
        del cc["coding"]
    elif how == 1:
        cc["coding"] = []
    elif how == 2:
        cc.pop("coding", None)
        cc.pop("text", None)
    elif how == 3:
        cc["coding"] = [{}]
    elif how == 4:
        for c in cc["coding"]:
            if isinstance(c, dict):
                c.pop("display", None)
    elif how == 5:
        for c in cc["coding"]:
            if isinstance(c, dict):
                c.pop("system", None)
    else:
        cc.pop("text", None)
    return f"{s.path}: strip codings (way {how})"


def m_random_code(bundle, ch):
    found = find(bundle, lambda s: isinstance(s.value, dict) and "code" in s.value and "system" in s.value)
    if not found:
        return None
    s = ch.choice(found)
    coding = s.value
    coding["code"] = ch.text(20) if ch.integer(0, 2) == 0 else ch.choice(CODE_POOL)
    if ch.integer(0, 3) == 0:
        coding["system"] = ch.choice(SYSTEMS)
    return f"{s.path}: code -> {coding['code']!r}, system {coding.get('system')!r}"


def m_extension(bundle, ch):
    found = resources(bundle)
    if not found:
        return None
    res = ch.choice(found)
    ext = {"url": ch.choice(EXT_URLS)}
    kind = ch.integer(0, 3)
    if kind == 0:
        ext["valueString"] = ch.text(40)
    elif kind == 1:
        ext["valueQuantity"] = {"value": odd_number(ch), "unit": ch.choice(UNITS)}
    elif kind == 2:
        ext["valueCode"] = ch.choice(CODE_POOL)
    else:
        ext["extension"] = [{"url": "nested", "valueBoolean": ch.boolean()}]
    targets = [Spot({"": res}, "", ref_of(res))] + [
        s for s in spots(res, ref_of(res)) if isinstance(s.value, dict)]
    target = ch.choice(targets)
    where = ch.integer(0, 2)
    if where == 0:
        target.value.setdefault("extension", []).append(ext)
        return f"{target.path}: extension {_short(ext)}"
    if where == 1:
        res.setdefault("modifierExtension", []).append(ext)
        return f"{ref_of(res)}: modifierExtension {_short(ext)}"
    prims = [k for k, v in res.items() if isinstance(v, str) and k not in {"resourceType", "id"}]
    if not prims:
        res.setdefault("extension", []).append(ext)
        return f"{ref_of(res)}: extension {_short(ext)}"
    key = ch.choice(prims)
    res[f"_{key}"] = {"extension": [ext]}
    return f"{ref_of(res)}._{key}: extension {_short(ext)}"


def m_dangle(bundle, ch):
    found = find(bundle, lambda s: isinstance(s.value, dict) and isinstance(s.value.get("reference"), str))
    if not found:
        return None
    s = ch.choice(found)
    target = s.value["reference"]
    if ch.boolean() and not target.startswith("Patient/"):
        es = entries(bundle)
        hit = [i for i, e in enumerate(es) if resource_of(e) and (
            ref_of(resource_of(e)) == target or e.get("fullUrl") == target)]
        for i in reversed(hit):
            es.pop(i)
        if hit:
            return f"{s.path}: its target {target!r} removed from the Bundle"
    s.value["reference"] = ch.text(20) if ch.integer(0, 3) == 0 else ch.choice(DANGLING)
    return f"{s.path}: reference {target!r} -> {s.value['reference']!r}"


def m_drop_field(bundle, ch):
    found = resources(bundle)
    if not found:
        return None
    res = ch.choice(found)
    keys = [k for k in res if k not in {"resourceType", "id"}]
    if not keys:
        return None
    key = ch.choice(keys)
    del res[key]
    return f"{ref_of(res)}.{key} removed"


def m_value_string(bundle, ch):
    found = [r for r in resources(bundle, "Observation") if isinstance(r.get("valueQuantity"), dict)]
    if not found:
        return None
    res = ch.choice(found)
    q = res.pop("valueQuantity")
    num = ch.choice([_plain(q.get("value")), "0", ".5", "00000380", "3,80", "9" * 400,
                     "1" + "0" * 320, "0." + "0" * 400 + "1", "380.", "1e3", "-5", str(odd_number(ch))])
    unit = ch.choice([_plain(q.get("code") or q.get("unit") or ""), *UNITS])
    res["valueString"] = f"{ch.choice(['', '<', '>=', '≤ ', '~'])}{num} {unit}"
    return f"{ref_of(res)}: valueQuantity -> valueString {_short(res['valueString'])}"


def m_recast_medication(bundle, ch):
    found = resources(bundle, *MEDICATION_TYPES)
    if not found:
        return None
    res = ch.choice(found)
    old = ref_of(res)
    when = next((v for v in (res.get("authoredOn"), res.get("effectiveDateTime"),
                             (res.get("effectivePeriod") or {}).get("start")
                             if isinstance(res.get("effectivePeriod"), dict) else None,
                             res.get("whenHandedOver")) if isinstance(v, str)), "2025-01-01")
    for k in ("authoredOn", "effectiveDateTime", "effectivePeriod", "whenHandedOver", "intent"):
        res.pop(k, None)
    new = ch.choice(MEDICATION_TYPES)
    res["resourceType"] = new
    if new == "MedicationRequest":
        res["authoredOn"], res["intent"] = when, "order"
    elif new == "MedicationDispense":
        res["whenHandedOver"] = when
    else:
        res["effectiveDateTime"] = when
    return f"{old} recast as {new} (status {_short(res.get('status'))}, date {when!r})"


MUTATIONS: dict[str, Mutation] = {
    "drop": m_drop,
    "duplicate": m_duplicate,
    "shuffle": m_shuffle,
    "date": m_date,
    "unit": m_unit,
    "value": m_value,
    "comparator": m_comparator,
    "status": m_status,
    "verification": m_verification,
    "strip-codings": m_strip_codings,
    "random-code": m_random_code,
    "extension": m_extension,
    "dangle": m_dangle,
    "drop-field": m_drop_field,
    "value-string": m_value_string,
    "recast-medication": m_recast_medication,
}
MUTATION_NAMES = tuple(MUTATIONS)


@dataclass
class Mutated:
    """An example Bundle after some mutations; ``repr`` names the example and the edits."""

    name: str
    bundle: dict[str, Any]
    edits: tuple[str, ...]

    def __repr__(self) -> str:
        return f"Mutated({self.name!r}, edits={list(self.edits)!r})"

    def _repr_pretty_(self, p, cycle) -> None:  # Hypothesis' printer: the short form
        p.text(repr(self))


def mutate(bundle: dict[str, Any], ch: Chooser, min_ops: int, max_ops: int) -> tuple[str, ...]:
    log = []
    for _ in range(ch.integer(min_ops, max_ops)):
        name = ch.choice(MUTATION_NAMES)
        done = MUTATIONS[name](bundle, ch)
        if done:
            log.append(f"{name}: {done}")
    return tuple(log)


@st.composite
def mutated_examples(draw, min_ops: int = 1, max_ops: int = 6) -> Mutated:
    ch = DrawChooser(draw)
    name = ch.choice(EXAMPLE_NAMES)
    bundle = example_bundle(name)
    return Mutated(name, bundle, mutate(bundle, ch, min_ops, max_ops))


def random_mutated_example(rng: random.Random, min_ops: int = 1, max_ops: int = 6) -> Mutated:
    ch = RandomChooser(rng)
    name = ch.choice(EXAMPLE_NAMES)
    bundle = example_bundle(name)
    return Mutated(name, bundle, mutate(bundle, ch, min_ops, max_ops))


# --- envelope mutations (for the loader): may make the Bundle unusable -----------------------------
ODD_RESOURCE_TYPES: list[Any] = ["Patient", "OperationOutcome", "bundle", "Bundle ", " Bundle", "",
                                 None, 1, True, [], {}, ["Bundle"], "Bundle\nBundle", "x" * 400,
                                 "\u2028", "Parameters", "Binary", "Bundle\u0000"]
ODD_BUNDLE_TYPES: list[Any] = ["collection", "searchset", "batch-response", "transaction", "history",
                               "document", "message", "subscription-notification", "Collection", "",
                               None, 3, ["collection"], {"a": "b" * 500}, "x" * 1000, "a\nb",
                               "collection\r\n" * 50, "\u2028" * 3, 1e308]
ODD_IDS: list[Any] = ["p-other", "", None, 7, ["p"], {"id": "p"}, "x" * 500, "p\nq", 1.5]
ODD_SEVERITIES: list[Any] = ["error", "fatal", "warning", "information", "", None, 3, ["error"],
                             "error\nTraceback (most recent call last):", "e" * 500, "\u2028fatal",
                             "x\r\n" * 100]
ODD_DIAGNOSTICS: list[Any] = ["Resource not found", "", None, 42, "line1\nline2\nline3",
                              "Traceback (most recent call last):\n  File \"x.py\", line 1", "d" * 5000,
                              " \t ", "\u2028\u2029\x85", ["a"], {"text": "x"}]


def e_resource_type(bundle, ch):
    bundle["resourceType"] = ch.text(20) if ch.integer(0, 4) == 0 else ch.choice(ODD_RESOURCE_TYPES)
    return f"Bundle.resourceType -> {_short(bundle['resourceType'])}"


def e_bundle_type(bundle, ch):
    if ch.integer(0, 6) == 0:
        bundle.pop("type", None)
        return "Bundle.type removed"
    bundle["type"] = ch.text(20) if ch.integer(0, 4) == 0 else ch.choice(ODD_BUNDLE_TYPES)
    return f"Bundle.type -> {_short(bundle['type'])}"


def e_entry_shape(bundle, ch):
    how = ch.integer(0, 5)
    es = entries(bundle)
    if how == 0:
        bundle["entry"] = ch.choice([{}, "x", None, 0, [None], [1, "a", []], {"resource": es[:1]}])
        return f"Bundle.entry -> {_short(bundle['entry'])}"
    if not es:
        return None
    i = ch.integer(0, len(es) - 1)
    if how == 1:
        es[i] = ch.choice([None, 1, "entry", [], [es[i]], {}])
    elif how == 2 and isinstance(es[i], dict):
        es[i]["resource"] = ch.choice([None, 1, "Patient", [], {}, {"resourceType": None},
                                       {"resourceType": 5}, {"resourceType": ["Patient"]}])
    elif how == 3 and isinstance(es[i], dict):
        es[i]["fullUrl"] = ch.choice([None, 1, [], {}, "", "urn:uuid:x"])
    elif how == 4 and resource_of(es[i]):
        resource_of(es[i])["resourceType"] = ch.choice(ODD_RESOURCE_TYPES)
    else:
        es.insert(i, ch.choice([{"response": {"status": "200 OK"}}, {}, {"fullUrl": "x"}]))
    return f"entry {i}: shape changed (way {how})"


def e_no_patient(bundle, ch):
    bundle["entry"] = [e for e in entries(bundle) if rtype(e) != "Patient"]
    return "every Patient removed"


def e_two_patients(bundle, ch):
    pats = resources(bundle, "Patient")
    other = copy.deepcopy(pats[0]) if pats else {"resourceType": "Patient"}
    how = ch.integer(0, 2)
    if how == 0:
        other["id"] = ch.choice(ODD_IDS)
    elif how == 1:
        other.pop("id", None)
    else:
        other["id"] = ch.text(20)
    entries(bundle).insert(ch.integer(0, len(entries(bundle))), {"resource": other})
    return f"second Patient with id {_short(other.get('id', '<none>'))}"


def e_same_patient_twice(bundle, ch):
    pats = resources(bundle, "Patient")
    if not pats:
        return None
    entries(bundle).append({"resource": copy.deepcopy(pats[0])})
    return "the Patient twice"


def e_operation_outcome(bundle, ch):
    issues = []
    for _ in range(ch.integer(0, 3)):
        issue: dict[str, Any] = {}
        if ch.boolean():
            issue["severity"] = ch.text(20) if ch.integer(0, 3) == 0 else ch.choice(ODD_SEVERITIES)
        if ch.boolean():
            issue["diagnostics"] = ch.text(60) if ch.integer(0, 3) == 0 else ch.choice(ODD_DIAGNOSTICS)
        if ch.boolean():
            issue["details"] = ch.choice([{"text": ch.choice(ODD_DIAGNOSTICS)}, "details", None, []])
        issues.append(issue if ch.integer(0, 5) else ch.choice(["issue", None, 1]))
    oo = {"resourceType": "OperationOutcome", "issue": issues if ch.integer(0, 5) else ch.choice(["x", {}, None])}
    if ch.boolean():
        bundle.clear()
        bundle.update(oo)
        return f"replaced by OperationOutcome {_short(oo, 200)}"
    entries(bundle).insert(ch.integer(0, len(entries(bundle))), {"resource": oo})
    return f"OperationOutcome entry {_short(oo, 200)}"


def e_r5(bundle, ch):
    how = ch.integer(0, 3)
    es = entries(bundle)
    if how == 0:
        res = {"resourceType": ch.choice(R5_ONLY), "id": "r5"}
        es.insert(ch.integer(0, len(es)), {"resource": res})
        return f"R5-only {res['resourceType']} entry"
    if how == 1:
        meds = resources(bundle, *MEDICATION_TYPES)
        if not meds:
            return None
        med = ch.choice(meds)
        concept = med.pop("medicationCodeableConcept", None) or {"text": "x"}
        med["medication"] = {"concept": concept}
        return f"{ref_of(med)}: R5 element 'medication'"
    if how == 2:
        inner = {"resourceType": "Bundle", "type": "searchset",
                 "entry": [{"resource": {"resourceType": ch.choice(R5_ONLY), "id": "r5"}}]}
        es.insert(ch.integer(0, len(es)), {"resource": inner})
        return "R5-only resource inside a nested searchset"
    bundle["issues"] = {"resourceType": "OperationOutcome", "issue": []}  # R5 Bundle.issues
    return "R5 element Bundle.issues"


def e_nested_batch(bundle, ch):
    es = entries(bundle)
    inner = {"resourceType": "Bundle", "type": "searchset", "entry": es}
    how = ch.integer(0, 3)
    if how == 1:
        inner["entry"] = ch.choice(["x", None, {}, [None, 1]]) if ch.boolean() else es
        inner = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": inner}]}
    elif how == 2:
        inner["entry"] = es + [ch.choice([None, 1, {"resource": None}, {"resource": {"resourceType": 3}}])]
    elif how == 3:
        inner["entry"] = [{"resource": {"resourceType": "OperationOutcome"}}] + es
    bundle["type"] = "batch-response"
    bundle["entry"] = [{"resource": inner, "response": {"status": "200 OK"}}]
    return f"entries moved into a batch-response searchset (way {how})"


def e_weird_number(bundle, ch, json_safe: bool = True):
    values: list[Any] = [float("nan"), float("inf"), float("-inf"), -0.0, 5e-324, 10**400, -(10**4000)]
    if not json_safe:
        values += [10**5000, -(10**100000)]
    value = ch.choice(values)
    found = [s for res in resources(bundle) for s in spots(res, ref_of(res))]
    if found and ch.boolean():
        s = ch.choice(found)
        s.container[s.key] = value
        return f"{s.path} -> {_short(value)}"
    bundle[ch.choice(["total", "timestamp", "id", "meta"])] = value
    return f"Bundle field -> {_short(value)}"


ENVELOPE: dict[str, Mutation] = {
    "resource-type": e_resource_type,
    "bundle-type": e_bundle_type,
    "entry-shape": e_entry_shape,
    "no-patient": e_no_patient,
    "two-patients": e_two_patients,
    "same-patient-twice": e_same_patient_twice,
    "operation-outcome": e_operation_outcome,
    "r5": e_r5,
    "nested-batch": e_nested_batch,
    "weird-number": e_weird_number,
}


def nested(depth: int, kind: str) -> Any:
    """A Python value nested `depth` levels deep (built iteratively: no recursion)."""
    value: Any = 0
    for _ in range(depth):
        value = [value] if kind == "array" else {"a": value}
    return value


@dataclass
class Parsed:
    """Parsed JSON for ``record_from_bundle``; ``repr`` gives the recipe only (may be deep)."""

    recipe: str
    data: Any

    def __repr__(self) -> str:
        return f"Parsed({self.recipe!r})"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))


nesting_depths = st.one_of(st.integers(1, 3000), st.sampled_from([990, 1000, 1100, 5000, 20_000]))


@st.composite
def parsed_bundles(draw) -> Parsed:
    """Envelope-mutated examples (and a few bare values), as parsed JSON."""
    ch = DrawChooser(draw)
    if ch.integer(0, 9) == 0:  # something that is not a Bundle at all
        value = ch.choice([None, 0, 1.5, float("nan"), "Bundle", [], [{}], True, {}, 10**5000,
                           nested(draw(nesting_depths), ch.choice(["array", "object"]))])
        return Parsed(f"bare {type(value).__name__}", value)
    name = ch.choice(EXAMPLE_NAMES)
    bundle = example_bundle(name)
    log = [name]
    for _ in range(ch.integer(1, 4)):
        op = ch.choice(list(ENVELOPE) + ["mutation"])
        if op == "mutation":
            done = MUTATIONS[ch.choice(MUTATION_NAMES)](bundle, ch)
        elif op == "weird-number":
            done = e_weird_number(bundle, ch, json_safe=False)
        else:
            done = ENVELOPE[op](bundle, ch)
        if done:
            log.append(f"{op}: {done}")
    if ch.integer(0, 4) == 0:  # last, so that no later edit walks the deep value
        depth = draw(nesting_depths)
        target = ch.choice(resources(bundle) or [bundle])
        target["extension"] = nested(depth, ch.choice(["array", "object"]))
        log.append(f"{ref_of(target)}.extension nested {depth} deep")
    return Parsed(" | ".join(log), bundle)


# --- loader inputs: text and bytes ---------------------------------------------------------------
@dataclass
class LoaderInput:
    recipe: str
    data: str | bytes

    def __repr__(self) -> str:
        data = self.data
        preview = repr(data) if len(data) <= 160 else f"{data[:100]!r} … {data[-40:]!r}"
        return f"LoaderInput({self.recipe!r}, {type(data).__name__} of length {len(data)}: {preview})"

    def _repr_pretty_(self, p, cycle) -> None:  # Hypothesis' printer: the short form
        p.text(repr(self))


INVALID_UTF8 = [b"\xff", b"\xfe", b"\xc3", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                b"\xc0\xaf", b"\x80", b"\xe2\x82", b"\xf0\x9f\x98"]
NUMBER_TOKEN = re.compile(r"(?<=[:\[,])(\s*)(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?=\s*[,\]}])")
ODD_NUMBER_LITERALS = ["NaN", "Infinity", "-Infinity", "nan", "inf", "1e999", "-1e999", "1E+400",
                       "-0", "0e0", "1" + "0" * 400, "0." + "0" * 400 + "1", "01", "+1", ".5", "1.",
                       "0x10", "1_000", "١٢٣"]


def huge_digits(ch: Chooser) -> str:
    n = ch.choice([ch.integer(1, 6000), 4300, 4301, 5000, 20_000, 100_000])
    sign = ch.choice(["", "-"])
    return sign + "9" * n + ch.choice(["", ".5", "e5", "e-99999", ".0"])


def nest_text(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "0" + "}" * depth
    return '[{"a":' * depth + "0" + "}]" * depth


def _dumps_with_duplicates(obj: Any, rnd: random.Random, rate: float) -> str:
    if isinstance(obj, dict):
        parts = []
        for k, v in obj.items():
            parts.append(json.dumps(k) + ":" + _dumps_with_duplicates(v, rnd, rate))
            if rnd.random() < rate:
                alt = rnd.choice([v, "Bundle", "Patient", "OperationOutcome", "collection", None, [],
                                  {}, 0, "x", float("nan")])
                dup = json.dumps(k) + ":" + json.dumps(alt)
                parts.insert(len(parts) - rnd.randint(0, 1), dup)
        return "{" + ",".join(parts) + "}"
    if isinstance(obj, list):
        return "[" + ",".join(_dumps_with_duplicates(v, rnd, rate) for v in obj) + "]"
    return json.dumps(obj)


@st.composite
def example_text(draw) -> LoaderInput:
    """An example Bundle (maybe envelope-mutated), serialised, then maybe damaged as text."""
    ch = DrawChooser(draw)
    name = ch.choice(EXAMPLE_NAMES)
    bundle = example_bundle(name)
    log = [name]
    for _ in range(ch.integer(0, 3)):
        op = ch.choice(list(ENVELOPE) + ["mutation"])
        done = (MUTATIONS[ch.choice(MUTATION_NAMES)] if op == "mutation" else ENVELOPE[op])(bundle, ch)
        if done:
            log.append(f"{op}: {done}")
    if ch.integer(0, 3) == 0:
        rate, seed = ch.choice([0.01, 0.1, 0.5]), ch.integer(0, 2**32 - 1)
        text = _dumps_with_duplicates(bundle, random.Random(seed), rate)
        log.append(f"duplicate keys (rate {rate}, random.Random({seed}))")
    else:
        text = json.dumps(bundle, indent=ch.choice([None, 1]), ensure_ascii=ch.boolean())
    for _ in range(ch.integer(0, 3)):
        op = ch.integer(0, 4)
        if op == 0:
            tokens = list(NUMBER_TOKEN.finditer(text))
            if tokens:
                tok = ch.choice(tokens)
                lit = huge_digits(ch) if ch.integer(0, 2) == 0 else ch.choice(ODD_NUMBER_LITERALS)
                text = text[:tok.start(2)] + lit + text[tok.end(2):]
                log.append(f"number at {tok.start(2)} -> {_short(lit)}")
        elif op == 1:
            depth = draw(nesting_depths)
            kind = ch.choice(["array", "object", "mixed"])
            at = text.find('"resourceType": "Patient"')
            if at < 0:
                at = text.find('"resourceType":"Patient"')
            if at >= 0:
                text = text[:at] + '"extension": ' + nest_text(depth, kind) + ", " + text[at:]
                log.append(f"Patient.extension nested {depth} deep ({kind})")
        elif op == 2:
            cut = ch.integer(0, max(0, len(text) - 1))
            text = text[:cut]
            log.append(f"truncated to {cut} characters")
        elif op == 3:
            at = ch.integer(0, len(text))
            junk = ch.text(5)
            text = text[:at] + junk + text[at:]
            log.append(f"inserted {junk!r} at {at}")
        else:
            a = ch.integer(0, len(text))
            b = min(len(text), a + ch.integer(0, 20))
            text = text[:a] + text[b:]
            log.append(f"deleted [{a}:{b}]")
    data: str | bytes = text
    enc = ch.integer(0, 9)
    if enc <= 3:
        data = text.encode("utf-8", "surrogatepass")
    elif enc == 4:
        data = b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")
        log.append("UTF-8 BOM")
    elif enc == 5:
        data = "\ufeff" + text
        log.append("BOM character in str")
    elif enc == 6:
        codec = ch.choice(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be", "latin-1", "cp1252"])
        data = text.encode(codec, "replace")
        log.append(f"encoded {codec}")
    elif enc == 7:
        raw = text.encode("utf-8", "surrogatepass")
        at = ch.integer(0, len(raw))
        bad = ch.choice(INVALID_UTF8)
        data = raw[:at] + bad + raw[at:]
        log.append(f"invalid UTF-8 {bad!r} at byte {at}")
    elif enc == 8:
        raw = bytearray(text.encode("utf-8", "surrogatepass"))
        for _ in range(ch.integer(1, 5)):
            if raw:
                raw[ch.integer(0, len(raw) - 1)] = ch.integer(0, 255)
        data = bytes(raw)
        log.append("random byte flips")
    return LoaderInput(" | ".join(log), data)


def _bytes_or_text(ch: Chooser, text: str) -> str | bytes:
    return text.encode("utf-8") if ch.boolean() else text


@st.composite
def literal_inputs(draw) -> LoaderInput:
    ch = DrawChooser(draw)
    lit = ch.choice(["", " ", "\n", "null", "true", "0", '""', "[]", "{}", "NaN", "-Infinity",
                     '{"resourceType":"Bundle"}{"resourceType":"Bundle"}', "\ufeff{}", "\x00",
                     '{"resourceType":"Bundle","type":"collection","entry":[]}', "// c\n{}",
                     '{"resourceType":"Bundle",}', "'Bundle'",
                     ('{"resourceType":"Bundle","type":"collection","entry":[{"resource":'
                      '{"resourceType":"Patient","id":"p"}}]} trailing')])
    return LoaderInput("literal", _bytes_or_text(ch, lit))


@st.composite
def deep_inputs(draw) -> LoaderInput:
    ch = DrawChooser(draw)
    depth = draw(nesting_depths)
    kind = ch.choice(["array", "object", "mixed"])
    nest = nest_text(depth, kind)
    if ch.boolean():
        return LoaderInput(f"bare {kind} nesting {depth} deep", _bytes_or_text(ch, nest))
    doc = ('{"resourceType":"Bundle","type":"collection","entry":[{"resource":'
           '{"resourceType":"Patient","id":"p","extension":' + nest + "}}]}")
    return LoaderInput(f"Bundle with Patient.extension nested {depth} deep ({kind})", _bytes_or_text(ch, doc))


@st.composite
def huge_number_inputs(draw) -> LoaderInput:
    ch = DrawChooser(draw)
    n = draw(st.one_of(st.integers(1, 10_000), st.sampled_from([4300, 4301, 20_000, 100_000])))
    digits = ch.choice(["", "-"]) + "9" * n + ch.choice(["", "", ".5", "e5", "e-99999"])
    doc = ch.choice([digits, f"[{digits}]",
                     '{"resourceType":"Bundle","type":"collection","total":' + digits + "}",
                     '{"resourceType":"Bundle","type":"collection","entry":[{"resource":'
                     '{"resourceType":"Patient","id":"p","x":' + digits + "}}]}"])
    return LoaderInput(f"number of {len(digits)} characters ({digits[:3]}…{digits[-6:]})", _bytes_or_text(ch, doc))


@st.composite
def damaged_example_bytes(draw) -> LoaderInput:
    ch = DrawChooser(draw)
    name = ch.choice(EXAMPLE_NAMES)
    raw = EXAMPLE_BYTES[name]
    if ch.boolean():
        cut = ch.integer(0, len(raw) - 1)
        return LoaderInput(f"{name} truncated at byte {cut}", raw[:cut])
    at = ch.integer(0, len(raw))
    bad = ch.choice(INVALID_UTF8)
    return LoaderInput(f"{name} with invalid UTF-8 {bad!r} at byte {at}", raw[:at] + bad + raw[at:])


@st.composite
def envelope_inputs(draw) -> LoaderInput:
    """An example with envelope edits only (wrong types, patients, OperationOutcome, R5), as JSON."""
    ch = DrawChooser(draw)
    name = ch.choice(EXAMPLE_NAMES)
    bundle = example_bundle(name)
    log = [name]
    for _ in range(ch.integer(1, 3)):
        op = ch.choice(list(ENVELOPE))
        done = ENVELOPE[op](bundle, ch)
        if done:
            log.append(f"{op}: {done}")
    return LoaderInput(" | ".join(log), _bytes_or_text(ch, json.dumps(bundle)))


loader_inputs = st.one_of(
    example_text(),
    envelope_inputs(),
    st.binary(max_size=300).map(lambda b: LoaderInput("random bytes", b)),
    st.text(max_size=200).map(lambda t: LoaderInput("random text", t)),
    literal_inputs(),
    deep_inputs(),
    huge_number_inputs(),
    damaged_example_bytes(),
)
