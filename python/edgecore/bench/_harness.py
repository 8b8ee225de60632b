"""The benchmark method: contenders alternate (A B C A B C …) within one run, each round times a
calibrated batch of calls, and results are medians over rounds with their spread. Alternating means
a noisy neighbour or a frequency change hits every contender alike, so ratios stay meaningful on a
busy 2-core machine even when absolute numbers move."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata


@dataclass
class Stats:
    """Per-call times of one contender over the rounds, in seconds."""

    name: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Relative spread: (max - min) / median over the rounds."""
        return (max(self.samples) - min(self.samples)) / self.median if self.samples else 0.0


@dataclass
class Ratio:
    """A target from an issue: `subject` must be `factor` times faster than `baseline` (or, when
    `factor` < 1, may be at most 1/`factor` slower)."""

    subject: str
    baseline: str
    factor: float
    label: str = ""


@dataclass
class SuiteResult:
    suite: str
    stats: dict[str, Stats]
    ratios: list[Ratio]
    notes: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)

    def measured(self, r: Ratio) -> float:
        return self.stats[r.baseline].median / self.stats[r.subject].median


@dataclass
class Batch:
    """A contender whose call performs `ops` operations (driven from C, e.g. by ``map``), so
    that the time per operation excludes the Python glue a one-call-per-operation loop adds to
    every contender alike (~60-100 ns here, which would otherwise cap every ratio)."""

    fn: Callable[[], object]
    ops: int

    def __call__(self) -> object:
        return self.fn()


_RSS_PRELUDE = """
import edgecore as ec
def rss():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
"""


def in_fresh_process(script: str) -> list[int]:
    """Runs `script` in a new interpreter (so memory figures start from a clean process), with
    `ec` imported and `rss()` (resident bytes) defined; returns the integers it prints."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _RSS_PRELUDE + script], capture_output=True, text=True, check=True
    ).stdout
    return [int(x) for x in out.split()]


def _calibrate(fn: Callable[[], object], target: float) -> int:
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= target / 4 or n >= 1 << 24:
            return max(1, int(n * target / max(dt, 1e-9)))
        n *= 4


def compare(
    contenders: dict[str, Callable[[], object]], *, rounds: int = 9, batch_time: float = 0.05
) -> dict[str, Stats]:
    """Times each contender in alternating rounds; returns per-call Stats by name."""
    counts = {name: _calibrate(fn, batch_time) for name, fn in contenders.items()}
    stats = {name: Stats(name) for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate who goes first
        for name in order:
            fn, n = contenders[name], counts[name]
            gc.collect()
            gc.disable()
            try:
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                dt = time.perf_counter() - t0
            finally:
                gc.enable()
            ops = fn.ops if isinstance(fn, Batch) else 1
            stats[name].samples.append(dt / (n * ops))
    return stats


def thread_cpu_cost(make: Callable[[int], Callable[[], object]], threads: int, per_thread: int) -> float:
    """CPU seconds per call with `threads` threads calling concurrently; `make(i)` gives thread
    i its zero-argument function (so per-thread keys are built outside the timed loop)."""
    import threading

    barrier = threading.Barrier(threads)
    cpu = [0.0] * threads

    def work(i: int) -> None:
        fn = make(i)
        barrier.wait()
        t0 = time.thread_time()
        for _ in range(per_thread):
            fn()
        cpu[i] = time.thread_time() - t0

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(cpu) / (threads * per_thread)


def version(dist: str) -> str:
    try:
        return f"{dist} {metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return f"{dist} (not installed)"


def fmt_time(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    return f"{seconds * 1e3:.2f} ms"


def print_result(res: SuiteResult) -> None:
    print(f"\n== {res.suite} ==")
    for note in res.notes:
        print(f"  {note}")
    for s in sorted(res.stats.values(), key=lambda s: s.median):
        print(f"  {s.name:<44} {fmt_time(s.median):>12}/call  (spread {s.spread * 100:.0f}%)")
    for k, v in res.figures.items():
        print(f"  {k}: {v}")
    for r in res.ratios:
        got = res.measured(r)
        ok = got >= r.factor
        label = r.label or f"{r.subject} vs {r.baseline}"
        print(f"  ratio {label:<56} {got:6.2f}x  (target >= {r.factor:g}x) {'PASS' if ok else 'MISS'}")
