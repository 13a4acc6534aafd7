"""FHIR date parsing (fhir_mappings.dates)."""

from __future__ import annotations

from datetime import date

import pytest

from fhir_mappings.dates import parse_date, years_between


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("2019-05-02", date(2019, 5, 2), id="date"),
        pytest.param("2019-05-02T10:30:00Z", date(2019, 5, 2), id="dateTime-Z"),
        pytest.param("2019-05-02T10:30:00+02:00", date(2019, 5, 2), id="dateTime-offset"),
        pytest.param("2019-05-02T23:59:59-05:00", date(2019, 5, 2), id="dateTime-negative-offset"),
        pytest.param("2019-05-02T10:30:00.123Z", date(2019, 5, 2), id="instant-fraction"),
        pytest.param("2019-05-02T10:30:00.123456+00:00", date(2019, 5, 2), id="instant-micro"),
        pytest.param("2019-05", date(2019, 5, 1), id="partial-year-month"),
        pytest.param("2019", date(2019, 1, 1), id="partial-year"),
        pytest.param(" 2019-05-02 ", date(2019, 5, 2), id="surrounding-whitespace"),
        pytest.param("2024-02-29", date(2024, 2, 29), id="leap-day"),
        pytest.param("0001-01-01", date(1, 1, 1), id="earliest-representable"),
        pytest.param("9999-12-31", date(9999, 12, 31), id="latest-representable"),
    ],
)
def test_parse_valid(raw, expected):
    assert parse_date(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("2023-02-30", id="impossible-feb-30"),
        pytest.param("2023-02-29", id="non-leap-feb-29"),
        pytest.param("2019-13-01", id="month-13"),
        pytest.param("2019-00-10", id="month-00"),
        pytest.param("2019-04-31", id="april-31"),
        pytest.param("2019-05-00", id="day-00"),
        pytest.param("2019-13", id="partial-month-13"),
        pytest.param("0000", id="year-zero"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("yesterday", id="word"),
        pytest.param("05/02/2019", id="us-format"),
        pytest.param("2019/05/02", id="slashes"),
        pytest.param("19-05-02", id="two-digit-year"),
        pytest.param("2019-5-2", id="unpadded"),
        pytest.param("20190502", id="basic-iso"),
        pytest.param("2019-05-02 10:30", id="space-separator"),
        pytest.param("2019-05-02Tgarbage", id="garbage-time"),
        pytest.param("\x00", id="nul"),
        pytest.param("２０１９-05-02", id="fullwidth-digits"),
        pytest.param("+019-05-02", id="signed-year"),
        pytest.param(" 201-05-02", id="space-padded-three-digit-year"),
        pytest.param("20_9-05-02", id="underscore-in-year"),
    ],
)
def test_parse_rejects(raw):
    assert parse_date(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(None, id="None"),
        pytest.param(20190502, id="int"),
        pytest.param(2019.5, id="float"),
        pytest.param(["2019-05-02"], id="list"),
        pytest.param({"start": "2019-05-02"}, id="dict-period"),
        pytest.param(date(2019, 5, 2), id="date-object"),
        pytest.param(True, id="bool"),
    ],
)
def test_parse_non_string(raw):
    assert parse_date(raw) is None


@pytest.mark.parametrize(
    ("earlier", "later", "expected"),
    [
        pytest.param(date(1984, 6, 30), date(2025, 6, 30), 41, id="birthday-today"),
        pytest.param(date(1984, 7, 1), date(2025, 6, 30), 40, id="day-before-birthday"),
        pytest.param(date(1984, 6, 29), date(2025, 6, 30), 41, id="day-after-birthday"),
        pytest.param(date(2025, 6, 30), date(2025, 6, 30), 0, id="same-day"),
        pytest.param(date(2024, 7, 1), date(2025, 6, 30), 0, id="one-day-short-of-a-year"),
        pytest.param(date(2000, 2, 29), date(2025, 2, 28), 24, id="leapling-feb-28"),
        pytest.param(date(2000, 2, 29), date(2025, 3, 1), 25, id="leapling-mar-1"),
        pytest.param(date(2000, 2, 29), date(2024, 2, 29), 24, id="leapling-leap-year"),
        pytest.param(date(2000, 12, 31), date(2001, 1, 1), 0, id="new-year"),
        pytest.param(date(2026, 1, 1), date(2025, 6, 30), -1, id="later-before-earlier"),
    ],
)
def test_years_between(earlier, later, expected):
    assert years_between(earlier, later) == expected
