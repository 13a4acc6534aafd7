"""Checks on the terminology data files in fhir_mappings/data/ (value sets, manifests)."""

from __future__ import annotations

import csv
import tomllib

import pytest
import simple_icd_10_cm as icd

from fhir_mappings.terminology import DATA_DIR, ICD10CM, TEXT, load_terminology

MANIFEST = tomllib.loads((DATA_DIR / "valuesets.toml").read_text(encoding="utf-8"))
ALL_NAMES = sorted(MANIFEST["valuesets"])

REQUIRED = [
    # labs
    "igg_total", "igg_subclasses", "iga", "igm", "ige", "pneumococcal_igg", "tetanus_igg",
    "diphtheria_igg", "hib_antibody", "measles_igg", "body_weight", "body_height", "platelets",
    "hiv_test", "serum_albumin", "urine_protein", "protein_electrophoresis", "csf_cell_count",
    "csf_vdrl", "csf_protein", "csf_igg", "anti_gad", "parvovirus_b19_lab", "cd19_percent", "cd19_absolute",
    "renal_function",
    # covered indications
    "dx_primary_humoral_immunodeficiency", "dx_cll", "dx_cidp", "dx_kawasaki", "dx_mmn",
    "dx_itp", "dx_aids_child", "dx_bmt", "dx_hiv_child", "dx_hiv_thrombocytopenia", "dx_gbs",
    "dx_aiha", "dx_blistering_disease", "dx_autoimmune_neutropenia", "dx_hyper_ige",
    "dx_neonatal_infection", "dx_inflammatory_myopathy", "dx_lems",
    "dx_limbic_encephalitis_child", "dx_multiple_myeloma", "dx_multiple_sclerosis",
    "dx_myasthenia_gravis", "dx_nait", "dx_fnait", "dx_neonatal_hemochromatosis",
    "dx_post_transfusion_purpura", "dx_pure_red_cell_aplasia", "dx_solid_organ_transplant",
    "dx_sjs_ten", "dx_stiff_person", "dx_sle", "dx_toxic_shock", "dx_vasculitis",
    # experimental examples
    "dx_exp_alzheimers", "dx_exp_als", "dx_exp_autism", "dx_exp_chronic_fatigue",
    "dx_exp_crohns", "dx_exp_cystic_fibrosis", "dx_exp_inclusion_body_myositis",
    "dx_exp_chronic_progressive_ms", "dx_exp_asthma", "dx_exp_rheumatoid_arthritis",
    "dx_exp_uveitis", "dx_exp_ttp", "dx_exp_aplastic_anemia", "dx_exp_antiphospholipid",
    "dx_exp_recurrent_abortion", "dx_exp_nephrotic", "dx_exp_pandas", "dx_exp_crps",
    "dx_exp_epilepsy", "dx_exp_diabetes", "dx_exp_vasculitis_anca",
    # other conditions
    "bacterial_infection", "serious_bacterial_infection", "bronchiectasis",
    "lymphoid_malignancy", "protein_loss_condition", "hiv_infection",
    "parvovirus_b19_infection", "transplant_rejection",
    # medications / procedures
    "ig_product", "ig_product_subcutaneous", "anti_cd20", "hypogam_drug",
    "systemic_immunosuppressant", "tx_corticosteroid", "tx_immunosuppressant",
    "tx_rh_immune_globulin", "tx_anticholinesterase", "tx_amifampridine",
    "tx_ms_disease_modifying", "tx_stiff_person", "tx_plasma_exchange", "tx_splenectomy",
    "nerve_conduction_study", "nerve_biopsy", "skin_biopsy", "lumbar_puncture",
    # vaccines
    "vaccine_pneumococcal_polysaccharide", "vaccine_pneumococcal_conjugate",
    "vaccine_tetanus", "vaccine_diphtheria",
]


@pytest.fixture(scope="module")
def term():
    return load_terminology()


def _rows(name: str) -> list[dict[str, str]]:
    path = DATA_DIR / "valuesets" / MANIFEST["valuesets"][name]["file"]
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def icd_cc(code: str) -> dict:
    return {"coding": [{"system": ICD10CM, "code": code}]}


