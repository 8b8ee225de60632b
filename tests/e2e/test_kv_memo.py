"""KV that reads at memory speed (`cache_ttl`), `get_async` and `incr`, against a real Redis."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis

import edgecore as ec
from tests.e2e.conftest import call
from tests.waiting import wait_for


def gets(url: str) -> int:
    stats = redis.Redis.from_url(url).info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


def test_reads_come_from_the_nodes_copy_and_a_write_anywhere_reaches_every_copy(redis_url):
    a = ec.KV(redis_url, cache_ttl=30)
    b = ec.KV(redis_url, cache_ttl=30)
    wait_for(lambda: a.cache_stats[1] and b.cache_stats[1], what="both nodes subscribed")
    heard = a.cache_stats[0]
    b.put("flag", "on")
    # b's invalidation reaches a asynchronously; once heard, a's copy stays until the next write.
    wait_for(lambda: a.cache_stats[0] > heard, what="a hears b's write")
    assert a.get("flag") == b"on"
    before = gets(redis_url)
    assert all(a.get("flag") == b"on" for _ in range(50))
    assert gets(redis_url) == before  # fifty reads, no round trip
    b.put("flag", "off")  # another node writes: a's copy is dropped when the key is heard
    wait_for(lambda: a.get("flag") == b"off", what="a sees b's write")
    b.delete("flag")
    wait_for(lambda: a.get("flag") is None, what="a sees b's delete")
    assert a.cache_stats[0] >= 2


def test_a_lost_invalidation_is_bounded_by_cache_ttl(redis_url):
    a = ec.KV(redis_url, cache_ttl=0.5)
    wait_for(lambda: a.cache_stats[1], what="subscribed")
    heard = a.cache_stats[0]
    a.put("k", "old")
    wait_for(lambda: a.cache_stats[0] > heard, what="a hears its own write")
    assert a.get("k") == b"old"
    # Written behind edgecore's back: nothing is published.
    redis.Redis.from_url(redis_url).set("edgecore:kv:k", "new")
    assert a.get("k") == b"old"
    time.sleep(0.6)
    assert a.get("k") == b"new"


def test_get_async_never_blocks_the_loop_and_reports_errors(redis_url):
    kv = ec.KV(redis_url, cache_ttl=30)
    mem = ec.KV()
    kv.put("a", "1")
    mem.put("m", "2")

    async def main() -> tuple:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        got = await asyncio.gather(kv.get_async("a"), kv.get_async("missing"), mem.get_async("m"))
        again = await kv.get_async("a")  # from the memo: ready at once
        t.cancel()
        return got, again, ticks

    (got, again, ticks) = asyncio.run(main())
    assert got == [b"1", None, b"2"] and again == b"1" and ticks > 0
    dead = ec.KV("redis://127.0.0.1:1/0", timeout=0.1)

    async def read_dead() -> bytes | None:
        return await dead.get_async("x")

    with pytest.raises(ec.StoreError):
        asyncio.run(read_dead())


def test_incr_is_atomic_across_nodes_and_gives_a_new_key_its_ttl(redis_url):
    nodes = [ec.KV(redis_url, cache_ttl=30) for _ in range(2)]

    def bump(kv: ec.KV) -> None:
        for _ in range(100):
            kv.incr("hits", ttl=60)

    threads = [threading.Thread(target=bump, args=(n,)) for n in nodes for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    r = redis.Redis.from_url(redis_url)
    assert int(r.get("edgecore:kv:hits")) == 400 and 0 < r.pttl("edgecore:kv:hits") <= 60_000
    wait_for(lambda: all(n.get("hits") == b"400" for n in nodes), what="every copy sees 400")
    assert nodes[0].incr("hits", by=-10) == 390
    nodes[0].put("text", "abc")
    with pytest.raises(ec.StoreError, match="not an integer"):
        nodes[0].incr("text")
    mem = ec.KV()
    assert [mem.incr("n") for _ in range(3)] == [1, 2, 3] and mem.incr("n", by=5) == 8
    mem.put("s", "x")
    with pytest.raises(ec.StoreError, match="not an integer"):
        mem.incr("s")


def test_an_async_handler_reads_the_kv_without_blocking(origin, redis_url):
    app = ec.Edge(origin=origin.url)
    app.kv("flags", redis_url, cache_ttl=30)

    @app.route("/flag")
    async def flag(request, env):
        value = await env.kv["flags"].get_async("beta")
        count = env.kv["flags"].incr("views")
        return {"beta": (value or b"").decode(), "views": count}

    with app.serve() as srv:
        ec.KV(redis_url).put("beta", "yes")
        assert call(srv.url, "/flag").json() == {"beta": "yes", "views": 1}
        assert call(srv.url, "/flag").json()["views"] == 2


def test_cache_ttl_needs_a_redis_store():
    with pytest.raises(ec.ConfigError, match="cache_ttl is for a Redis KV"):
        ec.KV(cache_ttl=5)
    with pytest.raises(ec.ConfigError, match="cache_ttl must be a positive"):
        ec.Edge().kv("x", "redis://127.0.0.1:1/0", cache_ttl=-1)
