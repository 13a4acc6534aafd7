"""Reading a patient's record from a FHIR R4 Bundle (file, stdin or server response).

Only the envelope is checked here; each resource is validated lazily by the
normalisers, which skip (with a warning) what they cannot read. Full ``fhir.resources``
validation of every resource would cost ~5 ms a patient; the engine only needs the
fields it reads, and every Task that leaves the app is fully validated instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

R4_BUNDLE_TYPES = {
    "collection",
    "searchset",
    "batch-response",
    "transaction",
    "transaction-response",
    "batch",
    "document",
    "message",
    "history",
}
# Resource types that exist only in FHIR R5 (or later) and so mark a non-R4 Bundle.
R5_ONLY_TYPES = {
    "ActorDefinition",
    "ArtifactAssessment",
    "BiologicallyDerivedProductDispense",
    "ConditionDefinition",
    "DeviceAssociation",
    "DeviceDispense",
    "DeviceUsage",
    "EncounterHistory",
    "FormularyItem",
    "GenomicStudy",
    "ImagingSelection",
    "InventoryItem",
    "InventoryReport",
    "MedicationStatement2",
    "NutritionIntake",
    "NutritionProduct",
    "Permission",
    "RequestOrchestration",
    "Requirements",
    "TestPlan",
    "Transport",
}
# R4 resources whose R5 form renamed an element: seeing the R5 name marks an R5 resource.
R5_SHAPED = {
    "MedicationRequest": "medication",
    "MedicationStatement": "medication",
    "MedicationAdministration": "medication",
    "MedicationDispense": "medication",
}


class BundleError(ValueError):
    """The input is not a usable patient Bundle. The message is one human-readable line."""


@dataclass
class PatientRecord:
    """One patient and that patient's resources, as plain dicts."""

    patient: dict[str, Any]
    resources: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    # fullUrl -> resource, for references written as urn:uuid:… or absolute URLs
    full_urls: dict[str, dict[str, Any]] = field(default_factory=dict)
    # resource types the client was not allowed to read (SMART scopes); never "missing"
    not_accessible: set[str] = field(default_factory=set)
    # resource types (or searches) the FHIR server does not offer; never "missing" either
    not_available: set[str] = field(default_factory=set)

    @property
    def patient_ref(self) -> str:
        return f"Patient/{self.patient.get('id', 'unknown')}"


def parse_json(text: str | bytes, what: str = "input") -> Any:
    try:
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise BundleError(f"{what} is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except RecursionError:
        raise BundleError(f"{what} is nested too deeply to be FHIR JSON") from None
    except ValueError:  # e.g. an integer literal longer than Python converts (4,300 digits)
        raise BundleError(f"{what} holds a number too long to read") from None


def one_line(text: object, limit: int = 200) -> str:
    """Text safe for a one-line message: whitespace (incl. U+2028, NEL, VT) folded, cut."""
    text = str(text).encode("utf-8", "replace").decode("utf-8")  # no lone surrogates
    return " ".join(text.split())[:limit]


def operation_outcome_message(oo: dict[str, Any]) -> str:
    """The first readable diagnostic of an OperationOutcome, without anything else."""
    issues = oo.get("issue") if isinstance(oo.get("issue"), list) else []
    for issue in issues:
        if not isinstance(issue, dict):
            continue
        details = issue.get("details") if isinstance(issue.get("details"), dict) else {}
        text = issue.get("diagnostics") or details.get("text")
        if isinstance(text, str) and text.strip():
            severity = issue.get("severity")
            if severity not in ("fatal", "error", "warning", "information"):
                severity = "error"
            return f"{severity}: {one_line(text)}"
    return "no diagnostics given"


def record_from_bundle(data: Any, what: str = "input") -> PatientRecord:
    """Turn a parsed Bundle into a PatientRecord, or raise BundleError saying why not."""
    if not isinstance(data, dict):
        raise BundleError(f"{what} is not a FHIR resource (expected a JSON object)")
    rtype = data.get("resourceType")
    if not isinstance(rtype, str):
        raise BundleError(f"{what} is a JSON object without resourceType, not a Bundle")
    if rtype == "OperationOutcome":
        raise BundleError(
            f"{what} is an OperationOutcome, not a Bundle ({operation_outcome_message(data)})"
        )
    if rtype != "Bundle":
        raise BundleError(f"{what} is a {one_line(rtype, 60)}, not a Bundle")
    btype = data.get("type")
    if not isinstance(btype, str) or btype not in R4_BUNDLE_TYPES:
        raise BundleError(f"{what}: Bundle.type {one_line(repr(btype), 60)} is not a FHIR R4 Bundle type")
    entries = data.get("entry", [])
    if not isinstance(entries, list):
        raise BundleError(f"{what}: Bundle.entry must be a list")

    resources: list[dict[str, Any]] = []
    warnings: list[str] = []
    full_urls: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None:
            continue  # e.g. a batch-response entry holding only a response status
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            warnings.append(f"Bundle entry {i} has no readable resource and was skipped")
            continue
        rt = resource["resourceType"]
        if rt in R5_ONLY_TYPES:
            raise BundleError(
                f"{what}: entry {i} is a {rt}, which exists only in FHIR R5; "
                "this app reads FHIR R4 records"
            )
        if rt in R5_SHAPED and R5_SHAPED[rt] in resource:
            raise BundleError(
                f"{what}: entry {i} ({rt}) has the R5 element '{R5_SHAPED[rt]}'; "
                "this app reads FHIR R4 records"
            )
        if rt == "Bundle":  # batch-response entries hold searchset Bundles
            inner = record_from_bundle_entries(resource, what)
            resources.extend(inner)
            continue
        if rt == "OperationOutcome":
            continue
        if isinstance(entry.get("fullUrl"), str):
            full_urls[entry["fullUrl"]] = resource
        resources.append(resource)

    patients = [r for r in resources if r["resourceType"] == "Patient"]
    if any(not isinstance(p.get("id", ""), str) for p in patients):
        raise BundleError(f"{what}: Patient.id must be a string")
    ids = {p.get("id") for p in patients}
    if not patients:
        raise BundleError(f"{what}: the Bundle holds no Patient resource")
    if len(ids) > 1:
        raise BundleError(
            f"{what}: the Bundle holds {len(ids)} different patients; give one patient's record"
        )
    patient = patients[0]
    others = [r for r in resources if r["resourceType"] != "Patient"]
    return PatientRecord(patient=patient, resources=others, warnings=warnings, full_urls=full_urls)


def record_from_bundle_entries(bundle: dict[str, Any], what: str) -> list[dict[str, Any]]:
    """Resources of a nested searchset Bundle (inside a batch-response)."""
    out = []
    for entry in bundle.get("entry", []) if isinstance(bundle.get("entry"), list) else []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and isinstance(res.get("resourceType"), str):
            if res["resourceType"] in R5_ONLY_TYPES:
                raise BundleError(f"{what}: a {res['resourceType']} is FHIR R5, not R4")
            if res["resourceType"] != "OperationOutcome":
                out.append(res)
    return out


def load_record(text: str | bytes, what: str = "input") -> PatientRecord:
    return record_from_bundle(parse_json(text, what), what)
