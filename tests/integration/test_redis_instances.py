"""Several app instances sharing one Redis store (``IVIG_SESSION_URL=redis://…``).

A real ``redis-server`` (the Debian package; ``.ci/run`` installs it) is started on
127.0.0.1 on a free port, and two ``ivig-check serve`` instances (gunicorn, two workers
each) run against it on two other ports, in front of the SMART stub and the real FHIR
server: a launch started on one continues on the other, and 20 concurrent Task writes
split across both make exactly one Task. Everything started here is stopped here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from smart_app.sessions import RedisStore, StoreFull
from smart_app.task import DEFAULT_TASK_IDENTIFIER_SYSTEM
from tests.support.app_server import run_app
from tests.support.fhir_server import free_port
from tests.support.redis_server import RedisMissing, run_redis
from tests.support.store_checks import assert_held_key_times_out, assert_holders_exclude_each_other

SECRET = "redis-instances-secret-0123456789"


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    try:
        with run_redis() as url:
            yield url
    except RedisMissing as exc:
        pytest.fail(str(exc))


def test_redis_store_sessions_states_and_locks(redis_url):
    import redis

    store = RedisStore(redis_url, SECRET, ttl=60)
    raw = redis.Redis.from_url(redis_url)
    key = store.create({"token": {"access_token": "very-secret-token"}})
    assert store.get(key)["token"]["access_token"] == "very-secret-token"
    assert b"very-secret-token" not in raw.get(f"ivig:s:{key}")  # encrypted at rest
    assert 0 < raw.ttl(f"ivig:s:{key}") <= 60  # expires by itself
    raw.set(f"ivig:s:{key}-copy", raw.get(f"ivig:s:{key}"))
    assert store.get(f"{key}-copy") is None  # a value copied under another key does not open
    assert RedisStore(redis_url, "another-secret-key-xxxx").get(key) is None
    store.delete(key)
    assert store.get(key) is None

    store.put_state("state-1", "browser-a", {"verifier": "v"})
    assert store.take_state("state-1", "browser-b") is None  # another browser: refused and consumed
    assert store.take_state("state-1", "browser-a") is None
    store.put_state("state-2", "browser-a", {"verifier": "v"})
    assert store.take_state("state-2", "browser-a") == {"verifier": "v"}
    assert store.take_state("state-2", "browser-a") is None  # single use

    store.max_pending = 2
    store.put_state("s-a", "b", {})
    store.put_state("s-b", "b", {})
    with pytest.raises(StoreFull):
        store.put_state("s-c", "b", {})
    store.take_state("s-a", "b")
    store.put_state("s-c", "b", {})  # room again once one is taken
    store.max_pending = 10_000

    assert store.claim_once("cds-jti|client|abc", ttl=60)  # a CDS Hooks JWT's jti works once
    assert not RedisStore(redis_url, SECRET).claim_once("cds-jti|client|abc", ttl=60)  # on any host
    assert b"abc" not in b"".join(raw.keys("ivig:once:*"))  # only a digest is stored

    assert_holders_exclude_each_other(store, holders=8, hold_seconds=0.02)
    other = RedisStore(redis_url, SECRET)
    assert_held_key_times_out(store, other)
    with store.lock("task|dead", ttl=0.2):  # a holder that dies frees the key after its ttl
        time.sleep(0.3)
        with other.lock("task|dead", wait=1):
            pass


def test_two_instances_share_launches_and_write_exactly_one_task(redis_url, smart_stub, sekmet_base):
    port_a, port_b = free_port(), free_port()
    public = f"http://127.0.0.1:{port_a}"  # what a load balancer in front of both would be
    env = {"IVIG_ALLOWED_ISSUERS": smart_stub.base_url, "IVIG_CLIENT_ID": "ivig-redis",
           "IVIG_AS_OF": "2025-06-30", "IVIG_SECRET_KEY": SECRET, "IVIG_SESSION_URL": redis_url,
           "IVIG_PUBLIC_BASE_URL": public, "IVIG_LOG_LEVEL": "WARNING", "IVIG_WORKERS": "2"}
    patient = "ex12-patient"
    with ExitStack() as stack:
        a = stack.enter_context(run_app(env, port=port_a))
        b = stack.enter_context(run_app(env, port=port_b))
        browser = requests.Session()  # one cookie jar: both instances are on 127.0.0.1
        started = time.perf_counter()
        r = browser.get(f"{a}/launch", params={"iss": smart_stub.base_url, "launch": smart_stub.new_launch(patient)},
                        allow_redirects=False, timeout=30)
        assert r.status_code == 302, r.text[:300]
        answer = requests.get(r.headers["Location"], allow_redirects=False, timeout=30)
        callback = urlsplit(answer.headers["Location"])
        assert f"{callback.scheme}://{callback.netloc}{callback.path}" == f"{public}/callback"
        # the sign-in started on A comes back to B (its state, verifier and nonce are in Redis)
        r = browser.get(f"{b}/callback?{callback.query}", allow_redirects=False, timeout=30)
        assert r.status_code == 302, r.text[:300]
        ctx = parse_qs(urlsplit(r.headers["Location"]).query)["ctx"][0]
        launch_seconds = time.perf_counter() - started
        on_a = browser.get(f"{a}/api/report", params={"ctx": ctx}, timeout=30)
        on_b = browser.get(f"{b}/api/report", params={"ctx": ctx}, timeout=30)
        assert on_a.status_code == on_b.status_code == 200
        assert on_a.json()["patient"]["reference"] == on_b.json()["patient"]["reference"] == f"Patient/{patient}"
        page = browser.get(f"{b}/report", params={"ctx": ctx}, timeout=30).text
        token = page.split('name="csrf_token" value="')[1].split('"')[0]
        report = on_a.json()
        from smart_app.task import task_identifier

        ident = task_identifier(report)
        query = {"identifier": f"{DEFAULT_TASK_IDENTIFIER_SYSTEM}|{ident['value']}"}
        before = requests.get(f"{sekmet_base}/Task", params=query, timeout=10).json().get("entry") or []

        writers = 20
        barrier = threading.Barrier(writers)
        results: list[requests.Response] = []
        lock = threading.Lock()

        def write(n: int) -> None:
            session = requests.Session()
            session.cookies.update(browser.cookies)
            barrier.wait()
            resp = session.post(f"{(a, b)[n % 2]}/task", data={"csrf_token": token, "ctx": ctx},
                                headers={"Accept": "application/json"}, timeout=120)
            with lock:
                results.append(resp)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        write_seconds = time.perf_counter() - t0
        assert [r.status_code for r in results] == [200] * writers, [r.text[:200] for r in results]
        stored = requests.get(f"{sekmet_base}/Task", params=query, timeout=10).json().get("entry") or []
        assert len(stored) == 1, f"{len(stored)} Tasks for one patient + indication + ruleset"
        assert sum(r.json()["created"] for r in results) == (0 if before else 1)
        assert {r.json()["task"]["id"] for r in results} == {stored[0]["resource"]["id"]}
    print(f"\n  two instances on Redis: launch A->authorize->B in {launch_seconds * 1000:.0f} ms; "
          f"{writers} concurrent Task writes (A/B alternating) in {write_seconds:.2f} s -> {len(stored)} Task")
