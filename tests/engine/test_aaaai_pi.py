"""aaaai-pi: every criterion met / not-met / missing, and the CONTRACT §4 timeline.

Test ids cite seed 002 (shared/seeds/002_f3d7d3750bd4b379.txt, "002-…") or CONTRACT §4.
"""

from __future__ import annotations

import pytest
from helpers import (
    ago,
    albumin,
    child,
    condition,
    criterion,
    hiv_test,
    igg,
    infection,
    ivig_admin,
    ivig_request,
    ivig_statement,
    med_request,
    med_statement,
    missing_codes,
    observation,
    patient,
    pneumo_titer,
    ppsv23,
    run,
    scig_request,
    td_vaccine,
    tetanus_titer,
    urine_protein,
    weight,
)

RS = "aaaai-pi"
PI = "primary-humoral-immunodeficiency"
DET = {"met": "criteria-met", "not-met": "criteria-not-met", "missing": "documentation-missing"}


SEROTYPES = ["27092-6", "27096-7", "27094-2", "27113-0", "27392-0", "27374-8", "27387-0", "27390-4"]


def pneumo_post(vaccinated: int, low: int = 7, days_after: int = 28, value_low: float = 0.4) -> list:
    """PPSV23 ``vaccinated`` days before as-of and 8 serotype titers ``days_after`` it, ``low``
    of them below 1.3 µg/mL (seed 002: "low Streptococcus pneumoniae antibody titers")."""
    return [ppsv23(ago(vaccinated))] + [
        pneumo_titer(value_low if i < low else 2.4, ago(vaccinated - days_after), loinc=loinc)
        for i, loinc in enumerate(SEROTYPES)]


def new_start(**changes) -> dict:
    """New start meeting every aaaai-pi criterion."""
    parts = {
        "patient": patient("1979-04-17"),
        "dx": condition("D83.9", "Common variable immunodeficiency", id="dx"),
        "weight": weight(70),
        "order": ivig_request(35, reason="dx", id="order"),
        "igg": igg(380, ago(60)),
        "hiv": hiv_test("negative"),
        "screen": albumin(4.2),
        "inf": [infection("J18.9", ago(300)), infection("J01.90", ago(200), "Acute sinusitis")],
        "vac": pneumo_post(400),
    }
    parts.update(changes)
    return parts


def continuation(**changes) -> dict:
    """On IVIG since ago(700) (dated administration), meeting every criterion."""
    parts = new_start(
        admin=ivig_admin(ago(700), id="first-dose"),
        igg=[igg(380, ago(760)), igg(820, ago(100))],
        inf=[infection("J18.9", ago(900)), infection("J01.90", ago(800), "Acute sinusitis")],
        vac=pneumo_post(1000),
    )
    parts.update(changes)
    return parts


def test_002_base_new_start_is_criteria_met():
    rep = run(new_start(), RS)
    assert rep["indication"]["id"] == PI
    assert rep["therapy"]["status"] == "new-start"
    assert rep["determination"] == "criteria-met", [(c["id"], c["status"]) for c in rep["criteria"]]
    assert missing_codes(rep) == set()


def test_002_base_continuation_is_criteria_met():
    rep = run(continuation(), RS)
    assert rep["therapy"] == {**rep["therapy"], "status": "continuation", "first_dose_date": ago(700)}
    assert rep["determination"] == "criteria-met", [(c["id"], c["status"], c["detail"]) for c in rep["criteria"]]


def C(base, crit, changes, status, missing=(), name="", determination=None):
    return pytest.param(base, crit, changes, status, set(missing), determination or DET[status],
                        id=f"{name}-{status}")


