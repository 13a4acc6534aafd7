"""Payer -> ruleset: the map file (strict), the primary Coverage, and the choice the report shows."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from fhir_mappings import extract_facts, load_record
from smart_app.engine.evaluate import evaluate
from smart_app.engine.model import get_ruleset
from smart_app.payers import (PAYER_MAP_FILE, PayerMapError, choose_ruleset, load_payer_map, normalize_name,
                              parse_payer_map)
from smart_app.report import build_report, evaluate_record

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
AS_OF = date(2025, 6, 30)
BC, AA = "bcbsmt-ig-2013", "aaaai-pi"
SHIPPED = load_payer_map()
GENERIC_ID = {"system": "http://example.org/fhir/sid/payer-id", "value": "aaaai-generic"}


def bundle(name: str = "01-cvid-seed-002.json") -> dict:
    return json.loads((EXAMPLES / name).read_text())


def record_of(data: dict):
    return load_record(json.dumps(data), "test bundle")


def resources(data: dict) -> list[dict]:
    return [e["resource"] for e in data["entry"]]


def coverage(cid: str, payor: dict, *, status: str = "active", order: int | None = None,
             period: dict | None = None, classes: list | None = None) -> dict:
    cov = {"resourceType": "Coverage", "id": cid, "status": status,
           "beneficiary": {"reference": "Patient/ex01-patient"}, "payor": [payor]}
    if order is not None:
        cov["order"] = order
    if period is not None:
        cov["period"] = period
    if classes is not None:
        cov["class"] = classes
    return cov


def with_coverages(*coverages: dict, name: str = "01-cvid-seed-002.json", drop_shipped: bool = True) -> dict:
    data = bundle(name)
    if drop_shipped:
        data["entry"] = [e for e in data["entry"] if e["resource"]["resourceType"] != "Coverage"]
    data["entry"] += [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{n:012d}", "resource": c}
                      for n, c in enumerate(coverages)]
    return data


BCBS_ORG = {"reference": "Organization/ex01-payer"}  # the example's Organization (BCBS of Montana)
GENERIC = {"display": "Generic AAAAI immunoglobulin review", "identifier": GENERIC_ID}


def choose(data: dict, *, requested: str | None = None, day: date = date(2025, 6, 20), payer_map=SHIPPED):
    rec = record_of(data)
    return choose_ruleset([rec.patient, *rec.resources], payer_map, day, requested=requested, default=BC,
                          full_urls=rec.full_urls)


# --- the shipped map ---------------------------------------------------------------------------
def test_shipped_map_names_both_rulesets():
    assert {e.ruleset for e in SHIPPED.payer} == {BC, AA}
    bcbs = SHIPPED.entry("bcbsmt")
    assert bcbs.label == "Blue Cross and Blue Shield of Montana" and bcbs.effective.start == date(2013, 10, 25)
    assert SHIPPED.entry("aaaai-generic").short_label == "AAAAI"


def test_names_compare_without_case_spacing_or_punctuation():
    assert normalize_name("Blue Cross & Blue-Shield  of MONTANA") == "blue cross and blue shield of montana"


# --- primary Coverage ----------------------------------------------------------------------------
def test_every_example_is_judged_by_bcbsmt_through_its_coverage():
    for path in sorted(EXAMPLES.glob("[0-9][0-9]-*.json")):
        choice = choose(json.loads(path.read_text()), day=AS_OF)
        assert (choice.ruleset, choice.chosen_by, choice.matched_on) == (BC, "coverage", "name"), path.name
        assert choice.coverage == f"Coverage/{path.name[:2].join(['ex', '-coverage'])}"


def test_primary_coverage_is_the_active_one_with_the_lowest_order():
    data = with_coverages(coverage("c-generic", GENERIC, order=2), coverage("c-bcbs", BCBS_ORG, order=1),
                          drop_shipped=True)
    data["entry"] += [e for e in bundle()["entry"] if e["resource"]["resourceType"] == "Organization"]
    assert choose(data).ruleset == BC
    data = with_coverages(coverage("c-generic", GENERIC, order=1), coverage("c-bcbs", BCBS_ORG, order=2))
    choice = choose(data)
    assert (choice.ruleset, choice.coverage, choice.matched_on) == (AA, "Coverage/c-generic", "identifier")


def test_inactive_and_expired_coverage_is_ignored():
    data = with_coverages(
        coverage("c-cancelled", BCBS_ORG, order=1, status="cancelled"),
        coverage("c-expired", BCBS_ORG, order=1, period={"start": "2020-01-01", "end": "2024-12-31"}),
        coverage("c-not-yet", BCBS_ORG, order=1, period={"start": "2025-07-01"}),
        coverage("c-generic", GENERIC, order=2, period={"start": "2025-01-01", "end": "2025-12-31"}),
    )
    choice = choose(data)
    assert (choice.ruleset, choice.coverage, choice.chosen_by) == (AA, "Coverage/c-generic", "coverage")


def test_the_coverage_must_cover_the_orders_date_not_only_today():
    # The order was authored 2025-06-20; a Coverage that starts 2025-06-25 did not cover it.
    data = with_coverages(coverage("c-late", GENERIC, period={"start": "2025-06-25"}))
    report = evaluate_record(record_of(data), None, AS_OF)
    assert report["payer"]["date"] == "2025-06-20" and report["payer"]["chosen_by"] == "default"
    assert "no Coverage in the record is active on 2025-06-20" in report["payer"]["detail"]


def test_a_period_that_is_not_a_date_is_not_used_and_said_so():
    data = with_coverages(coverage("c-bad", GENERIC, period={"start": "2025-02-30"}))
    choice = choose(data)
    assert choice.chosen_by == "default"
    assert any("Coverage/c-bad: its period is not a valid date range" in w for w in choice.warnings)


# --- payor: resolved, inline, contained --------------------------------------------------------
def test_payor_read_from_reference_display_identifier_or_contained_organization():
    assert choose(with_coverages(coverage("c", {"display": "BCBS of Montana"}))).ruleset == BC
    assert choose(with_coverages(coverage("c", {"identifier": GENERIC_ID}))).ruleset == AA
    contained = coverage("c", {"reference": "#org"})
    contained["contained"] = [{"resourceType": "Organization", "id": "org", "name": "BlueCross BlueShield of Montana"}]
    assert choose(with_coverages(contained)).ruleset == BC
    by_urn = with_coverages(coverage("c", {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}))
    by_urn["entry"].append({"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                            "resource": {"resourceType": "Organization", "id": "o2", "identifier": [GENERIC_ID]}})
    assert choose(by_urn).ruleset == AA


# --- unmapped payer: the default, with a visible warning -------------------------------------------
def test_unmapped_payer_falls_back_to_the_default_with_a_warning():
    data = with_coverages(coverage("c-other", {"display": "Acme Health Plan"}, order=1))
    report = evaluate_record(record_of(data), None, AS_OF, default_ruleset=AA)
    payer = report["payer"]
    assert (payer["chosen_by"], payer["ruleset"], report["ruleset"]["id"]) == ("default", AA, AA)
    assert payer["coverage"] == "Coverage/c-other" and payer["payor"]["display"] == "Acme Health Plan"
    assert "Acme Health Plan" in payer["detail"] and "not in the payer map" in payer["detail"]
    assert any("evaluated against the default ruleset aaaai-pi" in w for w in report["warnings"])


def test_no_coverage_and_unreadable_coverage_say_why():
    data = with_coverages()
    assert "the record holds no Coverage" in evaluate_record(record_of(data), None, AS_OF)["payer"]["detail"]
    rec = record_of(with_coverages())  # what the FHIR client returns when Coverage may not be read
    rec.not_accessible = {"Coverage"}
    report = evaluate_record(rec, None, AS_OF)
    assert report["payer"]["chosen_by"] == "default"
    assert "did not let the app read the patient's Coverage" in report["payer"]["detail"]
    # Payer data is not criteria data: the determination is not marked provisional for it.
    assert report["not_accessible"] == [] and report["not_checked"] == []


def test_requested_ruleset_overrides_and_a_difference_is_a_warning():
    report = evaluate_record(record_of(bundle()), AA, AS_OF)
    assert report["ruleset"]["id"] == AA
    assert (report["payer"]["chosen_by"], report["payer"]["coverage_ruleset"]) == ("requested", BC)
    assert report["payer"]["detail"] in report["warnings"]
    same = evaluate_record(record_of(bundle()), BC, AS_OF)
    assert same["payer"]["chosen_by"] == "requested"
    assert not any("as requested" in w for w in same["warnings"])


# --- identifiers, plans, dates: a deployment's map ---------------------------------------------
DEPLOYMENT_MAP = '''
version = "1"

[[payer]]
id = "acme-2013"
label = "Acme Health (2013 policy)"
short_label = "Acme"
ruleset = "bcbsmt-ig-2013"
names = ["Acme Health"]
effective = { end = 2024-12-31 }

[[payer]]
id = "acme-2025"
label = "Acme Health (AAAAI review from 2025)"
short_label = "Acme"
ruleset = "aaaai-pi"
names = ["Acme Health"]
effective = { start = 2025-01-01 }

[[payer]]
id = "acme-gold-by-id"
label = "Acme Health Gold plan"
short_label = "Acme Gold"
ruleset = "bcbsmt-ig-2013"
identifiers = [{ system = "urn:oid:2.16.840.1.113883.6.300", value = "99999" }]
classes = [{ type = "plan", value = "GOLD" }]
'''
ACME_ID = {"system": "urn:oid:2.16.840.1.113883.6.300", "value": "99999"}
PLAN = "http://terminology.hl7.org/CodeSystem/coverage-class"


def test_effective_dates_choose_the_policy_version():
    acme = parse_payer_map(DEPLOYMENT_MAP)
    data = with_coverages(coverage("c", {"display": "ACME health"}))
    assert choose(data, payer_map=acme, day=date(2025, 6, 20)).payer.id == "acme-2025"
    assert choose(data, payer_map=acme, day=date(2024, 6, 20)).payer.id == "acme-2013"


def test_plan_class_restricts_an_entry_and_wins_when_it_matches():
    acme = parse_payer_map(DEPLOYMENT_MAP)
    gold = [{"type": {"coding": [{"system": PLAN, "code": "plan"}]}, "value": "GOLD"}]
    silver = [{"type": {"coding": [{"system": PLAN, "code": "plan"}]}, "value": "SILVER"}]
    payor = {"display": "Acme Health", "identifier": ACME_ID}
    assert choose(with_coverages(coverage("c", payor, classes=gold)), payer_map=acme).payer.id == "acme-gold-by-id"
    assert choose(with_coverages(coverage("c", payor, classes=silver)), payer_map=acme).payer.id == "acme-2025"
    only_id = choose(with_coverages(coverage("c", {"identifier": ACME_ID}, classes=silver)), payer_map=acme)
    assert only_id.chosen_by == "default" and "mapped, but not for this plan" in only_id.detail


@pytest.mark.parametrize("text,problem", [
    ('version = "1"\n[[payer]]\nid = "x"\nlabel = "X"\nshort_label = "X"\nruleset = "aaaai-pi"\nnames = ["X"]\nnmes = ["typo"]\n',
     "payer.0.nmes"),
    ('version = "1"\n[[payer]]\nid = "x"\nlabel = "X"\nshort_label = "X"\nruleset = "no-such"\nnames = ["X"]\n',
     "unknown ruleset 'no-such'"),
    ('version = "1"\n[[payer]]\nid = "x"\nlabel = "X"\nshort_label = "X"\nruleset = "aaaai-pi"\n',
     "at least one of names / identifiers"),
    ('version = "1"\n[[payer]]\nid = "x"\nlabel = "X"\nshort_label = "X"\nruleset = "aaaai-pi"\nnames = ["X"]\n'
     '[[payer]]\nid = "x"\nlabel = "Y"\nshort_label = "Y"\nruleset = "aaaai-pi"\nnames = ["Y"]\n', "duplicate payer id"),
    ('version = "1"\n[[payer]]\nid = "x"\nlabel = "X"\nshort_label = "X"\nruleset = "aaaai-pi"\nnames = ["X"]\n'
     'effective = { start = 2025-01-01, end = 2024-01-01 }\n', "effective.end is before effective.start"),
    ('version = "2"\n', "version"),
    ('version = "1"\n[[payer]\n', "not valid TOML"),
])
def test_the_map_is_loaded_strictly(text, problem):
    with pytest.raises(PayerMapError, match=problem.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_payer_map(text)


# --- the examples: outcomes change only through the ruleset choice ------------------------------
@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("[0-9][0-9]-*.json")), ids=lambda p: p.name[:2])
def test_examples_without_ruleset_equal_the_engine_under_bcbsmt(path):
    record = load_record(path.read_bytes(), path.name)
    chosen = evaluate_record(record, None, AS_OF)
    engine = build_report(evaluate(extract_facts(record), get_ruleset(BC), AS_OF))
    assert chosen.pop("payer")["chosen_by"] == "coverage"
    assert chosen == engine


# --- the command line ----------------------------------------------------------------------------
def cli(*args: str, env: dict | None = None, stdin: str | None = None):
    import os
    return subprocess.run([sys.executable, "-m", "smart_app.cli", "evaluate", *args, "--as-of", "2025-06-30",
                           "--format", "json"], capture_output=True, text=True, timeout=120, input=stdin,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def test_cli_without_ruleset_uses_the_coverage_and_ruleset_overrides():
    out = cli(str(EXAMPLES / "01-cvid-seed-002.json"))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["ruleset"]["id"], report["payer"]["chosen_by"]) == (BC, "coverage")
    out = cli(str(EXAMPLES / "01-cvid-seed-002.json"), "--ruleset", AA)
    report = json.loads(out.stdout)
    assert (report["ruleset"]["id"], report["payer"]["chosen_by"]) == (AA, "requested")
    generic = with_coverages(coverage("c-generic", GENERIC, order=1))
    report = json.loads(cli("-", stdin=json.dumps(generic)).stdout)
    assert (report["ruleset"]["id"], report["payer"]["payer_id"]) == (AA, "aaaai-generic")
    # IVIG_RULESET is the default when no Coverage decides, not an override.
    out = cli("-", stdin=json.dumps(with_coverages()), env={"IVIG_RULESET": AA})
    assert json.loads(out.stdout)["ruleset"]["id"] == AA
    out = cli(str(EXAMPLES / "01-cvid-seed-002.json"), env={"IVIG_RULESET": AA})
    assert json.loads(out.stdout)["ruleset"]["id"] == BC


def test_cli_output_is_a_pure_function_of_input_map_and_as_of(tmp_path):
    first, second = cli(str(EXAMPLES / "05-cll-comparator.json")), cli(str(EXAMPLES / "05-cll-comparator.json"))
    assert first.stdout == second.stdout
    other_map = tmp_path / "payers.toml"
    other_map.write_text(PAYER_MAP_FILE.read_text().replace('ruleset = "bcbsmt-ig-2013"', 'ruleset = "aaaai-pi"'))
    moved = json.loads(cli(str(EXAMPLES / "05-cll-comparator.json"), env={"IVIG_PAYER_MAP": str(other_map)}).stdout)
    assert moved["ruleset"]["id"] == AA and moved["payer"]["chosen_by"] == "coverage"


def test_cli_bad_payer_map_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "payers.toml"
    bad.write_text('version = "1"\n[[payer]]\nid = "x"\nlabel = "X"\nshort_label = "X"\nruleset = "nope"\nnames = ["X"]\n')
    out = cli(str(EXAMPLES / "01-cvid-seed-002.json"), env={"IVIG_PAYER_MAP": str(bad)})
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "unknown ruleset 'nope'" in out.stderr and "Traceback" not in out.stderr


def test_config_refuses_a_bad_payer_map_at_start_up(tmp_path):
    from smart_app.config import ConfigError, load_config
    bad = tmp_path / "payers.toml"
    bad.write_text("version = 1\n")
    with pytest.raises(ConfigError, match="IVIG_PAYER_MAP"):
        load_config({"IVIG_PAYER_MAP": str(bad)})


def test_choice_does_not_change_its_input():
    data = with_coverages(coverage("c-generic", GENERIC, order=1))
    before = copy.deepcopy(data)
    choose(data)
    assert data == before
