"""Regenerate docs/report.png: the report page of example 01 under aaaai-pi, from the demo.

    python docs/screenshot.py

Runs ``ivig-check demo`` on a free port, opens the patient in headless Debian chromium
(Playwright with executable_path), saves a full-page screenshot, and stops the demo.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smart_app.demo_fhir import free_port  # noqa: E402


def main() -> int:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "smart_app.cli", "demo", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True, cwd=ROOT)
    try:
        url = proc.stdout.readline().strip()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("IVIG_CHROMIUM", "/usr/bin/chromium"),
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(url)
            page.locator("ul.demo-list a", has_text="(aaaai-pi)").first.click()
            page.wait_for_url("**/report")
            out = ROOT / "docs" / "report.png"
            page.screenshot(path=str(out), full_page=False)
            browser.close()
        print(out)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
