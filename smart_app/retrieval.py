"""One patient's report from a FHIR server: plan the searches, fetch, evaluate, and search
Observations by category only when the coded searches left something an Observation could
supply. Shared by the web views and ``ivig-check evaluate --fhir-base``.

Round trips: the Patient and every first-wave search go out at once (one round trip, plus
the pages of any search whose results do not fit on one page). The category searches
(``search_plan.fallback_categories``) add a round trip, and their pages, only for records
still missing such an item; a server without ``_include`` adds one for the Medications.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fhir_mappings import PatientRecord

from .fhir_client import FhirClient
from .report import evaluate_record
from .search_plan import ServerCapabilities, build_search_plan, fallback_categories


def fetch_report(client: FhirClient, patient_id: str, ruleset_id: str | None, as_of: date, *,
                 readable: set[str] | None = None, capabilities: ServerCapabilities | None = None,
                 **evaluation: Any) -> tuple[PatientRecord, dict[str, Any]]:
    """(record, report) for ``patient_id``. ``capabilities``: the server's, if already known
    (the web app caches them with discovery); None reads the CapabilityStatement now.
    ``evaluation``: passed to ``report.evaluate_record`` (default ruleset, payer map)."""
    caps = client.capabilities() if capabilities is None else capabilities
    plan = build_search_plan(patient_id, caps, readable)
    record = client.fetch(plan)
    report = evaluate_record(record, ruleset_id, as_of, **evaluation)
    wanted = sorted(fallback_categories(report))
    if not wanted or "Observation" in record.not_accessible | record.not_available:
        return record, report
    before = len(record.resources)
    notes = list(plan.notes)
    extra = [plan.fallback[c] for c in wanted if c in plan.fallback]
    if extra:
        notes += client.extend(record, extra, medications=plan.medications_readable)
    if len(record.resources) == before and not notes:
        return record, report  # the category searches found nothing new: same report
    record.warnings.extend(notes)
    return record, evaluate_record(record, ruleset_id, as_of, **evaluation)
