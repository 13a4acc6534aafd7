"""The command line: exit codes, one-line errors, JSON output, Task output (CONTRACT §1)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import responses

from smart_app.cli import main

ROOT = Path(__file__).resolve().parent.parent
SEED_002 = ROOT / "examples" / "01-cvid-seed-002.json"
AS_OF = ["--as-of", "2025-06-30"]


@pytest.fixture(autouse=True)
def _no_gc_freeze_in_this_process(monkeypatch):
    """A batch run freezes the collector's view of the heap (smart_app/startup.py); in-process
    runs here must not do that to the test process. The subprocess test below runs it."""
    monkeypatch.setenv("IVIG_GC_FREEZE", "0")


def run(argv, capsys, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        import io

        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8"))))
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_seed_002_json_report(capsys):
    code, out, err = run(["evaluate", str(SEED_002), "--ruleset", "aaaai-pi", "--format", "json", *AS_OF], capsys)
    assert code == 0, err
    report = json.loads(out)  # exactly one JSON document
    assert report["determination"] == "documentation-missing"
    assert {m["code"] for m in report["missing_documentation"]} == {
        "igg-pretreatment", "ivig-start-date", "body-weight", "secondary-causes-excluded"}
    status = {c["id"]: c["status"] for c in report["criteria"]}
    assert status["aaaai-infections"] == "met"
    assert status["aaaai-vaccine-response"] == "met"


def test_output_is_pure_function_of_input_ruleset_as_of(capsys):
    argv = ["evaluate", str(SEED_002), "--format", "json", *AS_OF]
    first = run(argv, capsys)[1]
    second = run(argv, capsys)[1]
    assert first == second


def test_text_format_is_readable(capsys):
    code, out, _ = run(["evaluate", str(SEED_002), *AS_OF], capsys)
    assert code == 0
    assert "Determination: DOCUMENTATION MISSING — 3 documentation items missing" in out
    assert "  [ ] Current body weight\n" in out  # the item as a person names it, not its code
    assert "body-weight" not in out


def test_task_out_writes_a_valid_task(tmp_path, capsys):
    target = tmp_path / "task.json"
    code, _, err = run(["evaluate", str(SEED_002), "--ruleset", "aaaai-pi", "--task-out", str(target), *AS_OF], capsys)
    assert code == 0, err
    task = json.loads(target.read_text())
    assert task["resourceType"] == "Task" and task["status"] == "requested"
    assert len(task["input"]) == 4
    assert task["description"] == "IVIG coverage (aaaai-pi): 4 documentation items missing"


def test_task_out_is_null_when_nothing_missing(tmp_path, capsys):
    target = tmp_path / "task.json"
    code, out, err = run(["evaluate", str(ROOT / "examples" / "02-cvid-complete.json"), "--task-out", str(target), *AS_OF], capsys)
    assert code == 0, err
    assert json.loads(target.read_text()) is None


def test_stdin(capsys, monkeypatch):
    code, out, _ = run(["evaluate", "-", "--format", "json", *AS_OF], capsys,
                       stdin=SEED_002.read_text(), monkeypatch=monkeypatch)
    assert code == 0 and json.loads(out)["patient"]["reference"].startswith("Patient/")


def test_rulesets_lists_both(capsys):
    code, out, _ = run(["rulesets"], capsys)
    assert code == 0
    assert "bcbsmt-ig-2013" in out and "aaaai-pi" in out


BAD_INPUTS = [
    pytest.param("{not json", "not valid JSON", id="malformed-json"),
    pytest.param("[]", "not a FHIR resource", id="json-array"),
    pytest.param('{"resourceType":"Bundle","type":"collection","entry":[]}', "no Patient", id="bundle-without-patient"),
    pytest.param('{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"Resource Patient/x is not known"}]}',
                 "OperationOutcome", id="operation-outcome-instead-of-bundle"),
    pytest.param('{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"p"}},'
                 '{"resource":{"resourceType":"MedicationRequest","id":"m","status":"active","intent":"order","medication":{"concept":{"text":"Privigen"}},"subject":{"reference":"Patient/p"}}}]}',
                 "R5", id="r5-resource-shape"),
    pytest.param('{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"p"}},{"resource":{"resourceType":"Transport","id":"t"}}]}',
                 "R5", id="r5-only-resource-type"),
    pytest.param('{"resourceType":"Bundle","type":"subscription-notification","entry":[]}', "not a FHIR R4 Bundle type", id="r5-bundle-type"),
    pytest.param('{"resourceType":"Patient","id":"p"}', "not a Bundle", id="patient-not-bundle"),
    pytest.param("\udcff", "not", id="not-utf8"),
]


@pytest.mark.parametrize(("text", "message"), BAD_INPUTS)
def test_bad_input_exit_2_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "in.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    code, out, err = run(["evaluate", str(path), *AS_OF], capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert message in err


@pytest.mark.parametrize(("argv", "message"), [
    pytest.param(["evaluate", "missing-file.json"], "no such file", id="missing-file"),
    pytest.param(["evaluate", str(SEED_002), "--as-of", "2025-02-30"], "--as-of", id="impossible-as-of-date"),
    pytest.param(["evaluate", str(SEED_002), "--ruleset", "nope"], "unknown ruleset", id="unknown-ruleset"),
    pytest.param(["evaluate"], "BUNDLE.json", id="no-input"),
    pytest.param(["evaluate", str(SEED_002), "--write-task"], "--fhir-base", id="write-task-without-server"),
    pytest.param(["evaluate", "--fhir-base", "http://127.0.0.1:9/fhir"], "--patient", id="fhir-base-without-patient"),
    pytest.param(["frobnicate"], "invalid choice", id="unknown-command"),
    pytest.param(["evaluate", str(SEED_002), "--format", "xml"], "invalid choice", id="bad-format"),
])
def test_bad_usage_exit_2(capsys, argv, message):
    code, out, err = run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_patient_values_do_not_leak_into_bad_input_errors(tmp_path, capsys):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Observation", "id": "o", "status": "final",
                      "subject": {"reference": "Patient/Jane-Doe-123"}}}]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle))
    code, _, err = run(["evaluate", str(path)], capsys)
    assert code == 2 and "Jane" not in err


FHIR = "http://fhir.test/r4"


def _searchset(resources, next_url=None):
    bundle = {"resourceType": "Bundle", "type": "searchset",
              "entry": [{"resource": r} for r in resources]}
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def _serve_patient(rsps, bundle_path: Path, *, status_overrides=None):
    """Register the example patient's resources as FHIR search answers."""
    data = json.loads(bundle_path.read_text())
    resources = [e["resource"] for e in data["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    rsps.get(f"{FHIR}/Patient/{patient['id']}", json=patient)
    rsps.get(f"{FHIR}/metadata", status=404)  # no CapabilityStatement: every search is tried
    from smart_app.search_plan import OPTIONAL_TYPES, PATIENT_TYPES

    for rtype in (*PATIENT_TYPES, *OPTIONAL_TYPES):
        found = [r for r in resources if r["resourceType"] == rtype]
        if rtype == "MedicationRequest":
            found += [r for r in resources if r["resourceType"] == "Medication"]
        if rtype == "Coverage":
            found += [r for r in resources if r["resourceType"] == "Organization"]
        override = (status_overrides or {}).get(rtype)
        for method, url in (("GET", f"{FHIR}/{rtype}"), ("POST", f"{FHIR}/{rtype}/_search")):
            if override:
                rsps.add(method, url, status=override, json={"resourceType": "OperationOutcome", "issue": []})
            else:
                rsps.add(method, url, json=_searchset(found))
    return patient["id"]


@responses.activate
def test_evaluate_from_fhir_server_matches_bundle(capsys):
    pid = _serve_patient(responses, SEED_002)
    code, out, err = run(["evaluate", "--fhir-base", FHIR, "--patient", pid, "--ruleset", "aaaai-pi",
                          "--format", "json", *AS_OF], capsys)
    assert code == 0, err
    from_server = json.loads(out)
    code, out, _ = run(["evaluate", str(SEED_002), "--ruleset", "aaaai-pi", "--format", "json", *AS_OF], capsys)
    from_file = json.loads(out)
    assert from_server["determination"] == from_file["determination"]
    assert from_server["missing_documentation"] == from_file["missing_documentation"]


@responses.activate
def test_forbidden_resource_type_is_not_accessible_not_missing(capsys):
    pid = _serve_patient(responses, SEED_002, status_overrides={"Immunization": 403})
    code, out, err = run(["evaluate", "--fhir-base", FHIR, "--patient", pid, "--ruleset", "aaaai-pi",
                          "--format", "json", *AS_OF], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["not_accessible"] == ["Immunization"]


@responses.activate
def test_server_500_exits_3(capsys, monkeypatch):
    monkeypatch.setattr("smart_app.fhir_client.time.sleep", lambda s: None)
    responses.get(f"{FHIR}/Patient/p1", status=500)
    responses.get(f"{FHIR}/Observation", status=500)
    responses.post(f"{FHIR}/Observation/_search", status=500)  # the coded search (a long query)
    code, out, err = run(["evaluate", "--fhir-base", FHIR, "--patient", "p1", *AS_OF], capsys)
    assert code == 3 and "500" in err and err.count("\n") == 1


@responses.activate
def test_server_401_exits_3(capsys):
    responses.get(f"{FHIR}/Patient/p1", status=401)
    for rtype in ("Observation", "Condition", "MedicationRequest", "MedicationAdministration",
                  "MedicationDispense", "MedicationStatement", "Immunization", "Procedure",
                  "DiagnosticReport", "AllergyIntolerance"):
        responses.get(f"{FHIR}/{rtype}", status=401)
        responses.post(f"{FHIR}/{rtype}/_search", status=401)
    code, _, err = run(["evaluate", "--fhir-base", FHIR, "--patient", "p1", *AS_OF], capsys)
    assert code == 3 and "401" in err


def test_unreachable_server_exits_3(capsys, monkeypatch):
    monkeypatch.setattr("smart_app.fhir_client.time.sleep", lambda s: None)
    code, _, err = run(["evaluate", "--fhir-base", "http://127.0.0.1:9/fhir", "--patient", "p1", *AS_OF], capsys)
    # The URL and the cause in words; no exception class name, no patient id.
    assert code == 3
    assert err == ("ivig-check: FHIR server http://127.0.0.1:9/fhir could not be reached: the connection "
                   "was refused (is the server running, and is the port right?)\n")


def test_console_script_runs_in_a_subprocess():
    proc = subprocess.run([sys.executable, "-m", "smart_app.cli", "evaluate", str(SEED_002), "--format", "json", *AS_OF],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["report_version"] == "1"


# --- messages a person reads (issue 12) ----------------------------------------------------------
def test_a_directory_argument_with_json_format_says_to_use_ndjson(capsys):
    """A directory is several inputs (CONTRACT §6: evaluate PATH [PATH …|DIR]); --format json
    is one document, so it says what to use instead."""
    code, out, err = run(["evaluate", str(ROOT / "examples"), "--format", "json", *AS_OF], capsys)
    assert code == 2 and out == ""
    assert err == "ivig-check: several inputs: use --format ndjson (one report per line) or --format text\n"


@pytest.mark.parametrize("url", ["ftp://fhir.example.org/r4", "fhir.example.org/r4", "http://", "file:///tmp/x"])
def test_a_fhir_base_that_is_not_http_is_a_usage_error(capsys, url):
    code, _, err = run(["evaluate", "--fhir-base", url, "--patient", "p1", *AS_OF], capsys)
    assert code == 2
    assert err == f"ivig-check: --fhir-base must be an http:// or https:// URL, got {url!r}\n"


def test_an_unknown_host_is_named_with_the_cause_in_words(capsys, monkeypatch):
    monkeypatch.setattr("smart_app.fhir_client.time.sleep", lambda s: None)
    code, _, err = run(["evaluate", "--fhir-base", "http://no-such-host.invalid/fhir", "--patient", "p1", *AS_OF],
                       capsys)
    assert code == 3
    assert err == "ivig-check: FHIR server http://no-such-host.invalid/fhir could not be reached: its host name was not found\n"
    assert "Error" not in err and "p1" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert re.fullmatch(r"ivig-check \S+\n", capsys.readouterr().out)


def test_help_states_the_default_format(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "output format (default: text)" in " ".join(capsys.readouterr().out.split())


def test_rulesets_say_indication_in_the_singular_for_one(capsys):
    code, out, _ = run(["rulesets"], capsys)
    assert code == 0
    assert "\t1 indication\t" in out and "1 indications" not in out
    assert re.search(r"\t\d{2,} indications\t", out)


# --- several inputs (CONTRACT §6): ndjson, input order, bad files reported and skipped -----------
EXAMPLE_FILES = sorted((ROOT / "examples").glob("*.json"))


def test_batch_ndjson_is_one_at_a_time_byte_for_byte(capsys):
    singles = []
    for path in EXAMPLE_FILES:
        code, out, err = run(["evaluate", str(path), "--format", "ndjson", *AS_OF], capsys)
        assert code == 0, err
        assert out.count("\n") == 1
        singles.append(out)
    code, out, err = run(["evaluate", str(ROOT / "examples"), "--format", "ndjson", *AS_OF], capsys)
    assert code == 0 and err == ""
    assert out == "".join(singles)  # the directory's *.json files, by name, byte for byte
    lines = out.splitlines()
    assert len(lines) == len(EXAMPLE_FILES) and all(line.isascii() for line in lines)
    assert [json.loads(line)["patient"]["reference"] for line in lines] == \
        [f"Patient/ex{n:02d}-patient" for n in range(1, len(EXAMPLE_FILES) + 1)]
    # Paths in the order given, one file twice.
    picked = [EXAMPLE_FILES[4], EXAMPLE_FILES[0], EXAMPLE_FILES[4]]
    code, out, _ = run(["evaluate", *map(str, picked), "--format", "ndjson", *AS_OF], capsys)
    assert code == 0 and out == singles[4] + singles[0] + singles[4]


def test_batch_bad_file_one_stderr_line_with_its_path_and_the_run_goes_on(tmp_path, capsys):
    bad = tmp_path / "broken bundle.json"
    bad.write_text("{not json")
    missing = tmp_path / "gone.json"
    argv = ["evaluate", str(EXAMPLE_FILES[0]), str(bad), str(missing), str(EXAMPLE_FILES[1]),
            "--format", "ndjson", *AS_OF]
    code, out, err = run(argv, capsys)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 2 and "Traceback" not in err
    assert str(bad) in lines[0] and "not valid JSON" in lines[0]
    assert str(missing) in lines[1] and "no such file" in lines[1]
    reports = [json.loads(line) for line in out.splitlines()]
    assert [r["patient"]["reference"] for r in reports] == ["Patient/ex01-patient", "Patient/ex02-patient"]


def test_batch_directory_without_bundles_is_a_bad_input(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run(["evaluate", str(empty), str(EXAMPLE_FILES[0]), "--format", "ndjson", *AS_OF], capsys)
    assert code == 2 and str(empty) in err and err.count("\n") == 1
    assert out.count("\n") == 1


def test_batch_text_is_the_concatenation(capsys):
    singles = "".join(run(["evaluate", str(p), *AS_OF], capsys)[1] for p in EXAMPLE_FILES[:3])
    code, out, _ = run(["evaluate", *map(str, EXAMPLE_FILES[:3]), *AS_OF], capsys)
    assert code == 0 and out == singles


@pytest.mark.parametrize(("extra", "message"), [
    pytest.param(["--format", "json"], "ndjson", id="json-is-one-document"),
    pytest.param(["--task-out", "t.json"], "--task-out", id="task-out-is-for-one-input"),
])
def test_batch_usage_errors(capsys, extra, message):
    code, out, err = run(["evaluate", *map(str, EXAMPLE_FILES[:2]), *extra, *AS_OF], capsys)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1


def test_task_is_built_only_when_output(capsys, monkeypatch, tmp_path):
    """Evaluating does not build (or validate) a Task; --task-out does."""
    calls = []
    from smart_app import cli

    real = cli.build_task
    monkeypatch.setattr(cli, "build_task", lambda *a, **k: calls.append(1) or real(*a, **k))
    code, _, _ = run(["evaluate", str(SEED_002), "--format", "ndjson", *AS_OF], capsys)
    assert code == 0 and calls == []
    code, _, _ = run(["evaluate", str(SEED_002), "--task-out", str(tmp_path / "t.json"), *AS_OF], capsys)
    assert code == 0 and calls == [1]


def test_batch_in_a_subprocess_with_the_collector_frozen_gives_the_same_lines(capsys):
    env = {k: v for k, v in __import__("os").environ.items() if k != "IVIG_GC_FREEZE"}
    proc = subprocess.run([sys.executable, "-m", "smart_app.cli", "evaluate", str(ROOT / "examples"),
                           "--format", "ndjson", *AS_OF], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    code, out, _ = run(["evaluate", str(ROOT / "examples"), "--format", "ndjson", *AS_OF], capsys)
    assert code == 0 and proc.stdout == out
