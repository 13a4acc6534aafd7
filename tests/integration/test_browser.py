"""End to end in a real browser: Debian's chromium driven by Playwright, the app under
gunicorn (``ivig-check serve``), the SMART stub in front of the real FHIR server.

EHR launch -> authorize -> callback -> report -> "Write Task" (by keyboard) -> the Task page
(and its JSON) as the server holds it -> relaunch -> the same Task, already up to date.
"""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from smart_app.task import DEFAULT_TASK_IDENTIFIER_SYSTEM
from tests.support.app_server import run_app



def test_ehr_launch_report_task_relaunch_in_chromium(browser, smart_stub, sekmet_base):
    env = {"IVIG_ALLOWED_ISSUERS": smart_stub.base_url, "IVIG_CLIENT_ID": "ivig-browser",
           "IVIG_AS_OF": "2025-06-30", "IVIG_SECRET_KEY": "browser-test-secret-0123456789",
           "IVIG_WORKERS": "2", "IVIG_LOG_LEVEL": "info"}
    with run_app(env) as app:
        page = browser.new_page()
        page.goto(f"{app}/launch?iss={smart_stub.base_url}&launch={smart_stub.new_launch('ex14-patient')}")
        page.wait_for_url(re.compile(r"/report\?ctx=[\w-]+$"))
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        expect(page.get_by_text("Missing documentation").first).to_be_visible()
        # The EHR asked for a patient banner (need_patient_banner): the name shows.
        expect(page.get_by_text("Patient-", exact=False).first).to_be_visible()
        # Evidence links open the source resource.
        assert page.locator("a[href^='/source/']").count() > 0

        button = page.get_by_role("button", name=re.compile("Task"))
        button.focus()
        page.keyboard.press("Enter")  # keyboard works as well as a click
        page.wait_for_url(re.compile(r"/report\?ctx=[\w-]+$"))
        status = page.get_by_role("status")
        expect(status).to_contain_text("Task created")
        task_link = status.get_by_role("link").first
        task_ref = task_link.inner_text()
        task_link.click()
        # The Task as the server holds it, readable; its raw JSON one link further.
        expect(page.get_by_text("Open: documentation requested")).to_be_visible()
        page.get_by_role("link", name="Show the Task as FHIR JSON").click()
        expect(page.locator("pre")).to_contain_text('"resourceType": "Task"')
        expect(page.locator("pre")).to_contain_text('"status": "requested"')
        page.close()

        # Relaunch from the "EHR": a new browser context (new cookies), the same Task.
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{app}/launch?iss={smart_stub.base_url}&launch={smart_stub.new_launch('ex14-patient')}")
        page.wait_for_url(re.compile(r"/report\?ctx=[\w-]+$"))
        page.get_by_role("button", name=re.compile("Task")).click()
        page.wait_for_url(re.compile(r"/report\?ctx=[\w-]+$"))
        expect(page.get_by_role("status")).to_contain_text(task_ref.split("/")[-1])
        # The record did not change: the same Task, and nothing written (the truth, not "updated").
        expect(page.get_by_role("status")).to_contain_text("Task already up to date")
        expect(page.get_by_role("status")).to_contain_text("(version 1)")
        # No token or code in the final URL.
        assert "code=" not in page.url and "state=" not in page.url
        context.close()

    tasks = requests.get(f"{sekmet_base}/Task", params={"patient": "ex14-patient"},
                         headers={"Accept": "application/fhir+json"}, timeout=10).json()
    ours = [e for e in tasks.get("entry") or []
            if e["resource"].get("identifier", [{}])[0].get("system") == DEFAULT_TASK_IDENTIFIER_SYSTEM]
    assert len(ours) == 1
    # Nothing sensitive reached the app's log.
    log = run_app.last_log
    assert "code=" not in log and "Bearer" not in log and "ex14-patient" not in log
    assert "GET /report 200" in log
