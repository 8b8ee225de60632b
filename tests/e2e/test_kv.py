"""KV: the same semantics in process and on a real Redis."""

from __future__ import annotations

import time

import pytest

import edgecore as ec


@pytest.fixture(params=["memory", "redis"])
def kv(request):
    if request.param == "memory":
        return ec.KV()
    return ec.KV(request.getfixturevalue("redis_url"))


def test_put_get_overwrite_delete(kv):
    assert kv.get("missing") is None
    kv.put("a", b"1")
    kv.put("s", "héllo")
    assert kv.get("a") == b"1"
    assert kv.get("s") == "héllo".encode()
    kv.put("a", b"2")
    assert kv.get("a") == b"2"
    assert kv.delete("a") is True
    assert kv.delete("a") is False
    assert kv.get("a") is None


def test_ttl_expiry(kv):
    kv.put("short", b"x", ttl=0.15)
    kv.put("long", b"y", ttl=30)
    assert kv.get("short") == b"x"
    time.sleep(0.25)
    assert kv.get("short") is None
    assert kv.get("long") == b"y"
    assert "short" not in kv.list()
    kv.put("long", b"z")  # overwrite without ttl: no longer expires
    assert kv.get("long") == b"z"


def test_prefix_listing(kv):
    for k in ["user:1", "user:2", "user:10", "session:1", "us*er", "user[x]"]:
        kv.put(k, b"v")
    assert kv.list("user:") == ["user:1", "user:10", "user:2"]
    assert kv.list("us*") == ["us*er"], "glob characters in the prefix match literally"
    assert kv.list("user[") == ["user[x]"]
    assert kv.list() == sorted(["user:1", "user:2", "user:10", "session:1", "us*er", "user[x]"])


def test_large_values(kv):
    big = bytes(range(256)) * 4096  # 1 MiB
    kv.put("big", big)
    assert kv.get("big") == big


def test_errors(kv):
    with pytest.raises(ec.ConfigError, match="ttl"):
        kv.put("k", b"v", ttl=-1)
    with pytest.raises(TypeError):
        kv.put("k", 5)


def test_memory_budget_refuses_rather_than_drops():
    kv = ec.KV(max_bytes=10_000)
    kv.put("a", b"x" * 6000)
    with pytest.raises(ec.StoreError, match="budget"):
        kv.put("b", b"x" * 6000)
    assert kv.get("a") == b"x" * 6000, "nothing live was dropped"
    kv.delete("a")
    kv.put("b", b"x" * 6000)


def test_memory_budget_reclaims_expired_entries():
    kv = ec.KV(max_bytes=10_000)
    kv.put("a", b"x" * 6000, ttl=0.05)
    time.sleep(0.1)
    kv.put("b", b"x" * 6000)
    assert kv.get("b") is not None


def test_unreachable_redis_raises_store_error():
    kv = ec.KV("redis://127.0.0.1:1/0", timeout=0.1)
    with pytest.raises(ec.StoreError, match=r"127\.0\.0\.1:1"):
        kv.get("k")
    with pytest.raises(ec.StoreError):
        kv.put("k", b"v")
    assert isinstance(ec.StoreError("x"), ec.EdgeError)


def test_namespaces_isolate(redis_url):
    a = ec.KV(redis_url, namespace="app-a:")
    b = ec.KV(redis_url, namespace="app-b:")
    a.put("k", b"1")
    assert b.get("k") is None
    assert a.list() == ["k"] and b.list() == []
