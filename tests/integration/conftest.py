"""Fixtures for integration tests against a real FHIR server (sekmet-fhir, run as a subprocess).

sekmet-fhir comes with the ``tests`` extra; without it these tests fail, they never skip.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # plain `pytest` (not `python -m pytest`) does not add the repo root
    sys.path.insert(0, str(ROOT))

from tests.support.fhir_server import load_examples, run_sekmet
from tests.support.smart_stub import SmartStub


@pytest.fixture(scope="session")
def _sekmet_loaded() -> Iterator[tuple[str, list[str]]]:
    # sekmet-fhir is a declared test dependency (pyproject `tests` extra): if it is missing
    # these tests fail rather than skip, so a green run always includes them.
    with run_sekmet() as base:
        ids = load_examples(base)
        yield base, ids


@pytest.fixture(scope="session")
def sekmet_base(_sekmet_loaded: tuple[str, list[str]]) -> str:
    """FHIR base URL of a sekmet server holding every examples/*.json Bundle (ids kept)."""
    return _sekmet_loaded[0]


@pytest.fixture(scope="session")
def example_patient_ids(_sekmet_loaded: tuple[str, list[str]]) -> list[str]:
    """Patient ids of the loaded examples, in file order (ex01-patient ... ex17-patient)."""
    return _sekmet_loaded[1]


@pytest.fixture
def smart_stub(sekmet_base: str) -> Iterator[SmartStub]:
    """A SmartStub in front of the session's sekmet server (default settings)."""
    with SmartStub(sekmet_base) as stub:
        yield stub


CHROMIUM = os.environ.get("IVIG_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium through Playwright (never ``playwright install``), one per module."""
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                    "--disable-background-networking"])
        yield b
        b.close()
