"""RateLimiter in process: semantics, decisions, errors, and exactness under threads."""

from __future__ import annotations

import threading
import time

import pytest

import edgecore as ec


def test_burst_then_refill():
    rl = ec.RateLimiter(10, 1.0, burst=3)
    t = 100.0
    assert [rl.check("k", now=t).allowed for _ in range(4)] == [True, True, True, False]
    d = rl.check("k", now=t)
    assert (d.allowed, d.remaining, d.limit, d.source) == (False, 0, 10, "local")
    assert d.retry_after == pytest.approx(0.1)
    assert d.reset_after == pytest.approx(0.3)
    assert rl.check("k", now=t + 0.1).allowed
    assert not rl.check("k", now=t + 0.1).allowed
    assert rl.check("other", now=t).allowed, "keys are independent"


def test_default_burst_is_limit_and_decision_fields():
    rl = ec.RateLimiter(5, 60)
    d = rl.check("ip:1", now=1.0)
    assert d and d.allowed and d.remaining == 4 and d.retry_after == 0.0
    assert d.reset_after == pytest.approx(12.0)
    assert "allowed=True" in repr(d)
    assert dict(d.headers()) == {"RateLimit-Policy": '"default";q=5;w=60', "RateLimit": '"default";r=4;t=12'}
    assert dict(d.headers("legacy")) == {"RateLimit-Limit": "5", "RateLimit-Remaining": "4", "RateLimit-Reset": "12"}
    # The limit reported is the bucket that applies: a burst smaller than the limit.
    small = ec.RateLimiter(10, 60, burst=2).check("ip:1", now=1.0)
    assert dict(small.headers("legacy"))["RateLimit-Limit"] == "2"
    assert dict(small.headers("both"))["RateLimit"] == '"default";r=1;t=6'
    with pytest.raises(ec.ConfigError, match="draft"):
        d.headers("nope")
    for _ in range(4):
        rl.check("ip:1", now=1.0)
    refused = rl.check("ip:1", now=1.0)
    assert not refused
    assert dict(refused.headers())["Retry-After"] == "12"


def test_cost():
    rl = ec.RateLimiter(10, 1.0)
    assert rl.check("k", cost=7, now=5.0).remaining == 3
    assert not rl.check("k", cost=4, now=5.0).allowed
    assert rl.check("k", cost=3, now=5.0).allowed
    with pytest.raises(ec.ConfigError, match="cost 11 is larger than the burst 10"):
        rl.check("k", cost=11)
    assert rl.check("k", cost=0, now=5.0).allowed, "a zero-cost check only reads"


def test_configuration_errors():
    with pytest.raises(ec.ConfigError, match="limit"):
        ec.RateLimiter(0, 1)
    with pytest.raises(ec.ConfigError, match="period"):
        ec.RateLimiter(1, 0)
    with pytest.raises(ec.ConfigError, match="burst"):
        ec.RateLimiter(1, 1, burst=0)
    with pytest.raises(ec.ConfigError, match="on_store_error"):
        ec.RateLimiter(1, 1, on_store_error="maybe")
    with pytest.raises(ec.ConfigError, match="Redis URL"):
        ec.RateLimiter(1, 1, store="http://nope")
    with pytest.raises(OverflowError):
        ec.RateLimiter(-1, 1)
    assert "burst=1" in repr(ec.RateLimiter(1, 1))


def test_real_clock():
    rl = ec.RateLimiter(20, 1.0, burst=1)
    assert rl.check("k").allowed
    assert not rl.check("k").allowed
    time.sleep(0.06)
    assert rl.check("k").allowed


def test_many_threads_on_one_key_are_exact():
    limit, burst = 2000, 100
    rl = ec.RateLimiter(limit, 1.0, burst=burst)
    admitted = [0] * 8
    stop = time.monotonic() + 2.0
    start = time.monotonic()

    def worker(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            if rl.check("hot").allowed:
                n += 1
        admitted[i] = n

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    bound = burst + limit * elapsed
    total = sum(admitted)
    assert total <= bound + 1, (total, bound)
    assert total >= 0.99 * (burst + limit * 2.0) - 1, (total, bound)
