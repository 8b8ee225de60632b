"""assign_variant: deterministic, weighted, independent, the same in every process."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
import xxhash

import edgecore as ec


def test_deterministic_and_sticky():
    w = {"control": 50, "new": 50}
    assert all(ec.assign_variant("hero", f"u{i}", w) == ec.assign_variant("hero", f"u{i}", w) for i in range(1000))
    assert ec.assign_variant("hero", "u1", {"new": 50, "control": 50}) == ec.assign_variant("hero", "u1", w), (
        "dict order does not matter"
    )


@pytest.mark.parametrize("weights", [{"a": 0.5, "b": 0.5}, {"a": 0.1, "b": 0.3, "c": 0.6}, {"x": 1, "y": 1, "z": 98}])
def test_split_within_one_point_of_the_weights(weights):
    n = 100_000
    exp = ec.Experiment("checkout", weights)
    counts = Counter(exp.assign(f"user-{i}") for i in range(n))
    total = sum(weights.values())
    for v, w in weights.items():
        assert abs(counts[v] / n - w / total) < 0.01, (v, counts[v] / n, w / total)


def test_experiments_are_independent():
    # Chi-square test of independence on a 2x2 table of two 50/50 experiments.
    n = 40_000
    w = {"a": 1, "b": 1}
    e1, e2 = ec.Experiment("hero", w), ec.Experiment("pricing", w)
    table = Counter((e1.assign(f"u{i}"), e2.assign(f"u{i}")) for i in range(n))
    chi2 = 0.0
    for x in "ab":
        for y in "ab":
            row = table[(x, "a")] + table[(x, "b")]
            col = table[("a", y)] + table[("b", y)]
            expected = row * col / n
            chi2 += (table[(x, y)] - expected) ** 2 / expected
    assert chi2 < 10.83, chi2  # p = 0.001 for one degree of freedom


def test_identical_across_processes():
    code = (
        "import edgecore as ec; "
        "print(','.join(ec.assign_variant('hero', f'u{i}', {'a': 1, 'b': 2, 'c': 3}) for i in range(200)))"
    )
    runs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    here = ",".join(ec.assign_variant("hero", f"u{i}", {"a": 1, "b": 2, "c": 3}) for i in range(200))
    assert runs == {here + "\n"}


def test_the_documented_hash():
    # XXH3-64 of "experiment\x1funit", top 53 bits over 2^53, variants sorted by name.
    for i in range(500):
        unit = f"user-{i}"
        u = (xxhash.xxh3_64_intdigest(b"hero\x1f" + unit.encode()) >> 11) / 2**53
        expected = "a" if u < 0.25 else "b"
        assert ec.assign_variant("hero", unit, {"b": 3, "a": 1}) == expected


def test_validation():
    for bad in [{}, {"a": -1}, {"a": 0, "b": 0}, {"": 1}, {"a": float("nan")}]:
        with pytest.raises(ec.ConfigError):
            ec.assign_variant("e", "u", bad)
    assert ec.Experiment("e", {"b": 1, "a": 1}).variants == ["a", "b"]
