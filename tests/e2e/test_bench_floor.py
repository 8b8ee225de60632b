"""The hyper floor the benchmark compares edgecore's proxy with (rust/edgecore-core/examples/
hyper_floor.rs): it must do the work it is said to do, the same forwarding fields as the nginx
baseline, or the reference row would compare unlike with unlike."""

from __future__ import annotations

import http.client
import shutil
import subprocess
from pathlib import Path

import pytest

from edgecore.bench.load import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def floor_binary() -> Path:
    """The example as `cargo test` builds it (the ci profile), built here if it is not."""
    built = ROOT / "target" / "ci" / "examples" / "hyper_floor"
    if not built.exists():
        cargo = shutil.which("cargo")
        if cargo is None:
            pytest.skip("cargo is not installed")
        subprocess.run(
            [cargo, "build", "-q", "--profile", "ci", "-p", "edgecore-core", "--example", "hyper_floor"],
            cwd=ROOT,
            check=True,
        )
    return built


@pytest.fixture
def floor(floor_binary, origin):
    port = free_port()
    host_port = origin.url.removeprefix("http://")
    proc = subprocess.Popen([str(floor_binary), "--port", str(port), "--origin", host_port, "--workers", "1"])
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_floor_sets_the_forwarding_fields_the_nginx_baseline_sets(floor, origin):
    conn = http.client.HTTPConnection("127.0.0.1", floor, timeout=10)
    for _ in range(3):
        conn.request("GET", "/page?x=1", headers={"Host": "shop.example"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        assert resp.getheader("via") == "1.1 floor"
    conn.close()
    got = origin.requests[-1]
    assert got["path"] == "/page?x=1"
    h = got["headers"]
    assert (h["x-forwarded-for"], h["x-forwarded-proto"], h["x-forwarded-host"], h["via"]) == (
        "127.0.0.1",
        "http",
        "shop.example",
        "1.1 floor",
    )
    # Keep-alive on both sides, as the nginx baseline's `keepalive` upstream: three requests on
    # one client connection reach the origin on one connection.
    assert origin.connections("/page") == 1


def test_the_floor_refuses_a_command_line_it_cannot_use(floor_binary):
    r = subprocess.run([str(floor_binary), "--port", "80"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "--port and --origin are required" in r.stderr
    r = subprocess.run(
        [str(floor_binary), "--port", "x", "--origin", "127.0.0.1:1"], capture_output=True, text=True, timeout=10
    )
    assert (r.returncode, "--port: not a port" in r.stderr) == (2, True)
