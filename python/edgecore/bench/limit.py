"""RateLimiter.check (in process) vs the `limits` library (memory storage, moving and fixed
window) and a hand-written pure-Python token bucket; a local-first shared limiter (`sync=`,
when `redis-server` is installed: a private one is started) vs in process; two threads vs one;
memory per key."""

from __future__ import annotations

import functools
import time

from ._harness import Ratio, SuiteResult, compare, in_fresh_process, thread_cpu_cost, version


class PyTokenBucket:
    """The straightforward pure-Python token bucket a user would write."""

    def __init__(self, limit: int, period: float) -> None:
        self.rate = limit / period
        self.capacity = float(limit)
        self.buckets: dict[str, tuple[float, float]] = {}

    def check(self, key: str) -> bool:
        now = time.monotonic()
        tokens, last = self.buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self.buckets[key] = (tokens - 1, now)
            return True
        self.buckets[key] = (tokens, now)
        return False


MEMORY_SCRIPT = """
rl = ec.RateLimiter(100, 60.0)
check = rl.check
check("warm-up", now=1.0)
base = rss()
for i in range(1_000_000):
    check(f"client-{i}", now=1.0)  # keys made on the fly: only the limiter holds memory
after = rss()
print(after, after - base, base)
"""


LOCAL_FIRST = "edgecore RateLimiter.check, local-first shared (sync=0.05)"


class _PrivateRedis:
    """A redis-server on a free loopback port for the local-first contender (None without one)."""

    def __enter__(self) -> str | None:
        import shutil
        import socket
        import subprocess

        exe = shutil.which("redis-server")
        if exe is None:
            self.proc = None
            return None
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return f"redis://127.0.0.1:{port}/0"
            except OSError:
                time.sleep(0.02)
        return None

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def run(quick: bool = False) -> SuiteResult:
    import limits
    from limits import storage, strategies

    import edgecore as ec

    rl = ec.RateLimiter(1_000_000, 1.0)
    mem = storage.MemoryStorage()
    moving = strategies.MovingWindowRateLimiter(mem)
    fixed = strategies.FixedWindowRateLimiter(storage.MemoryStorage())
    item = limits.parse("1000000/second")
    bucket = PyTokenBucket(1_000_000, 1.0)
    contenders = {
        "edgecore RateLimiter.check": lambda: rl.check("client-42"),
        "limits moving window": lambda: moving.hit(item, "client-42"),
        "limits fixed window": lambda: fixed.hit(item, "client-42"),
        "pure-Python token bucket": lambda: bucket.check("client-42"),
    }
    with _PrivateRedis() as redis_url:
        if redis_url:
            synced = ec.RateLimiter(1_000_000, 1.0, store=redis_url, sync=0.05)
            contenders[LOCAL_FIRST] = lambda: synced.check("client-42")
        stats = compare(contenders, rounds=7 if quick else 11)
    n = 50_000 if quick else 200_000
    per_thread_check = lambda i: functools.partial(rl.check, f"client-{i}")  # noqa: E731
    one = [thread_cpu_cost(per_thread_check, 1, n) for _ in range(3)]
    two = [thread_cpu_cost(per_thread_check, 2, n) for _ in range(3)]
    one.sort()
    two.sort()
    rss_total, rss_keys, _base = in_fresh_process(MEMORY_SCRIPT)
    res = SuiteResult(
        "Rate limiting (in-process check)",
        stats,
        [
            Ratio("edgecore RateLimiter.check", "limits moving window", 10.0),
            Ratio("edgecore RateLimiter.check", "limits fixed window", 10.0),
            Ratio("edgecore RateLimiter.check", "pure-Python token bucket", 1.0),
            *([Ratio(LOCAL_FIRST, "edgecore RateLimiter.check", 0.9)] if LOCAL_FIRST in stats else []),
        ],
        notes=[version("limits"), "limits: MemoryStorage, its documented setup; checks on one hot key"],
    )
    res.figures["CPU per check, 1 thread"] = f"{one[1] * 1e9:.0f} ns"
    res.figures["CPU per check, 2 threads"] = (
        f"{two[1] * 1e9:.0f} ns ({two[1] / one[1]:.2f}x one thread; target <= 1.5x)"
    )
    res.figures["1,000,000 keys"] = (
        f"process RSS {rss_total / 1e6:.1f} MB, of which {rss_keys / 1e6:.1f} MB for the keys (target < 100 MB)"
    )
    return res
