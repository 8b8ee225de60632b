"""The benchmark report's server targets: which contender each ratio is taken against."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from edgecore.bench import load as L
from edgecore.bench.report import load_ratios


def row(name: str, rps: float, cpu_us: float) -> dict:
    return {"name": name, "rps": rps, "rps_spread": 0.0, "p99_ms": 1.0, "cpu_us": cpu_us, "errors": 0}


def test_the_proxy_target_is_taken_against_nginx_doing_the_same_work():
    load = {
        "scenarios": {
            "proxy": [
                row("edgecore proxy", 40000, 21.0),
                row(L.NGINX_PROXY, 45000, 20.0),
                row(L.NGINX_PROXY_BARE, 50000, 17.5),
            ]
        }
    }
    got = {label: (round(x, 3), goal, ok) for label, x, goal, ok in load_ratios(load)}
    assert got["edgecore proxy CPU vs nginx proxy_pass"] == (1.05, "<= 1.2x (CPU per request)", True)
    # The bare proxy_pass is a reference row: shown, never a miss.
    assert got["edgecore proxy CPU vs bare nginx proxy_pass (reference)"] == (1.2, "", None)


def test_a_missing_contender_gives_no_row():
    load = {"scenarios": {"proxy": [row("edgecore proxy", 40000, 21.0)]}}
    assert load_ratios(load) == []


def test_the_forwarding_fields_go_only_into_the_proxy_configuration(tmp_path):
    same = L.nginx_conf(tmp_path, 8001, "", upstream=9000, forwarding=True).read_text()
    bare = L.nginx_conf(tmp_path, 8002, "", upstream=9000).read_text()
    plain = L.nginx_conf(tmp_path, 8003, "hello", forwarding=True).read_text()
    for field in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Via"):
        assert field in same
        assert field not in bare and field not in plain
    nginx = shutil.which("nginx") or next((p for p in ["/usr/sbin/nginx"] if os.path.exists(p)), None)
    if nginx is None:
        pytest.skip("nginx is not installed")
    for conf in (same, bare):
        path = tmp_path / "check.conf"
        path.write_text(conf)
        r = subprocess.run([nginx, "-t", "-c", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
