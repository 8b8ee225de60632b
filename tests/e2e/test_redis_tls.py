"""`rediss://`: limits and KV over TLS to a real redis-server (TLS port, a test CA), and the
server's certificate checked unless the URL says `#insecure`."""

from __future__ import annotations

import subprocess
import time

import pytest

import edgecore as ec
from tests.redis_server import free_port
from tests.tls_certs import CA


@pytest.fixture
def tls_redis(tmp_path):
    ca = CA(tmp_path)
    leaf = ca.issue()
    port = free_port()
    auth = ["--tls-auth-clients", "no", "--dir", str(tmp_path)]
    tls = ["--tls-cert-file", str(leaf.cert), "--tls-key-file", str(leaf.key), "--tls-ca-cert-file", str(ca.pem)]
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "", *tls, *auth],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    if proc.poll() is not None:
        pytest.fail("redis-server did not start with TLS")
    yield port
    proc.terminate()
    proc.wait(10)


def test_limits_and_kv_work_over_tls_and_the_certificate_is_checked(tls_redis):
    url = f"rediss://127.0.0.1:{tls_redis}/0#insecure"  # the test CA is in no trust store
    deadline = time.time() + 10
    kv = ec.KV(url, timeout=2)
    while True:
        try:
            kv.put("k", "v")
            break
        except ec.StoreError:
            assert time.time() < deadline
            time.sleep(0.1)
    assert kv.get("k") == b"v" and kv.incr("n") == 1
    limiter = ec.RateLimiter(2, 60, store=url, timeout=2, on_store_error="closed")
    decisions = [limiter.check("client") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert {d.source for d in decisions} == {"redis"}
    # Without #insecure the server's certificate must chain to a trusted root: this one does not.
    with pytest.raises(ec.StoreError, match="invalid peer certificate"):
        ec.KV(f"rediss://127.0.0.1:{tls_redis}/0", timeout=2).get("k")
