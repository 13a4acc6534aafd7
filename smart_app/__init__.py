"""IVIG Coverage Check: SMART-on-FHIR app and command line.

Data flow: launch -> fetch (fhir_client) -> facts (fhir_mappings) -> criteria
(engine) -> report (report) -> Task (task).
"""
