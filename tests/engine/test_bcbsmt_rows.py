"""Every row of bcbsmt-ig-2013 (policy 003, Coverage section) against built FHIR records.

Test ids cite the policy line in shared/seeds/003_96129583d8e1c2bd.txt ("003-L108-…").
Each labeled/off-label row has a base record that meets every criterion; a case replaces
named parts of it and asserts the criterion's status, the determination and the exact
set of missing_documentation codes (the other criteria stay met, so the set is exactly
the criterion's own items).
"""

from __future__ import annotations

import csv

import pytest
from helpers import (
    ago,
    finding,
    med_request,
    anti_gad,
    child,
    condition,
    criterion,
    csf_cells,
    csf_vdrl,
    diagnostic_report,
    hiv_test,
    igg,
    igg_subclass,
    infection,
    intolerance,
    ivig_admin,
    ivig_request,
    ivig_statement,
    med_statement,
    missing_codes,
    observation,
    parvovirus_lab,
    patient,
    platelets,
    pneumo_titer,
    ppsv23,
    procedure,
    run,
    scig_request,
    td_vaccine,
    tetanus_titer,
    weight,
)

from fhir_mappings.terminology import DATA_DIR
from smart_app.engine.model import get_ruleset

RS = "bcbsmt-ig-2013"
DET = {"met": "criteria-met", "not-met": "criteria-not-met", "missing": "documentation-missing"}
ADULT = "1975-05-01"


def base(dx, *, birth: str | None = ADULT, kg: float = 70, order=None, **parts) -> dict:
    """A record with the indication's Condition (id "dx"), a current weight and an order
    naming it; ``parts`` add the row-specific evidence."""
    out = {
        "patient": patient(birth),
        "dx": dx,
        "weight": weight(kg),
        "order": order if order is not None else ivig_request(30, reason="dx"),
    }
    out.update(parts)
    return out


def vaccine_poor(start: int = 400) -> list:
    """PPSV23 with pre- and 4-week post-titers: < 4-fold rise and below 1.3 µg/mL."""
    return [
        pneumo_titer(0.4, ago(start + 14)),
        ppsv23(ago(start)),
        pneumo_titer(0.5, ago(start - 28)),
    ]


def vaccine_good(start: int = 400) -> list:
    return [
        pneumo_titer(0.4, ago(start + 14)),
        ppsv23(ago(start)),
        pneumo_titer(3.2, ago(start - 28)),
    ]


SEROTYPES = ["27092-6", "27096-7", "27094-2", "27113-0", "27392-0", "27374-8", "27387-0", "27390-4"]


def severe_nonresponse(start: int = 400) -> list:
    """PPSV23 with pre- and post-titers for 8 serotypes: 1 protective, none rising 4-fold."""
    out = [ppsv23(ago(start))]
    for i, loinc in enumerate(SEROTYPES):
        post = 1.5 if i == 0 else 0.4
        out += [pneumo_titer(0.4, ago(start + 14), loinc=loinc), pneumo_titer(post, ago(start - 28), loinc=loinc)]
    return out


def serotype_titers(post: list[float], start: int = 400, pre: float | None = 0.4) -> list:
    """A dated PPSV23 and, 4 weeks later, one post-titer per value in ``post`` (serotypes in
    SEROTYPES order); with ``pre``, a pre-titer for each serotype two weeks before."""
    out = [ppsv23(ago(start))]
    for loinc, value in zip(SEROTYPES, post, strict=False):
        if pre is not None:
            out.append(pneumo_titer(pre, ago(start + 14), loinc=loinc))
        out.append(pneumo_titer(value, ago(start - 28), loinc=loinc))
    return out


def pneumo_poor(start: int = 400, n: int = 8) -> list:
    """Pre- and post-titers for ``n`` serotypes, none protective (< 1.3) nor rising 4-fold."""
    return serotype_titers([0.5] * n, start)


def tetanus_poor(start: int = 400) -> list:
    """Td with pre- and 25-day post-titers: no 4-fold rise, below the protective 0.1 IU/mL."""
    return [tetanus_titer(0.05, ago(start + 20)), td_vaccine(ago(start)), tetanus_titer(0.06, ago(start - 25))]


def abx_courses(*days: int) -> list:
    """Completed antibiotic courses given that many days ago."""
    drugs = ["levofloxacin", "amoxicillin-clavulanate", "ceftriaxone", "azithromycin"]
    return [med_statement(drugs[i % len(drugs)], status="completed", reason=None, when=ago(d), id=f"abx{i}")
            for i, d in enumerate(days)]


def reeval(**extra) -> dict:
    """Normal IgG, severe polysaccharide non-response and severe infections before IVIG began
    900 days ago (first dose administered): continuation past 18 months."""
    parts = {"igg": igg(800, ago(1000), ref_low=700),
             "inf": [infection("A41.9", ago(1200), "Sepsis"), infection("J18.9", ago(1100), severity="severe")],
             "abx": abx_courses(1150, 1100),
             "vac": severe_nonresponse(1050), "admin": ivig_admin(ago(900)),
             "order": ivig_request(35, reason="dx")}
    parts.update(extra)
    return parts


def two_infections(first: int = 300, second: int = 200) -> list:
    return [infection("J18.9", ago(first)), infection("J01.90", ago(second), "Acute sinusitis")]


# --- base records per row (each meets every criterion, every qualifier documented) -------
def rh(result: str) -> dict:
    return observation("10331-7", "Rh [Type] in Blood", result=result, when=ago(40))


def ncs_report(conclusion: str = "Predominantly demyelinating sensorimotor polyneuropathy including "
               "proximal segments (prolonged F waves); 4 of 4 demyelination criteria met.") -> dict:
    return diagnostic_report("95910", "Nerve conduction study", conclusion)


def biopsy_report(conclusion: str = "Teased fiber study: segmental demyelination and remyelination in "
                  "18% of 50 fibers.") -> dict:
    return diagnostic_report("64795", "Sural nerve biopsy pathology", conclusion)


CIDP_NOTE = "Progressive symmetric weakness and numbness of all four limbs over 4 months; areflexia in all four limbs."
PEMPHIGUS_PATH = "Direct immunofluorescence: intercellular IgG and C3, consistent with pemphigus vulgaris."

ROWS = {
    "aids-child": lambda: base(condition("B20", "Human immunodeficiency virus [HIV] disease",
                                         text="Acquired immunodeficiency syndrome (AIDS)", id="dx"),
                               birth=child(8)["birthDate"], kg=25),
    "bmt": lambda: base(condition("Z94.81", "Bone marrow transplant status", id="dx", onset=ago(50))),
    "hiv-child": lambda: base(
        condition("Z21", "Asymptomatic HIV infection status", id="dx"),
        birth=child(6)["birthDate"], kg=20, igg=igg(200, ago(30))),
    "hiv-thrombocytopenia": lambda: base(
        condition("D69.6", "Thrombocytopenia, unspecified", id="dx"),
        hiv=condition("Z21", "Asymptomatic HIV infection status", id="hiv"),
        plt=platelets(12000), rh=rh("positive"),
        rhig=med_statement("WinRho SDF", reason="ineffective")),
    "cll": lambda: base(
        condition("C91.10", "Chronic lymphocytic leukemia of B-cell type", id="dx"),
        igg=igg(450, ago(20)), inf=infection("A41.9", ago(60), "Sepsis, unspecified organism")),
    "cidp": lambda: base(
        condition("G61.81", "Chronic inflammatory demyelinating polyneuritis", id="dx", onset=ago(200),
                  note=CIDP_NOTE),
        ncs=[procedure("95910", "Nerve conduction study"), ncs_report()],
        biopsy=[procedure("64795", "Sural nerve biopsy"), biopsy_report()],
        csf=[csf_cells(3), csf_vdrl("negative")],
        hivneg=hiv_test("negative")),
    "kawasaki": lambda: base(
        condition("M30.3", "Mucocutaneous lymph node syndrome [Kawasaki]", id="dx"),
        birth=child(3)["birthDate"], kg=14,
        order=ivig_request(2, "g/kg", every=None, count=1, reason="dx")),
    "mmn": lambda: base(condition("G61.82", "Multifocal motor neuropathy", id="dx")),
    "primary-humoral-immunodeficiency": lambda: base(
        condition("D83.9", "Common variable immunodeficiency", id="dx"),
        order=ivig_request(35, reason="dx"), igg=igg(150, ago(60))),
    "itp": lambda: base(
        condition("D69.3", "Immune thrombocytopenic purpura", id="dx"), kg=62,
        order=ivig_request(1, "g/kg", every=None, count=2, reason="dx")),
    "gbs": lambda: base(
        condition("G61.0", "Guillain-Barre syndrome", id="dx", onset=ago(6)),
        finding=condition("R26.2", "Unable to ambulate independently for ten meters", id="finding", onset=ago(5))),
    "aiha": lambda: base(
        condition("D59.11", "Warm autoimmune hemolytic anemia", id="dx"),
        failed=med_statement("prednisone 60 mg oral tablet", reason="ineffective")),
    "blistering-disease": lambda: base(
        condition("L10.0", "Pemphigus vulgaris", id="dx"),
        biopsy=[procedure("11104", "Punch biopsy of skin"),
                diagnostic_report("11104", "Skin biopsy with direct immunofluorescence", PEMPHIGUS_PATH)],
        failed=med_statement("prednisone", reason="ineffective")),
    "autoimmune-neutropenia": lambda: base(
        condition("D70.8", "Other neutropenia", text="Autoimmune neutropenia", id="dx"),
        failed=med_statement("filgrastim", reason="no response")),
    "hyper-ige": lambda: base(
        condition("D82.4", "Hyperimmunoglobulin E syndrome", id="dx"),
        failed=med_statement("trimethoprim-sulfamethoxazole prophylaxis", reason="ineffective, recurrent abscesses")),
    "neonatal-infection": lambda: base(
        condition("P07.15", "Low birth weight newborn 1250-1499 g", id="dx"), birth=ago(10), kg=1.4,
        preterm=condition("P07.33", "Preterm newborn, gestational age 30 completed weeks", id="preterm"),
        order=ivig_request(0.5, "g/kg", every=None, count=1, reason="dx")),
    "inflammatory-myopathy": lambda: base(
        condition("M33.20", "Polymyositis", id="dx"),
        failed=med_statement("prednisone", reason="ineffective")),
    "lems": lambda: base(
        condition("G70.80", "Lambert-Eaton syndrome", id="dx"),
        failed=[med_statement("pyridostigmine", status="active", reason="inadequate response"),
                med_statement("amifampridine", reason="ineffective")]),
    "limbic-encephalitis-child": lambda: base(
        condition("G04.81", "Other encephalitis", text="Autoimmune limbic encephalitis", id="dx"),
        birth=child(10)["birthDate"], kg=30),
    "multiple-myeloma": lambda: base(
        condition("C90.00", "Multiple myeloma not in remission", id="dx", onset=ago(400)),
        igg=igg(450, ago(20)), inf=[infection("J18.9", ago(250)), infection("J13", ago(120), "Pneumococcal pneumonia")]),
    "multiple-sclerosis": lambda: base(
        condition("G35", "Multiple sclerosis", text="Relapsing-remitting multiple sclerosis", id="dx", severe=True),
        failed=med_statement("interferon beta-1a (Avonex)", reason="ineffective")),
    "myasthenia-gravis": lambda: base(
        condition("G70.00", "Myasthenia gravis without exacerbation", id="dx", severe=True),
        failed=med_statement("pyridostigmine", reason="ineffective"),
        order=ivig_request(0.4, "g/kg", every=None, count=5, reason="dx")),
    "nait": lambda: base(
        condition("P61.0", "Neonatal alloimmune thrombocytopenia", id="dx", severe=True), birth=ago(3), kg=3,
        order=ivig_request(1, "g/kg", every=None, count=1, reason="dx"),
        failed=procedure(None, "Platelet transfusion", when=ago(2), outcome="No increment")),
    "fnait": lambda: base(
        condition("O36.8230", "Maternal care for fetal thrombocytopenia, third trimester",
                  text="Fetal and neonatal alloimmune thrombocytopenia, third trimester", id="dx", onset=ago(200)),
        birth="1992-01-01",
        history=condition(None, text="Previous pregnancy affected by FNAIT", clinical="resolved", id="history")),
    "neonatal-hemochromatosis": lambda: base(
        condition("P78.84", "Gestational alloimmune liver disease", id="dx"), birth=ago(30), kg=3.5,
        order=ivig_request(1, "g/kg", every=None, count=1, reason="dx")),
    "post-transfusion-purpura": lambda: base(
        condition("D69.51", "Posttransfusion purpura", id="dx", severe=True)),
    "pure-red-cell-aplasia": lambda: base(
        condition("D60.9", "Acquired pure red cell aplasia", id="dx"),
        parvo=condition("B97.6", "Parvovirus B19 infection", id="parvo")),
    "solid-organ-transplant": lambda: base(
        condition("Z94.0", "Kidney transplant status", id="dx"),
        rejection=condition("T86.11", "Kidney transplant rejection", text="Active antibody-mediated rejection, kidney transplant", id="amr")),
    "sjs-ten": lambda: base(condition("L51.1", "Stevens-Johnson syndrome", id="dx", severe=True, onset=ago(5))),
    "stiff-person": lambda: base(
        condition("G25.82", "Stiff-man syndrome", id="dx"),
        gad=anti_gad("positive"), failed=med_statement("diazepam", reason="ineffective")),
    "sle": lambda: base(
        condition("M32.10", "Systemic lupus erythematosus, organ involvement", id="dx", severe=True),
        failed=med_statement("mycophenolate mofetil", reason="ineffective")),
    "toxic-shock": lambda: base(
        condition("A48.3", "Toxic shock syndrome", id="dx", severe=True, onset=ago(2)),
        organism=condition("B95.0", "Streptococcus, group A, as the cause", id="organism", onset=ago(2)),
        finding=finding("Refractory shock")),
    "vasculitis": lambda: base(
        condition("M31.4", "Takayasu arteritis", id="dx", severe=True),
        failed=med_statement("prednisone", reason="ineffective")),
}


