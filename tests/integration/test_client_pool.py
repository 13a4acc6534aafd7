"""The FHIR client keeps as many connections as it runs searches at once: no "connection
pool is full" warning (a connection opened, then thrown away) against the real server."""

from __future__ import annotations

import logging

from smart_app.fhir_client import FhirClient


def test_pool_holds_as_many_connections_as_concurrent_searches():
    for workers in (4, 16, 24):
        client = FhirClient("http://fhir.example.org/r4", max_workers=workers)
        for scheme in ("http://", "https://"):
            adapter = client.session.get_adapter(scheme + "fhir.example.org/")
            assert adapter.poolmanager.connection_pool_kw["maxsize"] == workers


def test_no_connection_pool_warning_when_fetching_a_patient(sekmet_base, caplog):
    caplog.set_level(logging.WARNING, logger="urllib3")
    client = FhirClient(sekmet_base)
    for _ in range(5):  # each fetch runs the Patient read and every search at once
        record = client.patient_record("ex02-patient")
        assert record.patient["id"] == "ex02-patient"
    pool_warnings = [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert not pool_warnings, pool_warnings[0].getMessage()
