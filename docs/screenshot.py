"""Regenerate the screenshots in docs/ from the demo:

    python docs/screenshot.py

* ``docs/report.png`` — the report page of example 01 under aaaai-pi (the top of the page);
* ``docs/report-igg-vaccines.png`` — example 02's IgG timeline, its data table and the
  vaccine-response table;
* ``docs/task-page.png`` — the Task page after *Write Task* on example 07.

Runs ``ivig-check demo`` on a free port, opens the patients in headless Debian chromium
(Playwright with executable_path), saves the screenshots, and stops the demo.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smart_app.demo_fhir import free_port  # noqa: E402

REPORT = re.compile(r"/report\?ctx=[\w-]+$")


def open_patient(page, url: str, number: str, policy: str = "") -> None:
    page.goto(url)
    row = page.locator(".demo-list tbody tr", has_text=f"{number} ·").filter(has_text=policy).first
    row.get_by_role("link").click()
    page.wait_for_url(REPORT)


def main() -> int:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "smart_app.cli", "demo", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True, cwd=ROOT)
    written = []
    try:
        url = proc.stdout.readline().strip()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("IVIG_CHROMIUM", "/usr/bin/chromium"),
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1100, "height": 900})

            open_patient(page, url, "01", "AAAAI")
            written.append(ROOT / "docs" / "report.png")
            page.screenshot(path=str(written[-1]), full_page=False)

            open_patient(page, url, "02")
            written.append(ROOT / "docs" / "report-igg-vaccines.png")
            box_top = page.locator("#igg-history").bounding_box()
            box_end = page.locator("#vaccine-response table").first.bounding_box()
            page.screenshot(path=str(written[-1]), full_page=True,
                            clip={"x": 0, "y": box_top["y"] - 8, "width": 1100,
                                  "height": box_end["y"] + box_end["height"] - box_top["y"] + 16})

            open_patient(page, url, "07")
            page.get_by_role("button", name=re.compile("Write Task")).click()
            page.wait_for_url(REPORT)
            page.get_by_role("status").get_by_role("link").first.click()
            page.wait_for_url(re.compile(r"/task/"))
            written.append(ROOT / "docs" / "task-page.png")
            page.screenshot(path=str(written[-1]), full_page=True)
            browser.close()
        for path in written:
            print(path.relative_to(ROOT))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
