"""Benchmark: patients per second for map + evaluate + report + Task, and peak memory.

    python bench/engine.py [--patients 1000] [--ruleset bcbsmt-ig-2013]

Two workloads, each on one core (one process, no threads):
1. the bundled examples (examples/*.json), repeated until ~2 s have passed;
2. N generated patients with ~50 resources each, generated and evaluated one at a time
   (streamed: memory must stay flat in N, which the figures at N/10 and N show).

Input JSON is parsed per patient as a pipeline would (json.loads of the serialized
Bundle is inside the timed loop). Peak memory is the process's peak resident set size
(ru_maxrss) after N/10 and after N patients: flat memory shows as the same figure.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import resource
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_mappings import extract_facts, load_record  # noqa: E402
from smart_app.engine.evaluate import evaluate  # noqa: E402
from smart_app.engine.model import get_ruleset  # noqa: E402
from smart_app.report import build_report  # noqa: E402
from smart_app.task import build_task  # noqa: E402

AS_OF = date(2025, 6, 30)
LOINC, ICD, CVX = "http://loinc.org", "http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/cvx"
DIAGNOSES = [("D83.9", "CVID"), ("C91.10", "CLL"), ("G61.81", "CIDP"), ("D69.3", "ITP"),
             ("G70.00", "Myasthenia gravis"), ("G30.9", "Alzheimer disease"), ("I10", "Hypertension")]
INFECTIONS = [("J18.9", "Pneumonia"), ("J32.9", "Chronic sinusitis"), ("L03.90", "Cellulitis"),
              ("H66.90", "Otitis media")]


def _day(rng: random.Random, back: int) -> str:
    return (AS_OF - timedelta(days=rng.randint(1, back))).isoformat()


def _obs(i: int, pid: str, code: str, value: float, unit: str, when: str) -> dict:
    return {"resourceType": "Observation", "id": f"{pid}-o{i}", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


def generate_patient(n: int) -> dict:
    """One synthetic patient Bundle with about 50 resources (deterministic per n)."""
    rng = random.Random(n)
    pid = f"gen{n}"
    res: list[dict] = [{"resourceType": "Patient", "id": pid, "birthDate": f"{rng.randint(1940, 2015)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"}]
    i = 0
    for _ in range(6):
        i += 1
        unit = rng.choice(["mg/dL", "g/L"])
        value = rng.uniform(100, 1200) if unit == "mg/dL" else rng.uniform(1, 12)
        res.append(_obs(i, pid, "2465-3", round(value, 1), unit, _day(rng, 1500)))
    for _ in range(3):
        i += 1
        res.append(_obs(i, pid, "29463-7", round(rng.uniform(20, 110), 1), "kg", _day(rng, 400)))
    vac_day = AS_OF - timedelta(days=rng.randint(200, 2000))
    res.append({"resourceType": "Immunization", "id": f"{pid}-imm", "status": "completed",
                "vaccineCode": {"coding": [{"system": CVX, "code": "33"}]}, "patient": {"reference": f"Patient/{pid}"},
                "occurrenceDateTime": vac_day.isoformat()})
    for serotype in ("27044-7", "27047-0", "27058-7", "27064-5", "27077-7", "27090-0"):
        for offset in (-10, 30):
            i += 1
            res.append(_obs(i, pid, serotype, round(rng.uniform(0.1, 4), 2), "ug/mL",
                            (vac_day + timedelta(days=offset)).isoformat()))
    code, text = rng.choice(DIAGNOSES)
    res.append({"resourceType": "Condition", "id": f"{pid}-dx", "subject": {"reference": f"Patient/{pid}"},
                "clinicalStatus": {"coding": [{"code": "active"}]}, "verificationStatus": {"coding": [{"code": "confirmed"}]},
                "code": {"coding": [{"system": ICD, "code": code}], "text": text}, "onsetDateTime": _day(rng, 3000)})
    for k in range(rng.randint(2, 8)):
        icode, itext = rng.choice(INFECTIONS)
        res.append({"resourceType": "Condition", "id": f"{pid}-inf{k}", "subject": {"reference": f"Patient/{pid}"},
                    "clinicalStatus": {"coding": [{"code": "resolved"}]},
                    "code": {"coding": [{"system": ICD, "code": icode}], "text": itext}, "onsetDateTime": _day(rng, 3000)})
    res.append({"resourceType": "MedicationRequest", "id": f"{pid}-order", "status": "active", "intent": "order",
                "subject": {"reference": f"Patient/{pid}"}, "authoredOn": _day(rng, 30),
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1426680"}], "text": "Privigen"},
                "reasonReference": [{"reference": f"Condition/{pid}-dx"}],
                "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 4, "periodUnit": "wk"}},
                                       "doseAndRate": [{"doseQuantity": {"value": rng.choice([20, 30, 40, 60]), "unit": "g", "code": "g"}}]}]})
    if rng.random() < 0.6:
        for k in range(rng.randint(1, 8)):
            res.append({"resourceType": "MedicationAdministration", "id": f"{pid}-adm{k}", "status": "completed",
                        "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": _day(rng, 900),
                        "medicationCodeableConcept": {"text": "Privigen 10%"}})
    while len(res) < 50:
        i += 1
        res.append(_obs(i, pid, rng.choice(["777-3", "2160-0", "1751-7"]), round(rng.uniform(1, 300), 1), "mg/dL", _day(rng, 700)))
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in res]}


def run_one(text: str, ruleset) -> dict | None:
    record = load_record(text)
    report = build_report(evaluate(extract_facts(record), ruleset, AS_OF))
    return build_task(report)  # validated as FHIR R4 with fhir.resources inside


def stage_breakdown(texts: list[str], ruleset) -> dict[str, float]:
    """Milliseconds per patient spent in each stage of run_one."""
    stages = dict.fromkeys(["parse", "facts", "evaluate", "report", "task (incl. R4 validation)"], 0.0)
    for text in texts:
        t0 = time.perf_counter()
        record = load_record(text)
        t1 = time.perf_counter()
        facts = extract_facts(record)
        t2 = time.perf_counter()
        ev = evaluate(facts, ruleset, AS_OF)
        t3 = time.perf_counter()
        report = build_report(ev)
        t4 = time.perf_counter()
        build_task(report)
        t5 = time.perf_counter()
        for key, spent in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            stages[key] += spent
    return {k: 1000 * v / len(texts) for k, v in stages.items()}


def bench_examples(ruleset, seconds: float = 2.0) -> tuple[int, float]:
    texts = [p.read_text() for p in sorted((ROOT / "examples").glob("*.json"))]
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for text in texts:
            run_one(text, ruleset)
            count += 1
    return count, time.perf_counter() - start


def bench_generated(n: int, ruleset) -> tuple[float, int, float]:
    """(seconds spent in the pipeline, resources seen, peak RSS MiB) for n streamed patients."""
    spent, resources = 0.0, 0
    for k in range(n):
        text = json.dumps(generate_patient(k))  # generation is not timed
        resources += text.count('"resourceType"') - 1
        t0 = time.perf_counter()
        run_one(text, ruleset)
        spent += time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return spent, resources, peak_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--ruleset", default="bcbsmt-ig-2013")
    args = parser.parse_args()
    ruleset = get_ruleset(args.ruleset)
    run_one((ROOT / "examples" / "01-cvid-seed-002.json").read_text(), ruleset)  # warm caches

    count, secs = bench_examples(ruleset)
    print(f"examples: {count} evaluations in {secs:.2f} s = {count / secs:,.0f} patients/s "
          f"({1000 * secs / count:.2f} ms each), ruleset {args.ruleset}")
    small = max(args.patients // 10, 1)
    for n in (small, args.patients):
        spent, resources, peak = bench_generated(n, ruleset)
        print(f"generated: {n} patients, {resources / n:.0f} resources each: {n / spent:,.0f} patients/s "
              f"({1000 * spent / n:.2f} ms each), peak RSS {peak:.1f} MiB")
    sample = [json.dumps(generate_patient(k)) for k in range(200)]
    parts = stage_breakdown(sample, ruleset)
    print("per patient: " + ", ".join(f"{k} {v:.3f} ms" for k, v in parts.items()))


if __name__ == "__main__":
    main()
