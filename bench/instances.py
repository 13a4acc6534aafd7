"""Two app instances: one shared Redis store versus one SQLite store per instance.

    python bench/instances.py [--rounds 10] [--writers 20]

Set-up (all on 127.0.0.1): the real FHIR server (sekmet-fhir, holding the examples), the
test-only SMART stub in front of it, a real redis-server, and two ``ivig-check serve``
instances (gunicorn, two workers each) with the same public base URL, as behind a load
balancer. For each store, every round removes the patient's Task from the FHIR server, then
sends ``--writers`` concurrent Task writes alternating between the two instances.

Figures printed, per store: how often a launch started on one instance completes on the
other, the median and worst time of a round of writes, and the Tasks the FHIR server holds
after each round (1 is right: sekmet-fhir's conditional create is not atomic, so only a
lock shared by both instances keeps it at one).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smart_app.task import task_identifier  # noqa: E402
from tests.support.app_server import run_app  # noqa: E402
from tests.support.fhir_server import free_port, load_examples, run_sekmet  # noqa: E402
from tests.support.redis_server import run_redis  # noqa: E402
from tests.support.smart_stub import SmartStub  # noqa: E402

PATIENT = "ex01-patient"
FHIR = {"Accept": "application/fhir+json"}


def launch(start: str, finish: str, stub: SmartStub) -> tuple[requests.Session, str | None]:
    """/launch on ``start``, authorize at the stub, /callback on ``finish``; (browser, ctx)."""
    browser = requests.Session()
    r = browser.get(f"{start}/launch", params={"iss": stub.base_url, "launch": stub.new_launch(PATIENT)},
                    allow_redirects=False, timeout=30)
    answer = requests.get(r.headers["Location"], allow_redirects=False, timeout=30)
    query = urlsplit(answer.headers["Location"]).query
    r = browser.get(f"{finish}/callback?{query}", allow_redirects=False, timeout=30)
    if r.status_code != 302:
        return browser, None
    return browser, parse_qs(urlsplit(r.headers["Location"]).query)["ctx"][0]


def tasks(fhir: str, query: dict[str, str]) -> list[dict]:
    bundle = requests.get(f"{fhir}/Task", params=query, headers=FHIR, timeout=30).json()
    return [e["resource"] for e in bundle.get("entry") or []]


def one_round(instances: list[tuple[requests.Session, str, str]], writers: int) -> tuple[float, int]:
    barrier = threading.Barrier(writers)
    codes: list[int] = []

    def write(n: int) -> None:
        browser, base, ctx = instances[n % len(instances)]
        page = browser.get(f"{base}/report", params={"ctx": ctx}, timeout=60).text
        token = page.split('name="csrf_token" value="')[1].split('"')[0]
        session = requests.Session()
        session.cookies.update(browser.cookies)
        barrier.wait()
        resp = session.post(f"{base}/task", data={"csrf_token": token, "ctx": ctx},
                            headers={"Accept": "application/json"}, timeout=180)
        codes.append(resp.status_code)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, sum(1 for c in codes if c != 200)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--writers", type=int, default=20)
    args = ap.parse_args()
    with ExitStack() as stack:
        fhir = stack.enter_context(run_sekmet())
        load_examples(fhir)
        stub = stack.enter_context(SmartStub(fhir))
        redis_url = stack.enter_context(run_redis())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        print(f"two instances, {args.writers} concurrent Task writes per round, {args.rounds} rounds, "
              f"patient {PATIENT}")
        for name in ("redis", "sqlite-per-instance"):
            port_a, port_b = free_port(), free_port()
            env = {"IVIG_ALLOWED_ISSUERS": stub.base_url, "IVIG_CLIENT_ID": "bench", "IVIG_AS_OF": "2025-06-30",
                   "IVIG_SECRET_KEY": "instances-secret-0123456789", "IVIG_LOG_LEVEL": "WARNING",
                   "IVIG_PUBLIC_BASE_URL": f"http://127.0.0.1:{port_a}"}
            if name == "redis":
                env_a = env_b = {**env, "IVIG_SESSION_URL": redis_url}
            else:
                env_a = {**env, "IVIG_SESSION_URL": f"sqlite://{tmp}/a.sqlite"}
                env_b = {**env, "IVIG_SESSION_URL": f"sqlite://{tmp}/b.sqlite"}
            with run_app(env_a, port=port_a) as a, run_app(env_b, port=port_b) as b:
                crossed = [launch(a, b, stub)[1] is not None for _ in range(5)]
                same_a, same_b = launch(a, a, stub), launch(b, b, stub)
                instances = [(same_a[0], a, same_a[1]), (same_b[0], b, same_b[1])]
                report = same_a[0].get(f"{a}/api/report", params={"ctx": same_a[1]}, timeout=60).json()
                ident = task_identifier(report)
                query = {"identifier": f"{ident['system']}|{ident['value']}"}
                times, counts, failed = [], [], 0
                for _ in range(args.rounds):
                    for task in tasks(fhir, query):
                        requests.delete(f"{fhir}/Task/{task['id']}", timeout=30)
                    seconds, errors = one_round(instances, args.writers)
                    times.append(seconds)
                    failed += errors
                    counts.append(len(tasks(fhir, query)))
            print(f"  {name:20s} launch on A, callback on B: {sum(crossed)}/{len(crossed)} complete; "
                  f"writes per round: median {statistics.median(times):.2f} s, worst {max(times):.2f} s; "
                  f"Tasks after each round: {counts} (rounds with duplicates: {sum(c > 1 for c in counts)}); "
                  f"failed writes: {failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