def test_every_covered_row_has_a_base_record():
    rs = get_ruleset(RS)
    covered = {i.id for i in rs.indications if i.coverage in ("labeled", "off-label")}
    assert covered == set(ROWS), covered ^ set(ROWS)


LINE = {
    "aids-child": "L84", "bmt": "L88", "hiv-child": "L92", "hiv-thrombocytopenia": "L101",
    "cll": "L106", "cidp": "L113", "kawasaki": "L119", "mmn": "L123",
    "primary-humoral-immunodeficiency": "L127", "itp": "L155", "gbs": "L187", "aiha": "L198",
    "blistering-disease": "L202", "autoimmune-neutropenia": "L209", "hyper-ige": "L213",
    "neonatal-infection": "L217", "inflammatory-myopathy": "L221", "lems": "L225",
    "limbic-encephalitis-child": "L229", "multiple-myeloma": "L233", "multiple-sclerosis": "L242",
    "myasthenia-gravis": "L249", "nait": "L259", "fnait": "L263", "neonatal-hemochromatosis": "L268",
    "post-transfusion-purpura": "L272", "pure-red-cell-aplasia": "L276",
    "solid-organ-transplant": "L281", "sjs-ten": "L287", "stiff-person": "L291", "sle": "L296",
    "toxic-shock": "L300", "vasculitis": "L306",
}


@pytest.mark.parametrize("row", sorted(ROWS), ids=lambda r: f"003-{LINE[r]}-{r}-base-criteria-met")
def test_row_matched_and_met(row):
    rep = run(ROWS[row](), RS)
    ind = get_ruleset(RS).indication(row)
    assert rep["indication"]["id"] == row
    assert rep["indication"]["coverage"] == ind.coverage
    assert "Condition/dx" in rep["indication"]["evidence"]
    assert rep["determination"] == "criteria-met", [
        (c["id"], c["status"], c["detail"], c.get("missing")) for c in rep["criteria"]]
    assert missing_codes(rep) == set()
    for crit in ind.criteria:
        assert criterion(rep, crit.id)["status"] == "met"


# --- per-criterion cases: the qualifier documented / absent (missing) / contradicted --------
def P(row, crit, changes, status, missing=(), line="", name="", determination=None):
    return pytest.param(row, crit, changes, status, set(missing), determination or DET[status],
                        id=f"003-{line or LINE[row]}-{name}-{status}")


PI = "primary-humoral-immunodeficiency"
MG_HISTORY_OF_CRISIS = "Generalized myasthenia gravis, history of myasthenic crisis"
PTF = {"prior-therapy-failure"}
ONSET = "2025-06-25"

