"""Hypothesis: for random arrival sequences and costs, the Rust limiter decides exactly as a small
pure-Python reference model of GCRA (integer nanoseconds, injected clock)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import edgecore as ec


class ReferenceGCRA:
    """Token bucket as GCRA: admit iff now >= max(tat, now) + T*cost - T*burst."""

    def __init__(self, limit: int, period_ns: int, burst: int):
        self.interval = max(period_ns // limit, 1)
        self.tau = self.interval * burst
        self.tat: dict[str, int] = {}

    def check(self, key: str, now: int, cost: int) -> bool:
        base = max(self.tat.get(key, 0), now)
        new_tat = base + self.interval * cost
        if now < max(new_tat - self.tau, 0):
            return False
        if cost:
            self.tat[key] = new_tat
        return True


@given(
    limit=st.integers(1, 50),
    period_ms=st.integers(10, 5000),
    burst_extra=st.integers(0, 20),
    events=st.lists(
        st.tuples(st.integers(0, 400_000_000), st.sampled_from(["a", "b", "c"]), st.integers(0, 5)),
        min_size=1,
        max_size=80,
    ),
)
def test_rust_limiter_agrees_with_the_reference_model(limit, period_ms, burst_extra, events):
    burst = max(1, limit // 2 + burst_extra)
    period_ns = period_ms * 1_000_000
    rl = ec.RateLimiter(limit, period_ms / 1000, burst=burst)
    model = ReferenceGCRA(limit, period_ns, burst)
    now = 1_000_000_000
    for step, key, cost in events:
        now += step
        cost = min(cost, burst)
        got = rl.check(key, cost=cost, now=now / 1e9).allowed
        assert got == model.check(key, now, cost), (key, now, cost)


@given(st.lists(st.integers(0, 50_000_000), min_size=1, max_size=200))
def test_admitted_never_exceeds_burst_plus_rate(gaps):
    limit, burst = 20, 5
    rl = ec.RateLimiter(limit, 1.0, burst=burst)
    now = 1_000_000_000
    start = now
    admitted = 0
    for g in gaps:
        now += g
        admitted += rl.check("k", now=now / 1e9).allowed
    elapsed = (now - start) / 1e9
    assert admitted <= burst + limit * elapsed + 1e-9
