"""Test-only helpers: a real FHIR server (sekmet) in a subprocess and a SMART authorization stub."""