CASES = [
    # Pre-treatment IgG < 500 mg/dL or > 2 SD below the age mean (seed 002, Pre-Treatment IgG)
    C(new_start, "aaaai-pretreatment-igg", {}, "met", name="002-IgG380<500"),
    C(new_start, "aaaai-pretreatment-igg", {"igg": igg(520, ago(60), ref_low=600, ref_high=1600)}, "met",
      name="002-IgG520-below-lab-range"),
    C(new_start, "aaaai-pretreatment-igg", {"igg": igg(520, ago(60), interpretation="L")}, "met",
      name="002-IgG520-flagged-low"),
    C(new_start, "aaaai-pretreatment-igg", {"igg": igg(4.8, ago(60), unit="g/L")}, "met", name="002-IgG4.8g/L"),
    C(new_start, "aaaai-pretreatment-igg", {"igg": igg(520, ago(60))}, "not-met", name="002-IgG520-no-range"),
    C(new_start, "aaaai-pretreatment-igg", {"igg": igg(700, ago(60), ref_low=600)}, "not-met",
      name="002-IgG700-normal"),
    C(new_start, "aaaai-pretreatment-igg", {"igg": None}, "missing", {"igg-pretreatment"}, name="002-no-IgG"),
    C(new_start, "aaaai-pretreatment-igg", {"igg": igg(380, ago(60), status="preliminary")}, "missing",
      {"igg-pretreatment"}, name="CONTRACT4-preliminary-IgG-not-used"),
    # Secondary causes excluded (seed 002, Exclusion of Other Causes; CONTRACT §4)
    C(new_start, "aaaai-secondary-causes", {}, "met", name="002-HIV-negative+albumin"),
    C(new_start, "aaaai-secondary-causes", {"screen": urine_protein(85)}, "met",
      name="002-HIV-negative+urine-protein"),
    # A protein-loss screen excludes protein loss only when its result is normal.
    C(new_start, "aaaai-secondary-causes", {"screen": observation(
      "24351-9", "Protein electrophoresis panel", value=6.8, unit="g/dL", when=ago(60))}, "missing",
      {"secondary-causes-excluded"}, name="002-SPEP-value-without-interpretation"),
    C(new_start, "aaaai-secondary-causes", {"screen": observation(
      "24351-9", "Protein electrophoresis panel", value_string="Normal pattern, no monoclonal protein",
      when=ago(60))}, "met", name="002-HIV-negative+SPEP-normal"),
    C(new_start, "aaaai-secondary-causes", {"ritux": med_request("rituximab 375 mg/m2", status="active")},
      "not-met", name="002-rituximab-active"),
    C(new_start, "aaaai-secondary-causes", {"ritux": med_statement("rituximab", status="active", reason=None)},
      "not-met", name="002-rituximab-statement-active"),
    C(new_start, "aaaai-secondary-causes", {"cll": condition("C91.10", "Chronic lymphocytic leukemia")},
      "not-met", name="002-CLL-active"),
    C(new_start, "aaaai-secondary-causes", {"hiv": hiv_test("positive")}, "not-met", name="002-HIV-positive"),
    C(new_start, "aaaai-secondary-causes", {"hivdx": condition("B20", "HIV disease")}, "not-met",
      name="002-HIV-diagnosis"),
    C(new_start, "aaaai-secondary-causes", {"nephrotic": condition("N04.9", "Nephrotic syndrome")}, "not-met",
      name="002-nephrotic-protein-loss"),
    # Thymoma with hypogammaglobulinemia is Good syndrome, not a primary immunodeficiency.
    C(new_start, "aaaai-secondary-causes", {"thymoma": condition("D15.0", "Benign neoplasm of thymus", text="Thymoma")},
      "not-met", name="002-thymoma-Good-syndrome"),
    # The hypogammaglobulinemia of Good syndrome persists after the thymoma is removed.
    C(new_start, "aaaai-secondary-causes", {"thymoma": condition("D15.0", "Benign neoplasm of thymus", text="Thymoma",
      clinical="resolved")}, "not-met", name="002-thymoma-resected-still-explains-low-IgG"),
    C(new_start, "aaaai-secondary-causes", {"thymoma": condition("E32.9", "Disease of thymus, unspecified",
      text="Thymic hyperplasia")}, "met", name="002-thymic-hyperplasia-is-not-thymoma"),
    # A causative drug in the history explains the low IgG (seed 002: "drug-induced").
    C(new_start, "aaaai-secondary-causes", {"ritux": med_statement("rituximab", status="completed", reason=None,
      when=ago(900))}, "not-met", name="002-completed-rituximab-course-years-ago"),
    C(new_start, "aaaai-secondary-causes", {"drug": med_statement("phenytoin", status="active", reason=None)},
      "not-met", name="002-phenytoin-ongoing"),
    C(new_start, "aaaai-secondary-causes", {"drug": med_statement("phenytoin", status="stopped", reason="seizure free",
      when=ago(2000), end=ago(1500))}, "met", name="002-phenytoin-stopped-four-years-ago"),
    C(new_start, "aaaai-secondary-causes", {"drug": med_request("rituximab 375 mg/m2", status="cancelled")},
      "met", name="002-cancelled-rituximab-order-never-given"),
    # The screen excludes protein loss only when normal; heavy proteinuria shows it.
    C(new_start, "aaaai-secondary-causes", {"screen": [albumin(2.6), urine_protein(4200)]}, "not-met",
      name="002-low-albumin-with-heavy-proteinuria"),
    C(new_start, "aaaai-secondary-causes", {"screen": urine_protein(5000)}, "not-met",
      name="002-nephrotic-range-proteinuria"),
    C(new_start, "aaaai-secondary-causes", {"screen": albumin(2.6)}, "missing", {"secondary-causes-excluded"},
      name="002-low-albumin-alone-does-not-exclude"),
    C(new_start, "aaaai-secondary-causes", {"screen": urine_protein(400)}, "missing", {"secondary-causes-excluded"},
      name="002-proteinuria-400mg-does-not-exclude"),
    C(new_start, "aaaai-secondary-causes", {"screen": [albumin(4.2), urine_protein(400)]}, "missing",
      {"secondary-causes-excluded"}, name="002-normal-albumin-but-proteinuria"),
    C(new_start, "aaaai-secondary-causes", {"screen": observation("2890-2", "Protein/Creatinine [Mass Ratio] in Urine",
      value=0.1, unit="mg/mg", when=ago(60))}, "met", name="002-normal-protein-creatinine-ratio"),
    C(new_start, "aaaai-secondary-causes", {"screen": observation("2890-2", "Protein/Creatinine [Mass Ratio] in Urine",
      value=0.1, unit="mmol/L", when=ago(60))}, "missing", {"secondary-causes-excluded"},
      name="002-urine-ratio-in-an-unknown-unit-not-used"),
    C(new_start, "aaaai-secondary-causes", {"hiv": None, "screen": None}, "missing",
      {"secondary-causes-excluded"}, name="002-nothing-documented"),
    C(new_start, "aaaai-secondary-causes", {"screen": None}, "missing", {"secondary-causes-excluded"},
      name="002-HIV-negative-only"),
    C(new_start, "aaaai-secondary-causes", {"hiv": None}, "missing", {"secondary-causes-excluded"},
      name="002-albumin-only"),
    C(new_start, "aaaai-secondary-causes", {"cll": condition("C91.10", "CLL", verification="refuted")}, "met",
      name="CONTRACT4-refuted-CLL-is-no-cause"),
    C(new_start, "aaaai-secondary-causes", {"bad": hiv_test("positive", status="entered-in-error")}, "met",
      name="CONTRACT4-entered-in-error-HIV-positive-ignored"),
    # Recurrent bacterial infections (seed 002, Criteria That Are Met)
    C(new_start, "aaaai-infections", {}, "met", name="002-two-infections"),
    C(new_start, "aaaai-infections", {"inf": infection("J18.9", ago(300))}, "missing", {"infection-history"},
      name="002-one-infection"),
    C(new_start, "aaaai-infections", {"inf": None}, "missing", {"infection-history"}, name="002-no-infections"),
    C(new_start, "aaaai-infections", {"inf": [infection("J18.9", ago(300)),
      infection("L03.90", ago(200), "Cellulitis", verification="refuted")]}, "missing", {"infection-history"},
      name="CONTRACT4-refuted-infection-not-counted"),
    # Vaccine response: low post-vaccination titers after a documented vaccination, no pre-titer
    C(new_start, "aaaai-vaccine-response", {}, "met", name="002-PPSV23-post-titer-low-no-pre"),
    C(new_start, "aaaai-vaccine-response", {"vac": [td_vaccine(ago(400)), tetanus_titer(0.05, ago(375))]}, "met",
      name="002-Td-post-titer-below-protective"),
    C(new_start, "aaaai-vaccine-response", {"vac": pneumo_post(400, low=0)}, "not-met",
      name="002-PPSV23-protective-response"),
    # "Low titers": one low serotype among protective ones is not an impaired response.
    C(new_start, "aaaai-vaccine-response", {"vac": pneumo_post(400, low=1)}, "not-met",
      name="002-PPSV23-one-of-eight-serotypes-low"),
    C(new_start, "aaaai-vaccine-response", {"vac": pneumo_post(400, low=4)}, "met",
      name="002-PPSV23-half-of-serotypes-low"),
    C(new_start, "aaaai-vaccine-response", {"vac": [ppsv23(ago(400)), pneumo_titer(0.4, ago(372))]}, "missing",
      {"vaccine-response"}, name="002-PPSV23-one-serotype-tested-too-few"),
    C(new_start, "aaaai-vaccine-response", {"vac": None}, "missing", {"vaccine-response"}, name="002-no-vaccination"),
    C(new_start, "aaaai-vaccine-response", {"vac": pneumo_titer(0.4, ago(372))}, "missing", {"vaccine-response"},
      name="002-titer-without-documented-vaccination"),
    C(new_start, "aaaai-vaccine-response", {"vac": pneumo_post(400, days_after=60)}, "missing",
      {"vaccine-response"}, name="CONTRACT4-post-titer-60d-outside-3-6-weeks"),
    C(new_start, "aaaai-vaccine-response", {"vac": [td_vaccine(ago(400)), tetanus_titer(0.05, ago(365))]},
      "missing", {"vaccine-response"}, name="CONTRACT4-tetanus-post-titer-35d-outside-3-4-weeks"),
    # Age >= 2 years
    C(new_start, "aaaai-age", {}, "met", name="002-adult"),
    C(new_start, "aaaai-age", {"patient": patient(ago(731)), "weight": weight(12),
      "order": ivig_request(6, reason="dx")}, "met", name="002-age-exactly-2"),
    C(new_start, "aaaai-age", {"patient": child(1), "weight": weight(10),
      "order": ivig_request(5, reason="dx")}, "not-met", name="002-age-1"),
    C(new_start, "aaaai-age", {"patient": patient(None)}, "missing", {"patient-age"}, name="002-no-birthDate"),
    # Dose 400-600 mg/kg per 4 weeks
    C(new_start, "aaaai-dose", {}, "met", name="002-35g-70kg-q4wk-500"),
    C(new_start, "aaaai-dose", {"order": ivig_request(40, every=28, period_unit="d", reason="dx")}, "met",
      name="002-40g-q28d-571"),
    C(new_start, "aaaai-dose", {"order": ivig_request(60, reason="dx")}, "missing", {"dose-justification"},
      name="002-60g-857-above"),
    C(new_start, "aaaai-dose", {"order": ivig_request(20, reason="dx")}, "missing", {"dose-justification"},
      name="002-20g-286-below"),
    C(new_start, "aaaai-dose", {"order": scig_request(8.75, reason="dx")}, "met", name="002-SCIG-125mg/kg/wk"),
    C(new_start, "aaaai-dose", {"weight": None}, "missing", {"body-weight"}, name="002-no-weight-dose-unknown"),
    # Start date (continuation)
    C(new_start, "aaaai-start-date", {}, "not-applicable", name="002-start-date-new-start",
      determination="criteria-met"),
    C(continuation, "aaaai-start-date", {}, "met", name="002-start-date-documented"),
    C(continuation, "aaaai-start-date", {"admin": ivig_statement(None, asserted=ago(0))}, "missing",
      {"ivig-start-date", "igg-pretreatment"}, name="002-start-date-undocumented"),
    # Trough within 12 months (continuation)
    C(continuation, "aaaai-trough-monitoring", {}, "met", name="002-trough-100d"),
    C(continuation, "aaaai-trough-monitoring", {"igg": [igg(380, ago(760)), igg(820, ago(400))]}, "missing",
      {"igg-trough"}, name="002-trough-400d-old"),
    C(continuation, "aaaai-trough-monitoring", {"igg": igg(380, ago(760))}, "missing", {"igg-trough"},
      name="002-no-trough"),
    C(new_start, "aaaai-trough-monitoring", {}, "not-applicable", name="002-trough-new-start",
      determination="criteria-met"),
    # Clinical response (continuation)
    C(continuation, "aaaai-clinical-response", {}, "met", name="002-no-infections-since-start"),
    C(continuation, "aaaai-clinical-response", {"later": [infection("J18.9", ago(300)),
      infection("J01.90", ago(100), "Acute sinusitis")]}, "not-met", name="002-as-many-infections-since-start"),
    C(continuation, "aaaai-clinical-response", {"inf": [infection("J18.9", ago(2000)),
      infection("J01.90", ago(1900), "Acute sinusitis")]}, "missing", {"clinical-response"},
      name="002-no-infections-in-comparable-window"),
    C(continuation, "aaaai-clinical-response", {"later": infection("A41.9", ago(300), "Sepsis")}, "not-met",
      name="002-fewer-but-more-severe-infections-on-therapy-is-no-response"),
    C(continuation, "aaaai-clinical-response", {"inf": [infection("J18.9", ago(900), severity="severe"),
      infection("J13", ago(800), "Pneumococcal pneumonia", severity="severe")],
      "later": [infection("J01.90", ago(300), "Acute sinusitis"), infection("J01.90", ago(100), "Acute sinusitis")]},
      "met", name="002-as-many-but-milder-infections-on-therapy"),
    C(new_start, "aaaai-clinical-response", {}, "not-applicable", name="002-response-new-start",
      determination="criteria-met"),
    # Body weight within 90 days
    C(new_start, "body-weight-current", {"weight": weight(70, ago(120))}, "missing", {"body-weight"},
      name="002-weight-120-days-old"),
]