CASES = [
    # AIDS (L84): children under 16
    P("aids-child", "bcbsmt-aids-age", {}, "met", line="L84", name="AIDS-age<16"),
    P("aids-child", "bcbsmt-aids-age", {"patient": patient(ADULT)}, "not-met", line="L84", name="AIDS-adult"),
    P("aids-child", "bcbsmt-aids-age", {"patient": patient(None)}, "missing", {"patient-age"}, "L84", "AIDS-no-birthDate"),
    # B20 is coded for any HIV-related illness; "with AIDS" needs the diagnosis itself.
    P("aids-child", "bcbsmt-aids-documented", {"dx": condition("B20", "Human immunodeficiency virus [HIV] disease", id="dx")},
      "missing", {"diagnosis-specificity"}, "L84", "AIDS-B20-HIV-disease-alone"),
    P("aids-child", "bcbsmt-aids-documented", {"dx": condition("B20", "HIV disease", text="HIV disease, CDC stage 3", id="dx")},
      "met", line="L84", name="AIDS-CDC-stage-3-stated"),
    # BMT (L88): first 100 days post-transplant
    P("bmt", "bcbsmt-bmt-100-days", {}, "met", line="L88", name="BMT-day50"),
    P("bmt", "bcbsmt-bmt-100-days", {"dx": condition("Z94.81", "BMT status", id="dx", onset=ago(100))},
      "met", line="L88", name="BMT-day100"),
    P("bmt", "bcbsmt-bmt-100-days", {"dx": condition("Z94.81", "BMT status", id="dx", onset=ago(200))},
      "not-met", line="L88", name="BMT-day200"),
    P("bmt", "bcbsmt-bmt-100-days", {"dx": condition("Z94.81", "BMT status", id="dx")},
      "missing", {"transplant-date"}, "L88", "BMT-undated"),
    # A problem-list entry recorded yesterday says nothing about when the transplant was.
    P("bmt", "bcbsmt-bmt-100-days", {"dx": condition("Z94.81", "BMT status", id="dx", recorded=ago(10))},
      "missing", {"transplant-date"}, "L88", "BMT-recorded-date-is-not-transplant-date"),
    P("bmt", "bcbsmt-bmt-100-days", {"dx": condition("Z94.81", "BMT status", id="dx", recorded=ago(10)),
      "hsct": procedure(None, "Allogeneic stem cell transplant", when=ago(400))},
      "not-met", line="L88", name="BMT-transplant-procedure-400-days-ago"),
    # HIV infected children (L92-99): child AND ANY of …
    P("hiv-child", "bcbsmt-hiv-child-age", {"patient": patient(ADULT)}, "not-met", line="L92", name="HIVchild-adult"),
    P("hiv-child", "bcbsmt-hiv-child-age", {"patient": patient(None)}, "missing", {"patient-age"}, "L92", "HIVchild-no-birthDate"),
    P("hiv-child", "bcbsmt-hiv-child-any", {}, "met", line="L94", name="HIVchild-IgG<250"),
    P("hiv-child", "bcbsmt-hiv-child-any", {"igg": None, "inf": [
        infection("A41.9", ago(300), "Sepsis"), infection("J13", ago(100), "Pneumococcal pneumonia")]},
      "met", line="L95", name="HIVchild-2-serious-infections-in-1-year"),
    P("hiv-child", "bcbsmt-hiv-child-any", {"igg": None, "inf": [
        infection("J01.90", ago(300), "Acute sinusitis"), infection("L03.90", ago(100), "Cellulitis")]},
      "missing", {"igg-level"}, "L95", "HIVchild-2-minor-infections-are-not-major"),
    P("hiv-child", "bcbsmt-hiv-child-any", {"igg": None, "inf": [
        infection("J36", ago(300), "Peritonsillar abscess"), infection("J36", ago(100), "Peritonsillar abscess")]},
      "missing", {"igg-level"}, "L95", "HIVchild-peritonsillar-abscesses-are-not-major-infections"),
    P("hiv-child", "bcbsmt-hiv-child-any", {"igg": None, "inf": [
        infection("A41.9", ago(500), "Sepsis"), infection("J13", ago(100), "Pneumococcal pneumonia")]},
      "missing", {"igg-level"}, "L95", "HIVchild-serious-infections-not-within-1-year"),
    P("hiv-child", "bcbsmt-hiv-child-any", {"igg": None, "vac": serotype_titers([0.5] * 6, pre=None)},
      "met", line="L96", name="HIVchild-no-antibodies-after-pneumococcal-vaccine"),
    P("hiv-child", "bcbsmt-hiv-child-any", {"igg": None, "vac": [ppsv23(ago(400)), pneumo_titer(0.5, ago(372))]},
      "missing", {"igg-level"}, "L96", "HIVchild-one-serotype-titer-does-not-show-failure-to-form-antibodies"),
    P("hiv-child", "bcbsmt-hiv-child-any", {"igg": None, "vac": serotype_titers([2.0] * 6, pre=None)},
      "missing", {"igg-level"}, "L96", "HIVchild-protective-titers-after-vaccine"),
    P("hiv-child", "bcbsmt-hiv-child-any", {"igg": None, "bx": condition("J47.9", "Bronchiectasis", id="bx"),
      "abx": med_statement("azithromycin", reason="inadequate response")},
      "met", line="L99", name="HIVchild-bronchiectasis-poorly-responsive"),
    P("hiv-child", "bcbsmt-hiv-child-any", {"igg": None, "bx": condition("J47.9", "Bronchiectasis", id="bx")},
      "missing", {"igg-level"}, "L99", "HIVchild-bronchiectasis-response-to-therapy-not-documented"),
    P("hiv-child", "bcbsmt-hiv-child-any", {"igg": igg(300, ago(30))}, "missing", {"infection-history"},
      "L94", "HIVchild-IgG300-nothing-else"),
    P("hiv-child", "bcbsmt-hiv-child-any", {"igg": None}, "missing", {"igg-level"}, "L94", "HIVchild-nothing-documented"),
    # HIV-associated thrombocytopenia (L103-104)
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-platelets", {"plt": platelets(35000)}, "missing",
      {"clinical-findings"}, line="L103", name="HIVTCP-platelets-35000-no-bleeding"),
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-platelets", {"plt": platelets(35000), "bleed": condition(
      "K92.2", "Gastrointestinal hemorrhage", id="bleed", onset=ago(2))}, "met", line="L103",
      name="HIVTCP-GI-bleeding-with-35000"),
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-platelets", {"plt": platelets(35000), "bleed": condition(
      None, text="Subconjunctival hemorrhage", id="bleed", onset=ago(2))}, "missing", {"clinical-findings"},
      line="L103", name="HIVTCP-subconjunctival-hemorrhage-is-not-significant-bleeding"),
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-platelets", {"plt": platelets(19000)}, "met",
      line="L103", name="HIVTCP-platelets<20000"),
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-platelets", {"plt": observation(
      "777-3", "Platelets", value=12, unit="10*3/uL", when=ago(3))}, "met", line="L103",
      name="HIVTCP-12x10^3/uL-is-12000/uL"),
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-platelets", {"plt": observation(
      "777-3", "Platelets", value=12, unit="G/L", when=ago(3))}, "missing", {"platelet-count"}, line="L103",
      name="HIVTCP-unrecognised-platelet-unit-not-used"),
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-platelets", {"plt": None}, "missing", {"platelet-count"},
      "L103", "HIVTCP-no-platelets"),
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-platelets", {"plt": platelets(12000, ago(45))}, "missing",
      {"platelet-count"}, "L103", "HIVTCP-platelets-older-than-30d"),
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-rhig", {"rh": rh("negative"), "rhig": None}, "met",
      line="L104", name="HIVTCP-Rh-negative-RhIg-does-not-apply"),
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-rhig", {"rh": None, "rhig": None}, "missing", {"rh-type"},
      "L104", "HIVTCP-Rh-type-unknown"),
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-rhig", {"rh": observation("882-1", "ABO and Rh group", value_string="O Pos",
      when=ago(40)), "rhig": None}, "missing", PTF, "L104", "HIVTCP-O-Pos-shorthand-is-Rh-positive"),
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-rhig", {"rh": observation("882-1", "ABO and Rh group", value_string="A neg",
      when=ago(40)), "rhig": None}, "met", line="L104", name="HIVTCP-A-neg-shorthand-is-Rh-negative"),
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-rhig", {"rhig": None}, "missing", PTF, "L104", "HIVTCP-Rh-positive-no-RhIg"),
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-rhig",
      {"rhig": med_statement("WinRho SDF", status="active", reason=None)},
      "missing", PTF, "L104", "HIVTCP-RhIg-ongoing-not-failed"),
    P("hiv-thrombocytopenia", "bcbsmt-hiv-tcp-rhig",
      {"rhig": med_statement("WinRho SDF", status="completed", reason=None)},
      "missing", PTF, "L104", "HIVTCP-RhIg-completed-course-is-not-failure"),
    # CLL (L108-111)
    P("cll", "bcbsmt-cll-igg", {}, "met", line="L108", name="CLL-IgG<600mg/dL"),
    P("cll", "bcbsmt-cll-igg", {"igg": igg(400, ago(20), comparator="<")}, "met", line="L108",
      name="CLL-IgG-comparator-<400"),
    P("cll", "bcbsmt-cll-igg", {"igg": igg(5.5, ago(20), unit="g/L")}, "met", line="L108", name="CLL-IgG-5.5g/L"),
    P("cll", "bcbsmt-cll-igg", {"igg": igg(720, ago(20))}, "not-met", line="L108", name="CLL-IgG-720mg/dL"),
    P("cll", "bcbsmt-cll-igg", {"igg": None}, "missing", {"igg-level"}, "L108", "CLL-no-IgG"),
    P("cll", "bcbsmt-cll-igg", {"igg": observation("2465-3", "IgG", value_string="<300", when=ago(20))},
      "missing", {"igg-level"}, "L108", "CLL-IgG-without-unit-not-used"),
    P("cll", "bcbsmt-cll-infections", {}, "met", line="L110", name="CLL-1-severe-infection-6-months"),
    P("cll", "bcbsmt-cll-infections", {"inf": infection("J18.9", ago(60), severity="severe")}, "met",
      line="L110", name="CLL-pneumonia-recorded-severe"),
    # "One severe bacterial infection": a pneumonia not recorded as severe does not show it.
    P("cll", "bcbsmt-cll-infections", {"inf": infection("J18.9", ago(60))}, "missing",
      {"infection-history"}, "L110", "CLL-one-pneumonia-severity-not-recorded"),
    P("cll", "bcbsmt-cll-infections", {"inf": two_infections(300, 100)}, "met", line="L110",
      name="CLL-2-infections-1-year"),
    P("cll", "bcbsmt-cll-infections", {"inf": pneumo_poor()}, "met", line="L111",
      name="CLL-specific-antibody-deficiency"),
    # One serotype (or a share below half of six or more) does not show a specific antibody deficiency.
    P("cll", "bcbsmt-cll-infections", {"inf": vaccine_poor()}, "missing", {"infection-history"}, "L111",
      "CLL-one-serotype-titer-is-not-specific-antibody-deficiency"),
    P("cll", "bcbsmt-cll-infections", {"inf": serotype_titers([0.5, 0.5, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0])}, "met",
      line="L111", name="CLL-half-of-8-serotypes-below-protective"),
    P("cll", "bcbsmt-cll-infections", {"inf": serotype_titers([0.5, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0, 2.0])},
      "missing", {"infection-history"}, "L111", "CLL-3-of-8-serotypes-below-protective"),
    P("cll", "bcbsmt-cll-infections", {"inf": infection("A41.9", ago(250), "Sepsis")}, "missing",
      {"infection-history"}, "L110", "CLL-severe-infection-8-months-ago"),
    P("cll", "bcbsmt-cll-infections", {"inf": None}, "missing", {"infection-history"}, "L110",
      "CLL-no-infections"),
    # CIDP (L113-117 with the Description's mandatory criteria L28-67)
    P("cidp", "bcbsmt-cidp-clinical", {"dx": condition("G61.81", "CIDP", id="dx", onset=ago(200))}, "missing",
      {"clinical-findings"}, "L28", "CIDP-no-clinical-findings"),
    P("cidp", "bcbsmt-cidp-clinical", {"dx": condition("G61.81", "CIDP", id="dx", onset=ago(200),
      note="Progressive symmetric weakness of all four limbs; reflexes reduced.")}, "missing",
      {"clinical-findings"}, "L31", "CIDP-hyporeflexia-is-not-areflexia"),
    P("cidp", "bcbsmt-cidp-clinical", {"dx": condition("G61.81", "CIDP", id="dx", onset=ago(30), note=CIDP_NOTE)},
      "not-met", line="L30", name="CIDP-onset-30-days-ago-not-two-months"),
    P("cidp", "bcbsmt-cidp-clinical", {"dx": condition("G61.81", "CIDP", id="dx", onset=ago(200)),
      "exam": [finding("Absent reflex", code="37280007"), finding("Progressive weakness of both legs and arms")]},
      "met", line="L31", name="CIDP-findings-as-exam-observations"),
    P("cidp", "bcbsmt-cidp-clinical", {"dx": condition("G61.81", "CIDP", id="dx", onset=ago(200)),
      "exam": [finding("Absent reflex", code="37280007", value=False), finding("Progressive weakness of both legs and arms")]},
      "missing", {"clinical-findings"}, "L31", "CIDP-areflexia-observation-negative"),
    P("cidp", "bcbsmt-cidp-ncs", {"ncs": None}, "missing", {"nerve-conduction-study"}, "L33", "CIDP-no-NCS"),
    P("cidp", "bcbsmt-cidp-ncs", {"ncs": procedure("95910", "Nerve conduction study")}, "missing",
      {"nerve-conduction-study"}, "L33", "CIDP-NCS-procedure-code-without-result"),
    P("cidp", "bcbsmt-cidp-ncs", {"ncs": ncs_report("Axonal sensorimotor polyneuropathy; no evidence of "
      "demyelination in proximal segments.")}, "missing", {"nerve-conduction-study"}, "L33",
      "CIDP-NCS-axonal-not-demyelinating"),
    P("cidp", "bcbsmt-cidp-ncs", {"ncs": ncs_report("Demyelinating polyneuropathy.")}, "missing",
      {"nerve-conduction-study"}, "L33", "CIDP-NCS-proximal-segments-and-3-of-4-not-stated"),
    P("cidp", "bcbsmt-cidp-biopsy", {"biopsy": None}, "missing", {"nerve-biopsy"}, "L62", "CIDP-no-nerve-biopsy"),
    P("cidp", "bcbsmt-cidp-biopsy", {"biopsy": procedure("64795", "Sural nerve biopsy")}, "missing",
      {"nerve-biopsy"}, "L62", "CIDP-biopsy-without-pathology-report"),
    P("cidp", "bcbsmt-cidp-biopsy", {"biopsy": biopsy_report("Segmental demyelination.")}, "missing",
      {"nerve-biopsy"}, "L62", "CIDP-biopsy-demyelination-without-remyelination"),
    P("cidp", "bcbsmt-cidp-biopsy", {"biopsy": biopsy_report()}, "met", line="L62", name="CIDP-biopsy-report"),
    # Teased fibers: "> 12 % of 50 fibers"; a report stating 4 % does not reach it, one saying
    # of itself that it is equivocal is not "unequivocal evidence".
    P("cidp", "bcbsmt-cidp-biopsy", {"biopsy": biopsy_report("Teased fiber study: demyelination and remyelination "
      "in 4% of 50 fibers.")}, "missing", {"nerve-biopsy"}, "L62", "CIDP-biopsy-4-percent-of-teased-fibers"),
    P("cidp", "bcbsmt-cidp-biopsy", {"biopsy": biopsy_report("Teased fiber study: demyelination and remyelination "
      "in 13% of 50 fibers.")}, "met", line="L62", name="CIDP-biopsy-13-percent-of-teased-fibers"),
    P("cidp", "bcbsmt-cidp-biopsy", {"biopsy": biopsy_report("Segmental demyelination and remyelination; "
      "findings equivocal.")}, "missing", {"nerve-biopsy"}, "L62", "CIDP-biopsy-report-calls-itself-equivocal"),
    P("cidp", "bcbsmt-cidp-csf", {"csf": None}, "missing", {"csf-analysis"}, "L64", "CIDP-no-CSF"),
    P("cidp", "bcbsmt-cidp-csf", {"csf": csf_cells(3)}, "missing", {"csf-analysis"}, "L67", "CIDP-no-VDRL"),
    P("cidp", "bcbsmt-cidp-csf", {"csf": [csf_cells(3), csf_vdrl("positive")]}, "not-met", line="L67",
      name="CIDP-VDRL-reactive"),
    P("cidp", "bcbsmt-cidp-csf", {"csf": [csf_cells(80), csf_vdrl("negative")]}, "not-met", line="L66",
      name="CIDP-CSF-80-cells"),
    P("cidp", "bcbsmt-cidp-csf", {"csf": [csf_cells(30), csf_vdrl("negative")]}, "not-met", line="L66",
      name="CIDP-CSF-30-cells-HIV-negative"),
    P("cidp", "bcbsmt-cidp-csf", {"csf": [csf_cells(30), csf_vdrl("negative")], "hivneg": None}, "missing",
      {"csf-analysis"}, "L66", "CIDP-CSF-30-cells-HIV-status-unknown"),
    P("cidp", "bcbsmt-cidp-csf", {"csf": [csf_cells(30), csf_vdrl("negative")], "hivneg": hiv_test("positive")},
      "met", line="L66", name="CIDP-CSF-30-cells-HIV-seropositive"),
    P("cidp", "bcbsmt-cidp-csf", {"csf": [observation("26465-5", "CSF leukocytes", value=3, unit="10*6/L",
      when=ago(40)), csf_vdrl("negative")]}, "met", line="L66", name="CIDP-CSF-3x10^6/L-is-3/mm3"),
    # Multiple myeloma (L237-240)
    P("multiple-myeloma", "bcbsmt-mm-plateau", {}, "met", line="L237", name="MM-plateau-400d"),
    P("multiple-myeloma", "bcbsmt-mm-plateau",
      {"dx": condition("C90.00", "Multiple myeloma", id="dx", onset=ago(60))}, "not-met", line="L237",
      name="MM-diagnosed-60d-ago"),
    P("multiple-myeloma", "bcbsmt-mm-plateau", {"dx": condition("C90.00", "Multiple myeloma", id="dx")},
      "missing", {"diagnosis-date"}, "L237", "MM-undated"),
    P("multiple-myeloma", "bcbsmt-mm-igg", {"igg": igg(650, ago(20))}, "not-met", line="L238", name="MM-IgG650"),
    P("multiple-myeloma", "bcbsmt-mm-igg", {"igg": None}, "missing", {"igg-level"}, "L238", "MM-no-IgG"),
    P("multiple-myeloma", "bcbsmt-mm-infections", {"inf": infection("A41.9", ago(100), "Sepsis")}, "met",
      line="L239", name="MM-single-life-threatening-infection-sepsis"),
    P("multiple-myeloma", "bcbsmt-mm-infections", {"inf": infection("J18.9", ago(100), severity="life-threatening")},
      "met", line="L239", name="MM-pneumonia-recorded-life-threatening"),
    P("multiple-myeloma", "bcbsmt-mm-infections", {"inf": pneumo_poor()}, "met", line="L240",
      name="MM-specific-antibody-deficiency"),
    P("multiple-myeloma", "bcbsmt-mm-infections", {"inf": tetanus_poor()}, "met", line="L240",
      name="MM-specific-antibody-deficiency-tetanus"),
    P("multiple-myeloma", "bcbsmt-mm-infections", {"inf": vaccine_poor()}, "missing", {"infection-history"}, "L240",
      "MM-one-serotype-titer-is-not-specific-antibody-deficiency"),
    P("multiple-myeloma", "bcbsmt-mm-infections", {"inf": infection("J01.90", ago(100), "Sinusitis")},
      "missing", {"infection-history"}, "L239", "MM-one-minor-infection"),
    # "Two or more significant infections": two sinusitis episodes without a recorded severity are not shown significant.
    P("multiple-myeloma", "bcbsmt-mm-infections", {"inf": two_infections(250, 120)[1:] + [
      infection("J01.90", ago(250), "Acute sinusitis")]}, "missing", {"infection-history"}, "L239",
      "MM-two-sinusitis-severity-not-recorded"),
    P("multiple-myeloma", "bcbsmt-mm-infections", {"inf": [infection("J01.90", ago(250), "Sinusitis", severity="moderate"),
      infection("J01.90", ago(120), "Sinusitis", severity="moderate")]}, "met", line="L239",
      name="MM-two-moderate-infections-are-significant"),
    P("multiple-myeloma", "bcbsmt-mm-infections", {"inf": two_infections(500, 450)}, "missing",
      {"infection-history"}, "L239", "MM-infections-older-than-1-year"),
    # GBS (L189-194)
    P("gbs", "bcbsmt-gbs-findings", {"finding": None, "dx": condition("G61.0", "Guillain-Barre syndrome",
      id="dx", severe=True, onset=ago(6))}, "missing", {"clinical-findings"}, line="L189",
      name="GBS-severity-alone-is-not-one-of-the-findings"),
    P("gbs", "bcbsmt-gbs-findings", {"finding": condition("R26.2", "Difficulty in walking", id="finding")},
      "missing", {"clinical-findings"}, "L193", "GBS-difficulty-walking-is-not-unable-to-walk-10m"),
    P("gbs", "bcbsmt-gbs-findings", {"finding": finding("Rapidly progressive weakness")}, "met", line="L191",
      name="GBS-rapid-deterioration-onset-6-days"),
    P("gbs", "bcbsmt-gbs-findings", {"finding": finding("Rapidly progressive weakness"),
      "dx": condition("G61.0", "Guillain-Barre syndrome", id="dx", onset=ago(30))}, "missing",
      {"clinical-findings"}, "L191", "GBS-rapid-deterioration-symptoms-30-days"),
    P("gbs", "bcbsmt-gbs-findings", {"finding": diagnostic_report(None, "Pulmonary function test",
      "Forced vital capacity 1.2 L: falling vital capacity since admission.", when=ago(2))}, "met", line="L194",
      name="GBS-deteriorating-PFTs-in-report"),
    # The episode is now: a report from two months ago does not show the current deterioration.
    P("gbs", "bcbsmt-gbs-findings", {"finding": diagnostic_report(None, "Pulmonary function test",
      "Forced vital capacity 1.2 L: falling vital capacity since admission.", when=ago(60))}, "missing",
      {"clinical-findings"}, "L194", "GBS-PFT-report-from-60-days-ago"),
    P("gbs", "bcbsmt-gbs-findings", {"finding": condition("R26.2", "Unable to ambulate independently for ten meters",
      id="finding")}, "missing", {"clinical-findings"}, "L193", "GBS-unable-to-walk-undated"),
    P("gbs", "bcbsmt-gbs-findings", {"finding": None}, "missing", {"clinical-findings"}, "L189", "GBS-no-findings"),
    # AIHA (L200)
    P("aiha", "bcbsmt-aiha-refractory", {"failed": procedure("38100", "Splenectomy", outcome="Unsuccessful: hemolysis persisted")},
      "met", line="L200", name="AIHA-splenectomy-unsuccessful"),
    P("aiha", "bcbsmt-aiha-refractory", {"failed": procedure("38100", "Splenectomy")}, "missing", PTF,
      "L200", "AIHA-splenectomy-outcome-not-stated"),
    P("aiha", "bcbsmt-aiha-refractory", {"failed": None}, "missing", PTF, "L200", "AIHA-no-prior-therapy"),
    P("aiha", "bcbsmt-aiha-refractory", {"failed": med_statement("prednisone", status="active", reason=None)},
      "missing", PTF, "L200", "AIHA-steroid-ongoing"),
    P("aiha", "bcbsmt-aiha-refractory", {"failed": med_statement("prednisone taper", status="completed", reason=None)},
      "missing", PTF, "L200", "AIHA-completed-prednisone-taper-is-not-refractory"),
    P("aiha", "bcbsmt-aiha-refractory", {"failed": med_request("prednisone 60 mg", status="cancelled", reason="ineffective")},
      "missing", PTF, "L200", "AIHA-cancelled-order-never-given"),
    P("aiha", "bcbsmt-aiha-refractory", {"failed": med_statement("hydrocortisone 1% cream", reason="ineffective")},
      "missing", PTF, "L200", "AIHA-topical-hydrocortisone-is-not-systemic"),
    P("aiha", "bcbsmt-aiha-refractory", {"failed": med_statement("hydrocortisone", reason="ineffective")},
      "missing", PTF, "L200", "AIHA-hydrocortisone-route-not-recorded"),
    P("aiha", "bcbsmt-aiha-refractory", {"failed": med_statement("hydrocortisone", reason="ineffective", route="IV")},
      "met", line="L200", name="AIHA-IV-hydrocortisone-ineffective"),
    P("aiha", "bcbsmt-aiha-refractory", {"failed": med_statement("prednisone", reason="patient request")},
      "missing", PTF, "L200", "AIHA-stopped-for-another-reason"),
    P("aiha", "bcbsmt-aiha-refractory", {"failed": intolerance("prednisone", "steroid psychosis")},
      "missing", PTF, "L200", "AIHA-steroid-intolerance-is-not-refractoriness"),
    # Blistering diseases (L204-207)
    P("blistering-disease", "bcbsmt-blistering-biopsy", {"biopsy": None}, "missing", {"biopsy-confirmation"},
      "L204", "blistering-no-biopsy"),
    P("blistering-disease", "bcbsmt-blistering-biopsy", {"biopsy": procedure("11104", "Punch biopsy of skin")},
      "missing", {"biopsy-confirmation"}, "L204", "blistering-biopsy-without-pathology-report"),
    P("blistering-disease", "bcbsmt-blistering-conventional", {"failed": intolerance("prednisone",
      "steroid psychosis")}, "met", line="L206", name="blistering-steroid-complication"),
    P("blistering-disease", "bcbsmt-blistering-conventional", {"failed": med_statement("rituximab",
      status="active", reason=None), "dx": condition("L10.0", "Pemphigus vulgaris, extensive", id="dx", severe=True)},
      "met", line="L207", name="blistering-aggressive-disease-with-ongoing-conventional-therapy"),
    P("blistering-disease", "bcbsmt-blistering-conventional", {"failed": None, "dx": condition(
      "L10.0", "Pemphigus vulgaris, extensive", id="dx", severe=True)}, "missing", {"prior-therapy-failure"},
      "L207", "blistering-aggressive-but-no-conventional-therapy-alongside"),
    P("blistering-disease", "bcbsmt-blistering-conventional", {"failed": None}, "missing",
      PTF, "L206", "blistering-no-failure-not-severe"),
    P("blistering-disease", "bcbsmt-blistering-conventional", {"failed": med_statement(
      "clobetasol 0.05% ointment", reason="ineffective")}, "missing", PTF, "L206",
      "blistering-topical-steroid-failure-is-not-conventional-systemic-therapy"),
    # Autoimmune neutropenia (L211)
    P("autoimmune-neutropenia", "bcbsmt-neutropenia-autoimmune", {"dx": condition("D70.9", "Neutropenia, unspecified", id="dx")},
      "missing", {"diagnosis-specificity"}, "L209", "neutropenia-not-documented-as-autoimmune"),
    P("autoimmune-neutropenia", "bcbsmt-neutropenia-nonresponsive", {"failed": None}, "missing",
      PTF, "L211", "neutropenia-no-other-treatment"),
    P("autoimmune-neutropenia", "bcbsmt-neutropenia-nonresponsive", {"failed": intolerance("filgrastim", "bone pain")},
      "missing", PTF, "L211", "neutropenia-gcsf-intolerance-is-not-non-response"),
    # HIE (L215 + off-label header L183)
    P("hyper-ige", "bcbsmt-hie-standard-failed", {"failed": None}, "missing", PTF,
      "L183", "HIE-no-standard-therapy-failure"),
    P("hyper-ige", "bcbsmt-hie-standard-failed", {"failed": med_statement("lisinopril", reason="ineffective")},
      "missing", PTF, "L183", "HIE-an-unrelated-drug-failure-is-not-its-standard-therapy"),
    # Neonates (L219)
    P("neonatal-infection", "bcbsmt-neonate-age", {"patient": child(2)}, "not-met", line="L219",
      name="neonate-2-years-old"),
    P("neonatal-infection", "bcbsmt-neonate-age", {"patient": patient(None)}, "missing", {"patient-age"},
      "L219", "neonate-no-birthDate"),
    P("neonatal-infection", "bcbsmt-neonate-preterm", {"preterm": None, "ga": observation(
      "76516-4", "Gestational age at birth", value=31, unit="wk", when=ago(10))}, "met", line="L219",
      name="neonate-gestational-age-31-weeks"),
    P("neonatal-infection", "bcbsmt-neonate-preterm", {"preterm": None, "ga": observation(
      "76516-4", "Gestational age at birth", value=39, unit="wk", when=ago(10))}, "not-met", line="L219",
      name="neonate-term-39-weeks", determination="criteria-not-met"),
    P("neonatal-infection", "bcbsmt-neonate-preterm", {"preterm": None}, "missing", {"neonatal-risk"}, "L219",
      "neonate-preterm-not-documented"),
    P("neonatal-infection", "bcbsmt-neonate-high-risk", {"dx": condition("P07.18", "Low birth weight newborn 2000-2499 g", id="dx"),
      "preterm": condition("P07.37", "Preterm newborn, 34 weeks", id="preterm")}, "missing", {"neonatal-risk"}, "L219",
      "neonate-34-weeks-2200g-high-risk-not-documented"),
    P("neonatal-infection", "bcbsmt-neonate-low-birth-weight", {"dx": condition("P36.9", "Bacterial sepsis of newborn", id="dx"),
      "bw": observation("8339-4", "Birth weight Measured", value=3.4, unit="kg", when=ago(10))}, "not-met", line="L219",
      name="neonate-sepsis-3400g-not-low-birth-weight"),
    # Inflammatory myopathies (L223)
    P("inflammatory-myopathy", "bcbsmt-myopathy-steroid-resistant", {"failed": intolerance("prednisone", type="allergy")},
      "met", line="L223", name="myopathy-steroid-contraindicated-allergy"),
    P("inflammatory-myopathy", "bcbsmt-myopathy-steroid-resistant", {"failed": intolerance("prednisone")},
      "missing", PTF, "L223", "myopathy-steroid-intolerance-is-not-resistance"),
    P("inflammatory-myopathy", "bcbsmt-myopathy-steroid-resistant", {"failed": None}, "missing",
      PTF, "L223", "myopathy-no-steroid-history"),
    # LEMS (L227): not controlled by anticholinesterases AND diaminopyridine
    P("lems", "bcbsmt-lems-uncontrolled", {"failed": med_statement("amifampridine", reason="ineffective")},
      "missing", PTF, line="L227", name="LEMS-only-diaminopyridine-failed"),
    P("lems", "bcbsmt-lems-uncontrolled", {"failed": [med_statement("pyridostigmine", status="active", reason=None),
      med_statement("amifampridine", status="active", reason=None)]}, "missing", PTF, "L227",
      "LEMS-both-ongoing-control-not-stated"),
    P("lems", "bcbsmt-lems-uncontrolled", {"failed": None}, "missing", PTF, "L227", "LEMS-no-therapy"),
    # Off-label header (L183): "has failed, become intolerable, and/or is contraindicated".
    P("lems", "bcbsmt-lems-uncontrolled", {"failed": [
      med_statement("pyridostigmine", status="active", reason="inadequate response"),
      intolerance("amifampridine", "seizure disorder", type="allergy")]}, "met", line="L183",
      name="LEMS-amifampridine-contraindicated"),
    # Limbic encephalitis in a child (L229-231)
    P("limbic-encephalitis-child", "bcbsmt-limbic-child", {"patient": patient(ADULT)}, "not-met",
      line="L229", name="limbic-adult"),
    P("limbic-encephalitis-child", "bcbsmt-limbic-child", {"patient": patient(None)}, "missing",
      {"patient-age"}, "L229", "limbic-no-birthDate"),
    P("limbic-encephalitis-child", "bcbsmt-limbic-documented", {"dx": condition("G04.81", "Other encephalitis and encephalomyelitis", id="dx")},
      "missing", {"diagnosis-specificity"}, "L231", "limbic-other-encephalitis-not-documented-as-limbic"),
    # MS (L244-245)
    P("multiple-sclerosis", "bcbsmt-ms-severe", {"dx": condition("G35", "Multiple sclerosis",
      text="Relapsing-remitting multiple sclerosis", id="dx")}, "missing", {"disease-severity"}, "L244",
      "MS-severity-not-recorded"),
    P("multiple-sclerosis", "bcbsmt-ms-relapsing-remitting", {"dx": condition("G35", "Multiple sclerosis", id="dx", severe=True)},
      "missing", {"diagnosis-specificity"}, "L244", "MS-type-not-recorded"),
    P("multiple-sclerosis", "bcbsmt-ms-relapsing-remitting", {"dx": condition("G35.A", "Relapsing-remitting multiple sclerosis",
      id="dx", severe=True)}, "met", line="L244", name="MS-G35.A-relapsing-remitting"),
    P("multiple-sclerosis", "bcbsmt-ms-dmt-failed", {"failed": None}, "missing", PTF,
      "L245", "MS-no-interferon-glatiramer"),
    P("multiple-sclerosis", "bcbsmt-ms-dmt-failed",
      {"failed": med_statement("glatiramer acetate", status="active", reason=None)}, "missing",
      PTF, "L245", "MS-glatiramer-ongoing"),
    P("multiple-sclerosis", "bcbsmt-ms-dmt-failed", {"failed": intolerance("interferon beta-1b", "flu-like")},
      "met", line="L245", name="MS-interferon-intolerable"),
    # Myasthenia gravis (L251-257)
    P("myasthenia-gravis", "bcbsmt-mg-any", {"failed": None, "dx": condition(
      "G70.01", "Myasthenia gravis with (acute) exacerbation", id="dx", onset=ago(3))}, "missing",
      {"disease-severity", "prior-therapy-failure"}, line="L251", name="MG-exacerbation-code-alone"),
    P("myasthenia-gravis", "bcbsmt-mg-any", {"dx": condition(
      "G70.01", "Myasthenia gravis with (acute) exacerbation", id="dx", severe=True, onset=ago(3)),
      "failed": med_request("prednisone 60 mg oral", status="stopped", reason="ineffective")}, "met", line="L251",
      name="MG-severe-exacerbation-other-treatment-unsuccessful"),
    P("myasthenia-gravis", "bcbsmt-mg-any", {"dx": condition("G70.01", "Myasthenia gravis", text="Myasthenic crisis", id="dx",
      onset=ago(2)), "failed": procedure(None, "Plasma exchange", status="not-done",
      status_reason="Contraindicated: septic shock")}, "met", line="L252", name="MG-crisis-plasma-exchange-contraindicated"),
    P("myasthenia-gravis", "bcbsmt-mg-any", {"dx": condition("G70.01", "Myasthenia gravis", text="Myasthenic crisis", id="dx",
      onset=ago(2)), "failed": None}, "missing", PTF, "L252", "MG-crisis-without-plasma-exchange-contraindication"),
    # A crisis in the history (here a year ago) is not the acute episode IVIG is ordered for now.
    P("myasthenia-gravis", "bcbsmt-mg-any", {"dx": condition("G70.01", "Myasthenia gravis", text="Myasthenic crisis", id="dx",
      onset=ago(365)), "failed": procedure(None, "Plasma exchange", status="not-done",
      status_reason="Contraindicated: septic shock")}, "missing", {"clinical-findings"}, "L252",
      "MG-crisis-a-year-ago-is-not-current"),
    P("myasthenia-gravis", "bcbsmt-mg-any", {"dx": condition(None, text=MG_HISTORY_OF_CRISIS, id="dx", onset=ago(2)),
      "failed": procedure(None, "Plasma exchange", status="not-done", status_reason="Contraindicated: septic shock")},
      "missing", {"clinical-findings"}, "L252", "MG-history-of-crisis-is-not-a-crisis"),
    P("myasthenia-gravis", "bcbsmt-mg-any", {"dx": condition(None, text=MG_HISTORY_OF_CRISIS.replace("history of ", ""),
      id="dx", onset=ago(2)), "failed": procedure(None, "Plasma exchange", status="not-done",
      status_reason="Contraindicated: septic shock")}, "met", line="L252", name="MG-crisis-in-the-same-words-without-history"),
    P("myasthenia-gravis", "bcbsmt-mg-any", {"failed": intolerance("azathioprine", "hepatotoxicity")},
      "met", line="L253", name="MG-azathioprine-complication"),
    P("myasthenia-gravis", "bcbsmt-mg-any", {"failed": intolerance("mycophenolate", "leukopenia")},
      "missing", PTF, "L253", "MG-chronic-mycophenolate-is-not-steroids-or-azathioprine"),
    P("myasthenia-gravis", "bcbsmt-mg-any", {"failed": None}, "missing", PTF, "L253",
      "MG-chronic-no-treatment-history"),
    P("myasthenia-gravis", "bcbsmt-mg-course", {"order": ivig_request(0.4, "g/kg", every=None, reason="dx")},
      "missing", {"dosing-schedule"}, "L255", "MG-order-without-schedule"),
    P("myasthenia-gravis", "bcbsmt-mg-course", {"order": ivig_request(0.4, "g/kg", every=None, count=10, reason="dx")},
      "not-met", line="L255", name="MG-10-daily-doses-is-not-a-2-5-day-course"),
    # NAIT (L259-261)
    P("nait", "bcbsmt-nait-severe", {"dx": condition("P61.0", "Neonatal alloimmune thrombocytopenia",
      id="dx")}, "missing", {"disease-severity"}, "L259", "NAIT-severity-not-recorded"),
    P("nait", "bcbsmt-nait-alloimmune", {"dx": condition("P61.0", "Transient neonatal thrombocytopenia", id="dx", severe=True)},
      "missing", {"diagnosis-specificity"}, "L261", "NAIT-P61.0-not-documented-as-alloimmune"),
    P("nait", "bcbsmt-nait-other-failed", {"failed": None}, "missing", PTF, "L261",
      "NAIT-other-interventions-not-documented"),
    P("nait", "bcbsmt-nait-other-failed", {"failed": procedure(None, "Platelet transfusion", when=ago(2))},
      "missing", PTF, "L261", "NAIT-transfusion-outcome-not-stated"),
    # F/NAIT (L265-266), neonatal hemochromatosis (L270)
    P("fnait", "bcbsmt-fnait-history", {"history": None}, "missing", {"pregnancy-history"}, "L265",
      "FNAIT-no-affected-pregnancy-or-antibody-screen"),
    P("fnait", "bcbsmt-fnait-history", {"history": observation(None, text="HPA-1a antibody screen", result="positive")},
      "met", line="L266", name="FNAIT-platelet-alloantibodies-on-screening"),
    P("fnait", "bcbsmt-fnait-history", {"history": observation(None, text="HPA-1a antibody screen", result="negative")},
      "missing", {"pregnancy-history"}, "L266", "FNAIT-negative-alloantibody-screen"),
    # "Pregnant women": the pregnancy is current — not an O36.82 entry left active after delivery.
    P("fnait", "bcbsmt-fnait-pregnant", {"dx": condition("O36.8230", "Maternal care for fetal thrombocytopenia, third trimester",
      text="Fetal and neonatal alloimmune thrombocytopenia, third trimester", id="dx", onset=ago(400))}, "missing",
      {"pregnancy-history"}, "L265", "FNAIT-pregnancy-dated-400-days-ago-is-over"),
    P("fnait", "bcbsmt-fnait-pregnant", {"dx": condition("O36.8230", "Maternal care for fetal thrombocytopenia, third trimester",
      text="Fetal and neonatal alloimmune thrombocytopenia, third trimester", id="dx")}, "missing",
      {"pregnancy-history"}, "L265", "FNAIT-undated-pregnancy-not-shown-current"),
    P("fnait", "bcbsmt-fnait-alloimmune", {"dx": condition("O36.8230", "Maternal care for fetal thrombocytopenia, third trimester", id="dx",
      onset=ago(200))},
      "missing", {"diagnosis-specificity"}, "L263", "FNAIT-fetal-thrombocytopenia-cause-not-documented"),
    P("neonatal-hemochromatosis", "bcbsmt-nh-history", {"patient": patient("1990-01-01"), "order": ivig_request(60, every=1, period_unit="wk", reason="dx")},
      "missing", {"pregnancy-history"}, "L270", "NH-adult-neither-infant-nor-documented-pregnancy"),
    P("neonatal-hemochromatosis", "bcbsmt-nh-history", {"patient": patient("1990-01-01"),
      "order": ivig_request(60, every=1, period_unit="wk", reason="dx"),
      "preg": condition("Z33.1", "Pregnant state", id="preg", onset=ago(120)),
      "hx": condition(None, text="History of neonatal hemochromatosis in a previous pregnancy", clinical="resolved", id="hx")},
      "met", line="L270", name="NH-pregnant-with-previous-affected-pregnancy"),
    # Post-transfusion purpura, severe (L272)
    P("post-transfusion-purpura", "bcbsmt-ptp-severe", {"dx": condition("D69.51", "PTP", id="dx")},
      "missing", {"disease-severity"}, "L272", "PTP-not-severe"),
    P("post-transfusion-purpura", "bcbsmt-ptp-severe", {"dx": condition("D69.51", "PTP", id="dx", severity="moderate")},
      "missing", {"disease-severity"}, "L272", "PTP-moderate-is-not-severe"),
    # Pure red cell aplasia (L278-279)
    P("pure-red-cell-aplasia", "bcbsmt-prca-any", {"parvo": parvovirus_lab("positive")}, "met", line="L278",
      name="PRCA-parvovirus-PCR-positive"),
    P("pure-red-cell-aplasia", "bcbsmt-prca-any", {"parvo": observation(None, text="Parvovirus B19 IgG", result="positive")},
      "missing", {"parvovirus-b19"}, "L278", "PRCA-positive-parvovirus-IgG-is-past-immunity"),
    P("pure-red-cell-aplasia", "bcbsmt-prca-any", {"parvo": condition("B97.6", "Parvovirus B19 infection", id="parvo",
      clinical="resolved")}, "missing", {"parvovirus-b19"}, "L278", "PRCA-resolved-parvovirus-infection"),
    P("pure-red-cell-aplasia", "bcbsmt-prca-any", {"parvo": med_statement("cyclosporine", reason="ineffective", route="oral"),
      "dx": condition("D60.9", "Acquired pure red cell aplasia", id="dx", severe=True)},
      "met", line="L279", name="PRCA-severe-anemia-refractory-to-immunosuppression"),
    P("pure-red-cell-aplasia", "bcbsmt-prca-any", {"parvo": med_statement("cyclosporine", reason="ineffective"),
      "dx": condition("D60.9", "Acquired pure red cell aplasia", id="dx", severe=True)},
      "missing", {"parvovirus-b19"}, "L279", "PRCA-cyclosporine-route-not-recorded-eye-drops-exist"),
    # First-line immunosuppression: hydroxychloroquine is a lupus drug, not an immunosuppressant here.
    P("pure-red-cell-aplasia", "bcbsmt-prca-any", {"parvo": med_statement("hydroxychloroquine", reason="ineffective",
      route="oral"), "dx": condition("D60.9", "Acquired pure red cell aplasia", id="dx", severe=True)},
      "missing", {"parvovirus-b19"}, "L279", "PRCA-hydroxychloroquine-is-not-first-line-immunosuppression"),
    P("pure-red-cell-aplasia", "bcbsmt-prca-any", {"parvo": med_statement("cyclosporine", reason="ineffective")},
      "missing", {"parvovirus-b19"}, "L279", "PRCA-refractory-but-anemia-severity-not-recorded"),
    P("pure-red-cell-aplasia", "bcbsmt-prca-any", {"parvo": None}, "missing", {"parvovirus-b19"}, "L278",
      "PRCA-nothing-documented"),
    P("pure-red-cell-aplasia", "bcbsmt-prca-any", {"parvo": parvovirus_lab("negative")}, "missing",
      {"parvovirus-b19"}, "L278", "PRCA-parvovirus-negative-salvage-not-documented"),
    # Solid organ transplant (L283-285)
    P("solid-organ-transplant", "bcbsmt-sot-amr", {"rejection": None}, "missing",
      {"antibody-mediated-rejection"}, "L285", "SOT-no-rejection"),
    P("solid-organ-transplant", "bcbsmt-sot-amr", {"rejection": condition("T86.11", "Kidney transplant rejection", id="amr")},
      "missing", {"antibody-mediated-rejection"}, "L285", "SOT-rejection-kind-not-documented"),
    P("solid-organ-transplant", "bcbsmt-sot-amr", {"rejection": [condition("T86.11", "Kidney transplant rejection", id="amr"),
      diagnostic_report(None, "Kidney transplant biopsy pathology", "Acute T-cell-mediated rejection, Banff IB; C4d negative.")]},
      "missing", {"antibody-mediated-rejection"}, "L285", "SOT-T-cell-mediated-rejection"),
    P("solid-organ-transplant", "bcbsmt-sot-amr", {"rejection": [condition("T86.11", "Kidney transplant rejection", id="amr"),
      diagnostic_report(None, "Kidney transplant biopsy pathology", "Active antibody-mediated rejection, C4d positive.")]},
      "met", line="L285", name="SOT-biopsy-shows-antibody-mediated-rejection"),
    # Bare "AMR" is also antimicrobial resistance; "active AMR" names rejection activity.
    P("solid-organ-transplant", "bcbsmt-sot-amr", {"rejection": [condition("T86.11", "Kidney transplant rejection", id="amr"),
      diagnostic_report(None, "Kidney transplant biopsy pathology", "AMR.")]},
      "missing", {"antibody-mediated-rejection"}, "L285", "SOT-bare-AMR-is-not-a-rejection-finding"),
    P("solid-organ-transplant", "bcbsmt-sot-amr", {"rejection": [condition("T86.11", "Kidney transplant rejection", id="amr"),
      diagnostic_report(None, "Kidney transplant biopsy pathology", "Active AMR, C4d positive.")]},
      "met", line="L285", name="SOT-active-AMR"),
    P("solid-organ-transplant", "bcbsmt-sot-amr", {"dx": condition("Z76.82", "Awaiting organ transplant status", id="dx"),
      "rejection": condition(None, text="Highly sensitized (cPRA 99%)", id="sens")}, "met", line="L283",
      name="SOT-highly-sensitized-candidate"),
    P("solid-organ-transplant", "bcbsmt-sot-amr", {"dx": condition("Z76.82", "Awaiting organ transplant status", id="dx"),
      "rejection": None}, "missing", {"antibody-mediated-rejection"}, "L283", "SOT-candidate-risk-not-documented"),
    # SJS/TEN (L289)
    P("sjs-ten", "bcbsmt-sjs-severe", {"dx": condition("L51.1", "SJS", id="dx", onset=ago(5))}, "missing",
      {"disease-severity"}, "L289", "SJS-not-severe"),
    P("sjs-ten", "bcbsmt-sjs-acute", {"dx": condition("L51.1", "SJS", id="dx", severe=True, onset=ago(400))},
      "not-met", line="L289", name="SJS-onset-400-days-ago-not-acute"),
    # Stiff person (L293-294)
    P("stiff-person", "bcbsmt-sps-anti-gad", {}, "met", line="L293", name="SPS-anti-GAD-positive"),
    # A numeric titer is read against the laboratory's range or its flag.
    P("stiff-person", "bcbsmt-sps-anti-gad", {"gad": observation(None, text="GAD65 antibody (anti-GAD)", value=250,
      unit="[IU]/mL", ref_high=5, when=ago(50))}, "met", line="L293", name="SPS-anti-GAD-250-above-range"),
    P("stiff-person", "bcbsmt-sps-anti-gad", {"gad": observation(None, text="GAD65 antibody (anti-GAD)", value=2,
      unit="[IU]/mL", ref_high=5, when=ago(50))}, "not-met", line="L293", name="SPS-anti-GAD-2-within-range"),
    P("stiff-person", "bcbsmt-sps-anti-gad", {"gad": observation(None, text="GAD65 antibody (anti-GAD)", value=250,
      unit="[IU]/mL", when=ago(50))}, "missing", {"anti-gad-antibody"}, "L293", "SPS-anti-GAD-number-without-range-or-flag"),
    P("stiff-person", "bcbsmt-sps-anti-gad", {"gad": anti_gad("negative")}, "not-met", line="L293",
      name="SPS-anti-GAD-negative"),
    P("stiff-person", "bcbsmt-sps-anti-gad", {"gad": None}, "missing", {"anti-gad-antibody"}, "L293",
      "SPS-anti-GAD-not-tested"),
    P("stiff-person", "bcbsmt-sps-other-failed", {"failed": intolerance("baclofen", "sedation")}, "missing",
      PTF, line="L294", name="SPS-baclofen-intolerance-is-not-failure"),
    P("stiff-person", "bcbsmt-sps-other-failed", {"failed": None}, "missing", PTF,
      "L294", "SPS-no-benzodiazepine-baclofen-history"),
    # SLE (L298), vasculitis (L308)
    P("sle", "bcbsmt-sle-severe", {"dx": condition("M32.10", "SLE", id="dx")}, "missing",
      {"disease-severity"}, "L298", "SLE-not-severe"),
    P("sle", "bcbsmt-sle-severe", {"dx": condition("M32.10", "SLE", id="dx", severe=True, clinical="remission")}, "missing",
      {"disease-severity"}, "L298", "SLE-severe-but-in-remission-not-active"),
    P("sle", "bcbsmt-sle-other-failed", {"failed": med_statement("hydroxychloroquine", reason="ineffective", route="oral")},
      "met", line="L298", name="SLE-hydroxychloroquine-is-another-intervention"),
    P("sle", "bcbsmt-sle-other-failed", {"failed": None}, "missing", PTF, "L298",
      "SLE-no-other-intervention"),
    P("sle", "bcbsmt-sle-other-failed", {"failed": intolerance("hydroxychloroquine", "retinal toxicity")}, "met",
      line="L298", name="SLE-hydroxychloroquine-intolerable"),
    P("vasculitis", "bcbsmt-vasculitis-severe", {"dx": condition("M31.4", "Takayasu", id="dx")}, "missing",
      {"disease-severity"}, "L308", "vasculitis-not-severe"),
    P("vasculitis", "bcbsmt-vasculitis-other-failed", {"failed": None}, "missing", PTF,
      "L308", "vasculitis-no-other-intervention"),
    # Toxic shock (L300-304)
    P("toxic-shock", "bcbsmt-tss-refractory", {"finding": None}, "missing", {"clinical-findings"}, "L302",
      "TSS-refractoriness-not-documented"),
    P("toxic-shock", "bcbsmt-tss-refractory", {"finding": [condition("R34", "Anuria and oliguria", text="Persistent oliguria",
      id="olig", onset=ago(1)), condition("J81.0", "Acute pulmonary edema", id="edema", onset=ago(1))]}, "met", line="L304",
      name="TSS-persistent-oliguria-with-pulmonary-edema"),
    P("toxic-shock", "bcbsmt-tss-refractory", {"finding": condition("R34", "Anuria and oliguria", text="Persistent oliguria",
      id="olig", onset=ago(1))}, "missing", {"clinical-findings"}, "L304", "TSS-oliguria-without-pulmonary-edema"),
    P("toxic-shock", "bcbsmt-tss-organism", {"organism": None}, "missing", {"causative-organism"}, "L300",
      "TSS-organism-not-documented"),
    P("toxic-shock", "bcbsmt-tss-organism", {"organism": diagnostic_report(None, "Blood culture",
      "Streptococcus pyogenes (group A streptococcus) isolated.", when=ago(2))}, "met", line="L300",
      name="TSS-culture-names-group-A-strep"),
    # The organism must be this infection's: a culture from two months ago is another episode.
    P("toxic-shock", "bcbsmt-tss-organism", {"organism": diagnostic_report(None, "Blood culture",
      "Streptococcus pyogenes (group A streptococcus) isolated.", when=ago(60))}, "missing", {"causative-organism"},
      "L300", "TSS-culture-from-60-days-ago"),
    P("toxic-shock", "bcbsmt-tss-organism", {"organism": condition(None, text="Nasal carriage of Staphylococcus aureus", id="organism",
      onset=ago(2))}, "missing", {"causative-organism"}, "L300", "TSS-MRSA-carriage-is-not-the-cause"),
    P("toxic-shock", "bcbsmt-tss-organism", {"organism": condition("B95.2", "Enterococcus as the cause", id="organism")},
      "missing", {"causative-organism"}, "L300", "TSS-enterococcus-is-not-strep-or-staph"),
    # ---- Primary humoral immunodeficiency: the ANY branches (L139-151, Testing Table L161-173)
    P(PI, "bcbsmt-pi-any", {}, "met", line="L141", name="PI-agammaglobulinemia-IgG<200"),
    P(PI, "bcbsmt-pi-any", {"igg": igg(200, ago(60), comparator="<")}, "met", line="L141",
      name="PI-IgG-reported-<200"),
    P(PI, "bcbsmt-pi-any", {"igg": igg(1.5, ago(60), unit="g/L")}, "met", line="L141", name="PI-IgG-1.5g/L"),
    P(PI, "bcbsmt-pi-any", {"igg": [igg(350, ago(90)), igg(340, ago(60))], "inf": two_infections()}, "met", line="L142",
      name="PI-persistent-IgG<400-twice+recurrent-infections"),
    # "Persistent hypogammaglobulinemia": one result below 400 does not show it persists.
    P(PI, "bcbsmt-pi-any", {"igg": igg(350, ago(60)), "inf": two_infections()}, "missing", {"igg-pretreatment"},
      line="L142", name="PI-single-IgG<400-is-not-persistent"),
    P(PI, "bcbsmt-pi-any", {"igg": [igg(350, ago(90), ref_low=700), igg(340, ago(60), ref_low=700)], "vac": vaccine_poor()}, "met",
      line="L144", name="PI-IgG<400+pneumococcal-nonresponse-pre/post-4wk"),
    P(PI, "bcbsmt-pi-any", {"igg": [igg(350, ago(90), ref_low=700), igg(340, ago(60), ref_low=700)], "vac": [
        tetanus_titer(0.05, ago(420)), td_vaccine(ago(400)), tetanus_titer(0.06, ago(375))]}, "met",
      line="L168", name="PI-IgG<400+tetanus-nonresponse-pre/post-25d"),
    P(PI, "bcbsmt-pi-any", {"igg": [igg(350, ago(90), ref_low=700), igg(340, ago(60), ref_low=700)], "vac": [
        pneumo_titer(0.4, ago(420)), ppsv23(ago(400)), pneumo_titer(0.5, ago(350))]}, "missing",
      {"infection-history"}, "L172", "PI-pneumococcal-post-titer-50d-not-paired"),
    P(PI, "bcbsmt-pi-any", {"igg": [igg(350, ago(90), ref_low=700), igg(340, ago(60), ref_low=700)], "vac": [
        ppsv23(ago(400)), pneumo_titer(0.5, ago(372))]}, "missing", {"infection-history"}, "L173",
      "PI-post-titer-without-pre-titer-not-interpretable"),
    P(PI, "bcbsmt-pi-any", {"igg": igg(650, ago(60), ref_low=600), "vac": vaccine_good()}, "not-met",
      line="L173", name="PI-normal-IgG+adequate-pneumococcal-response"),
    P(PI, "bcbsmt-pi-any", {"igg": igg(650, ago(60), ref_low=600), "vac": [
        pneumo_titer(0.2, ago(414)), ppsv23(ago(400)), pneumo_titer(1.0, ago(372))]}, "not-met",
      line="L173", name="PI-4-fold-rise-below-1.3-is-adequate"),
    P(PI, "bcbsmt-pi-any", {"igg": igg(450, ago(60)), "sub": [
        igg_subclass(80, ago(300)), igg_subclass(85, ago(200))],
        "inf": [infection("A41.9", ago(500), "Sepsis"), infection("J18.9", ago(450), severity="severe")],
        "abx": med_statement("ceftriaxone", status="completed", reason=None),
        "workup": condition(None, text="Recurrent infections: other causes excluded (sweat test, CT sinuses normal)", id="workup"),
        "vac": vaccine_poor() + tetanus_poor(420)}, "met", line="L146", name="PI-subclass-deficiency-2-occasions"),
    # "Inability to mount an adequate response to protein and polysaccharide antigens": both classes.
    P(PI, "bcbsmt-pi-any", {"igg": igg(450, ago(60)), "sub": [
        igg_subclass(80, ago(300)), igg_subclass(85, ago(200))],
        "inf": [infection("A41.9", ago(500), "Sepsis"), infection("J18.9", ago(450), severity="severe")],
        "abx": med_statement("ceftriaxone", status="completed", reason=None),
        "workup": condition(None, text="Recurrent infections: other causes excluded (sweat test, CT sinuses normal)", id="workup"),
        "vac": vaccine_poor()}, "missing", {"vaccine-response"}, "L148",
      "PI-subclass-polysaccharide-nonresponse-only"),
    P(PI, "bcbsmt-pi-any", {"igg": igg(450, ago(60)), "sub": [
        igg_subclass(80, ago(300)), igg_subclass(85, ago(200))],
        "inf": [infection("A41.9", ago(500), "Sepsis"), infection("J18.9", ago(450), severity="severe")],
        "abx": med_statement("ceftriaxone", status="completed", reason=None), "vac": vaccine_poor() + tetanus_poor(420)},
      "missing", {"infection-treatment"}, "L147", "PI-subclass-infections-not-shown-unexplained"),
    P(PI, "bcbsmt-pi-any", {"igg": igg(450, ago(60)), "sub": [igg_subclass(80, ago(300)), igg_subclass(85, ago(200))],
        "inf": [infection("J18.9", ago(302), severity="severe"), infection("A41.9", ago(202), "Sepsis")],
        "abx": med_statement("ceftriaxone", status="completed", reason=None),
        "workup": condition(None, text="Other causes excluded", id="workup"), "vac": vaccine_poor() + tetanus_poor(420)},
      "missing", {"igg-subclass-levels"}, "L146", "PI-subclass-drawn-during-infection"),
    P(PI, "bcbsmt-pi-any", {"igg": igg(450, ago(60), ref_low=700), "sub": [
        igg_subclass(300, ago(300)), igg_subclass(310, ago(200))], "inf": two_infections(),
        "vac": vaccine_poor()}, "not-met", line="L146", name="PI-subclasses-normal-twice"),
    P(PI, "bcbsmt-pi-any", {"igg": igg(800, ago(60), ref_low=700), "inf": [
        infection("A41.9", ago(300), "Sepsis"), infection("J18.9", ago(200), severity="severe")],
        "abx": abx_courses(300, 200),
        "vac": severe_nonresponse()}, "met", line="L149", name="PI-normal-IgG+severe-polysaccharide-nonresponse"),
    # "despite aggressive management and treatment with antibiotics": one course does not show it.
    P(PI, "bcbsmt-pi-any", {"igg": igg(800, ago(60), ref_low=700), "inf": [
        infection("A41.9", ago(300), "Sepsis"), infection("J18.9", ago(200), severity="severe")],
        "abx": abx_courses(300),
        "vac": severe_nonresponse()}, "missing", {"infection-treatment"}, "L151",
      "PI-normal-IgG-one-antibiotic-course-is-not-aggressive-management"),
    P(PI, "bcbsmt-pi-any", {"igg": igg(800, ago(60), ref_low=700), "inf": [
        infection("A41.9", ago(300), "Sepsis"), infection("J18.9", ago(200), severity="severe")],
        "abx": abx_courses(300, 200),
        "vac": vaccine_poor()}, "missing", {"vaccine-response"}, "L150",
      "PI-normal-IgG-one-serotype-is-not-severe-nonresponse"),
    P(PI, "bcbsmt-pi-any", {"igg": igg(800, ago(60), ref_low=700), "vac": severe_nonresponse(),
        "abx": abx_courses(300, 200)}, "missing",
      {"infection-history"}, "L151", "PI-normal-IgG-nonresponse-without-infections"),
    P(PI, "bcbsmt-pi-any", {"igg": None}, "missing", {"igg-pretreatment"}, "L141", "PI-no-IgG"),
    P(PI, "bcbsmt-pi-any", {"igg": igg(150, ago(60), unit=None)}, "missing", {"igg-pretreatment"}, "L141",
      "PI-IgG-without-unit-not-used"),
    # Re-Evaluation Table (L179-181): continuation beyond 18 months needs a re-test off therapy
    P(PI, "bcbsmt-pi-any", reeval(), "missing", {"vaccine-response"}, "L179",
      "PI-normal-IgG-continuation-900d-no-reevaluation"),
    P(PI, "bcbsmt-pi-any", reeval(retest=pneumo_titer(0.4, ago(100))), "missing", {"vaccine-response"}, "L180",
      "PI-retested-while-on-IVIG-does-not-count"),
    P(PI, "bcbsmt-pi-any", reeval(stmt=ivig_statement(ago(900), status="stopped", id="stmt") | {
        "effectivePeriod": {"start": ago(900), "end": ago(300)}}, retest=pneumo_titer(0.4, ago(100)),
        later=infection("J01.90", ago(500), "Sinusitis")), "met", line="L180",
      name="PI-retested-4-months-after-stopping-still-deficient-fewer-infections"),
    P(PI, "bcbsmt-pi-any", reeval(stmt=ivig_statement(ago(900), status="stopped", id="stmt") | {
        "effectivePeriod": {"start": ago(900), "end": ago(300)}}, retest=pneumo_titer(0.4, ago(100)),
        later=[infection("J18.9", ago(600)), infection("J01.90", ago(500), "Sinusitis"),
               infection("L03.90", ago(400), "Cellulitis")]), "not-met", line="L181",
      name="PI-infections-not-reduced-on-IVIG"),
    P(PI, "bcbsmt-pi-any", reeval(stmt=ivig_statement(ago(900), status="stopped", id="stmt") | {
        "effectivePeriod": {"start": ago(900), "end": ago(300)}}, retest=pneumo_titer(2.4, ago(100))),
      "not-met", line="L180", name="PI-retested-off-therapy-now-protective"),
    P(PI, "bcbsmt-pi-any", {"igg": igg(800, ago(400), ref_low=700), "inf": [
        infection("A41.9", ago(700), "Sepsis"), infection("J18.9", ago(600), severity="severe")],
        "abx": abx_courses(650, 600),
        "vac": severe_nonresponse(450), "admin": ivig_admin(ago(300)),
        "order": ivig_request(35, reason="dx")}, "met", line="L179", name="PI-continuation-within-18-months"),
    # Timeline: continuation without a start date (CONTRACT §4)
    P(PI, "bcbsmt-pi-any", {"stmt": ivig_statement(None, asserted="2025-06-30")}, "missing",
      {"igg-pretreatment", "ivig-start-date"}, "L141", "PI-continuation-undated-IgG-may-be-trough"),
]


