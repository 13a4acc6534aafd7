"""Unit normalisation for the quantities the criteria use.

Each converter takes a value and the unit as the resource gave it (UCUM ``code`` first,
else the human ``unit`` string) and returns the value in the canonical unit, or ``None``
when the unit is not recognised. ``None`` is never guessed into a number: the caller
drops the result with a warning (CONTRACT §4: "a result with no recognisable unit is not
used").

Factors are exact SI relations (1 g/L = 100 mg/dL; 1 lb = 0.45359237 kg), checked
against the UCUM definitions listed in ``shared/reference`` (ucum_units).
"""

from __future__ import annotations

LB_KG = 0.45359237


def _key(unit: str | None) -> str | None:
    if not isinstance(unit, str):
        return None
    key = unit.strip()
    return key or None


# mass concentration -> mg/dL
_TO_MG_DL = {
    "mg/dL": 1.0,
    "mg/dl": 1.0,
    "g/L": 100.0,
    "g/l": 100.0,
    "mg/L": 0.1,
    "mg/l": 0.1,
    "g/dL": 1000.0,
    "g/dl": 1000.0,
    "mg/mL": 100.0,
    "mg/ml": 100.0,
}

# body weight -> kg
_TO_KG = {
    "kg": 1.0,
    "Kg": 1.0,
    "KG": 1.0,
    "g": 0.001,
    "[lb_av]": LB_KG,
    "lb": LB_KG,
    "lbs": LB_KG,
    "[oz_av]": LB_KG / 16,
}

# platelet count -> per microlitre
_TO_PER_UL = {
    "10*3/uL": 1000.0,
    "10^3/uL": 1000.0,
    "K/uL": 1000.0,
    "x10E3/uL": 1000.0,
    "10*9/L": 1000.0,
    "10^9/L": 1000.0,
    "/uL": 1.0,
    "/mm3": 1.0,
    "{cells}/uL": 1.0,
    "cells/uL": 1.0,
    "10*6/L": 1.0,
    "10^6/L": 1.0,
}

# a share of cells (CD19 B cells / 100 lymphocytes) -> %
_TO_PERCENT = {"%": 1.0, "percent": 1.0, "/100{cells}": 1.0, "{%}": 1.0}

# body mass at birth -> grams
_TO_GRAMS = {"g": 1.0, "kg": 1000.0, "Kg": 1000.0, "[lb_av]": LB_KG * 1000, "lb": LB_KG * 1000,
             "[oz_av]": LB_KG * 1000 / 16, "oz": LB_KG * 1000 / 16}

# gestational age -> weeks
_TO_WEEKS = {"wk": 1.0, "week": 1.0, "weeks": 1.0, "d": 1 / 7, "day": 1 / 7, "days": 1 / 7}

# urine protein / albumin: a 24-hour excretion (mg/24h), a ratio to creatinine (mg/mg) or a
# concentration (mg/dL); each reading keeps its own dimension (the limits differ).
_URINE = {
    "mg/(24.h)": (1.0, "mg/24h"), "mg/24h": (1.0, "mg/24h"), "mg/24 h": (1.0, "mg/24h"),
    "mg/d": (1.0, "mg/24h"), "g/(24.h)": (1000.0, "mg/24h"), "g/24h": (1000.0, "mg/24h"),
    "g/d": (1000.0, "mg/24h"),
    "mg/mg": (1.0, "mg/mg"), "mg/mg{creat}": (1.0, "mg/mg"), "g/g": (1.0, "mg/mg"),
    "g/g{creat}": (1.0, "mg/mg"), "mg/g": (0.001, "mg/mg"), "mg/g{creat}": (0.001, "mg/mg"),
    "mg/mmol": (0.00884, "mg/mg"), "mg/mmol{creat}": (0.00884, "mg/mg"),
    "mg/dL": (1.0, "mg/dL"), "mg/dl": (1.0, "mg/dL"), "mg/L": (0.1, "mg/dL"), "g/L": (100.0, "mg/dL"),
}

# specific antibody (pneumococcal IgG) -> ug/mL; tetanus/diphtheria -> IU/mL
_TO_UG_ML = {"ug/mL": 1.0, "mcg/mL": 1.0, "µg/mL": 1.0, "mg/L": 1.0, "ug/ml": 1.0}
_TO_IU_ML = {"[IU]/mL": 1.0, "IU/mL": 1.0, "[iU]/mL": 1.0, "U/mL": 1.0, "[IU]/L": 0.001}

# dose -> grams
_TO_G = {"g": 1.0, "gm": 1.0, "gram": 1.0, "grams": 1.0, "mg": 0.001, "kg": 1000.0}
# per-kg dose -> mg/kg
_TO_MG_PER_KG = {"mg/kg": 1.0, "g/kg": 1000.0}
# volume -> mL
_TO_ML = {"mL": 1.0, "ml": 1.0, "L": 1000.0, "l": 1000.0}

# time units of Timing.repeat.periodUnit (UCUM subset FHIR allows) -> days
PERIOD_DAYS = {"d": 1.0, "wk": 7.0, "mo": 30.4375, "a": 365.25, "h": 1 / 24, "min": 1 / 1440}


def _convert(table: dict[str, float], value: float, unit: str | None) -> float | None:
    key = _key(unit)
    if key is None or key not in table:
        return None
    return value * table[key]


def to_mg_dl(value: float, unit: str | None) -> float | None:
    return _convert(_TO_MG_DL, value, unit)


def to_kg(value: float, unit: str | None) -> float | None:
    return _convert(_TO_KG, value, unit)


def to_per_ul(value: float, unit: str | None) -> float | None:
    return _convert(_TO_PER_UL, value, unit)


def to_ug_ml(value: float, unit: str | None) -> float | None:
    return _convert(_TO_UG_ML, value, unit)


def to_iu_ml(value: float, unit: str | None) -> float | None:
    return _convert(_TO_IU_ML, value, unit)


def to_percent(value: float, unit: str | None) -> float | None:
    return _convert(_TO_PERCENT, value, unit)


def to_grams(value: float, unit: str | None) -> float | None:
    return _convert(_TO_GRAMS, value, unit)


def to_weeks(value: float, unit: str | None) -> float | None:
    return _convert(_TO_WEEKS, value, unit)


def to_urine(value: float, unit: str | None) -> tuple[float, str] | None:
    """Urine protein/albumin as (value, canonical unit): mg/24h, mg/mg (ratio to creatinine;
    1 mg/mmol = 0.00884 mg/mg, creatinine 113.12 g/mol) or mg/dL (a spot concentration)."""
    key = _key(unit)
    if key is None or key not in _URINE:
        return None
    factor, canonical = _URINE[key]
    return value * factor, canonical


def to_g(value: float, unit: str | None) -> float | None:
    return _convert(_TO_G, value, unit)


def to_mg_per_kg(value: float, unit: str | None) -> float | None:
    return _convert(_TO_MG_PER_KG, value, unit)


def to_ml(value: float, unit: str | None) -> float | None:
    return _convert(_TO_ML, value, unit)
