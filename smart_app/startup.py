"""Start-up work shared by the long-running entry points (``serve``, batch ``evaluate``)."""

from __future__ import annotations

import gc
import os
from datetime import date


def warm_and_freeze() -> None:
    """Load what every evaluation reads (value sets and their indexes, rulesets and their
    indication indexes, documentation codes, the Observation codes searched for), then
    ``gc.freeze()``: those long-lived objects leave the collector's generations, so a
    collection during a request no longer walks them (bench/engine.py --gc: collector time
    per patient falls from ~14 % to ~3 %), and forked gunicorn workers keep sharing their
    memory pages (a collection writes to every object it visits). ``IVIG_GC_FREEZE=0``
    leaves the collector as it is (for comparisons)."""
    from fhir_mappings import PatientFacts

    from .engine.evaluate import evaluate
    from .engine.model import available_rulesets, documentation_codes
    from .search_plan import observation_codes

    for ruleset in available_rulesets().values():  # builds each ruleset's indication index
        evaluate(PatientFacts("Patient/start-up", None), ruleset, date(2000, 1, 1))
    documentation_codes()
    observation_codes()
    if os.environ.get("IVIG_GC_FREEZE", "1") != "0":
        gc.collect()
        gc.freeze()
