"""Structural checks for the synthetic example Bundles in examples/.

Each examples/NN-*.json must
  * validate as a FHIR R4B Bundle with fhir.resources (every entry resource is validated),
  * be a `collection` holding exactly one Patient,
  * have unique urn:uuid fullUrls and unique ResourceType/id pairs,
  * contain only `Type/id` references that resolve to a resource inside the Bundle,
and examples/build_examples.py must reproduce the committed files byte for byte.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_FILES = sorted(EXAMPLES_DIR.glob("[0-9][0-9]-*.json"))
RELATIVE_REF = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
URN_UUID = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _references(node, path="$"):
    """Yield (json-path, reference string) for every `reference` element below node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield path, value
            else:
                yield from _references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _references(item, f"{path}[{i}]")


def test_examples_exist():
    assert len(EXAMPLE_FILES) >= 14, "expected at least 14 example bundles"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_validates_as_r4b_bundle(path):
    data = _load(path)
    bundle = Bundle.model_validate(data)
    assert bundle.type == "collection"
    assert len(bundle.entry) == len(data["entry"])


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_exactly_one_patient(path):
    resources = [e["resource"] for e in _load(path)["entry"]]
    assert sum(r["resourceType"] == "Patient" for r in resources) == 1


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_unique_full_urls_and_ids(path):
    entries = _load(path)["entry"]
    full_urls = [e["fullUrl"] for e in entries]
    assert all(URN_UUID.match(u) for u in full_urls), full_urls
    assert len(set(full_urls)) == len(full_urls)
    keys = [(e["resource"]["resourceType"], e["resource"].get("id")) for e in entries]
    assert all(rid for _, rid in keys), "every resource needs an id"
    assert len(set(keys)) == len(keys)
    ids = [rid for _, rid in keys]
    assert len(set(ids)) == len(ids), "ids are unique across resource types, too"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_references_resolve(path):
    entries = _load(path)["entry"]
    present = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries}
    refs = list(_references([e["resource"] for e in entries]))
    assert refs, "an example without references is suspicious"
    for where, reference in refs:
        assert RELATIVE_REF.match(reference), f"{where}: not a Type/id reference: {reference}"
        assert reference in present, f"{where}: {reference} does not resolve in {path.name}"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_subject_is_the_patient(path):
    entries = [e["resource"] for e in _load(path)["entry"]]
    patient = next(r for r in entries if r["resourceType"] == "Patient")
    expected = f"Patient/{patient['id']}"
    for r in entries:
        for field in ("subject", "patient"):
            if field in r:
                assert r[field]["reference"] == expected, (r["resourceType"], r["id"])


def test_generator_reproduces_committed_files(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "build_examples", EXAMPLES_DIR / "build_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--out", str(tmp_path)])
    generated = sorted(p.name for p in tmp_path.glob("*.json"))
    assert generated == [p.name for p in EXAMPLE_FILES]
    for name in generated:
        assert (tmp_path / name).read_bytes() == (EXAMPLES_DIR / name).read_bytes(), name