@pytest.mark.parametrize("row,crit,changes,status,missing,determination", CASES)
def test_criterion(row, crit, changes, status, missing, determination):
    parts = ROWS[row]()
    parts.update(changes)
    rep = run(parts, RS)
    assert rep["indication"] is not None and rep["indication"]["id"] == row, (
        rep["indication"] and rep["indication"]["id"])
    c = criterion(rep, crit)
    assert c["status"] == status, c["detail"]
    assert missing_codes(rep) == missing
    assert rep["determination"] == determination


def test_003_L103_hiv_thrombocytopenia_significant_bleeding_is_an_alternative():
    """'Significant bleeding in thrombocytopenic patients OR platelet count < 20,000':
    documented severe bleeding with 35,000 platelets must not be criteria-not-met."""
    parts = ROWS["hiv-thrombocytopenia"]()
    parts["plt"] = platelets(35000)
    parts["bleed"] = condition("R58", "Hemorrhage, significant mucosal bleeding", id="bleed", severe=True,
                               onset=ago(2))
    rep = run(parts, RS)
    assert rep["indication"]["id"] == "hiv-thrombocytopenia"
    assert criterion(rep, "bcbsmt-hiv-tcp-platelets")["status"] != "not-met"


def test_003_L104_rho_d_immune_globulin_is_rhig_not_ivig_exposure():
    """RhIg written with its generic name ('Rho(D) immune globulin') is the RhIg the row
    asks about, not prior IVIG/SCIG exposure (CONTRACT §4: IVIG/SCIG products only)."""
    parts = ROWS["hiv-thrombocytopenia"]()
    parts["rhig"] = med_statement("WinRho SDF (Rho(D) immune globulin)", reason="ineffective")
    rep = run(parts, RS)
    assert rep["therapy"]["status"] == "new-start"
    assert criterion(rep, "bcbsmt-hiv-tcp-rhig")["status"] == "met"
    assert rep["determination"] == "criteria-met"


