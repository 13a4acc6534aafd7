"""What the clinician sees, in a real browser (Debian's chromium through Playwright), with
the app under gunicorn reading the real FHIR server (sekmet-fhir, an open server here):

* the IgG timeline (server-rendered SVG) and the titer table agree with the report JSON for
  examples 01 and 02: every point, its timing, its link, the thresholds, the first dose and
  the order date; every titer with its date and fold rise;
* axe-core (``axe-playwright-python``) finds no serious or critical accessibility violation
  on the launch page, a report, the Task page and an error page.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.support.app_server import run_app

BLOCKING = {"serious", "critical"}


@pytest.fixture(scope="module")
def app(sekmet_base):
    env = {"IVIG_OPEN_ISSUERS": sekmet_base, "IVIG_CLIENT_ID": "ivig-browser", "IVIG_AS_OF": "2025-06-30",
           "IVIG_SECRET_KEY": "browser-test-secret-0123456789", "IVIG_WORKERS": "1"}
    with run_app(env) as base:
        yield base


def open_report(page, app: str, fhir: str, patient: str, ruleset: str | None = None) -> dict:
    """Open the patient's report as a launch does; return the report JSON of that launch."""
    params = f"iss={fhir}&patient={patient}" + (f"&ruleset={ruleset}" if ruleset else "")
    page.goto(f"{app}/launch?{params}")
    page.wait_for_url(re.compile(r"/report\?ctx=[\w-]+$"))
    ctx = parse_qs(urlsplit(page.url).query)["ctx"][0]
    answer = page.context.request.get(f"{app}/api/report?ctx={ctx}")
    assert answer.ok
    return answer.json()


def axe_blocking(page) -> list[str]:
    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"] if v["impact"] in BLOCKING]


def _num(text: str) -> float:
    return float(re.sub(r"[^\d.]", "", text))


@pytest.mark.parametrize("patient, ruleset", [("ex01-patient", "aaaai-pi"), ("ex02-patient", None)])
def test_timeline_and_titer_table_agree_with_the_report_json(browser, app, sekmet_base, patient, ruleset):
    page = browser.new_page()
    report = open_report(page, app, sekmet_base, patient, ruleset)
    history = report["igg_history"]
    dated = [r for r in history["results"] if r["date"]]
    assert dated, "the example has IgG results"

    svg = page.locator("svg.igg-chart")
    expect(svg).to_be_visible()
    points = svg.locator("a.point")
    expect(points).to_have_count(len(dated))
    for i, r in enumerate(dated):
        point = points.nth(i)
        assert f"point-{r['timing']}" in point.get_attribute("class")
        assert point.get_attribute("href").startswith(f"/source/{r['reference']}?ctx=")
        label = point.get_attribute("aria-label")
        assert f"{r['value_mg_dl']:g} mg/dL" in label and r["date"] in label
        # Pre- and on-treatment differ in shape, not only colour.
        shape = "rect" if r["timing"] == "on-treatment" else "circle"
        expect(point.locator(shape)).to_have_count(1)
    expect(svg.locator("line.threshold")).to_have_count(len(history["thresholds"]))
    for t in history["thresholds"]:
        expect(svg.locator("text.threshold-label", has_text=f"{t['mg_dl']:g} mg/dL")).to_have_count(1)
    markers = svg.locator("text.marker-label")
    expect(markers.filter(has_text=f"Order date {history['order_date']}")).to_have_count(1)
    if history["first_dose_date"]:
        first = svg.locator(".marker-first_dose a")
        assert first.get_attribute("href").startswith(f"/source/{history['first_dose_reference']}?ctx=")
        expect(first).to_contain_text(f"First immune globulin dose {history['first_dose_date']}")
        # The first dose separates the pre-treatment points from the on-treatment ones.
        x_first = float(svg.locator(".marker-first_dose line").get_attribute("x1"))
        for i, r in enumerate(dated):
            box = points.nth(i).locator("circle, rect").first
            x = float(box.get_attribute("cx") or float(box.get_attribute("x")) + 6)
            assert (x < x_first) == (r["timing"] == "pre-treatment")
    else:
        expect(svg.locator(".marker-first_dose")).to_have_count(0)

    # The data table carries the same values, for screen readers and for reading exact numbers.
    rows = page.locator("table.igg-table tbody tr")
    expect(rows).to_have_count(len(history["results"]))
    for i, r in enumerate(history["results"]):
        cells = rows.nth(i)
        expect(cells.locator("th")).to_have_text(r["date"] or "Undated")
        assert _num(cells.locator("td").first.inner_text()) == r["value_mg_dl"]

    # The titer table: one row per serotype or antigen, with the values, dates and fold rise.
    groups = [g for g in report["vaccine_responses"] if g["rows"]]
    assert groups, "the example has titers paired with a vaccination"
    tables = page.locator("table.vaccine-table")
    expect(tables).to_have_count(len(report["vaccine_responses"]))
    for g_index, group in enumerate(report["vaccine_responses"]):
        table = tables.nth(g_index)
        if group["vaccination"]:
            expect(table.locator("caption")).to_contain_text(group["vaccination"]["date"])
        body = table.locator("tbody tr")
        expect(body).to_have_count(len(group["rows"]))
        for i, row in enumerate(group["rows"]):
            cells = body.nth(i).locator("td")
            expect(body.nth(i).locator("th")).to_have_text(row["label"])
            for col, key in ((0, "pre"), (1, "post")):
                if row[key]:
                    expect(cells.nth(col)).to_contain_text(f"{row[key]['value']:g}")
                    expect(cells.nth(col)).to_contain_text(row[key]["date"])
            if row["fold_rise"] is not None:
                expect(cells.nth(2)).to_have_text(f"{row['fold_rise']:g}×")
            if row["protective"] is not None:
                expect(cells.nth(3)).to_contain_text("Yes" if row["protective"] else "No")
        if group["vaccination"] and group["post_count"]:
            expect(table.locator("tfoot")).to_contain_text(
                f"Protective after vaccination: {group['protective_count']} of {group['post_count']}")
    page.close()


def test_no_serious_accessibility_violation_on_the_four_pages(browser, app, sekmet_base):
    page = browser.new_page()
    found = {}
    page.goto(f"{app}/launch.html")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    found["launch page"] = axe_blocking(page)

    open_report(page, app, sekmet_base, "ex01-patient", "aaaai-pi")
    expect(page.locator("svg.igg-chart")).to_be_visible()
    found["report"] = axe_blocking(page)

    page.get_by_role("button", name=re.compile("Write Task")).click()
    page.wait_for_url(re.compile(r"/report\?ctx=[\w-]+$"))
    status = page.get_by_role("status")
    expect(status).to_contain_text(re.compile(r"Task (created|updated|already up to date)"))
    status.get_by_role("link").first.click()
    page.wait_for_url(re.compile(r"/task/[\w\-.]+\?ctx=[\w-]+$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("documentation items missing")
    expect(page.get_by_role("link", name="Show the Task as FHIR JSON")).to_be_visible()
    found["Task page"] = axe_blocking(page)

    page.goto(f"{app}/launch?iss=https://not-allowed.example.org/fhir")
    expect(page.get_by_role("alert")).to_be_visible()
    found["error page"] = axe_blocking(page)
    page.close()
    assert not any(found.values()), found
