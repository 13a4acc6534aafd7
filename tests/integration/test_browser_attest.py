"""Attestation and the letter in a real browser: Debian's chromium driven by Playwright, the
app under gunicorn, the SMART stub in front of the real FHIR server.

The attestation form is operated with the keyboard alone (Tab to the answer, Space to
choose it, type the justification, Enter on the button), and it and the letter pass the
axe-core check (axe-playwright-python); the letter renders and its PDF downloads.
"""

from __future__ import annotations

import re

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.integration.test_attestation_flow import own_patient
from tests.support.app_server import run_app

WHY = "Two relapses in 2024 on interferon beta-1a; glatiramer stopped for lipoatrophy."


def axe_violations(page, context: str | None = None) -> list[str]:
    results = Axe().run(page, context=context)
    return [f"{v['id']}: {v['help']}: " + "; ".join(" ".join(n["target"]) for n in v["nodes"][:20])
            for v in results.response["violations"]]


def tab_to(page, element_id: str, limit: int = 200) -> None:
    """Press Tab until the element has the focus (keyboard only)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} never received the focus by Tab")


def test_attestation_form_by_keyboard_passes_axe_and_the_letter_downloads(browser, smart_stub, sekmet_base):
    pid = own_patient(sekmet_base, "09-ms-off-label-missing-failure.json")
    env = {"IVIG_ALLOWED_ISSUERS": smart_stub.base_url, "IVIG_CLIENT_ID": "ivig-browser",
           "IVIG_AS_OF": "2025-06-30", "IVIG_SECRET_KEY": "browser-test-secret-0123456789",
           "IVIG_WORKERS": "2", "IVIG_LOG_LEVEL": "info"}
    with run_app(env) as app:
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        page.goto(f"{app}/launch?iss={smart_stub.base_url}&launch={smart_stub.new_launch(pid)}")
        page.wait_for_url(re.compile(r"/report\?ctx=[\w-]+$"))
        form = page.locator("form.attest-form")
        expect(form).to_be_visible()
        assert axe_violations(page) == []

        tab_to(page, "answer-ms-other-therapy-failed-yes")
        page.keyboard.press("Space")
        expect(page.locator("#answer-ms-other-therapy-failed-yes")).to_be_checked()
        tab_to(page, "justification-ms-other-therapy-failed")
        page.keyboard.type(WHY)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent.trim()") == "Record attestation"
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/report\?ctx=[\w-]+$"))
        expect(page.locator("#attest-result")).to_contain_text("Attestation recorded")
        expect(page.get_by_role("heading", level=1)).to_contain_text("Criteria met")
        expect(page.get_by_text("rests on clinician attestation").first).to_be_visible()
        expect(page.locator(".badge.origin-attested").first).to_contain_text("Clinician attestation")
        expect(page.locator("#attest-ms-other-therapy-failed-current")).to_contain_text("Attested: Yes")
        assert axe_violations(page) == []

        # The letter: it renders, passes axe, and its PDF is produced.
        page.get_by_role("link", name="Open the draft letter").click()
        page.wait_for_url(re.compile(r"/letter\?ctx=[\w-]+$"))
        expect(page.get_by_role("heading", level=1)).to_contain_text("Letter of medical necessity")
        expect(page.locator("article.letter")).to_contain_text(WHY)
        expect(page.locator("article.letter")).to_contain_text("Clinician attestation:")
        assert axe_violations(page) == []
        with page.expect_download() as download:
            page.get_by_role("link", name="Download the PDF").click()
        data = open(download.value.path(), "rb").read()
        assert data.startswith(b"%PDF-") and len(data) > 2000
        assert download.value.suggested_filename == "letter-of-medical-necessity-draft.pdf"
        context.close()
    log = run_app.last_log
    assert pid not in log and "Bearer" not in log and WHY not in log
    assert "POST /attest 303" in log and "GET /letter.pdf 200" in log