def test_003_L101_thrombocytopenia_needs_hiv():
    parts = ROWS["hiv-thrombocytopenia"]()
    parts["hiv"] = None
    rep = run(parts, RS)
    assert rep["indication"] is None or rep["indication"]["id"] != "hiv-thrombocytopenia"


def test_003_L101_thrombocytopenia_named_by_order_without_hiv_is_unlisted():
    """An IVIG order naming a thrombocytopenia the policy covers only with HIV: the request
    is for a diagnosis not listed -> not-covered (unlisted), not no-indication."""
    parts = ROWS["hiv-thrombocytopenia"]()
    parts["hiv"] = None
    rep = run(parts, RS)
    assert rep["determination"] == "not-covered"
    assert rep["indication"]["coverage"] in {"unlisted", "experimental"}
    assert "letter-of-medical-necessity" in missing_codes(rep)


def test_003_L141_infant_with_absent_b_cells_is_agammaglobulinemia():
    """'Agammaglobulinemia (total IgG < 200 mg/dL or infants with BTK gene and/or absence of
    B lymphocytes)': a 5-month-old XLA infant with 0 % CD19 B cells meets it even with
    maternal IgG above 200 mg/dL."""
    parts = ROWS[PI]()
    parts.update(
        patient=patient(ago(150)),
        dx=condition("D80.0", "X-linked agammaglobulinemia (BTK)", id="dx"),
        weight=weight(7),
        order=ivig_request(3.5, reason="dx"),
        igg=igg(320, ago(20)),
        cd19=observation("8117-4", "CD19 cells/100 cells in Blood", value=0, unit="%", when=ago(20)),
    )
    rep = run(parts, RS)
    assert criterion(rep, "bcbsmt-pi-any")["status"] == "met"


