"""Redis Cluster for limits, KV and purge broadcast: a real local cluster (six redis-server
processes, three masters and three replicas, made by `redis-cli --cluster create`), including a
master killed under load."""

from __future__ import annotations

import threading
import time

import pytest
import redis

import edgecore as ec
from tests.e2e.conftest import call
from tests.redis_cluster import RedisCluster


@pytest.fixture(scope="module")
def cluster():
    c = RedisCluster().start()
    yield c
    c.stop()


def test_a_limit_is_shared_through_the_cluster_for_keys_on_every_master(cluster):
    a = ec.RateLimiter(5, 60, store=cluster.url, on_store_error="closed")
    b = ec.RateLimiter(5, 60, store=cluster.url, on_store_error="closed")
    keys = [f"client-{i}" for i in range(12)]
    # The keys' slots (the hash tag is the client key) live on all three masters.
    assert len({cluster.master_of(k).port for k in keys}) == 3
    for k in keys:
        decisions = [(a if i % 2 else b).check(k) for i in range(8)]
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3, k
        assert {d.source for d in decisions} == {"redis"}
    assert a.fallbacks == b.fallbacks == 0


def test_the_kv_store_reads_writes_and_lists_across_the_masters(cluster):
    kv = ec.KV(cluster.url, namespace="edgecore:kvtest:", timeout=3)
    names = [f"user:{i}" for i in range(30)]
    for n in names:
        kv.put(n, n.upper(), ttl=60)
    assert kv.get("user:7") == b"USER:7"
    assert kv.list("user:") == sorted(names)
    assert kv.delete("user:7") and kv.get("user:7") is None
    # What the cluster holds, read with an independent client.
    rc = redis.RedisCluster(host="127.0.0.1", port=cluster.servers[0].port)
    assert rc.get("edgecore:kvtest:user:8") == b"USER:8"
    assert len({cluster.master_of(f"edgecore:kvtest:{n}").port for n in names}) == 3


def test_a_purge_published_to_the_cluster_reaches_every_node(cluster, origin):
    def app() -> ec.Edge:
        return ec.Edge(origin=origin.url).cache(paths="/products/*", ttl=60).purge_broadcast(cluster.url)

    with app().serve() as a, app().serve() as b:
        for s in (a, b):
            call(s.url, "/products/1")
            assert call(s.url, "/products/1").headers["x-cache"] == "HIT"
        # In a cluster PUBLISH counts only the receiving node's subscribers: publish until both
        # nodes have applied the purge.
        deadline = time.time() + 15
        while any(call(s.url, "/products/1").headers["x-cache"] == "HIT" for s in (a, b)):
            assert time.time() < deadline, "a node never applied the purge"
            ec.publish_purge(cluster.url, "/products/")
            time.sleep(0.2)


def test_a_master_killed_under_load_fails_over_and_the_limit_holds_again():
    c = RedisCluster(node_timeout_ms=1000).start()
    try:
        limiter = ec.RateLimiter(1_000_000, 60, store=c.url, timeout=1.0, on_store_error="open")
        keys = [f"k{i}" for i in range(20)]
        victim = c.master_of("k0")
        on_victim = [k for k in keys if c.master_of(k).port == victim.port]
        stop = threading.Event()
        seen: list[tuple[float, str]] = []
        errors: list[BaseException] = []

        def load() -> None:
            try:
                while not stop.is_set():
                    for k in keys:
                        seen.append((time.time(), limiter.check(k).source))
            except BaseException as e:
                errors.append(e)

        t = threading.Thread(target=load)
        t.start()
        time.sleep(0.5)
        killed_at = time.time()
        c.kill(victim)
        c.wait_failover(victim)
        # Once the replica is promoted, checks on the dead master's keys reach the store again.
        deadline = time.time() + 20
        while limiter.check(on_victim[0]).source != "redis":
            assert time.time() < deadline, "the limiter never reached the new master"
            time.sleep(0.1)
        stop.set()
        t.join(30)
        assert not errors, errors
        before = [s for at, s in seen if at < killed_at]
        # Before the kill Redis answered (a loaded machine may time out a rare check).
        assert before and before.count("redis") >= 0.95 * len(before)
        assert all(limiter.check(k).source == "redis" for k in keys)
        # The promoted master took the slots: a shared count continues there.
        strict = ec.RateLimiter(3, 60, store=c.url, on_store_error="closed")
        assert [strict.check(on_victim[0]).allowed for _ in range(4)] == [True, True, True, False]
    finally:
        c.stop()


def test_a_bad_cluster_url_is_a_config_error_naming_it():
    with pytest.raises(ec.ConfigError, match="names no node"):
        ec.RateLimiter(5, 60, store="redis-cluster://")
    with pytest.raises(ec.ConfigError, match="names no node"):
        ec.KV("redis-cluster:///0")
