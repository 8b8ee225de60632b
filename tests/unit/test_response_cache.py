"""ResponseCache: the byte-bounded LRU of the library API."""

from __future__ import annotations

import pytest

import edgecore as ec


def r(n: int = 10, **headers) -> ec.Response:
    return ec.Response(b"x" * n, headers=headers)


def test_get_put_delete_len():
    c = ec.ResponseCache(1 << 20)
    resp = r()
    assert c.put("k", resp, 60)
    assert c.get("k") is resp, "the stored object itself comes back"
    assert len(c) == 1 and c.size_bytes > 10
    assert c.delete("k") and not c.delete("k")
    assert c.get("k") is None and c.size_bytes == 0


def test_ttl_expiry_with_an_injected_clock():
    c = ec.ResponseCache(1 << 20)
    c.put("k", r(), 10, now=1000.0)
    assert c.get("k", now=1009.9) is not None
    assert c.get("k", now=1010.0) is None


def test_lru_eviction_by_bytes():
    c = ec.ResponseCache(4096)
    for i in range(10):
        assert c.put(f"k{i}", r(1000), 60)
        c.get("k0")  # keep k0 hot
    assert c.size_bytes <= 4096
    assert c.get("k0") is not None, "the recently used entry survives"
    assert c.get("k1") is None, "the least recently used went first"
    assert c.evictions > 0


def test_max_entries():
    c = ec.ResponseCache(1 << 20, max_entries=3)
    for i in range(5):
        c.put(f"k{i}", r(), 60)
    assert len(c) == 3


def test_too_large_is_refused_not_stored():
    c = ec.ResponseCache(2048)
    assert c.put("big", r(5000), 60) is False
    assert len(c) == 0


def test_purge_by_prefix():
    c = ec.ResponseCache(1 << 20)
    for k in ["https://a/x/1", "https://a/x/2", "https://a/y"]:
        c.put(k, r(), 60)
    assert c.purge("https://a/x/") == 2
    assert c.purge() == 1
    assert len(c) == 0


def test_a_response_is_weighed_again_after_its_headers_change():
    # The header weight is computed once per response and kept until the headers change.
    c = ec.ResponseCache(1 << 20)
    resp = r(10, a="1")
    c.put("one", resp, 60)
    one = c.size_bytes
    resp.headers.set("x-big", "v" * 5000)
    c.put("two", resp, 60)
    two = c.size_bytes - one
    assert two >= one + 5000
    resp.headers.delete("x-big")
    c.put("six", resp, 60)
    assert abs(c.size_bytes - one - two - one) < 200, "weighed again without the big field"


def test_ttl_accepts_ints_floats_and_number_like_objects():
    import decimal
    import fractions

    c = ec.ResponseCache(1 << 20)
    for ttl in (10, 10.0, fractions.Fraction(21, 2), decimal.Decimal("10.5"), 2**70):
        assert c.put("k", r(), ttl, now=1000.0)
        assert c.get("k", now=1009.9) is not None
    with pytest.raises(TypeError):
        c.put("k", r(), "10")


def test_configuration_errors():
    with pytest.raises(ec.ConfigError):
        ec.ResponseCache(10)
    with pytest.raises(ec.ConfigError):
        ec.ResponseCache(1 << 20, max_entries=0)
    with pytest.raises(ec.ConfigError, match="ttl"):
        ec.ResponseCache(1 << 20).put("k", r(), 0)
    with pytest.raises(TypeError):
        ec.ResponseCache(1 << 20).put("k", b"not a response", 1)