def test_003_L259_nait_neonate_is_not_approved_as_fnait_pregnancy_row():
    """A neonate's NAIT with no failed intervention documented: the NAIT row (L261) asks for
    it; the F/NAIT row (L265-266) is about pregnant women and must not approve it."""
    parts = ROWS["nait"]()
    parts["failed"] = None
    rep = run(parts, RS)
    assert rep["indication"]["id"] == "nait"
    assert rep["determination"] == "documentation-missing"
    assert missing_codes(rep) == {"prior-therapy-failure"}


# --- dose ranges (Rationale L390; CONTRACT §4 for ITP and Kawasaki) ------------------------
DOSES = [
    pytest.param(PI, {"order": ivig_request(35, reason="dx")}, "within-range", 500, set(),
                 id="003-L390-PI-IVIG-35g-70kg-q4wk-500mg/kg"),
    pytest.param(PI, {"order": ivig_request(60, reason="dx")}, "above-range", 857, {"dose-justification"},
                 id="003-L390-PI-IVIG-60g-above-600"),
    pytest.param(PI, {"order": ivig_request(20, reason="dx")}, "below-range", 286, {"dose-justification"},
                 id="003-L390-PI-IVIG-20g-below-400"),
    pytest.param(PI, {"order": ivig_request(500, "mg/kg", reason="dx")}, "within-range", 500, set(),
                 id="003-L390-PI-IVIG-500mg/kg-ordered-per-kg"),
    pytest.param(PI, {"order": ivig_request(0.5, "g/kg", every=3, reason="dx")}, "above-range", 667,
                 {"dose-justification"}, id="003-L390-PI-IVIG-0.5g/kg-q3wk-667-above"),
    pytest.param(PI, {"order": scig_request(8.75, reason="dx")}, "within-range", 500, set(),
                 id="003-L390-PI-SCIG-125mg/kg/week"),
    pytest.param(PI, {"order": scig_request(14, reason="dx")}, "above-range", 800, {"dose-justification"},
                 id="003-L390-PI-SCIG-200mg/kg/week-above-150"),
    pytest.param(PI, {"order": scig_request(5, reason="dx")}, "below-range", 286, {"dose-justification"},
                 id="003-L390-PI-SCIG-71mg/kg/week-below-100"),
    pytest.param("itp", {}, "within-range", 2000, set(), id="003-L157-ITP-1g/kg-x2-course"),
    pytest.param("itp", {"order": ivig_request(1, "g/kg", every=None, count=3, reason="dx")}, "above-range",
                 3000, {"dose-justification"}, id="003-L157-ITP-3g/kg-course-above"),
    pytest.param("itp", {"order": ivig_request(0.4, "g/kg", every=None, count=1, reason="dx")},
                 "below-range", 400, {"dose-justification"}, id="003-L157-ITP-0.4g/kg-below"),
    pytest.param("itp", {"order": ivig_request(62, "g", every=None, count=1, reason="dx")}, "within-range",
                 1000, set(), id="003-L157-ITP-62g-at-62kg-1g/kg"),
    pytest.param("kawasaki", {}, "within-range", 2000, set(), id="003-L119-Kawasaki-2g/kg-once"),
    pytest.param("kawasaki", {"order": ivig_request(28, "g", every=None, count=1, reason="dx")},
                 "within-range", 2000, set(), id="003-L119-Kawasaki-28g-at-14kg"),
    pytest.param("kawasaki", {"order": ivig_request(1, "g/kg", every=None, count=1, reason="dx")},
                 "below-range", 1000, {"dose-justification"}, id="003-L119-Kawasaki-1g/kg-below"),
    pytest.param("kawasaki", {"order": ivig_request(2, "g/kg", every=None, count=2, reason="dx")},
                 "above-range", 4000, {"dose-justification"}, id="003-L119-Kawasaki-4g/kg-above"),
    pytest.param("mmn", {}, "unknown", 429, set(), id="003-L125-MMN-no-range-unknown-no-item"),
]