@pytest.mark.parametrize("base,crit,changes,status,missing,determination", CASES)
def test_criterion(base, crit, changes, status, missing, determination):
    rep = run(base(**changes), RS)
    assert rep["indication"]["id"] == PI
    c = criterion(rep, crit)
    assert c["status"] == status, c["detail"]
    assert missing_codes(rep) == missing
    assert rep["determination"] == determination


# --- CONTRACT §4 timeline ---------------------------------------------------------------------
TROUGH_WARNING = "on-therapy troughs"


def test_contract4_continuation_without_start_date():
    rep = run(new_start(stmt=ivig_statement(None, asserted=ago(0)), igg=[igg(471, ago(300)), igg(447, ago(30))]),
              RS)
    assert rep["therapy"]["status"] == "continuation"
    assert rep["therapy"]["first_dose_date"] is None
    assert criterion(rep, "aaaai-pretreatment-igg")["status"] == "missing"
    assert set(criterion(rep, "aaaai-pretreatment-igg")["missing"]) == {"igg-pretreatment", "ivig-start-date"}
    assert criterion(rep, "aaaai-start-date")["status"] == "missing"
    assert {"igg-pretreatment", "ivig-start-date"} <= missing_codes(rep)
    assert any(TROUGH_WARNING in w for w in rep["warnings"])


