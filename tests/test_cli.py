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
    from smart_app.fhir_client import PATIENT_SEARCHES

    for rtype, _ in PATIENT_SEARCHES:
        found = [r for r in resources if r["resourceType"] == rtype]
        if rtype == "MedicationRequest":
            found += [r for r in resources if r["resourceType"] == "Medication"]
        if rtype == "Coverage":
            found += [r for r in resources if r["resourceType"] == "Organization"]
        override = (status_overrides or {}).get(rtype)
        if override:
            rsps.get(f"{FHIR}/{rtype}", status=override, json={"resourceType": "OperationOutcome", "issue": []})
        else:
            rsps.get(f"{FHIR}/{rtype}", json=_searchset(found))
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
    code, out, err = run(["evaluate", "--fhir-base", FHIR, "--patient", "p1", *AS_OF], capsys)
    assert code == 3 and "500" in err and err.count("\n") == 1


@responses.activate
def test_server_401_exits_3(capsys):
    responses.get(f"{FHIR}/Patient/p1", status=401)
    for rtype in ("Observation", "Condition", "MedicationRequest", "MedicationAdministration",
                  "MedicationDispense", "MedicationStatement", "Immunization", "Procedure",
                  "DiagnosticReport", "AllergyIntolerance"):
        responses.get(f"{FHIR}/{rtype}", status=401)
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
def test_a_directory_argument_says_it_is_a_directory(capsys):
    code, out, err = run(["evaluate", str(ROOT / "examples"), *AS_OF], capsys)
    assert code == 2 and out == ""
    assert err.strip().endswith("is a directory; give the path of a Bundle JSON file")


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