@pytest.mark.parametrize("row,changes,status,mg_per_kg,missing", DOSES)
def test_dose_ranges(row, changes, status, mg_per_kg, missing):
    parts = ROWS[row]()
    parts.update(changes)
    rep = run(parts, RS)
    assert rep["indication"]["id"] == row
    assert rep["dose_check"]["status"] == status, rep["dose_check"]
    assert rep["dose_check"]["mg_per_kg"] == mg_per_kg
    assert missing_codes(rep) == missing
    dose = criterion(rep, "dose-within-range")
    if status == "within-range":
        assert dose["status"] == "met"
    elif status == "unknown":
        assert dose["status"] == "not-applicable"
    else:
        assert dose["status"] == "missing"
        assert rep["determination"] == "documentation-missing"


def test_003_L390_scig_range_reported_per_4_weeks():
    parts = ROWS[PI]()
    parts["order"] = scig_request(8.75, reason="dx")
    rep = run(parts, RS)
    assert rep["order"]["route"] == "SC"
    assert rep["dose_check"]["range_mg_per_kg"] == [400, 600]
    assert rep["dose_check"]["basis"] == "per-4-weeks"


@pytest.mark.parametrize("days,status,missing", [
    pytest.param(90, "met", set(), id="003-L74-weight-90-days-old-current"),
    pytest.param(91, "missing", {"body-weight"}, id="003-L74-weight-91-days-old-missing"),
    pytest.param(None, "missing", {"body-weight"}, id="003-L74-no-weight-missing"),
])
def test_body_weight_window(days, status, missing):
    parts = ROWS[PI]()
    parts["weight"] = weight(70, ago(days)) if days is not None else None
    rep = run(parts, RS)
    assert criterion(rep, "body-weight-current")["status"] == status
    assert missing_codes(rep) == missing
    if status == "missing":
        assert rep["dose_check"]["status"] == "unknown"
        assert "dose-justification" not in missing_codes(rep)


def test_003_L74_stale_weight_and_high_dose_raise_body_weight_only():
    parts = ROWS[PI]()
    parts["weight"] = weight(50, ago(200))
    parts["order"] = ivig_request(60, reason="dx")
    rep = run(parts, RS)
    assert missing_codes(rep) == {"body-weight"}
    assert rep["dose_check"]["status"] == "unknown"
    assert rep["determination"] == "documentation-missing"


# --- experimental rows (L312-367) ------------------------------------------------------------
def _experimental_cases():
    rs = get_ruleset(RS)
    import tomllib

    manifest = tomllib.loads((DATA_DIR / "valuesets.toml").read_text(encoding="utf-8"))["valuesets"]
    out = []
    for ind in rs.indications:
        if ind.coverage != "experimental":
            continue
        path = DATA_DIR / "valuesets" / manifest[ind.diagnoses[0]]["file"]
        with path.open(newline="", encoding="utf-8") as fh:
            row = next(csv.DictReader(fh))
        out.append(pytest.param(ind.id, row["system"], row["code"], row["display"],
                                id=f"003-L312-{ind.id}-{row['code']}"))
    return out


EXPERIMENTAL = _experimental_cases()


def test_experimental_list_is_complete():
    # 54 bullets on the policy's list, two of which live in covered rows (MM, MG maintenance)
    assert len(EXPERIMENTAL) >= 50


@pytest.mark.parametrize("row_id,system,code,display", EXPERIMENTAL)
def test_experimental_row_not_covered(row_id, system, code, display):
    if system == "text":
        dx = condition(None, text=display or code, id="dx")
    else:
        dx = condition(code, display, system=system, id="dx")
    rep = run([patient(), dx, weight(70), ivig_request(30, reason="dx")], RS)
    assert rep["indication"]["id"] == row_id
    assert rep["indication"]["coverage"] == "experimental"
    assert rep["determination"] == "not-covered"
    assert missing_codes(rep) == {"letter-of-medical-necessity", "prior-therapy-failure"}
    assert criterion(rep, "appeal-letter")["status"] == "missing"


def test_003_L312_experimental_with_failed_standard_therapy_needs_only_the_letter():
    rep = run([patient(), condition("G30.9", "Alzheimer's disease", id="dx"), weight(70),
               ivig_request(30, reason="dx"), med_statement("donepezil", reason="ineffective")], RS)
    assert rep["indication"]["id"] == "exp-alzheimers"
    assert rep["determination"] == "not-covered"
    assert missing_codes(rep) == {"letter-of-medical-necessity"}
    assert criterion(rep, "appeal-prior-therapy")["status"] == "met"


def test_003_L367_polyarteritis_nodosa_is_on_the_experimental_list():
    rep = run([patient(), condition("M30.0", "Polyarteritis nodosa", id="dx", severe=True), weight(70),
               ivig_request(30, reason="dx")], RS)
    assert rep["determination"] == "not-covered"
    assert rep["indication"]["coverage"] == "experimental"


def test_003_L247_chronic_progressive_ms_is_experimental_not_the_ms_row():
    rep = run([patient(), condition("G35.B", "Primary progressive multiple sclerosis", id="dx", severe=True),
               weight(70), ivig_request(30, reason="dx"),
               med_statement("interferon beta-1a", reason="ineffective")], RS)
    assert rep["indication"]["id"] == "exp-chronic-progressive-ms"
    assert rep["determination"] == "not-covered"


def test_003_L312_experimental_comorbidity_is_not_the_indication():
    parts = ROWS[PI]()
    parts["asthma"] = condition("J45.909", "Asthma", id="asthma")
    parts["dm"] = condition("E11.9", "Type 2 diabetes mellitus", id="dm")
    rep = run(parts, RS)
    assert rep["indication"]["id"] == PI
    assert rep["determination"] == "criteria-met"
    assert not [o for o in rep["other_indications"] if o["coverage"] == "experimental"]


# --- unlisted and no indication (L312 'any indication not listed above'; CONTRACT §2) -------
def test_003_L312_unlisted_diagnosis_named_by_reason_reference():
    rep = run([patient(), condition("G62.9", "Small fiber neuropathy", id="dx"), weight(70),
               ivig_request(2, "g/kg", reason="dx")], RS)
    assert rep["determination"] == "not-covered"
    assert rep["indication"]["coverage"] == "unlisted"
    assert rep["indication"]["id"].startswith("unlisted-")
    assert missing_codes(rep) == {"letter-of-medical-necessity", "prior-therapy-failure"}


def test_003_L312_unlisted_diagnosis_named_by_reason_code_with_failed_therapy():
    rep = run([patient(), weight(70), med_statement("gabapentin", reason="ineffective"),
               condition("G62.9", "Polyneuropathy, unspecified", text="Small fiber neuropathy", id="sfn"),
               ivig_request(2, "g/kg", reason_code=("G62.9", "Polyneuropathy, unspecified"))], RS)
    assert rep["indication"]["coverage"] == "unlisted"
    assert rep["indication"]["evidence"] == ["Condition/sfn"]
    assert rep["determination"] == "not-covered"
    assert missing_codes(rep) == {"letter-of-medical-necessity"}


def test_contract_reason_code_without_a_condition_is_not_an_indication():
    """CONTRACT §2: an order's reasonCode naming a diagnosis with no Condition does not by
    itself make an indication; the item names what the order says."""
    rep = run([patient(), weight(70), ivig_request(2, "g/kg", reason_code=("G62.9", "Small fiber neuropathy"))], RS)
    assert rep["determination"] == "no-indication"
    assert missing_codes(rep) == {"indication"}
    assert "Small fiber neuropathy" in rep["missing_documentation"][0]["detail"]


