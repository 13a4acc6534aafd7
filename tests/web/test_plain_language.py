"""No internal vocabulary where a person reads (issue 12).

Every example, under both rulesets: the report page (its visible text and accessible
names), the text output and the Task written back (description, input, note, status and
reason texts) may not name the project's files, section numbers of its documents (`§`),
value-set ids, "seed" documents, the "CONTRACT", or the terminology data's verification
status — those are developer detail, kept in the report JSON. The demo's launch page is
checked the same way.

The value-set ids come from the loaded terminology: every id with an underscore
(``tx_corticosteroid``). The few one-word ids (``iga``, ``platelets``, ``pregnancy`` …) are
ordinary words and cannot be told apart from them in a sentence, so they are not scanned.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from web_helpers import BASE, complete_launch, csrf_of, make_app
from fake_ehr import ISS, FakeEhr

from fhir_mappings.terminology import default_terminology
from smart_app.config import load_config
from smart_app.report import render_text
from smart_app.web import create_app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.json"))
RULESETS = ("bcbsmt-ig-2013", "aaaai-pi")


def _internal_vocabulary() -> re.Pattern[str]:
    ids = sorted((n for n in default_terminology().valuesets if "_" in n), key=len, reverse=True)
    assert len(ids) > 150  # derived from the loaded terminology, not a hand-kept list
    return re.compile("|".join([
        r"§",
        r"\bseeds?\b",
        r"\bcontract\b",
        r"(?:\bshared|\bsmart_app|\bfhir_mappings|\bexamples|\btests)/",  # project paths
        r"\b[\w.-]+\.(?:txt|py|ya?ml|toml|csv|md|html)\b",  # file names
        r"terminology data|marked unverified",  # the value sets' bookkeeping
        r"\b(?:" + "|".join(map(re.escape, ids)) + r")\b",
    ]), re.I)


INTERNAL = _internal_vocabulary()


class _Readable(HTMLParser):
    """The text a person reads or hears: text nodes, and accessible names and labels."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in ("aria-label", "title", "alt", "placeholder") and value:
                self.parts.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.parts.append(data)


def readable_text(html: str) -> str:
    parser = _Readable()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def task_text(task: dict | None) -> str:
    if task is None:
        return ""
    parts = [task.get("description", ""), (task.get("reasonCode") or {}).get("text", ""),
             (task.get("businessStatus") or {}).get("text", "")]
    parts += [n.get("text", "") for n in task.get("note") or []]
    for i in task.get("input") or []:
        parts += [i.get("valueString", ""), (i.get("type") or {}).get("text", "")]
        parts += [c.get("display", "") for c in (i.get("type") or {}).get("coding") or []]
    return " ".join(parts)


def offending(text: str) -> list[str]:
    return sorted({text[max(0, m.start() - 50):m.end() + 30] for m in INTERNAL.finditer(text)})


def test_the_scan_finds_what_it_looks_for():
    for bad in ("Source: shared/seeds/002_x.txt", "CONTRACT §3 body-weight", "seed 000 (appeal path)",
                "contraindicated (tx_amifampridine, tx_corticosteroid)", "see bcbsmt-ig-2013.yaml",
                "a code marked unverified in the terminology data"):
        assert offending(bad), bad
    for fine in ("Contraindicated corticosteroids", "IgA 12 mg/dL", "platelets 20,000/µL",
                 "BCBS of Montana, Immunoglobulin (Ig) Therapy (2013) — Coverage", "http://127.0.0.1:8000/fhir"):
        assert not offending(fine), fine


@pytest.mark.parametrize("example", EXAMPLES)
def test_report_page_text_output_and_task_speak_plain_language(tmp_path, rsps, example):
    app = make_app(tmp_path)
    app.extensions["ivig"].client_options = {"backoff": 0}
    client = app.test_client()
    ehr = FakeEhr(rsps, example=example)
    assert complete_launch(client, ehr).status_code == 302
    found = {}
    for ruleset in RULESETS:
        assert client.get("/report", query_string={"ruleset": ruleset}).status_code == 303
        page = client.get("/report").data.decode()
        report = client.get("/api/report").get_json()
        assert report["ruleset"]["id"] == ruleset
        written = client.post("/task", data={"csrf_token": csrf_of(page.encode())},
                              headers={"Accept": "application/json"}).get_json()
        for where, text in (("report page", readable_text(page)), ("text output", render_text(report)),
                            ("Task", task_text(written["task"]))):
            hits = offending(text)
            if hits:
                found[f"{ruleset} {where}"] = hits
    assert not found, f"{example}: internal vocabulary where a person reads: {found}"


def test_demo_launch_page_speaks_plain_language(tmp_path):
    from smart_app.demo import demo_patients
    from smart_app.demo_cds import demo_cds_client

    environ = {"IVIG_CLIENT_ID": "app", "IVIG_PUBLIC_BASE_URL": BASE, "IVIG_SECRET_KEY": "test-secret-key-0123456789",
               "IVIG_SESSION_DB": str(tmp_path / "s.sqlite")}
    config = load_config(environ, open_issuers=(ISS,), demo_iss=ISS,
                         demo_patients=tuple(demo_patients(ROOT / "examples", "bcbsmt-ig-2013")),
                         cds_clients=(demo_cds_client(BASE),))
    page = create_app(config).test_client().get("/launch.html").data.decode()
    text = readable_text(page)
    assert "01 · Test Patient-Alpha" in text and "Demo patients (17)" in text
    assert not offending(text), offending(text)
