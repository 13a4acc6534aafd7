"""Write docs/policy-trace.md: every bullet of the source documents -> the criteria.

    python docs/policy_trace.py           # rewrite docs/policy-trace.md
    python docs/policy_trace.py --check   # exit 1 if the file is out of date

The source texts are read from smart_app/engine/rulesets/sources (copies of ../shared/seeds; IVIG_SEEDS_DIR
overrides).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from smart_app.engine.model import get_ruleset  # noqa: E402
from smart_app.engine.trace import render_markdown, trace  # noqa: E402

OUT = ROOT / "docs" / "policy-trace.md"
# (ruleset, how its source is named, the part traced: first and last heading lines)
SCOPES = [
    ("bcbsmt-ig-2013", "BCBS of Montana, Immunoglobulin (Ig) Therapy (2013)",
     "the Description's CIDP diagnostic criteria and the whole Coverage section (labeled and "
     "off-label rows, Testing Table, Re-Evaluation Table, experimental list)", "Description", "Rationale"),
    ("aaaai-pi", "medical-necessity determination for IVIG in CVID",
     "the whole determination", None, "References"),
]


SOURCES = ROOT / "smart_app" / "engine" / "rulesets" / "sources"


def seeds_dir() -> Path:
    """The rulesets' source texts: the copies kept beside the rulesets (so a clean clone can
    check them), or IVIG_SEEDS_DIR. tests/engine/test_policy_trace.py checks the copies
    against ../shared/seeds wherever that is present."""
    return Path(os.environ.get("IVIG_SEEDS_DIR") or SOURCES)


def build() -> str:
    sections = []
    for ruleset_id, title, scope, start, end in SCOPES:
        ruleset = get_ruleset(ruleset_id)
        source = (seeds_dir() / ruleset.seed).read_text(encoding="utf-8")
        sections.append((ruleset, title, scope, trace(ruleset, source, start, end)))
    return render_markdown(sections) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/policy-trace.md is out of date")
    args = parser.parse_args()
    text = build()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python docs/policy_trace.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
