"""``ivig-check demo`` as a newcomer runs it: a subprocess, driven in headless chromium
through launch.html -> report -> Task -> the Task on the FHIR server, then Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from tests.support.fhir_server import free_port

CHROMIUM = os.environ.get("IVIG_CHROMIUM", "/usr/bin/chromium")


def _start_demo(port: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "smart_app.cli", "demo", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    url = proc.stdout.readline().strip()  # the one line on stdout: the launch.html URL
    if not url:
        proc.kill()
        raise AssertionError(f"demo printed no URL; stderr:\n{proc.stderr.read()}")
    return proc, url


def _fhir_port(stderr_text: str) -> int:
    return int(re.search(r"FHIR server \(sekmet-fhir, in memory\) at http://127\.0\.0\.1:(\d+)/fhir",
                         stderr_text).group(1))


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_walkthrough_in_chromium_then_ctrl_c_stops_everything():
    port = free_port()
    proc, url = _start_demo(port)
    try:
        assert url == f"http://127.0.0.1:{port}/launch.html"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_page()
            page.goto(url)
            links = page.locator("table.demo-list tbody th a")
            assert links.count() >= 17
            expect(page.get_by_role("heading", name=re.compile(r"Demo patients \(17\)"))).to_be_visible()
            # An example with documentation missing (07: CIDP without the diagnostics).
            page.get_by_role("link", name=re.compile(r"^07 ")).first.click()
            page.wait_for_url(re.compile(r"/report\?ctx=[\w-]+$"))
            expect(page.get_by_role("heading", level=1)).to_contain_text(re.compile("missing", re.I))
            page.get_by_role("button", name=re.compile("Task")).click()
            page.wait_for_url(re.compile(r"/report\?ctx=[\w-]+$"))
            status = page.get_by_role("status")
            expect(status).to_contain_text("Task created")
            status.get_by_role("link").first.click()
            # The Task page, then its JSON as the FHIR server holds it, fetched live and shown
            # with its server URL.
            expect(page.get_by_role("heading", level=1)).to_have_text("IVIG coverage (bcbsmt-ig-2013): 2 documentation items missing")
            page.get_by_role("link", name="Show the Task as FHIR JSON").click()
            expect(page.locator("pre")).to_contain_text('"resourceType": "Task"')
            server_url = page.locator("code.url").first.inner_text()
            assert re.match(r"http://127\.0\.0\.1:\d+/fhir/Task/[\w\-.]+$", server_url)
            # The other entry point: the EHR's order-sign hook, answered by the CDS service.
            page.goto(url)
            page.get_by_role("button", name=re.compile(r"^order-sign for 07 ")).click()
            card = page.locator("section.cds-card")
            expect(card.get_by_role("heading", level=2)).to_have_text("IVIG (BCBS MT): 2 documentation items missing")
            expect(card).to_contain_text("Cerebrospinal fluid analysis")
            expect(page.locator("#hook-heading + p")).to_contain_text("answered HTTP 200")
            card.get_by_role("link", name=re.compile("Open IVIG Coverage Check")).click()
            page.wait_for_url(re.compile(r"/report\?ctx=[\w-]+$"))  # the smart link opens the same patient's report
            expect(page.get_by_role("heading", level=1)).to_contain_text(re.compile("missing", re.I))
            page.goto(url)
            page.get_by_role("button", name=re.compile(r"^order-sign for 12 ")).click()
            expect(page.get_by_role("status")).to_contain_text("No card")
            browser.close()
        task = requests.get(server_url, headers={"Accept": "application/fhir+json"}, timeout=10).json()
        assert task["status"] == "requested" and task["for"]["reference"] == "Patient/ex07-patient"
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("the demo did not stop on Ctrl-C")
    stderr = proc.stderr.read()
    fhir_port = _fhir_port(stderr)
    time.sleep(0.5)
    assert not _listening(port), "the app still listens after Ctrl-C"
    assert not _listening(fhir_port), "the FHIR server still listens after Ctrl-C"
    assert "Traceback" not in stderr
    # The searches of a report run at once; the client's pool holds them all.
    assert "Connection pool is full" not in stderr
    assert "17 example patients loaded (1 also under a second policy)" in stderr


def test_port_in_use_gets_a_clear_message_and_a_way_out():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "smart_app.cli", "demo", "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"port {port}" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr
