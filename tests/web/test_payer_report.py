"""The report page: which payer and policy were chosen and why, and switching policy."""

from __future__ import annotations

import re

import pytest
from fake_ehr import FakeEhr
from web_helpers import complete_launch, csrf_of


def _launch(app, client, rsps, *, drop_coverage=False, payor=None, **params):
    app.extensions["ivig"].client_options = {"backoff": 0}
    ehr = FakeEhr(rsps)
    if drop_coverage:
        ehr.resources = [r for r in ehr.resources if r["resourceType"] not in ("Coverage", "Organization")]
    if payor is not None:
        for r in ehr.resources:
            if r["resourceType"] == "Coverage":
                r["payor"] = [payor]
    assert complete_launch(client, ehr, **params).status_code == 302
    return ehr


def test_report_names_the_payer_and_the_policy_it_chose(app, client, rsps):
    ehr = _launch(app, client, rsps)
    report = client.get("/api/report").get_json()
    assert report["ruleset"]["id"] == "bcbsmt-ig-2013"
    assert report["payer"]["chosen_by"] == "coverage"
    assert report["payer"]["coverage"] == "Coverage/ex01-coverage"
    assert report["payer"]["payor"]["display"] == "Blue Cross and Blue Shield of Montana"
    page = client.get("/report").data.decode()
    assert "Chosen from the patient&#39;s Coverage" in page or "Chosen from the patient's Coverage" in page
    assert "Blue Cross and Blue Shield of Montana" in page
    assert f'href="/source/Coverage/ex01-coverage?ctx={client.ctx}"' in page
    assert "Default policy:" not in page
    # The Coverage and its payor came in one search (_include), not one read each.
    assert ("GET", "Coverage") in ehr.fhir_calls and ("GET", "Organization/ex01-payer") not in ehr.fhir_calls


def test_unmapped_payer_gets_the_default_and_a_visible_warning(app, client, rsps):
    _launch(app, client, rsps, payor={"display": "Acme Health Plan"})
    report = client.get("/api/report").get_json()
    assert (report["payer"]["chosen_by"], report["ruleset"]["id"]) == ("default", "bcbsmt-ig-2013")
    page = client.get("/report").data.decode()
    assert "Default policy:" in page and 'role="note"' in page
    assert "Acme Health Plan" in page and "is not in the payer map" in page


def test_no_coverage_in_the_chart_is_said_too(app, client, rsps):
    _launch(app, client, rsps, drop_coverage=True)
    report = client.get("/api/report").get_json()
    assert report["payer"]["chosen_by"] == "default"
    assert "the record holds no Coverage" in report["payer"]["detail"]


def test_the_clinician_switches_policy_on_the_report_and_back(app, client, rsps):
    ehr = _launch(app, client, rsps)
    page = client.get("/report").data.decode()
    form = re.search(r'<form class="ruleset-switch" method="get" action="/report">(.*?)</form>', page, re.S)
    assert form, "the report has a GET form to switch policy"
    assert f'name="ctx" value="{client.ctx}"' in form.group(1)  # ... for this launch
    options = re.findall(r'<option value="([^"]*)"', form.group(1))
    assert options == ["", "aaaai-pi", "bcbsmt-ig-2013"]
    resp = client.get("/report", query_string={"ruleset": "aaaai-pi"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith(f"/report?ctx={client.ctx}")
    report = client.get("/api/report").get_json()
    assert report["ruleset"]["id"] == "aaaai-pi"
    assert report["patient"]["reference"] == f"Patient/{ehr.patient_id}"  # the session kept the patient
    assert (report["payer"]["chosen_by"], report["payer"]["coverage_ruleset"]) == ("requested", "bcbsmt-ig-2013")
    assert "secondary-causes-excluded" in {m["code"] for m in report["missing_documentation"]}
    page = client.get("/report").data.decode()
    assert '<option value="aaaai-pi" selected>' in page and "Chosen by the user" in page
    # The Task is written under the policy shown.
    task = client.post("/task", data={"csrf_token": csrf_of(page.encode())},
                       headers={"Accept": "application/json"}).get_json()["task"]
    assert "(aaaai-pi)" in task["description"]
    # Back to the payer's policy.
    assert client.get("/report", query_string={"ruleset": ""}).status_code == 303
    report = client.get("/api/report").get_json()
    assert (report["ruleset"]["id"], report["payer"]["chosen_by"]) == ("bcbsmt-ig-2013", "coverage")


@pytest.mark.parametrize("value", ["no-such-ruleset", "../etc"])
def test_an_unknown_ruleset_is_refused_and_nothing_changes(app, client, rsps, value):
    _launch(app, client, rsps)
    assert client.get("/report", query_string={"ruleset": value}).status_code == 400
    assert client.get("/api/report").get_json()["ruleset"]["id"] == "bcbsmt-ig-2013"


def test_a_launch_with_ruleset_still_overrides(app, client, rsps):
    _launch(app, client, rsps, ruleset="aaaai-pi")
    report = client.get("/api/report").get_json()
    assert (report["ruleset"]["id"], report["payer"]["chosen_by"]) == ("aaaai-pi", "requested")
