"""``ivig-check demo``: the whole product on one machine, with no EHR.

1. a real FHIR server (sekmet-fhir, in memory, 127.0.0.1, its simulator off) is started;
2. every example Bundle in ``examples/`` is loaded into it as a transaction;
3. the app runs under gunicorn against it, configured as an open server (``open_issuers``:
   used without authorization), evaluating "as of" the examples' date (2025-06-30) so the
   reports match ``examples/README.md``;
4. the URL of ``launch.html`` is printed; there a visitor picks a patient, reads the
   report, writes the Task, and opens the Task as the FHIR server holds it.

Ctrl-C (or SIGTERM) stops the app and the FHIR server.
"""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

from fhir_mappings import load_record

from .config import Config, DemoPatient, load_config, normalize_base
from .demo_cds import demo_cds_client
from .engine.model import get_ruleset
from .report import evaluate_record
from .views.launched import patient_banner
from .serve import PortInUse, check_port

EXAMPLES_AS_OF = date(2025, 6, 30)  # the date examples/README.md evaluates every example on
# Example 01 mirrors seed 002, a determination under the AAAAI criteria: offered under both.
ALSO_UNDER = {"ex01-patient": "aaaai-pi"}


class DemoError(RuntimeError):
    """The demo cannot start; the message says why and what to do."""


def demo_patients(examples: Path, default_ruleset: str) -> list[DemoPatient]:
    """One entry per example (the ruleset its Coverage chooses), and one per extra ruleset,
    with the patient's name, the indication, the policy and the determination the app
    computes for it, so the visitor knows what to expect."""
    out = []
    for path in sorted(examples.glob("*.json")):
        record = load_record(path.read_bytes(), path.name)
        pid = record.patient["id"]
        number = path.stem.split("-", 1)[0]
        name = patient_banner(record.patient)["name"] or pid
        for ruleset in (None, *filter(None, [ALSO_UNDER.get(pid)])):  # None: chosen from Coverage
            report = evaluate_record(record, ruleset, EXAMPLES_AS_OF, default_ruleset=default_ruleset)
            chosen = {"coverage": "from Coverage", "requested": "requested"}.get(report["payer"]["chosen_by"], "default")
            out.append(DemoPatient(
                id=pid, label=f"{number} · {name}", ruleset=ruleset, determination=report["determination"],
                name=name, indication=(report["indication"] or {}).get("label") or "",
                policy=get_ruleset(report["ruleset"]["id"]).citation, policy_chosen=chosen))
    return out


def run_demo(port: int, examples: Path) -> None:
    try:
        import sekmet  # noqa: F401
    except ImportError:
        raise DemoError("the demo's FHIR server is not installed: pip install -e '.[demo]'") from None
    from .demo_fhir import SekmetServer, SekmetStartError, load_examples
    from .serve import run

    if not examples.is_dir() or not any(examples.glob("*.json")):
        raise DemoError(f"no example Bundles found in {examples}")
    try:
        check_port("127.0.0.1", port)
    except PortInUse as exc:
        raise DemoError(str(exc)) from None
    base = f"http://127.0.0.1:{port}"
    master = os.getpid()
    fhir = SekmetServer()
    try:
        try:
            fhir_base = fhir.start()
        except SekmetStartError as exc:
            raise DemoError(f"the demo FHIR server did not start: {str(exc).splitlines()[0]}") from None
        load_examples(fhir_base, examples)
        config: Config = load_config(
            public_base_url=base, open_issuers=(normalize_base(fhir_base),), demo_iss=fhir_base,
            demo_patients=tuple(demo_patients(examples, os.environ.get("IVIG_RULESET") or "bcbsmt-ig-2013")),
            as_of=EXAMPLES_AS_OF,
            # The demo's own CDS client (demo_cds.py) is the only client its CDS service trusts.
            cds_clients=(demo_cds_client(base),),
        )
        print(f"ivig-check demo: FHIR server (sekmet-fhir, in memory) at {fhir_base}", file=sys.stderr)
        n_patients = len({p.id for p in config.demo_patients})
        extra = len(config.demo_patients) - n_patients
        print(f"ivig-check demo: {n_patients} example patient{'s' if n_patients != 1 else ''} loaded"
              + (f" ({extra} also under a second policy)" if extra else "")
              + f"; reports are evaluated as of {EXAMPLES_AS_OF}", file=sys.stderr)
        print("ivig-check demo: Ctrl-C stops the app and the FHIR server; open:", file=sys.stderr)
        sys.stderr.flush()
        print(f"{base}/launch.html", flush=True)
        run(config, "127.0.0.1", port)
    finally:
        if os.getpid() == master:  # gunicorn workers unwind through here too: only the master stops it
            fhir.stop()


def examples_dir() -> Path:
    """``examples/`` of the checkout the app runs from (the demo needs the repository)."""
    return Path(os.environ.get("IVIG_EXAMPLES_DIR") or Path(__file__).resolve().parents[1] / "examples")
