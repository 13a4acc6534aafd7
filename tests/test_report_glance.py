"""The report's at-a-glance fields (issue 12): IgG history against the first dose, vaccine
responses paired as the criterion pairs them, the dose as a worked calculation, and the
de-duplicated criteria; and the timeline's geometry."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from fhir_mappings import load_record
from smart_app.charts import igg_chart
from smart_app.report import evaluate_record

ROOT = Path(__file__).resolve().parent.parent
AS_OF = date(2025, 6, 30)


def report(prefix: str, ruleset: str | None = None) -> dict:
    (path,) = (ROOT / "examples").glob(f"{prefix}-*.json")
    return evaluate_record(load_record(path.read_bytes(), path.name), ruleset, AS_OF)


def test_igg_history_against_the_first_dose():
    h = report("02")["igg_history"]
    assert [(r["date"], r["value_mg_dl"], r["timing"]) for r in h["results"]] == [
        ("2022-08-10", 310.0, "pre-treatment"), ("2022-11-15", 280.0, "pre-treatment"),
        ("2024-12-09", 790.0, "on-treatment"), ("2025-06-02", 820.0, "on-treatment")]
    assert h["first_dose_date"] == "2023-01-16"
    assert h["first_dose_reference"] == "MedicationAdministration/ex02-ivig-admin-first"
    assert h["order_date"] == "2025-06-25" and h["order_reference"] == "MedicationRequest/ex02-ivig-order"
    assert [t["mg_dl"] for t in h["thresholds"]] == [200.0, 400.0]  # the PI row's branches


def test_igg_timing_unknown_without_a_first_dose_and_pre_treatment_for_a_new_start():
    cont = report("01", "aaaai-pi")["igg_history"]
    assert {r["timing"] for r in cont["results"]} == {"unknown"} and cont["first_dose_date"] is None
    assert [t["mg_dl"] for t in cont["thresholds"]] == [500.0]
    new = report("03")["igg_history"]
    assert new["results"] and {r["timing"] for r in new["results"]} == {"pre-treatment"}
    assert new["results"][0]["value_mg_dl"] == 150.0  # 1.5 g/L in mg/dL


def test_vaccine_table_matches_what_the_criterion_counted():
    r = report("01", "aaaai-pi")
    (pneumo,) = r["vaccine_responses"]
    assert pneumo["vaccination"]["reference"] == "Immunization/ex01-ppsv23"
    assert pneumo["post_count"] == 8 and pneumo["protective_count"] == 1
    crit = next(c for c in r["criteria"] if c["id"] == pneumo["criterion"])
    low, tested = map(int, re.search(r"(\d+) of (\d+)", crit["detail"]).groups())
    assert (low, tested) == (pneumo["post_count"] - pneumo["protective_count"], pneumo["post_count"])
    # Without a first-dose date a titer cannot be shown to be off therapy.
    assert {row["on_treatment"] for row in pneumo["rows"]} == {None}


def test_vaccine_table_pairs_pre_and_post_titers_with_fold_rise():
    groups = {g["antigen"]: g for g in report("02")["vaccine_responses"]}
    pneumo = groups["pneumococcal"]
    st1 = next(row for row in pneumo["rows"] if row["post"]["reference"].endswith("post-st1"))
    assert st1["pre"]["value"] == 0.2 and st1["post"]["value"] == 0.3 and st1["fold_rise"] == 1.5
    assert st1["protective"] is False and st1["protective_level"] == 1.3 and st1["on_treatment"] is False
    assert pneumo["four_fold_count"] == 0 and pneumo["protective_count"] == 0 and pneumo["post_count"] == 8
    (tet,) = groups["tetanus"]["rows"]
    assert tet["protective_level"] == 0.1 and tet["fold_rise"] == 1.6
    assert groups["diphtheria"]["rows"] == []  # vaccinated, no titer drawn


def test_no_vaccine_table_where_no_criterion_judges_the_response():
    assert report("07")["vaccine_responses"] == []


@pytest.mark.parametrize("prefix, ruleset, calculation, range_text", [
    ("02", None, "35 g × 28 ÷ 28 days ÷ 70 kg = 500 mg/kg per 4 weeks", "400–600 mg/kg per 4 weeks"),
    ("03", None, "30 g × 28 ÷ 28 days ÷ 59.9 kg = 501 mg/kg per 4 weeks", "400–600 mg/kg per 4 weeks"),
    ("04", None, "8 g × 28 ÷ 7 days ÷ 64 kg = 500 mg/kg per 4 weeks",
     "100–150 mg/kg per week for subcutaneous immune globulin (= 400–600 mg/kg per 4 weeks)"),
    ("06", None, "1,000 mg/kg × 2 doses = 2,000 mg/kg per course (2 g/kg)",
     "1,000–2,000 mg/kg per course (1–2 g/kg)"),
    ("07", None, "1,000 mg/kg × 28 ÷ 21 days = 1,333 mg/kg per 4 weeks", None),
    ("14", None, None, "400–600 mg/kg per 4 weeks"),  # no recent weight: no calculation
])
def test_dose_as_a_worked_calculation_with_the_range_that_applies(prefix, ruleset, calculation, range_text):
    dc = report(prefix, ruleset)["dose_check"]
    assert dc["calculation"] == calculation
    assert dc["range_text"] == range_text
    assert (dc["range_source"] is None) == (range_text is None)


def test_the_dose_criterion_cites_its_own_indications_range():
    cidp = next(c for c in report("07")["criteria"] if c["id"] == "dose-within-range")
    assert cidp["source"] == ("BCBS of Montana, Immunoglobulin (Ig) Therapy (2013): no dose range is given for "
                              "Chronic inflammatory demyelinating polyneuropathy (CIDP)")
    itp = next(c for c in report("06")["criteria"] if c["id"] == "dose-within-range")
    assert "Thrombocytopenia purpura" in itp["source"] and "Primary Immune Deficiency" not in itp["source"]


def test_criteria_say_each_item_evidence_and_detail_once():
    for prefix in ("07", "13"):
        for c in report(prefix)["criteria"]:
            assert len(c.get("missing") or []) == len(set(c.get("missing") or []))
            refs = [(e["reference"], e["summary"]) for e in c["evidence"]]
            assert len(refs) == len(set(refs))
            parts = [p for p in c["detail"].split("; ") if p]
            assert len(parts) == len(set(parts)), c["detail"]
    csf = next(c for c in report("07")["criteria"] if c["id"] == "bcbsmt-cidp-csf")
    assert csf["missing"] == ["csf-analysis"]


def test_chart_geometry_follows_the_values_and_dates():
    h = report("02")["igg_history"]
    chart = igg_chart(h)
    pts = chart["points"]
    assert [p["timing"] for p in pts] == [r["timing"] for r in h["results"]]
    (first_dose,) = [m for m in chart["markers"] if m["kind"] == "first_dose"]
    assert all(p["x"] < first_dose["x"] for p in pts if p["timing"] == "pre-treatment")
    assert all(p["x"] > first_dose["x"] for p in pts if p["timing"] == "on-treatment")
    xs = [p["x"] for p in pts]
    assert xs == sorted(xs) and chart["x0"] <= xs[0] and xs[-1] <= chart["x1"]
    # Linear in value, 0 on the axis: y(820) - y(790) is 30/510 of y(790) - y(280).
    y = {r["value_mg_dl"]: p["y"] for r, p in zip(h["results"], pts)}
    assert y[820.0] < y[790.0] < y[310.0] < y[280.0] < chart["y0"]
    assert (y[790.0] - y[820.0]) / (y[280.0] - y[790.0]) == pytest.approx(30 / 510, abs=0.01)
    t200, t400 = chart["thresholds"]
    assert t400["y"] < y[310.0] < t200["y"]  # 310 is drawn between the 200 and 400 lines
    assert t200["label"] == "below 200 mg/dL"
    assert all(m["anchor"] in {"start", "middle", "end"} for m in chart["markers"])


def test_no_chart_without_a_dated_result():
    assert igg_chart({"results": [], "thresholds": []}) is None
    assert igg_chart({"results": [{"date": None, "value_mg_dl": 300, "timing": "unknown"}]}) is None
