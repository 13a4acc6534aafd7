"""What a record states about a therapy: its outcome (failed, intolerant …) and its route.

Both are read from data files in ``data/`` (``therapy_outcomes.toml``, ``routes.toml``),
loaded strictly: an unknown key, outcome or route fails at load time. Pure functions.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from .facts import OUTCOMES
from .terminology import DATA_DIR, SYSTEM_ALIASES

ROUTES = ("systemic", "local")
SNOMED = "http://snomed.info/sct"


class ContextDataError(ValueError):
    """A therapy-context data file is malformed (raised at load time)."""


def _strict(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ContextDataError(f"{where}: unknown keys {sorted(unknown)}")


def _words_re(phrases: Iterable[str]) -> re.Pattern[str]:
    ordered = sorted(set(phrases), key=len, reverse=True)
    return re.compile(r"(?<![a-z0-9])(" + "|".join(re.escape(p) for p in ordered) + r")(?![a-z0-9])")


@dataclass(frozen=True)
class OutcomeRules:
    coded: dict[tuple[str, str], str]
    phrases: dict[str, str]  # phrase -> outcome
    in_reason_code: frozenset[str]
    negators: frozenset[str]
    advisory: frozenset[str]
    denials: frozenset[str]
    pattern: re.Pattern[str]

    def from_codings(self, codings: Iterable[tuple[str, str]]) -> set[str]:
        return {self.coded[k] for k in codings if k in self.coded}

    def from_text(self, text: str, *, reason_code: bool = False) -> set[str]:
        """Outcomes stated in ``text``. A phrase does not count right after a negator ("no
        adverse effects") or an advisory word ("counseled on side effects", "monitor for
        toxicity"), nor when the words after it deny it ("side effects: none")."""
        low = text.lower()
        found: set[str] = set()
        for m in self.pattern.finditer(low):
            phrase = m.group(1)
            if reason_code and phrase not in self.in_reason_code:
                continue
            before = set(re.findall(r"[a-z]+", low[: m.start()])[-3:])
            after = set(re.findall(r"[a-z]+", re.split(r"[.;]", low[m.end():], maxsplit=1)[0])[:2])
            if self.negators & before or self.advisory & before or self.denials & after:
                continue
            found.add(self.phrases[phrase])
        return found


@cache
def outcome_rules() -> OutcomeRules:
    path = DATA_DIR / "therapy_outcomes.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    _strict(data, {"version", "negators", "advisory", "denials", "coded", "phrase"}, path.name)
    coded: dict[tuple[str, str], str] = {}
    for row in data.get("coded", []):
        _strict(row, {"system", "code", "display", "outcome", "status", "source"}, f"{path.name} [[coded]]")
        if row["outcome"] not in OUTCOMES:
            raise ContextDataError(f"{path.name}: unknown outcome {row['outcome']!r}")
        coded[(row["system"], row["code"])] = row["outcome"]
    phrases: dict[str, str] = {}
    in_reason_code = set()
    for row in data.get("phrase", []):
        _strict(row, {"text", "outcome", "in_reason_code"}, f"{path.name} [[phrase]]")
        if row["outcome"] not in OUTCOMES:
            raise ContextDataError(f"{path.name}: unknown outcome {row['outcome']!r}")
        text = row["text"].lower()
        if text in phrases:
            raise ContextDataError(f"{path.name}: phrase {text!r} listed twice")
        phrases[text] = row["outcome"]
        if row["in_reason_code"]:
            in_reason_code.add(text)
    return OutcomeRules(coded, phrases, frozenset(in_reason_code),
                        frozenset(data.get("negators", [])), frozenset(data.get("advisory", [])),
                        frozenset(data.get("denials", [])), _words_re(phrases))


@dataclass(frozen=True)
class RouteRules:
    coded: dict[str, str]  # SNOMED route code -> systemic | local
    local: re.Pattern[str]
    systemic: re.Pattern[str]

    def classify(self, route_codes: Iterable[str], texts: Iterable[str]) -> str | None:
        by_code = {self.coded[c] for c in route_codes if c in self.coded}
        if by_code:
            return "local" if "local" in by_code else "systemic"
        low = " ".join(t.lower() for t in texts if t)
        if self.local.search(low):
            return "local"
        if self.systemic.search(low):
            return "systemic"
        return None


@cache
def route_rules() -> RouteRules:
    path = DATA_DIR / "routes.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    _strict(data, {"version", "coded", "form"}, path.name)
    coded = {}
    for row in data.get("coded", []):
        _strict(row, {"code", "display", "route"}, f"{path.name} [[coded]]")
        if row["route"] not in ROUTES:
            raise ContextDataError(f"{path.name}: unknown route {row['route']!r}")
        coded[row["code"]] = row["route"]
    words: dict[str, list[str]] = {"systemic": [], "local": []}
    for row in data.get("form", []):
        _strict(row, {"words", "route"}, f"{path.name} [[form]]")
        if row["route"] not in ROUTES:
            raise ContextDataError(f"{path.name}: unknown route {row['route']!r}")
        words[row["route"]].extend(w.lower() for w in row["words"])
    return RouteRules(coded, _words_re(words["local"]), _words_re(words["systemic"]))


def normalised_codings(cc: Any) -> list[tuple[str, str]]:
    """(system, code) pairs of a CodeableConcept, with system aliases resolved."""
    out = []
    if isinstance(cc, dict) and isinstance(cc.get("coding"), list):
        for coding in cc["coding"]:
            if isinstance(coding, dict) and isinstance(coding.get("system"), str) \
                    and isinstance(coding.get("code"), str):
                system = SYSTEM_ALIASES.get(coding["system"], coding["system"])
                out.append((system, coding["code"].strip()))
    return out


def route_codes(cc: Any) -> list[str]:
    return [code for system, code in normalised_codings(cc) if system == SNOMED]
