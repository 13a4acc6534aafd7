"""Benchmark: launch-to-report time when every answer from the EHR takes 100 ms.

    python bench/launch_latency.py [--delay 0.1] [--launches 10] [--patient ex01-patient]

Set-up (all on 127.0.0.1): the real FHIR server (sekmet-fhir, in memory, holding the
examples), the test-only SMART stub in front of it adding ``--delay`` to *every* answer
(discovery, authorize, token, FHIR), and the app as users run it (``ivig-check serve``,
gunicorn). A client plays the browser:

    GET /launch (app: discovery)  ->  authorize (stub)  ->  GET /callback (app: token exchange)
    ->  GET /api/report (app: Patient + every search, then evaluation)

Figures printed:
* each phase's median, and launch-to-report (all four phases);
* the app's own FHIR round trips on the critical path, inferred as phase time / delay for
  /launch and /api/report, and the acceptance budget: 2.5 x delay + the token exchange;
* the same patient fetched with the searches issued one after another (one worker)
  versus concurrently, through the same delaying stub in open-server mode.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smart_app.fhir_client import FhirClient  # noqa: E402
from tests.support.app_server import run_app  # noqa: E402
from tests.support.fhir_server import load_examples, run_sekmet  # noqa: E402
from tests.support.smart_stub import SmartStub  # noqa: E402


def one_launch(app: str, stub: SmartStub, patient: str) -> dict[str, float]:
    browser = requests.Session()
    t0 = time.perf_counter()
    r = browser.get(f"{app}/launch", params={"iss": stub.base_url, "launch": stub.new_launch(patient)},
                    allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text[:200]
    t1 = time.perf_counter()
    r = browser.get(r.headers["Location"], allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text[:200]
    t2 = time.perf_counter()
    callback = urlsplit(r.headers["Location"])
    r = browser.get(f"{app}{callback.path}?{callback.query}", allow_redirects=False, timeout=30)
    assert r.status_code == 302 and urlsplit(r.headers["Location"]).path == "/report", r.text[:200]
    t3 = time.perf_counter()
    r = browser.get(f"{app}/api/report", params=parse_qs(urlsplit(r.headers["Location"]).query), timeout=30)
    assert r.status_code == 200 and "determination" in r.json(), r.text[:200]
    t4 = time.perf_counter()
    return {"launch": t1 - t0, "authorize": t2 - t1, "callback": t3 - t2, "report": t4 - t3, "total": t4 - t0}


def fetch_time(base: str, patient: str, workers: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        client = FhirClient(base, max_workers=workers)
        t = time.perf_counter()
        client.patient_record(patient)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--delay", type=float, default=0.1, help="seconds added to every answer (default 0.1)")
    ap.add_argument("--launches", type=int, default=10)
    ap.add_argument("--patient", default="ex01-patient")
    args = ap.parse_args()
    d = args.delay
    ms = lambda s: f"{s * 1000:7.0f} ms"  # noqa: E731

    with run_sekmet() as fhir:
        load_examples(fhir)
        with SmartStub(fhir, delay=d) as stub, run_app({
            "IVIG_ALLOWED_ISSUERS": stub.base_url, "IVIG_CLIENT_ID": "bench", "IVIG_AS_OF": "2025-06-30",
            "IVIG_SECRET_KEY": "bench-secret-0123456789abcdef", "IVIG_LOG_LEVEL": "WARNING",
        }) as app:
            one_launch(app, stub, args.patient)  # warm-up (imports, connections)
            stub.fhir_requests.clear()
            runs = [one_launch(app, stub, args.patient) for _ in range(args.launches)]
            requests_per_launch = len(stub.fhir_requests) / args.launches
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        app_side = med["launch"] + med["report"]
        budget = 2.5 * d + med["callback"]
        print(f"launch-to-report, {args.launches} launches of {args.patient}, {d * 1000:.0f} ms per answer "
              f"(medians):")
        print(f"  GET /launch   (discovery)            {ms(med['launch'])}")
        print(f"  authorize     (EHR, not the app)     {ms(med['authorize'])}")
        print(f"  GET /callback (token exchange)       {ms(med['callback'])}")
        print(f"  GET /api/report (fetch + evaluate)   {ms(med['report'])}")
        print(f"  total launch-to-report               {ms(med['total'])}")
        print(f"  app FHIR time (launch + report)      {ms(app_side)}  "
              f"= {app_side / d:.1f} x delay; sequential round trips on the critical path: "
              f"{round(med['launch'] / d)} (discovery) + {round(med['report'] / d)} (data)")
        app_path = med["launch"] + med["callback"] + med["report"]
        print(f"  launch-to-report without the EHR's authorize screen {ms(app_path)}; "
              f"budget 2.5 x delay + token exchange = {ms(budget)}: {'PASS' if app_path < budget else 'FAIL'}")
        print(f"  FHIR requests per launch through the stub: {requests_per_launch:.0f}")

        with SmartStub(fhir, delay=d, smart_configuration=False) as open_stub:
            fetch_time(open_stub.base_url, args.patient, 16, 1)  # warm-up
            conc = fetch_time(open_stub.base_url, args.patient, 16, 5)
            seq = fetch_time(open_stub.base_url, args.patient, 1, 3)
        print(f"patient record fetch, same searches ({d * 1000:.0f} ms per answer, medians):")
        print(f"  concurrent (one wave)                {ms(conc)}")
        print(f"  one after another                    {ms(seq)}  ({seq / conc:.1f} x slower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