def test_contract4_continuation_with_start_date_only_earlier_igg_counts():
    # 350 mg/dL on therapy would meet < 500; the only pre-treatment IgG (700, normal) does not
    rep = run(continuation(igg=[igg(700, ago(760), ref_low=600), igg(350, ago(100))]), RS)
    assert criterion(rep, "aaaai-pretreatment-igg")["status"] == "not-met"
    assert rep["determination"] == "criteria-not-met"
    assert not any(TROUGH_WARNING in w for w in rep["warnings"])


def test_contract4_continuation_with_start_date_igg_before_start_is_baseline():
    rep = run(continuation(igg=[igg(380, ago(760)), igg(900, ago(100))]), RS)
    assert criterion(rep, "aaaai-pretreatment-igg")["status"] == "met"


def test_contract4_continuation_with_only_on_therapy_igg():
    rep = run(continuation(igg=igg(350, ago(100))), RS)
    c = criterion(rep, "aaaai-pretreatment-igg")
    assert c["status"] == "missing"
    assert c["missing"] == ["igg-pretreatment"]
    assert missing_codes(rep) == {"igg-pretreatment"}


def test_contract4_igg_on_first_dose_day_is_not_pretreatment():
    rep = run(continuation(igg=[igg(380, ago(700)), igg(900, ago(100))]), RS)
    assert criterion(rep, "aaaai-pretreatment-igg")["status"] == "missing"


