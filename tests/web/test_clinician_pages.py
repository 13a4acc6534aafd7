"""What the clinician sees (issue 12): Task messages that say what happened, the readable
Task page, the report's at-a-glance sections, the top-level launch.html and the favicon."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from web_helpers import complete_launch, csrf_of, make_app, nothing_missing
from fake_ehr import ISS, FakeEhr

ROOT = Path(__file__).resolve().parents[2]
WEIGHT = {"resourceType": "Observation", "id": "new-weight", "status": "final",
          "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
          "effectiveDateTime": "2025-06-20",
          "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}


def _write(client) -> str:
    """Press the report's button (an HTML form post); return the report page shown next."""
    token = csrf_of(client.get("/report").data)
    resp = client.post("/task", data={"csrf_token": token})
    assert resp.status_code == 303
    return client.get("/report").data.decode()


def _notice(page: str) -> str:
    m = re.search(r'<div class="notice notice-success" role="status">(.*?)</div>', page, re.S)
    assert m, "no confirmation on the page"
    return " ".join(re.sub(r"<[^>]+>", " ", m.group(1)).split())


def test_task_messages_say_created_then_up_to_date_then_updated_with_the_version(client, launched):
    first = _notice(_write(client))
    assert first.startswith("✓ Task created: Task/1 lists 3 missing items")
    second = _notice(_write(client))
    # Nothing changed in the record: the server still holds version 1, and the page says so.
    assert second == "✓ Task already up to date: Task/1 already lists what is missing (version 1); nothing was written."
    assert launched.tasks["1"]["meta"]["versionId"] == "1"
    assert not [c for c in launched.fhir_calls if c[0] == "PUT"]
    launched.resources.append({**WEIGHT, "subject": {"reference": f"Patient/{launched.patient_id}"}})
    third = _notice(_write(client))
    assert third.startswith("✓ Task updated (version 2): Task/1 lists 2 missing items")
    assert launched.tasks["1"]["meta"]["versionId"] == "2"


def test_json_answer_names_the_outcome(client, launched):
    def post():
        token = csrf_of(client.get("/report").data)
        return client.post("/task", data={"csrf_token": token}, headers={"Accept": "application/json"}).get_json()

    assert [post()["outcome"], post()["outcome"]] == ["created", "unchanged"]


def test_no_task_needed_says_so(client, launched, monkeypatch):
    nothing_missing(monkeypatch)
    notice = _notice(_write(client))
    assert notice == ("✓ No Task written: nothing is missing, and no earlier Task exists for this patient, "
                      "indication and policy.")
    assert not launched.tasks


def test_the_task_page_is_readable_and_links_back_and_to_the_json(client, launched):
    page = _write(client)
    href = re.search(r'<div class="notice notice-success".*?<a href="([^"]+)"', page, re.S).group(1)
    assert urlsplit(href).path == "/task/1" and parse_qs(urlsplit(href).query)["ctx"] == [client.ctx]
    task_page = client.get(href.replace("&amp;", "&")).data.decode()
    assert "<pre" not in task_page  # no raw JSON on the page itself
    assert "Open: documentation requested" in task_page and "(version 1)" in task_page
    for item in client.get("/api/report").get_json()["missing_documentation"]:
        assert item["display"] in task_page
    assert f'href="/report?ctx={client.ctx}"' in task_page
    assert f'href="/source/Task/1?ctx={client.ctx}">Show the Task as FHIR JSON</a>' in task_page
    raw = client.get(f"/source/Task/1?ctx={client.ctx}").data.decode()
    assert "&#34;resourceType&#34;: &#34;Task&#34;" in raw or '"resourceType": "Task"' in raw


def test_the_task_page_shows_no_other_patients_task(client, launched):
    launched.tasks["99"] = {"resourceType": "Task", "id": "99", "status": "requested", "intent": "order",
                            "for": {"reference": "Patient/someone-else"}, "meta": {"versionId": "1"}}
    resp = client.get(f"/task/99?ctx={client.ctx}")
    assert resp.status_code == 404
    assert b"not about the patient of this launch" in resp.data
    assert client.get(f"/task/..?ctx={client.ctx}").status_code == 404


def test_report_page_draws_the_igg_timeline_without_inline_style_or_script(client, launched):
    page = client.get("/report").data.decode()
    svg = re.search(r'<svg class="igg-chart".*?</svg>', page, re.S).group(0)
    points = re.findall(r'<a class="point point-([\w-]+)" href="([^"]+)" aria-label="([^"]+)"', svg)
    report = client.get("/api/report").get_json()
    results = report["igg_history"]["results"]
    assert [(t, h.replace("&amp;", "&")) for t, h, _ in points] == [
        (r["timing"], f"/source/{r['reference']}?ctx={client.ctx}") for r in results]
    assert "Order date 2025-06-20" in svg  # the order date is marked
    assert " style=" not in page and "<script" not in page
    assert 'class="igg-table"' in page and 'class="vaccine-table"' in page


def test_criteria_evidence_and_needed_items_are_said_once(tmp_path, rsps):
    app = make_app(tmp_path)
    client = app.test_client()
    ehr = FakeEhr(rsps, example="07-cidp-missing-diagnostics.json")
    complete_launch(client, ehr)
    page = client.get("/report").data.decode()
    csf = re.search(r'<li class="criterion row-missing" id="criterion-bcbsmt-cidp-csf">(.*?)</li>\s*<li', page, re.S).group(1)
    assert csf.count('href="#missing-csf-analysis"') == 1
    # The dose criterion cites this indication's range, or says the policy gives none.
    dose = re.search(r'id="criterion-dose-within-range">(.*?)</div>\s*</li>', page, re.S).group(1)
    assert "no dose range is given for Chronic inflammatory demyelinating polyneuropathy (CIDP)" in dose
    assert "400 to 600" not in dose


def test_launch_html_is_the_top_level_file(app, client):
    assert not (ROOT / "smart_app" / "templates" / "launch.html").exists()
    with app.app_context():
        assert Path(app.jinja_env.get_template("launch.html").filename) == ROOT / "launch.html"
    page = client.get("/launch.html").data.decode()
    assert "Standalone launch" in page and 'action="/launch"' in page


def test_launch_html_hands_an_ehr_launch_to_the_app(client):
    resp = client.get("/launch.html", query_string={"iss": ISS, "launch": "xyz"})
    assert resp.status_code == 302
    target = urlsplit(resp.headers["Location"])
    assert target.path == "/launch" and parse_qs(target.query) == {"iss": [ISS], "launch": ["xyz"]}
    # iss alone fills in the standalone form instead
    page = client.get("/launch.html", query_string={"iss": ISS}).data.decode()
    assert f'value="{ISS}"' in page


def test_favicon(client):
    page = client.get("/launch.html").data.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    resp = client.get("/favicon.ico")
    assert resp.status_code == 301 and resp.headers["Location"].endswith("/static/favicon.svg")
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"


def test_determination_codesystem_is_served(client):
    cs = client.get("/fhir/CodeSystem/ivig-determination").get_json()
    assert cs["url"].endswith("/fhir/CodeSystem/ivig-determination")
    assert {c["code"] for c in cs["concept"]} == {"criteria-met", "documentation-missing", "criteria-not-met",
                                                  "not-covered", "no-indication"}
