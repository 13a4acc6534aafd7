"""Unit converters of fhir_mappings.units (CONTRACT §4 "Units")."""

from __future__ import annotations

import pytest

from fhir_mappings import units

LB = 0.45359237


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        pytest.param(3.8, "g/L", 380.0, id="g/L-x100"),
        pytest.param(3.8, "g/l", 380.0, id="g/l-lowercase-x100"),
        pytest.param(1.0, "g/L", 100.0, id="1-g/L-is-100-mg/dL"),
        pytest.param(3800.0, "mg/L", 380.0, id="mg/L-x0.1"),
        pytest.param(1.0, "mg/L", 0.1, id="1-mg/L-is-0.1-mg/dL"),
        pytest.param(380.0, "mg/dL", 380.0, id="mg/dL-identity"),
        pytest.param(380.0, "mg/dl", 380.0, id="mg/dl-lowercase-identity"),
        pytest.param(380.0, " mg/dL ", 380.0, id="mg/dL-surrounding-whitespace"),
        pytest.param(0.0, "g/L", 0.0, id="zero-g/L"),
        pytest.param(0.38, "g/dL", 380.0, id="g/dL-x1000"),
        pytest.param(380.0, "furlongs", None, id="unknown-unit-None"),
        pytest.param(380.0, "", None, id="empty-unit-None"),
        pytest.param(380.0, "   ", None, id="blank-unit-None"),
        pytest.param(380.0, None, None, id="None-unit-None"),
        pytest.param(380.0, "mmol/L", None, id="molar-unit-not-guessed"),
    ],
)
def test_to_mg_dl(value, unit, expected):
    got = units.to_mg_dl(value, unit)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        pytest.param(154.0, "[lb_av]", 154.0 * LB, id="ucum-[lb_av]"),
        pytest.param(154.0, "lb", 154.0 * LB, id="human-lb"),
        pytest.param(1.0, "[lb_av]", 0.45359237, id="1-lb-exact-factor"),
        pytest.param(70.0, "kg", 70.0, id="kg-identity"),
        pytest.param(70000.0, "g", 70.0, id="g-to-kg"),
        pytest.param(3500.0, "g", 3.5, id="neonate-grams"),
        pytest.param(70.0, "stone", None, id="unknown-unit-None"),
        pytest.param(70.0, None, None, id="None-unit-None"),
        pytest.param(70.0, "", None, id="empty-unit-None"),
    ],
)
def test_to_kg(value, unit, expected):
    got = units.to_kg(value, unit)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, rel=1e-12)


def test_lb_factor_is_exact_si():
    assert units.LB_KG == 0.45359237


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        pytest.param(25.0, "10*3/uL", 25000.0, id="ucum-10*3/uL-x1000"),
        pytest.param(25.0, "10^3/uL", 25000.0, id="caret-10^3/uL-x1000"),
        pytest.param(25.0, "K/uL", 25000.0, id="K/uL-x1000"),
        pytest.param(25.0, "10*9/L", 25000.0, id="10*9/L-x1000"),
        pytest.param(25000.0, "/uL", 25000.0, id="per-uL-identity"),
        pytest.param(25.0, "bananas", None, id="unknown-unit-None"),
        pytest.param(25.0, None, None, id="None-unit-None"),
    ],
)
def test_to_per_ul(value, unit, expected):
    got = units.to_per_ul(value, unit)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("func", "value", "unit", "expected"),
    [
        pytest.param(units.to_g, 35.0, "g", 35.0, id="dose-g-identity"),
        pytest.param(units.to_g, 35000.0, "mg", 35.0, id="dose-mg-to-g"),
        pytest.param(units.to_g, 35.0, "mL", None, id="dose-mL-not-grams"),
        pytest.param(units.to_g, 35.0, None, None, id="dose-None-unit"),
        pytest.param(units.to_mg_per_kg, 400.0, "mg/kg", 400.0, id="mg/kg-identity"),
        pytest.param(units.to_mg_per_kg, 2.0, "g/kg", 2000.0, id="g/kg-to-mg/kg"),
        pytest.param(units.to_mg_per_kg, 2.0, "g", None, id="g-is-not-per-kg"),
        pytest.param(units.to_ml, 300.0, "mL", 300.0, id="mL-identity"),
        pytest.param(units.to_ml, 0.3, "L", 300.0, id="L-to-mL"),
        pytest.param(units.to_ml, 300.0, "furlongs", None, id="mL-unknown-unit"),
        pytest.param(units.to_ug_ml, 1.3, "ug/mL", 1.3, id="ug/mL-identity"),
        pytest.param(units.to_ug_ml, 1.3, "mg/L", 1.3, id="mg/L-equals-ug/mL"),
        pytest.param(units.to_ug_ml, 1.3, None, None, id="ug/mL-None-unit"),
        pytest.param(units.to_iu_ml, 0.1, "[IU]/mL", 0.1, id="IU/mL-identity"),
        pytest.param(units.to_iu_ml, 100.0, "[IU]/L", 0.1, id="IU/L-to-IU/mL"),
        pytest.param(units.to_iu_ml, 0.1, "furlongs", None, id="IU/mL-unknown-unit"),
    ],
)
def test_other_converters(func, value, unit, expected):
    got = func(value, unit)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    "func",
    [
        pytest.param(f, id=f.__name__)
        for f in (units.to_mg_dl, units.to_kg, units.to_per_ul, units.to_ug_ml,
                  units.to_iu_ml, units.to_g, units.to_mg_per_kg, units.to_ml)
    ],
)
@pytest.mark.parametrize(
    "unit",
    [
        pytest.param(None, id="None"),
        pytest.param("", id="empty"),
        pytest.param("furlongs", id="furlongs"),
        pytest.param(42, id="int-not-str"),
        pytest.param(["g/L"], id="list-not-str"),
        pytest.param({"code": "g/L"}, id="dict-not-str"),
    ],
)
def test_every_converter_refuses_unknown_or_non_string_units(func, unit):
    assert func(1.0, unit) is None


@pytest.mark.parametrize(
    ("unit", "days"),
    [
        pytest.param("d", 1.0, id="day"),
        pytest.param("wk", 7.0, id="week"),
        pytest.param("h", 1 / 24, id="hour"),
    ],
)
def test_period_days(unit, days):
    assert units.PERIOD_DAYS[unit] == pytest.approx(days)