def test_contract4_new_start_every_igg_counts():
    rep = run(new_start(igg=igg(380, ago(2500))), RS)
    assert rep["therapy"]["status"] == "new-start"
    assert criterion(rep, "aaaai-pretreatment-igg")["status"] == "met"


def test_contract4_first_dose_is_earliest_dated_exposure():
    rep = run(continuation(stmt=ivig_statement(ago(720), status="active"), admin2=ivig_admin(ago(300))), RS)
    assert rep["therapy"]["first_dose_date"] == ago(720)


def test_contract4_statement_date_asserted_is_not_a_start_date():
    rep = run(new_start(stmt=ivig_statement(None, asserted=ago(400))), RS)
    assert rep["therapy"]["status"] == "continuation"
    assert rep["therapy"]["first_dose_date"] is None


def test_contract4_prior_prescription_means_continuation():
    rep = run(new_start(order=ivig_request(35, reason="dx", prior="MedicationRequest/old")), RS)
    assert rep["therapy"]["status"] == "continuation"
    assert "ivig-start-date" in missing_codes(rep)


@pytest.mark.parametrize("status", ["cancelled", "completed", "entered-in-error", "stopped"])
def test_contract4_history_request_is_not_the_order(status):
    rep = run(new_start(order=ivig_request(35, reason="dx", status=status, id="hist")), RS)
    assert rep["order"] is None
    assert criterion(rep, "body-weight-current")["status"] == "not-applicable"
    assert rep["dose_check"]["status"] == "not-applicable"
    expected = "continuation" if status in {"completed", "stopped"} else "none"
    assert rep["therapy"]["status"] == expected


