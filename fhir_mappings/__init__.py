"""FHIR R4 -> typed clinical facts for the IVIG coverage engine.

Terminology lives in ``data/`` as value-set files with sources; the normalisers are pure.
"""

from .bundle import BundleError, PatientRecord, load_record, record_from_bundle
from .facts import Diagnosis, Finding, IgExposure, IgOrder, Lab, PatientFacts, Therapy, Vaccination
from .normalize import extract_facts
from .terminology import Terminology, TerminologyError, default_terminology, load_terminology

__all__ = [
    "BundleError",
    "Diagnosis",
    "Finding",
    "IgExposure",
    "IgOrder",
    "Lab",
    "PatientFacts",
    "PatientRecord",
    "Terminology",
    "TerminologyError",
    "Therapy",
    "Vaccination",
    "default_terminology",
    "extract_facts",
    "load_record",
    "load_terminology",
    "record_from_bundle",
]