def test_manifest_header():
    assert MANIFEST["version"] == 1
    text = (DATA_DIR / "valuesets.toml").read_text(encoding="utf-8")
    assert text.startswith("#") and "Version history" in text


@pytest.mark.parametrize("name", REQUIRED)
def test_required_valueset_present_and_non_empty(term, name):
    assert name in term, name
    assert term.valuesets[name].concepts, name


@pytest.mark.parametrize("name", ALL_NAMES)
def test_each_valueset_loads(term, name):
    vs = term.valuesets[name]
    assert vs.concepts
    assert MANIFEST["valuesets"][name]["source"].strip()
    assert MANIFEST["valuesets"][name]["description"].strip()
    for c in vs.concepts:
        assert c.source, (name, c.code)
        if c.system == TEXT:
            assert c.code == c.code.lower(), (name, c.code)


def test_every_icd10cm_row_is_valid(term):
    bad = [
        (vs.name, c.code)
        for vs in term.valuesets.values()
        for c in vs.concepts
        if c.system == ICD10CM and not icd.is_valid_item(c.code)
    ]
    assert not bad


def test_every_csv_row_has_source():
    for name in ALL_NAMES:
        for i, row in enumerate(_rows(name), start=2):
            assert row["source"].strip(), f"{name}.csv:{i}"


def test_no_orphan_csv_files():
    files = {p.name for p in (DATA_DIR / "valuesets").glob("*.csv")}
    assert files == {e["file"] for e in MANIFEST["valuesets"].values()}


def test_cvid_is_primary_humoral_immunodeficiency(term):
    assert "dx_primary_humoral_immunodeficiency" in term.names_of(icd_cc("D83.9"))
    assert "dx_primary_humoral_immunodeficiency" not in term.names_of(icd_cc("D84.9"))


def test_kawasaki_not_in_vasculitis(term):
    names = term.names_of(icd_cc("M30.3"))
    assert "dx_kawasaki" in names
    assert "dx_vasculitis" not in names


def test_anca_vasculitis_is_experimental_not_covered(term):
    names = term.names_of(icd_cc("M31.31"))
    assert "dx_exp_vasculitis_anca" in names
    assert "dx_vasculitis" not in names


def test_csf_igg_not_serum_igg(term):
    codes = {c.code for c in term.valuesets["igg_total"].concepts}
    assert "2464-6" not in codes and "2465-3" in codes
    assert "2464-6" in {c.code for c in term.valuesets["csf_igg"].concepts}


def test_hiv_panel_not_a_result(term):
    assert "75622-1" not in {c.code for c in term.valuesets["hiv_test"].concepts}


def test_subclass_displays_name_the_subclass(term):
    displays = " ".join(c.display for c in term.valuesets["igg_subclasses"].concepts)
    for n in range(1, 5):
        assert f"subclass {n}" in displays


def test_inclusion_body_myositis_is_experimental(term):
    names = term.names_of(icd_cc("G72.41"))
    assert "dx_exp_inclusion_body_myositis" in names
    assert "dx_inflammatory_myopathy" not in names


def test_brand_text_matches(term):
    assert "ig_product" in term.names_of({"text": "Privigen 10% 20 g IV"})
    assert "ig_product_subcutaneous" in term.names_of({"text": "Hizentra 20% weekly"})


def test_experimental_list_toml(term):
    data = tomllib.loads((DATA_DIR / "experimental_list.toml").read_text(encoding="utf-8"))
    items = data["item"]
    assert len(items) >= 50
    for item in items:
        assert item["label"] and item["slug"]
        assert item["valueset"] == "none" or item["valueset"] in term, item


def test_ig_products_toml():
    data = tomllib.loads((DATA_DIR / "ig_products.toml").read_text(encoding="utf-8"))
    names = set()
    for p in data["product"]:
        assert p["route"] in {"IV", "SC", "IV/SC"}, p
        assert 0.03 <= p["concentration_g_per_ml"] <= 0.25, p
        assert p["status"] in {"verified", "unverified"} and p["source"], p
        names.add(p["name"].lower())
    for brand in ("privigen", "hizentra", "cuvitru", "cutaquig", "hyqvia", "panzyga"):
        assert brand in names