def test_contract_reason_code_naming_a_covered_row_without_condition_is_not_approved():
    """A reasonCode of CVID with an IgG of 150 but no CVID Condition: not criteria-met."""
    rep = run([patient(), weight(70), igg(150, ago(60)), infection(),
               ivig_request(35, reason_code=("D83.9", "Common variable immunodeficiency"))], RS)
    assert rep["determination"] == "no-indication"
    assert "Common variable immunodeficiency" in rep["missing_documentation"][0]["detail"]


@pytest.mark.parametrize("clinical,verification", [("resolved", "confirmed"), ("inactive", "confirmed"),
                                                    ("active", "refuted"), ("active", "entered-in-error")])
def test_contract_reason_reference_to_a_condition_that_does_not_count(clinical, verification):
    rep = run([patient(), weight(70), igg(150, ago(60)),
               condition("D83.9", "CVID", id="cvid", clinical=clinical, verification=verification),
               ivig_request(35, reason="cvid")], RS)
    assert rep["determination"] == "no-indication"
    assert missing_codes(rep) == {"indication"}


@pytest.mark.parametrize("resources", [
    pytest.param([patient(), weight(70), condition("D84.821", "Immunodeficiency due to drugs", id="sid"),
                  ivig_request(30)], id="secondary-immunodeficiency-order-names-nothing"),
    pytest.param([patient(), weight(70), condition("G62.9", "Polyneuropathy, unspecified", id="pn"),
                  ivig_request(30)], id="polyneuropathy-order-names-nothing"),
])
def test_contract_ivig_order_with_unlisted_ivig_relevant_diagnosis_is_unlisted_not_no_indication(resources):
    """CONTRACT §2 rules 1-2: an IVIG order and an active diagnosis the policy does not list
    is not-covered / unlisted with the appeal items, not no-indication."""
    rep = run(resources, RS)
    assert rep["determination"] == "not-covered"
    assert rep["indication"]["coverage"] == "unlisted"
    assert "letter-of-medical-necessity" in missing_codes(rep)


def test_contract_ivig_order_with_only_unrelated_diagnoses_is_no_indication():
    rep = run([patient(), weight(70), condition("I10", "Essential hypertension"), ivig_request(30)], RS)
    assert rep["determination"] == "no-indication"


@pytest.mark.parametrize("resources", [
    pytest.param([patient(), condition("I10", "Essential hypertension")], id="CONTRACT-2-hypertension-only"),
    pytest.param([patient(), condition("E11.9", "Type 2 diabetes mellitus"),
                  med_statement("metformin", status="active", reason=None)],
                 id="CONTRACT-2-diabetes-without-IVIG-order"),
    pytest.param([patient(), condition("D83.9", "CVID", verification="refuted"), igg(150, ago(30))],
                 id="CONTRACT-4-refuted-CVID"),
    pytest.param([patient(), condition("D83.9", "CVID", verification="entered-in-error"), igg(150, ago(30))],
                 id="CONTRACT-4-entered-in-error-CVID"),
    pytest.param([patient(), condition("D69.3", "ITP", clinical="resolved")], id="CONTRACT-4-resolved-ITP"),
    pytest.param([patient(), condition("D69.3", "ITP", clinical="inactive")], id="CONTRACT-4-inactive-ITP"),
    pytest.param([patient(), weight(70), ivig_request(30)], id="CONTRACT-2-order-without-any-diagnosis"),
])
def test_no_indication(resources):
    rep = run(resources, RS)
    assert rep["determination"] == "no-indication"
    assert rep["indication"] is None
    assert missing_codes(rep) == {"indication"}
    assert rep["criteria"] == []


def test_contract_no_indication_without_order_has_null_order():
    rep = run([patient(), condition("I10", "Essential hypertension")], RS)
    assert rep["order"] is None
    assert rep["therapy"]["status"] == "none"


# --- primary indication choice (CONTRACT §2) --------------------------------------------------
def test_contract_order_reason_reference_wins_over_better_supported_row():
    parts = ROWS[PI]()
    parts["itp"] = condition("D69.3", "Immune thrombocytopenic purpura", id="itp")
    parts["weight"] = weight(62)
    parts["order"] = ivig_request(1, "g/kg", every=None, count=2, reason="itp")
    rep = run(parts, RS)
    assert rep["indication"]["id"] == "itp"
    assert {o["id"] for o in rep["other_indications"]} == {PI}


def test_contract_order_reason_code_names_the_indication():
    parts = ROWS[PI]()
    parts["itp"] = condition("D69.3", "Immune thrombocytopenic purpura", id="itp")
    parts["order"] = ivig_request(1, "g/kg", every=None, count=2, reason_code=("D69.3", "ITP"))
    rep = run(parts, RS)
    assert rep["indication"]["id"] == "itp"


def test_contract_labeled_before_off_label_when_order_names_none():
    cidp = ROWS["cidp"]()
    cidp["biopsy"] = None  # CIDP documentation-missing
    cidp["mg"] = condition("G70.00", "Myasthenia gravis", id="mg", severe=True)
    cidp["failed"] = med_statement("pyridostigmine", reason="ineffective")  # MG criteria met
    cidp["order"] = ivig_request(0.4, "g/kg", every=None, count=5)
    rep = run(cidp, RS)
    assert rep["indication"]["id"] == "cidp"
    assert rep["determination"] == "documentation-missing"
    mg = [o for o in rep["other_indications"] if o["id"] == "myasthenia-gravis"]
    assert mg and mg[0]["determination"] == "criteria-met"


def test_contract_order_naming_off_label_row_beats_labeled_row():
    cidp = ROWS["cidp"]()
    cidp["mg"] = condition("G70.00", "Myasthenia gravis", id="mg", severe=True)
    cidp["failed"] = med_statement("pyridostigmine", reason="ineffective")
    cidp["order"] = ivig_request(0.4, "g/kg", every=None, count=5, reason="mg")
    rep = run(cidp, RS)
    assert rep["indication"]["id"] == "myasthenia-gravis"
    assert rep["indication"]["coverage"] == "off-label"


def test_contract_refuted_and_inactive_conditions_are_not_indications():
    parts = ROWS[PI]()
    parts["cll"] = condition("C91.10", "CLL", id="cll", verification="refuted")
    parts["itp"] = condition("D69.3", "ITP", id="itp", clinical="resolved")
    rep = run(parts, RS)
    assert rep["indication"]["id"] == PI
    assert rep["other_indications"] == []
    assert "Condition/cll" not in str(rep) and "Condition/itp" not in str(rep)


def test_contract_resolved_infections_still_count_as_history():
    parts = ROWS[PI]()
    parts["igg"] = [igg(350, ago(90), ref_low=700), igg(340, ago(60), ref_low=700)]
    parts["inf"] = two_infections()  # clinicalStatus resolved
    rep = run(parts, RS)
    assert criterion(rep, "bcbsmt-pi-any")["status"] == "met"


def test_contract_refuted_infections_do_not_count():
    parts = ROWS[PI]()
    parts["igg"] = [igg(350, ago(90), ref_low=700), igg(340, ago(60), ref_low=700)]
    parts["inf"] = [infection("J18.9", ago(300), verification="refuted"),
                    infection("J01.90", ago(200), "Sinusitis", verification="refuted")]
    rep = run(parts, RS)
    assert criterion(rep, "bcbsmt-pi-any")["status"] == "missing"
    assert missing_codes(rep) == {"infection-history"}


def test_contract_entered_in_error_igg_is_not_used():
    parts = ROWS[PI]()
    parts["igg"] = [igg(150, ago(60), status="entered-in-error"), igg(650, ago(50), ref_low=600)]
    parts["vac"] = vaccine_good()
    rep = run(parts, RS)
    assert rep["determination"] == "criteria-not-met"
    assert criterion(rep, "bcbsmt-pi-any")["status"] == "not-met"


# --- the most specific diagnosis wins; experimental sub-conditions override (issue: item 3) --
@pytest.mark.parametrize("dx,expected", [
    pytest.param(condition("G61.0", "Guillain-Barre syndrome", text="Miller Fisher syndrome", id="dx", onset=ago(5)),
                 "exp-fisher-syndrome", id="003-L342-G61.0-text-Miller-Fisher"),
    pytest.param(condition("G35", "Multiple sclerosis", text="Secondary progressive multiple sclerosis", id="dx", severe=True),
                 "exp-chronic-progressive-ms", id="003-L328-G35-text-secondary-progressive"),
    pytest.param(condition("G35.A", "Relapsing-remitting multiple sclerosis", text="Relapsing-remitting MS, now secondary progressive",
                           id="dx", severe=True), "exp-chronic-progressive-ms", id="003-L328-G35.A-code-vs-progressive-text"),
    pytest.param(condition("G04.81", "Other encephalitis", text="Rasmussen encephalitis", id="dx"),
                 "exp-rasmussen", id="003-L360-G04.81-text-Rasmussen"),
    pytest.param(condition("M33.20", "Polymyositis", text="Inclusion body myositis", id="dx"),
                 "exp-inclusion-body-myositis", id="003-L346-M33.20-text-inclusion-body-myositis"),
    pytest.param(condition("M31.9", "Necrotizing vasculopathy, unspecified", text="ANCA-associated vasculitis", id="dx", severe=True),
                 "exp-vasculitis-anca", id="003-L367-unspecified-vasculitis-text-ANCA"),
    pytest.param(condition("D60.9", "Acquired pure red cell aplasia", text="Diamond-Blackfan anemia", id="dx"),
                 "exp-diamond-blackfan", id="003-L337-D60.9-text-Diamond-Blackfan"),
])
def test_experimental_sub_condition_named_by_the_records_words_is_not_covered(dx, expected):
    parts = {"patient": patient(ADULT), "dx": dx, "weight": weight(70), "order": ivig_request(30, reason="dx"),
             "failed": med_statement("prednisone", reason="ineffective")}
    rep = run(parts, RS)
    assert rep["indication"]["id"] == expected
    assert rep["determination"] == "not-covered"
    assert any("experimental" in w for w in rep["warnings"])


def test_003_L247_two_conditions_rrms_and_spms_conflict_is_not_resolved_toward_coverage():
    parts = ROWS["multiple-sclerosis"]()
    parts["dx"] = condition("G35.A", "Relapsing-remitting multiple sclerosis", id="dx", severe=True)
    parts["spms"] = condition("G35.C1", "Active secondary progressive multiple sclerosis", id="spms")
    rep = run(parts, RS)
    assert rep["indication"]["id"] == "exp-chronic-progressive-ms"
    assert rep["determination"] == "not-covered"
    assert "Condition/dx" in rep["indication"]["evidence"]
    assert any("conflict" in w for w in rep["warnings"])


def test_003_L249_myasthenia_gravis_on_a_maintenance_schedule_is_the_experimental_row():
    parts = ROWS["myasthenia-gravis"]()
    parts["order"] = ivig_request(1, "g/kg", every=4, reason="dx")
    rep = run(parts, RS)
    assert rep["indication"]["id"] == "exp-mg-maintenance"
    assert rep["indication"]["coverage"] == "experimental"
    assert rep["determination"] == "not-covered"


def test_contract_order_reason_not_documented_is_not_approved_under_another_row():
    """The order names small fiber neuropathy, which the record does not hold; the record's
    fully documented CVID must not become this order's approval."""
    parts = ROWS[PI]()
    parts["order"] = ivig_request(35, reason_code=("G62.9", "Small fiber neuropathy"))
    rep = run(parts, RS)
    assert rep["indication"]["id"] == PI
    assert rep["determination"] == "documentation-missing"
    assert missing_codes(rep) == {"indication"}
    assert "Small fiber neuropathy" in rep["missing_documentation"][0]["detail"]


def test_003_a_note_naming_an_unrelated_experimental_condition_is_a_comorbidity():
    """Only the row's own experimental sub-conditions (its ``excludes``) in a Condition's notes
    move it to the experimental list: "also has chronic fatigue syndrome" written on a CVID
    entry does not make the CVID experimental, while "secondary progressive since 2021" on
    an MS entry does make the MS the experimental chronic progressive form (L328)."""
    parts = ROWS[PI]()
    parts["dx"] = condition("D83.9", "Common variable immunodeficiency", id="dx",
                            note="Also has chronic fatigue syndrome.")
    rep = run(parts, RS)
    assert rep["indication"]["id"] == PI
    assert rep["determination"] == "criteria-met"
    parts = ROWS["multiple-sclerosis"]()
    parts["dx"] = condition("G35", "Multiple sclerosis", id="dx", severe=True,
                            note="Secondary progressive since 2021.")
    rep = run(parts, RS)
    assert rep["indication"]["id"] == "exp-chronic-progressive-ms"
    assert rep["determination"] == "not-covered"


@pytest.mark.parametrize("dx,expected", [
    pytest.param(condition("G61.81", "Chronic inflammatory demyelinating polyneuritis", id="dx", onset=ago(200),
                           text="Chronic progressive demyelinating polyneuropathy (CIDP)", note=CIDP_NOTE),
                 "cidp", id="003-L113-CIDP-chronic-progressive-is-not-progressive-MS"),
    pytest.param(condition("M31.0", "Hypersensitivity angiitis", text="Leukocytoclastic vasculitis", id="dx", severe=True),
                 "vasculitis", id="003-L306-M31.0-hypersensitivity-vasculitis-is-not-Goodpasture"),
])
def test_003_words_shared_with_an_experimental_row_do_not_move_a_covered_condition(dx, expected):
    """Over-strict readings the review found (O1, O2): the covered row keeps the Condition."""
    parts = ROWS[expected]()
    parts["dx"] = dx
    rep = run(parts, RS)
    assert rep["indication"]["id"] == expected, rep["warnings"]
