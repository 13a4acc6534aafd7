"""Benchmark: per-patient cost of parse + map + evaluate + report, as a ratio to json.loads.

    python bench/engine.py [--patients 1000] [--ruleset bcbsmt-ig-2013] [--scaling]

Everything on one core (one process, no threads). The pipeline per patient is what
``ivig-check evaluate`` does for one Bundle: ``load_record`` (json.loads included),
``extract_facts``, ``evaluate``, ``build_report``. The Task is built and validated with
``fhir.resources`` only when one is written or output (``--task-out``, ``POST /task``); its
cost is printed on its own line. Figures:

1. ratio to json.loads, measured in the same run on the same texts (rounds of parse-only
   and pipeline interleaved; CPU time, best round), so machine load mostly cancels out:
   * the 17 bundled examples (examples/*.json);
   * 200 generated US Core-shaped records of 100 resources (tests/support/records.py:
     vitals panels, lab panels with reference ranges, encounters, medications, problems,
     immunizations, IgG results and an IVIG order);
   * 200 generated compact records of ~50 resources (the generator below);
2. N compact patients generated and evaluated one at a time (streamed): patients/s, and
   peak RSS after N/10 and after N patients (flat memory shows as the same figure);
3. a stage breakdown per compact patient;
4. ``--scaling``: cost at n and 4n for 20,000 Observations (a large chart, and unit-less
   results that each give a warning) and for 4,000 titers x 4,000 vaccinations; a linear
   path shows a ratio near 4 for x4;
5. ``--gc``: time spent in the cyclic garbage collector per patient (``gc.callbacks``),
   before and after ``gc.freeze()`` of everything loaded at start-up (as ``ivig-check
   serve`` does: smart_app/startup.py ``warm_and_freeze``).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_mappings import extract_facts, load_record, record_from_bundle  # noqa: E402
from smart_app.engine.evaluate import evaluate  # noqa: E402
from smart_app.engine.model import get_ruleset  # noqa: E402
from smart_app.report import build_report  # noqa: E402
from smart_app.task import build_task  # noqa: E402
from tests.support.records import large_chart, realistic_record  # noqa: E402

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


def run_one(text: str, ruleset) -> dict:
    """The per-patient pipeline of ``ivig-check evaluate``: Bundle text -> report."""
    return build_report(evaluate(extract_facts(load_record(text)), ruleset, AS_OF))


def ratio_to_parse(texts: list[str], ruleset, rounds: int = 9) -> tuple[float, float, float]:
    """(pipeline ms, json.loads ms, ratio) per patient: CPU time of this process, best of
    interleaved rounds (the machine is shared: the least disturbed round is the figure)."""
    parse, pipe = [], []
    for _ in range(rounds):
        t0 = time.process_time()
        for text in texts:
            json.loads(text)
        t1 = time.process_time()
        for text in texts:
            run_one(text, ruleset)
        t2 = time.process_time()
        parse.append(t1 - t0)
        pipe.append(t2 - t1)
    p, q = min(pipe), min(parse)
    return 1000 * p / len(texts), 1000 * q / len(texts), p / q


def stage_breakdown(texts: list[str], ruleset) -> dict[str, float]:
    """Milliseconds per patient spent in each stage (and the Task, when one is written)."""
    stages = dict.fromkeys(["parse", "facts", "evaluate", "report", "Task build + R4 validation (when written)"], 0.0)
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


# --- scaling cases -------------------------------------------------------------------------
def unitless_chart(n: int) -> str:
    """A CVID patient with n IgG results reported without a unit (each gives its own warning)."""
    pid = "unitless"
    res: list[dict] = [{"resourceType": "Patient", "id": pid, "birthDate": "1980-01-01"},
                       {"resourceType": "Condition", "id": "dx", "subject": {"reference": f"Patient/{pid}"},
                        "clinicalStatus": {"coding": [{"code": "active"}]},
                        "code": {"coding": [{"system": ICD, "code": "D83.9"}]}, "onsetDateTime": "2020-01-01"}]
    for i in range(n):
        res.append({"resourceType": "Observation", "id": f"o{i}", "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": "2465-3"}]},
                    "subject": {"reference": f"Patient/{pid}"},
                    "effectiveDateTime": (AS_OF - timedelta(days=1 + i % 3000)).isoformat(),
                    "valueQuantity": {"value": 300 + i % 500}})
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in res]})


def titer_chart(n: int) -> str:
    """n tetanus vaccinations and n tetanus titers, one of each per day over n days."""
    pid = "titers"
    res: list[dict] = [{"resourceType": "Patient", "id": pid, "birthDate": "1960-01-01"},
                       {"resourceType": "Condition", "id": "dx", "subject": {"reference": f"Patient/{pid}"},
                        "clinicalStatus": {"coding": [{"code": "active"}]},
                        "code": {"coding": [{"system": ICD, "code": "D83.9"}]}, "onsetDateTime": "2020-01-01"}]
    for i in range(n):
        day = AS_OF - timedelta(days=30 + i)
        res.append({"resourceType": "Immunization", "id": f"v{i}", "status": "completed",
                    "vaccineCode": {"coding": [{"system": CVX, "code": "09"}]}, "patient": {"reference": f"Patient/{pid}"},
                    "occurrenceDateTime": day.isoformat()})
        res.append({"resourceType": "Observation", "id": f"t{i}", "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": "22203-4"}]},
                    "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": (day + timedelta(days=3)).isoformat(),
                    "valueQuantity": {"value": 0.5 + (i % 7) / 10, "unit": "[IU]/mL", "code": "[IU]/mL",
                                      "system": "http://unitsofmeasure.org"},
                    "referenceRange": [{"low": {"value": 0.1, "unit": "[IU]/mL", "code": "[IU]/mL"}}]})
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in res]})


def best_of(fn, repeats: int = 5) -> float:
    """CPU seconds of this process for fn(), best of ``repeats`` (the machine is shared)."""
    times = []
    for _ in range(repeats):
        gc.collect()  # each run starts from the same heap: no collection owed by the last one
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def scaling(ruleset) -> None:
    examples = ROOT / "examples"
    base = json.loads((examples / "02-cvid-complete.json").read_text())
    cases = [
        ("large chart (vitals, labs), Observations", 5_000, 20_000,
         lambda n: json.dumps(large_chart(base, n))),
        ("unit-less IgG results (one warning each)", 5_000, 20_000, unitless_chart),
        ("titers x vaccinations (tetanus, daily)", 1_000, 4_000, titer_chart),
    ]
    print("scaling (CPU seconds at n and 4n, best of 5; linear = ratio near 4): the pipeline after parsing "
          "(record, facts, criteria, report, on the parsed Bundle) and json.loads of the same text:")
    for label, small, big, make in cases:
        a_text, b_text = make(small), make(big)
        a_data, b_data = json.loads(a_text), json.loads(b_text)
        a = best_of(lambda: run_parsed(a_data, ruleset))
        b = best_of(lambda: run_parsed(b_data, ruleset))
        ja = best_of(lambda: json.loads(a_text))
        jb = best_of(lambda: json.loads(b_text))
        print(f"  {label}: {small:,} -> {a:.3f} s, {big:,} -> {b:.3f} s, x4 ratio {b / a:.1f} "
              f"(json.loads {ja:.3f} -> {jb:.3f} s, x{jb / ja:.1f})")


def run_parsed(data: dict, ruleset) -> dict:
    """The pipeline on an already parsed Bundle (nothing in it modifies the input)."""
    return build_report(evaluate(extract_facts(record_from_bundle(data)), ruleset, AS_OF))


def gc_cost(texts: list[str], ruleset, rounds: int = 5) -> tuple[float, float, dict[int, int]]:
    """(ms in the collector per patient, ms per patient, collections per generation)."""
    spent = {"t": 0.0, "start": 0.0}
    counts = {0: 0, 1: 0, 2: 0}

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            spent["start"] = time.perf_counter()
        else:
            spent["t"] += time.perf_counter() - spent["start"]
            counts[info["generation"]] += 1

    gc.callbacks.append(callback)
    try:
        t0 = time.perf_counter()
        for _ in range(rounds):
            for text in texts:
                run_one(text, ruleset)
        total = time.perf_counter() - t0
    finally:
        gc.callbacks.remove(callback)
    n = rounds * len(texts)
    return 1000 * spent["t"] / n, 1000 * total / n, counts


def gc_comparison(ruleset) -> None:
    from smart_app.startup import warm_and_freeze

    texts = [json.dumps(realistic_record(k)) for k in range(100)]
    run_one(texts[0], ruleset)
    before = gc_cost(texts, ruleset)
    warm_and_freeze()
    after = gc_cost(texts, ruleset)
    print(f"garbage collector, 100 US Core-shaped records x 5 ({gc.get_freeze_count():,} objects frozen after):")
    for label, (in_gc, per, counts) in (("before gc.freeze()", before), ("after gc.freeze() ", after)):
        print(f"  {label}: {in_gc:.3f} ms of {per:.3f} ms per patient in collections "
              f"({100 * in_gc / per:.1f} %; gen0/1/2: {counts[0]}/{counts[1]}/{counts[2]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--ruleset", default="bcbsmt-ig-2013")
    parser.add_argument("--scaling", action="store_true", help="also run the x4 growth cases")
    parser.add_argument("--gc", action="store_true", help="also compare collector time before/after gc.freeze()")
    args = parser.parse_args()
    ruleset = get_ruleset(args.ruleset)
    run_one((ROOT / "examples" / "01-cvid-seed-002.json").read_text(), ruleset)  # warm caches

    workloads = [
        ("the 17 examples", [p.read_text() for p in sorted((ROOT / "examples").glob("*.json"))]),
        ("200 US Core-shaped records, 100 resources", [json.dumps(realistic_record(k)) for k in range(200)]),
        ("200 compact records, ~50 resources", [json.dumps(generate_patient(k)) for k in range(200)]),
    ]
    print(f"pipeline (load_record incl. json.loads, facts, evaluate, report) vs json.loads alone, "
          f"ruleset {args.ruleset}:")
    for label, texts in workloads:
        pipe, parse, ratio = ratio_to_parse(texts, ruleset)
        kib = sum(map(len, texts)) / len(texts) / 1024
        print(f"  {label} ({kib:.0f} KiB each): pipeline {pipe:.3f} ms, json.loads {parse:.3f} ms, "
              f"ratio {ratio:.2f} x ({1000 / pipe:,.0f} patients/s)")
    small = max(args.patients // 10, 1)
    for n in (small, args.patients):
        spent, resources, peak = bench_generated(n, ruleset)
        print(f"streamed: {n} compact patients, {resources / n:.0f} resources each: {n / spent:,.0f} patients/s "
              f"({1000 * spent / n:.2f} ms each), peak RSS {peak:.1f} MiB")
    parts = stage_breakdown(workloads[2][1], ruleset)
    print("per compact patient: " + ", ".join(f"{k} {v:.3f} ms" for k, v in parts.items()))
    if args.scaling:
        scaling(ruleset)
    if args.gc:
        gc_comparison(ruleset)  # last: it freezes the process's heap


if __name__ == "__main__":
    main()
