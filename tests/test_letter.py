"""The letter of medical necessity: built only from the report (every number and date it
prints is in the report JSON), one to two pages as PDF, the appeal framing for not-covered
indications, the missing items marked, attestations labelled; the CLI command; the
DocumentReference draft."""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from fhir.resources.R4B.documentreference import DocumentReference

from fhir_mappings import load_record
from fhir_mappings.bundle import PatientRecord
from smart_app import letter as lt
from smart_app.attestation import build_response
from smart_app.cli import main
from smart_app.engine.model import get_ruleset
from smart_app.questionnaire import DEFAULT_CANONICAL_BASE
from smart_app.report import evaluate_record

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAMES = sorted(p.name for p in EXAMPLES.glob("*.json"))
AS_OF = date(2025, 6, 30)
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def record(name: str) -> PatientRecord:
    return load_record((EXAMPLES / name).read_text(encoding="utf-8"), name)


def attested(rec: PatientRecord, ruleset: str, indication: str, answers: dict) -> PatientRecord:
    qr = build_response(ruleset=get_ruleset(ruleset), indication_id=indication, patient_ref=rec.patient_ref,
                        canonical_base=DEFAULT_CANONICAL_BASE, answers=answers, author="Practitioner/dr-7",
                        now=datetime(2025, 6, 20, 14, 5, tzinfo=timezone.utc))
    return PatientRecord(rec.patient, [*rec.resources, qr], full_urls=rec.full_urls)


CASES = [(n, rs, None) for n in NAMES for rs in ("bcbsmt-ig-2013", "aaaai-pi")] + [
    ("09-ms-off-label-missing-failure.json", "bcbsmt-ig-2013",
     ("multiple-sclerosis", {"ms-other-therapy-failed": (True, "Two relapses in 2023 on interferon beta-1a.")})),
    ("10-experimental-alzheimers.json", "bcbsmt-ig-2013",
     ("exp-alzheimers", {"standard-therapy-failed": (True, "Donepezil 10 mg for 14 months without benefit.")})),
]


def case(name: str, ruleset: str, attest) -> tuple[dict, dict, PatientRecord]:
    rec = record(name)
    if attest:
        rec = attested(rec, ruleset, *attest)
    report = evaluate_record(rec, ruleset, AS_OF)
    return report, lt.build_letter(report, patient_name=lt.patient_name(rec.patient)), rec


def visible_text(page: str) -> str:
    page = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def _value(token: str) -> float:
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", token):  # 2,500
        token = token.replace(",", "")
    return float(token.replace(",", "."))


def _report_values(node) -> set[float]:
    """Every number the report holds: its numbers, and the numbers written in its strings."""
    if isinstance(node, bool) or node is None:
        return set()
    if isinstance(node, (int, float)):
        return {float(node)}
    if isinstance(node, str):
        return {_value(t) for t in NUMBER.findall(node)}
    items = node.values() if isinstance(node, dict) else node
    return set().union(*(_report_values(i) for i in items)) if items else set()


def numbers_not_in_report(text: str, report: dict) -> list[str]:
    """Dates of the text not written in the report, and numbers whose value the report does
    not hold."""
    source = json.dumps(report, ensure_ascii=False)
    stray = sorted({d for d in DATE.findall(text) if d not in source})
    values = _report_values(report)
    return stray + sorted({n for n in NUMBER.findall(DATE.sub(" ", text)) if _value(n) not in values})


@pytest.mark.parametrize("name,ruleset,attest", CASES, ids=lambda x: x if isinstance(x, str) else "")
def test_every_number_and_date_in_the_letter_is_in_the_report(name, ruleset, attest):
    report, letter, rec = case(name, ruleset, attest)
    text = lt.render_text(letter)
    page = visible_text(lt.render_html(letter))
    name_digits = set(NUMBER.findall(lt.patient_name(rec.patient) or ""))
    assert not name_digits
    assert numbers_not_in_report(text, report) == []
    assert numbers_not_in_report(page, report) == []
    # It says what the report says about the determination's gaps: the missing items are in
    # the marked box, never among the criteria met.
    for item in report["missing_documentation"]:
        if item["code"] != "letter-of-medical-necessity":
            assert item["display"] in text.split("STILL MISSING FROM THE RECORD")[-1]
    met = {c["description"] for c in letter["met"]}
    assert met == {c["description"] for c in report["criteria"] if c["status"] == "met"} - {
        "Letter of medical necessity (appeal for an experimental or unlisted indication)"}


@pytest.mark.parametrize("name,ruleset,attest", CASES, ids=lambda x: x if isinstance(x, str) else "")
def test_the_pdf_is_one_to_two_pages(name, ruleset, attest):
    _, letter, _ = case(name, ruleset, attest)
    page = lt.render_html(letter)
    assert 1 <= lt.page_count(page) <= 2
    if name.startswith("09"):
        assert lt.render_pdf(page).startswith(b"%PDF-")


def test_attested_evidence_is_labelled_and_only_then():
    report, letter, _ = case(*CASES[-2])
    text = lt.render_text(letter)
    assert "[attested] attested by Practitioner/dr-7 on 2025-06-20: Two relapses in 2023 on interferon beta-1a." in text
    assert "[rests on clinician attestation]" in text
    assert report["attestation"]["summary"] in text
    page = lt.render_html(letter)
    assert "Clinician attestation:" in page and "the record and the attestations hold" in page
    _, plain, _ = case("09-ms-off-label-missing-failure.json", "bcbsmt-ig-2013", None)
    assert "attest" not in lt.render_text(plain).lower()
    assert "STILL MISSING FROM THE RECORD" in lt.render_text(plain)


