"""The rulesets against their source texts: verbatim citations and a complete trace.

Every clause a ruleset quotes must appear, word for word (whitespace folded), in the source
document it encodes (smart_app/engine/rulesets/sources: copies of shared/seeds, checked
byte for byte against it where it is present); every bullet of the policy's
Coverage section (and of the CIDP diagnostic criteria) must be encoded by a criterion or
listed as untraced with the reason; docs/policy-trace.md must be current.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from smart_app.engine.model import available_rulesets, get_ruleset
from smart_app.engine.trace import bullets, not_verbatim, trace

ROOT = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("policy_trace", ROOT / "docs" / "policy_trace.py")
policy_trace = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(policy_trace)


def source_of(ruleset_id: str) -> str:
    path = policy_trace.seeds_dir() / get_ruleset(ruleset_id).seed
    if not path.is_file():
        pytest.fail(f"source text {path} not found: the rulesets' sources are kept in "
                    "smart_app/engine/rulesets/sources (IVIG_SEEDS_DIR overrides)")
    return path.read_text(encoding="utf-8")


SHARED = ROOT.parent / "shared" / "seeds"


@pytest.mark.parametrize("ruleset_id", sorted(available_rulesets()))
def test_the_kept_source_is_the_shared_document(ruleset_id):
    """The copy beside the rulesets is the source document itself, byte for byte."""
    name = get_ruleset(ruleset_id).seed
    kept = policy_trace.SOURCES / name
    assert kept.is_file(), kept
    if not (SHARED / name).is_file():
        pytest.skip(f"{SHARED} is not beside this checkout: nothing to compare the copy with")
    assert kept.read_bytes() == (SHARED / name).read_bytes()


@pytest.mark.parametrize("ruleset_id", sorted(available_rulesets()))
def test_every_quoted_clause_appears_verbatim_in_the_source(ruleset_id):
    bad = not_verbatim(get_ruleset(ruleset_id), source_of(ruleset_id))
    assert not bad, [f"{q.owner}: {q.text}" for q in bad]


@pytest.mark.parametrize("ruleset_id,start,end", [(r, s, e) for r, _, _, s, e in policy_trace.SCOPES])
def test_every_bullet_is_traced(ruleset_id, start, end):
    rows = trace(get_ruleset(ruleset_id), source_of(ruleset_id), start, end)
    untraced = [f"line {b.line}: {b.text}" for b, found in rows if not found]
    assert rows and not untraced, untraced


def test_the_coverage_section_has_the_bullets_the_policy_has():
    """The trace reads the bullets the policy actually has: the 54 experimental items, the
    Testing and Re-Evaluation Tables, the off-label rows (guards against an extraction that
    silently finds nothing)."""
    found = bullets(source_of("bcbsmt-ig-2013"), "Coverage", "Rationale")
    texts = [b.text for b in found]
    assert len(found) > 110
    assert any(t.startswith("Uveitis") for t in texts)
    assert any("discontinued at least four months" in t for t in texts)
    assert any(t.startswith("Acute severe decompensation") for t in texts)


def test_every_covered_and_experimental_row_and_criterion_cites_the_policy():
    rs = get_ruleset("bcbsmt-ig-2013")
    for ind in rs.indications:
        assert ind.cite.quotes, ind.id
        for crit in ind.criteria:
            assert crit.cite.quotes, crit.id


def test_policy_trace_document_is_current():
    assert (ROOT / "docs" / "policy-trace.md").read_text(encoding="utf-8") == policy_trace.build(), (
        "docs/policy-trace.md is out of date: run python docs/policy_trace.py")