@pytest.mark.parametrize("status", ["draft", "on-hold", "active"])
def test_contract4_draft_or_on_hold_request_is_the_order(status):
    rep = run(new_start(order=ivig_request(35, reason="dx", status=status, id="current")), RS)
    assert rep["order"]["reference"] == "MedicationRequest/current"
    assert rep["therapy"]["status"] == "new-start"
    assert rep["dose_check"]["status"] == "within-range"


def test_contract4_draft_is_the_order_beside_a_cancelled_one():
    rep = run(new_start(
        old=ivig_request(35, reason="dx", status="cancelled", id="cancelled", authored=ago(30)),
        order=ivig_request(500, "mg/kg", reason="dx", status="draft", id="draft", rxnorm=None,
                           text="Octagam 10% immune globulin"),
    ), RS)
    assert rep["order"]["reference"] == "MedicationRequest/draft"
    assert rep["therapy"]["status"] == "new-start"
    assert rep["determination"] == "criteria-met"
    assert any("name only" in w for w in rep["warnings"])


def test_contract4_active_order_with_earlier_completed_request_is_continuation():
    rep = run(new_start(old=ivig_request(35, reason="dx", status="completed", id="old", authored=ago(400))), RS)
    assert rep["order"]["reference"] == "MedicationRequest/order"
    assert rep["therapy"]["status"] == "continuation"


def test_contract4_administration_after_as_of_is_not_exposure():
    rep = run(new_start(admin=ivig_admin(ago(-10))), RS)
    assert rep["therapy"]["status"] == "new-start"


def test_contract4_not_done_administration_is_not_exposure():
    rep = run(new_start(admin=ivig_admin(ago(100), status="not-done")), RS)
    assert rep["therapy"]["status"] == "new-start"


def test_contract4_igg_without_unit_is_not_used_with_warning():
    rep = run(new_start(igg=observation("2465-3", "IgG", value_string="<300", when=ago(60))), RS)
    assert criterion(rep, "aaaai-pretreatment-igg")["status"] == "missing"
    assert any("without a unit" in w for w in rep["warnings"])


def test_contract4_igg_comparator_counts_by_bound():
    rep = run(new_start(igg=igg(500, ago(60), comparator="<")), RS)
    assert criterion(rep, "aaaai-pretreatment-igg")["status"] == "met"


def test_aaaai_other_indications_are_unlisted():
    rep = run([patient(), condition("D69.3", "ITP", id="dx"), weight(62),
               ivig_request(1, "g/kg", every=None, count=2, reason="dx")], RS)
    assert rep["indication"]["coverage"] == "unlisted"
    assert rep["determination"] == "not-covered"
    assert "letter-of-medical-necessity" in missing_codes(rep)