def test_a_not_covered_indication_is_an_appeal():
    report, letter, _ = case(*CASES[-1])
    assert report["determination"] == "not-covered"
    text = lt.render_text(letter)
    assert "request individual consideration" in text
    assert "listed by the policy as experimental, investigational and unproven" in text
    assert "Tried: [attested] attested by Practitioner/dr-7" in text
    assert "[For the physician to complete: why immune globulin" in text
    assert "Letter of medical necessity (appeal" not in text  # the letter is not its own missing item
    _, unlisted, _ = case("11-unlisted-indication.json", "bcbsmt-ig-2013", None)
    assert "not listed in the policy" in lt.render_text(unlisted)


def test_the_letter_shows_the_dose_calculation_and_diagnosis_dates():
    report, letter, _ = case("02-cvid-complete.json", "bcbsmt-ig-2013", None)
    text = lt.render_text(letter)
    dc = report["dose_check"]
    assert f"Body weight {dc['weight_kg']:g} kg on {dc['weight_date']}." in text
    assert f"Dose calculation: {dc['calculation']}." in text and f"= {dc['mg_per_kg']} mg/kg per 4 weeks" in text
    assert "The policy's range for this indication is 400–600 mg/kg per 4 weeks" in text
    # The IgG results with their timing against the first dose (the report's IgG history).
    for r in report["igg_history"]["results"]:
        assert f"IgG {r['value_mg_dl']:g} mg/dL on {r['date']} (before the first immune globulin dose)" in text \
            or r["timing"] != "pre-treatment"
    dx = report["indication"]["diagnoses"][0]
    assert f"{dx['display']} (onset {dx['onset']}, recorded {dx['recorded']})" in text
    assert f"Immune globulin was first given on {report['therapy']['first_dose_date']}." in text


def test_the_document_reference_is_a_preliminary_draft():
    report, letter, _ = case("09-ms-off-label-missing-failure.json", "bcbsmt-ig-2013", None)
    pdf = lt.render_pdf(lt.render_html(letter))
    doc = lt.build_document_reference(report, pdf, now="2025-06-30T10:00:00+00:00", author="Practitioner/dr-7")
    DocumentReference.model_validate(doc)
    assert doc["docStatus"] == "preliminary" and doc["status"] == "current"
    assert doc["type"]["coding"][0] == {"system": "http://loinc.org", "code": "51852-2", "display": "Letter"}
    assert doc["subject"] == {"reference": "Patient/ex09-patient"}
    assert base64.b64decode(doc["content"][0]["attachment"]["data"]) == pdf
    assert doc["identifier"] == [lt.document_identifier(report, pdf)]
    assert lt.document_identifier(report, pdf) != lt.document_identifier(report, pdf + b" ")


# --- ivig-check letter -------------------------------------------------------------------------------
def test_cli_letter_html_text_and_pdf(tmp_path, capsysbinary):
    path = str(EXAMPLES / "09-ms-off-label-missing-failure.json")
    assert main(["letter", path, "--as-of", "2025-06-30"]) == 0
    out = capsysbinary.readouterr().out.decode()
    assert out.startswith("<!doctype html>") and "Letter of medical necessity" in out
    assert main(["letter", path, "--as-of", "2025-06-30", "--format", "text"]) == 0
    assert "STILL MISSING FROM THE RECORD" in capsysbinary.readouterr().out.decode()
    target = tmp_path / "letter.pdf"
    assert main(["letter", path, "--as-of", "2025-06-30", "--format", "pdf", "--out", str(target)]) == 0
    assert target.read_bytes().startswith(b"%PDF-")


def test_cli_letter_reads_the_bundles_attestations(tmp_path, capsysbinary):
    rec = attested(record("09-ms-off-label-missing-failure.json"), "bcbsmt-ig-2013", "multiple-sclerosis",
                   {"ms-other-therapy-failed": (True, "Relapsed twice on interferon beta-1a.")})
    bundle = json.loads((EXAMPLES / "09-ms-off-label-missing-failure.json").read_text())
    bundle["entry"].append({"resource": rec.resources[-1]})
    path = tmp_path / "with-attestation.json"
    path.write_text(json.dumps(bundle))
    assert main(["letter", str(path), "--as-of", "2025-06-30", "--format", "text"]) == 0
    out = capsysbinary.readouterr().out.decode()
    assert "[attested] attested by Practitioner/dr-7 on 2025-06-20: Relapsed twice on interferon beta-1a." in out
    assert main(["evaluate", str(path), "--as-of", "2025-06-30", "--format", "json"]) == 0
    report = json.loads(capsysbinary.readouterr().out)
    assert report["determination"] == "criteria-met"


@pytest.mark.parametrize("argv,message", [
    (["letter", "no-such-file.json"], "no such file"),
    (["letter", str(EXAMPLES / "09-ms-off-label-missing-failure.json"), "--ruleset", "nope"], "unknown ruleset"),
    (["letter", str(EXAMPLES / "09-ms-off-label-missing-failure.json"), "--as-of", "30/06/2025"], "--as-of"),
])
def test_cli_letter_bad_input_exits_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
