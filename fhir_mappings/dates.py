"""FHIR date, dateTime and instant strings -> ``datetime.date``.

Partial dates (``2019``, ``2019-05``) resolve to the first day of the period: the
engine only ever compares days, and an earlier day is the conservative reading for
"dated before the first dose" only when the period does not contain that dose, which the
engine checks separately (see ``engine.timeline``). Impossible dates (``2023-02-30``)
and anything that is not a FHIR date give ``None``; callers warn and treat the record as
undated.
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

_FHIR_DATE = re.compile(
    r"^([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?$"
)


def parse_date(value: object) -> date | None:
    if not isinstance(value, str):
        return None
    # Memoised for date-sized strings: a record repeats the same dates (a panel, an
    # encounter's results) and a resource's date may be read by more than one rule, so each
    # distinct string is parsed once. Longer strings (no real date is) are not kept.
    return _parse_cached(value) if len(value) <= 40 else _parse(value)


def _parse(value: str) -> date | None:
    if not value.isascii():
        return None
    value = value.strip()
    if len(value) == 10 and value[4] == "-" and value[7] == "-" and (
        value[:4].isdigit() and value[5:7].isdigit() and value[8:].isdigit()
    ):
        try:  # fast path for the common full date
            return date(int(value[0:4]), int(value[5:7]), int(value[8:10]))
        except ValueError:
            return None
    m = _FHIR_DATE.match(value)
    if not m:
        return None
    year, month, day = int(m[1]), int(m[2] or 1), int(m[3] or 1)
    try:
        return date(year, month, day)
    except ValueError:
        return None


_parse_cached = lru_cache(maxsize=16_384)(_parse)


def years_between(earlier: date, later: date) -> int:
    """Whole years from `earlier` to `later` (age on a given day)."""
    years = later.year - earlier.year
    if (later.month, later.day) < (earlier.month, earlier.day):
        years -= 1
    return years
