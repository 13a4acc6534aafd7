"""Load: simulated clinicians launching and reading reports, the app under gunicorn.

    python bench/load.py [--clinicians 50] [--duration 60] [--task-every 5]

Set-up (127.0.0.1 only): the real FHIR server (sekmet-fhir, in memory, the 17 examples),
the app as deployed (``ivig-check serve``: gunicorn, 2 workers x 8 threads by default) in
open-server mode against it. Each simulated clinician loops for ``--duration`` seconds:

    GET /launch?iss=…&patient=…   (a random example; new browser session)
    GET /report                    (HTML: fetch + evaluate + render)
    GET /api/report                (JSON)
    POST /task                     (every ``--task-every``-th launch: write the Task)

Printed: launches and requests served, requests/s, p50/p95/p99/max latency per route,
errors (any non-2xx/3xx answer or exception), the number of Tasks on the FHIR server
against the number of distinct (patient, ruleset) pairs written (duplicates must be 0),
and the app's memory (RSS of the gunicorn master and workers) before and after.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class LoadResult:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    launches: int = 0
    tasks_written: set[str] = field(default_factory=set)
    elapsed: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def record(self, route: str, seconds: float) -> None:
        with self.lock:
            self.latencies[route].append(seconds)

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def timed_request(browser: requests.Session, app: str, result: LoadResult, method: str, path: str,
                  expect: int, **kw) -> requests.Response | None:
    """One request, its latency recorded under its route; None (and an error counted) when
    the status is not the expected one."""
    t = time.perf_counter()
    resp = browser.request(method, f"{app}{path}", timeout=60, **kw)
    result.record(f"{method} {path}", time.perf_counter() - t)
    if resp.status_code != expect:
        result.error(f"{path} {resp.status_code}")
        return None
    return resp


def clinician(app: str, iss: str, patients: list[str], stop_at: float, task_every: int,
              result: LoadResult, seed: int) -> None:
    rng = random.Random(seed)
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        patient = rng.choice(patients)
        browser = requests.Session()
        timed = partial(timed_request, browser, app, result)
        try:
            launched = timed("GET", "/launch", 302, params={"iss": iss, "patient": patient},
                             allow_redirects=False)
            if not launched:
                continue
            ctx = {"ctx": parse_qs(urlsplit(launched.headers["Location"]).query)["ctx"][0]}
            page = timed("GET", "/report", 200, params=ctx)
            if not page:
                continue
            token = CSRF.search(page.text)
            j = timed("GET", "/api/report", 200, params=ctx)
            if not j:
                continue
            with result.lock:
                result.launches += 1
            if task_every and n % task_every == 0 and token and j.json()["missing_documentation"]:
                if timed("POST", "/task", 200, data={"csrf_token": token.group(1), **ctx},
                         headers={"Accept": "application/json"}):
                    with result.lock:
                        result.tasks_written.add(patient)
        except requests.RequestException as exc:
            result.error(type(exc).__name__)
        finally:
            browser.close()


def run_load(app: str, iss: str, patients: list[str], clinicians: int, duration: float,
             task_every: int = 5) -> LoadResult:
    result = LoadResult()
    stop_at = time.monotonic() + duration
    threads = [threading.Thread(target=clinician, args=(app, iss, patients, stop_at, task_every, result, i),
                                daemon=True) for i in range(clinicians)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 120)
    result.elapsed = time.perf_counter() - t0
    return result


def gunicorn_rss_mib(master_pid: int) -> float:
    """RSS of the gunicorn master and its workers (children), from /proc."""
    pids = [master_pid]
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def count_tasks(fhir: str) -> int:
    bundle = requests.get(f"{fhir}/Task", params={"_summary": "count"},
                          headers={"Accept": "application/fhir+json"}, timeout=30).json()
    return int(bundle.get("total", 0))


def summary(result: LoadResult) -> list[str]:
    lines = [f"  {result.launches} launches, {result.requests} requests in {result.elapsed:.1f} s "
             f"= {result.requests / result.elapsed:.1f} requests/s, {result.launches / result.elapsed:.1f} launches/s",
             f"  errors: {len(result.errors)}" + (f" ({', '.join(sorted(set(result.errors))[:5])})"
                                                  if result.errors else "")]
    every = [x for v in result.latencies.values() for x in v]
    for route, values in [*sorted(result.latencies.items()), ("all requests", every)]:
        if values:
            lines.append(f"  {route:16} n={len(values):6}  p50 {pct(values, .5) * 1000:6.0f} ms  "
                         f"p95 {pct(values, .95) * 1000:6.0f} ms  p99 {pct(values, .99) * 1000:6.0f} ms  "
                         f"max {max(values) * 1000:6.0f} ms  mean {statistics.fmean(values) * 1000:6.0f} ms")
    return lines


def main() -> int:
    from tests.support.app_server import run_app
    from tests.support.fhir_server import load_examples, run_sekmet

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clinicians", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--task-every", type=int, default=5)
    ap.add_argument("--workers", default="2")
    ap.add_argument("--threads", default="8")
    args = ap.parse_args()
    with run_sekmet() as fhir:
        patients = load_examples(fhir)
        env = {"IVIG_OPEN_ISSUERS": fhir, "IVIG_AS_OF": "2025-06-30", "IVIG_LOG_LEVEL": "WARNING",
               "IVIG_SECRET_KEY": "load-secret-0123456789abcdef", "IVIG_WORKERS": args.workers,
               "IVIG_THREADS": args.threads}
        with run_app(env) as app:
            run_load(app, fhir, patients, 2, 2, task_every=0)  # warm-up
            rss_before = gunicorn_rss_mib(run_app.pid)  # type: ignore[attr-defined]
            result = run_load(app, fhir, patients, args.clinicians, args.duration, args.task_every)
            rss_after = gunicorn_rss_mib(run_app.pid)  # type: ignore[attr-defined]
        tasks = count_tasks(fhir)
    print(f"load: {args.clinicians} clinicians for {args.duration:g} s, gunicorn {args.workers} workers x "
          f"{args.threads} threads, sekmet-fhir on loopback")
    for line in summary(result):
        print(line)
    print(f"  Tasks on the server: {tasks} for {len(result.tasks_written)} patients written "
          f"(duplicates: {tasks - len(result.tasks_written)})")
    print(f"  app memory (gunicorn master + workers RSS): {rss_before:.0f} MiB before, {rss_after:.0f} MiB after")
    return 0 if not result.errors and tasks == len(result.tasks_written) else 1


if __name__ == "__main__":
    sys.exit(main())
