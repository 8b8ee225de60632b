"""Upstreams beyond round robin, through a running server with real origins on loopback: active
health checks, least_conn, consistent hashing, weights, the circuit breaker, reloads that keep
health and drain removed targets, and origin processes killed, stopped and restarted during a
bounded load run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import edgecore as ec
from tests.e2e.conftest import call
from tests.e2e.origin import Origin
from tests.e2e.test_upstreams import load, metric
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def origins():
    started = [Origin() for _ in range(3)]
    yield started
    for o in started:
        o.stop()


def test_active_checks_take_a_sick_target_out_before_any_request_reaches_it(origins):
    a, b, c = origins
    app = ec.Edge(origin="upstream:api").configure(metrics_path="/metrics")
    check = {"path": "/healthz", "interval": 0.05, "timeout": 0.5, "healthy": 2, "unhealthy": 2}
    app.upstream("api", [a.url, b.url, c.url], health=check)
    b.healthy = False
    with app.serve() as s:
        wait_for(lambda: metric(s.url, "edgecore_upstream_target_up", upstream="api", target=b.url) == 0, what="b down")
        # b still answers /x, but its health check says no: it gets none of them.
        assert load(s.url, "/x", 30) == [200] * 30
        assert b.count("/x") == 0 and a.count("/x") == c.count("/x") == 15
        probe = next(r for r in b.requests if r["path"] == "/healthz")
        assert probe["headers"]["user-agent"] == "edgecore-health-check"
        b.healthy = True
        wait_for(lambda: metric(s.url, "edgecore_upstream_target_up", upstream="api", target=b.url) == 1, what="b up")
        assert load(s.url, "/y", 30) == [200] * 30
        assert b.count("/y") == 10


def test_least_conn_sends_requests_past_a_busy_target(origins):
    a, b, _ = origins
    app = ec.Edge(origin="upstream:api")
    app.upstream("api", [a.url, b.url], balance="least_conn")
    with app.serve() as s:
        slow = threading.Thread(target=call, args=(s.url, "/slow?s=1.5"))
        slow.start()
        wait_for(lambda: a.count("/slow") + b.count("/slow") == 1, what="the slow request to arrive")
        busy, idle = (a, b) if a.count("/slow") else (b, a)
        for _ in range(10):
            assert call(s.url, "/x").status == 200
        slow.join()
        assert (busy.count("/x"), idle.count("/x")) == (0, 10), "round robin would have split them"
        for _ in range(10):
            assert call(s.url, "/z").status == 200
        assert busy.count("/z") >= 4, "once the slow body is read, the busy target is idle again"


def test_hashing_keeps_each_key_on_its_target_across_a_reload_that_removes_another(origins):
    urls = [o.url for o in origins]

    def app(targets: list[str]) -> ec.Edge:
        return ec.Edge(origin="upstream:api").upstream("api", targets, balance="hash:header:x-tenant")

    def owner(tenant: str) -> int:
        hits = [i for i, o in enumerate(origins) for r in o.requests if r["headers"].get("x-tenant") == tenant]
        assert len(set(hits)) == 1, f"{tenant} went to several targets: {hits}"
        return hits[0]

    tenants = [f"t{i}" for i in range(40)]
    with app(urls).serve() as s:
        for t in tenants * 2:
            assert call(s.url, "/x", headers={"x-tenant": t}).status == 200
        before = {t: owner(t) for t in tenants}
        assert len(set(before.values())) == 3, "the keys spread over every target"
        s.reload(app([urls[0], urls[2]]))
        for o in origins:
            o.requests.clear()
        for t in tenants:
            assert call(s.url, "/x", headers={"x-tenant": t}).status == 200
        after = {t: owner(t) for t in tenants}
    moved = [t for t in tenants if before[t] != 1 and after[t] != before[t]]
    assert moved == [], "only the removed target's keys move"
    assert all(after[t] in (0, 2) for t in tenants)


def test_weights_split_the_requests(origins):
    a, b, _ = origins
    app = ec.Edge(origin="upstream:api").upstream("api", [a.url, b.url], weights=[3, 1])
    with app.serve() as s:
        assert load(s.url, "/x", 40, workers=1) == [200] * 40
    assert (a.count("/x"), b.count("/x")) == (30, 10)


def test_the_circuit_breaker_answers_503_at_once_and_lets_go_when_bodies_end(origins):
    a, b, _ = origins
    app = ec.Edge(origin="upstream:api").configure(metrics_path="/metrics")
    app.upstream("api", [a.url, b.url], max_requests=2)

    def timed(path: str):
        started = time.monotonic()
        r = call(s.url, path)
        return r.status, r.headers.get("retry-after"), time.monotonic() - started

    with app.serve() as s:
        with ThreadPoolExecutor(2) as pool:
            slow = [pool.submit(timed, "/slow?s=1") for _ in range(2)]
            wait_for(lambda: a.count("/slow") + b.count("/slow") == 2, what="two slow requests in flight")
            refused = [timed("/x") for _ in range(4)]
            assert [(st, ra) for st, ra, _ in refused] == [(503, "1")] * 4
            assert max(t for _, _, t in refused) < 0.5, "refused at once, not queued"
            assert [f.result()[0] for f in slow] == [200, 200]
        assert metric(s.url, "edgecore_upstream_overflows_total", upstream="api") == 4
        assert metric(s.url, "edgecore_upstream_requests_in_flight", upstream="api") == 0
        assert load(s.url, "/big", 6, workers=2) == [200] * 6, "a streamed body gives its place back"
        assert metric(s.url, "edgecore_upstream_requests_in_flight", upstream="api") == 0


def test_a_reload_keeps_health_and_drains_a_removed_target(origins):
    a, b, c = origins

    def app(targets: list[str], extra: bool = False) -> ec.Edge:
        e = ec.Edge(origin="upstream:api").configure(metrics_path="/metrics")
        e.upstream("api", targets, eject_after=1, eject_for=60)
        if extra:
            e.rate_limit(paths="/limited/*", limit=5, period=60)
        return e

    with app([a.url, b.url, c.url]).serve() as s:
        assert load(s.url, "/x", 6, workers=1) == [200] * 6
        assert b.open and c.open, "kept-alive connections to every target"
        a.stop()
        assert load(s.url, "/y", 6, workers=1) == [200] * 6
        assert metric(s.url, "edgecore_upstream_target_up", upstream="api", target=a.url) == 0
        s.reload(app([a.url, b.url, c.url], extra=True))  # unrelated: a stays out
        assert metric(s.url, "edgecore_upstream_target_up", upstream="api", target=a.url) == 0
        assert metric(s.url, "edgecore_upstream_retries_total", upstream="api") >= 1
        s.reload(app([a.url, b.url], extra=True))  # c removed: its connections close
        wait_for(lambda: not c.open, what="c's pooled connections to close")
        assert load(s.url, "/z", 6, workers=1) == [200] * 6
        assert c.count("/z") == 0 and b.count("/z") == 6


class OriginProcess:
    """An origin in a process of its own, to kill -9 or SIGSTOP."""

    def __init__(self, port: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.origin", str(port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://"), self.url
        self.port = int(self.url.rsplit(":", 1)[1])

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_origin_processes_killed_stopped_and_restarted_under_load():
    procs = [OriginProcess() for _ in range(3)]
    app = ec.Edge(origin="upstream:api").configure(metrics_path="/metrics", origin_timeout=0.5)
    app.upstream("api", [p.url for p in procs], eject_after=2, eject_for=0.5, eject_max=1)
    statuses: list[int] = []
    stop = threading.Event()
    try:
        with app.serve() as s:

            def client() -> None:
                while not stop.is_set():
                    statuses.append(call(s.url, "/x").status)

            clients = [threading.Thread(target=client) for _ in range(4)]
            for t in clients:
                t.start()
            time.sleep(0.5)
            procs[1].kill()  # killed mid-run: connections reset, then refused
            time.sleep(1.0)
            procs[1] = OriginProcess(port=procs[1].port)  # restarted on its port
            wait_for(
                lambda: metric(s.url, "edgecore_upstream_target_up", upstream="api", target=procs[1].url) == 1,
                what="the restarted target back",
            )
            procs[2].signal(signal.SIGSTOP)  # slowed: accepts, never answers
            time.sleep(1.5)
            procs[2].signal(signal.SIGCONT)
            time.sleep(0.5)
            stop.set()
            for t in clients:
                t.join()
            requests = len(statuses)
            retries = metric(s.url, "edgecore_upstream_retries_total", upstream="api")
    finally:
        stop.set()
        for p in procs:
            p.signal(signal.SIGCONT)
            p.kill()
    assert requests > 100
    assert [st for st in statuses if st != 200] == [], "no GET failed"
    assert 1 <= retries <= 0.2 * requests + 10
