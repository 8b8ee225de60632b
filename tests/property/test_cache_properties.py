"""Hypothesis: the cache never exceeds its byte budget, never returns an expired entry, and never
serves a response stored for one key dimension (variant, country, user) to another."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import edgecore as ec

ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 30), st.integers(0, 3000), st.floats(0.5, 50)),
        st.tuples(st.just("get"), st.integers(0, 30), st.just(0), st.just(0.0)),
        st.tuples(st.just("del"), st.integers(0, 30), st.just(0), st.just(0.0)),
        st.tuples(st.just("purge"), st.integers(0, 3), st.just(0), st.just(0.0)),
        st.tuples(st.just("tick"), st.just(0), st.just(0), st.floats(0, 20)),
    ),
    max_size=120,
)


@given(ops, st.sampled_from([4096, 20_000, 100_000]))
def test_bounded_and_never_expired(sequence, max_bytes):
    cache = ec.ResponseCache(max_bytes)
    now = 1000.0
    expiry: dict[str, float] = {}
    for op, k, size, x in sequence:
        key = f"k{k}"
        if op == "put":
            resp = ec.Response(b"x" * size)
            if cache.put(key, resp, x, now=now):
                expiry[key] = now + x
            else:
                expiry.pop(key, None)
        elif op == "get":
            got = cache.get(key, now=now)
            if got is not None:
                assert key in expiry and now < expiry[key], "returned an expired (or unknown) entry"
        elif op == "del":
            cache.delete(key)
            expiry.pop(key, None)
        elif op == "purge":
            prefix = f"k{k}"
            cache.purge(prefix)
            for kk in [kk for kk in expiry if kk.startswith(prefix)]:
                del expiry[kk]
        else:
            now += x
        # The store's invariant (cache/store.rs): every shard within its share, so the whole
        # within the budget, exactly.
        assert cache.size_bytes <= max_bytes


@given(ops)
def test_with_room_for_everything_a_fresh_entry_is_always_found_and_an_expired_one_never(sequence):
    """With a budget that never evicts, `get` must agree with the model both ways: an always
    missing cache fails this (the property above cannot tell)."""
    cache = ec.ResponseCache(1 << 30)
    now = 1000.0
    expiry: dict[str, float] = {}
    for op, k, size, x in sequence:
        key = f"k{k}"
        if op == "put":
            assert cache.put(key, ec.Response(b"x" * size), x, now=now)
            expiry[key] = now + x
        elif op == "get":
            fresh = key in expiry and now < expiry[key]
            assert (cache.get(key, now=now) is not None) == fresh, (key, now, expiry.get(key))
        elif op == "del":
            cache.delete(key)
            expiry.pop(key, None)
        elif op == "purge":
            cache.purge(f"k{k}")
            for kk in [kk for kk in expiry if kk.startswith(f"k{k}")]:
                del expiry[kk]
        else:
            now += x


dimension = st.fixed_dictionaries(
    {
        "variant:hero": st.sampled_from(["a", "b"]),
        "country": st.sampled_from(["DE", "FR", "US"]),
        "claim:sub": st.sampled_from(["u1", "u2"]),
    }
)


@given(st.lists(st.tuples(dimension, st.integers(0, 2)), min_size=1, max_size=30), dimension)
def test_a_response_for_one_dimension_is_never_served_to_another(stored, probe):
    cache = ec.HTTPCache(1 << 20)
    req = lambda path: ec.Request("GET", path, headers={"Host": "h"})  # noqa: E731
    truth: dict[tuple, bytes] = {}
    for dims, path_i in stored:
        path = f"/p{path_i}"
        body = repr((sorted(dims.items()), path)).encode()
        cache.store(req(path), ec.Response(body, headers={"Cache-Control": "max-age=60"}), dimensions=dims, now=0.0)
        truth[(tuple(sorted(dims.items())), path)] = body
    for path_i in range(3):
        path = f"/p{path_i}"
        found = cache.lookup(req(path), dimensions=probe, now=1.0)
        expected = truth.get((tuple(sorted(probe.items())), path))
        if found.status == "HIT":
            assert found.response.body == expected
        else:
            assert expected is None
