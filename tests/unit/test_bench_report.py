"""The benchmark report's server targets: which contender each ratio is taken against."""

from __future__ import annotations

import itertools
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
    assert got["edgecore proxy CPU vs nginx proxy_pass"] == (1.05, "<= 1.0x (CPU per request)", False)
    # The bare proxy_pass is a reference row: shown, never a miss.
    assert got["edgecore proxy CPU vs bare nginx proxy_pass (reference)"] == (1.2, "", None)


def test_the_upstream_row_compares_with_the_single_origin_proxy():
    load = {"scenarios": {"proxy": [row("edgecore proxy", 40000, 20.0), row(L.UPSTREAM_TWO, 39000, 21.5)]}}
    got = {label: (round(x, 3), goal, ok) for label, x, goal, ok in load_ratios(load)}
    assert got == {"proxy to an upstream of two targets: CPU vs one origin": (1.075, "<= 1.05x", False)}


def test_the_pipeline_and_handler_targets_are_taken_in_cpu_and_in_requests():
    load = {
        "scenarios": {
            "pipeline": [row("edgecore", 90000, 15.0), row("nginx return 200", 100000, 8.0)],
            "hello": [
                row("edgecore def handler", 70000, 14.0),
                row("uvicorn raw ASGI", 40000, 25.0),
                row("Granian RSGI", 60000, 17.0),
            ],
        }
    }
    got = {label: (round(x, 3), goal, ok) for label, x, goal, ok in load_ratios(load)}
    assert got["edgecore vs nginx return 200"] == (0.9, ">= 0.8x", True)
    assert got["edgecore pipeline CPU vs nginx return 200"] == (1.875, "<= 2x (CPU per request)", True)
    assert got["edgecore def handler CPU vs uvicorn raw ASGI"] == (0.56, "<= 0.6x (CPU per request)", True)
    assert got["edgecore def handler CPU vs Granian RSGI"] == (0.824, "<= 0.8x (CPU per request)", False)


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


def test_the_bench_tool_says_what_to_install_before_running_anything(monkeypatch, capsys):
    import importlib.util

    from edgecore.bench import __main__ as bench_main
    from edgecore.bench import requirements

    real = importlib.util.find_spec
    monkeypatch.setattr(
        requirements.importlib.util, "find_spec", lambda m: None if m in ("matplotlib", "granian") else real(m)
    )
    monkeypatch.setattr(requirements.shutil, "which", lambda t: None)
    monkeypatch.setattr(requirements, "_on_path", lambda t: False)
    ran = []
    monkeypatch.setattr(bench_main.importlib, "import_module", lambda name: ran.append(name))
    assert bench_main.main(["--quick"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'edgecore[bench]'" in err and "matplotlib" in err and "granian" in err
    assert "wrk and nginx" in err and "--no-load" in err
    assert ran == [], "nothing runs before the requirements are met"
    # Without the load benchmark, neither granian nor wrk is needed; matplotlib still is.
    assert bench_main.main(["--only", "jwt"]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "granian" not in err and "wrk" not in err


def test_the_bench_extra_brings_every_module_the_tool_checks():
    from pathlib import Path

    import tomllib

    from edgecore.bench.requirements import MODULES, SUITE_MODULES

    extra = tomllib.loads(Path("pyproject.toml").read_text())["project"]["optional-dependencies"]["bench"]
    names = {r.split(">")[0].split("=")[0] for r in extra}
    assert set(MODULES.values()) == names
    assert set().union(*SUITE_MODULES.values()) | {"matplotlib"} <= set(MODULES)


def test_the_phase_breakdown_and_the_jwt_target_come_from_the_step_contenders():
    from edgecore.bench.report import phase_breakdown

    names = [n for n, _ in L.PHASE_STEPS]
    load = {"scenarios": {"phases": [row(n, 1, cpu) for n, cpu in zip(names, (10.0, 10.6, 11.0, 12.5), strict=True)]}}
    got = phase_breakdown(load)
    assert [n for n, _, _ in got] == names
    assert [round(a, 2) for _, _, a in got] == [10.0, 0.6, 0.4, 1.5]
    jwt = {label: (round(x, 2), goal, ok) for label, x, goal, ok in load_ratios(load)}
    assert jwt["JWT-protected cache hit: CPU added (µs)"] == (0.6, "<= 1 µs", True)
    load["scenarios"]["phases"][1]["cpu_us"] = 12.0
    assert dict((lbl, ok) for lbl, _, _, ok in load_ratios(load))["JWT-protected cache hit: CPU added (µs)"] is False
    # Each step adds exactly one thing to the step before.
    steps = [set(s.split(",")) for _, s in L.PHASE_STEPS]
    assert all(len(b - a) == 1 and a < b for a, b in itertools.pairwise(steps))


def test_each_feature_is_costed_over_the_cache_hit_and_unused_ones_must_cost_nothing():
    from edgecore.bench.report import feature_costs

    names = [n for n, _, _ in L.FEATURE_STEPS]
    cpus = (10.0, 10.4, 10.2, 10.9, 11.5, 10.3)
    load = {"scenarios": {"features": [row(n, 1, c) for n, c in zip(names, cpus, strict=True)]}}
    assert [round(a, 2) for _, _, a in feature_costs(load)] == [0.0, 0.4, 0.2, 0.9, 1.5, 0.3]
    got = {label: (round(x, 2), ok) for label, x, _, ok in load_ratios(load)}
    assert got["cache hit with unused CORS, access and compression: CPU vs none"] == (1.03, True)
    load["scenarios"]["features"][-1]["cpu_us"] = 11.0
    assert {lbl: ok for lbl, _, _, ok in load_ratios(load)}[
        "cache hit with unused CORS, access and compression: CPU vs none"
    ] is False
    # Every feature row is the cache hit plus exactly one thing, each step a real server step.
    steps = [set(s.split(",")) for _, s, _ in L.FEATURE_STEPS]
    assert all(s - steps[0] and len(s - steps[0]) == 1 for s in steps[1:])


def test_the_feature_servers_start_and_answer_cache_hits():
    import sys
    import time
    import urllib.request

    from tests.e2e.origin import Origin

    origin = Origin()
    for _name, steps, headers in L.FEATURE_STEPS[1:]:
        port = L.free_port()
        cmd = [sys.executable, "-m", "edgecore.bench.servers", "edgecore-steps", "--steps", steps]
        p = subprocess.Popen([*cmd, "--port", str(port), "--origin", origin.url])
        try:
            L.wait_port(port)
            statuses = []
            for _ in range(2):
                req = urllib.request.Request(f"http://127.0.0.1:{port}/cached/x", headers=headers)
                with urllib.request.urlopen(req, timeout=5) as r:
                    statuses.append(r.headers["x-cache"])
                time.sleep(0.05)
            assert statuses == ["MISS", "HIT"], (steps, statuses)
        finally:
            p.terminate()
            p.wait(10)
    origin.stop()


def test_the_hyper_floor_rows_are_references():
    load = {
        "scenarios": {
            "proxy": [
                row("edgecore proxy", 40000, 14.0),
                row(L.NGINX_PROXY, 45000, 11.2),
                row(L.HYPER_FLOOR, 48000, 10.5),
            ]
        }
    }
    got = {label: (round(x, 3), goal, ok) for label, x, goal, ok in load_ratios(load)}
    assert got["edgecore proxy CPU vs the hyper floor (reference)"] == (1.333, "", None)
    assert got["hyper floor CPU vs nginx proxy_pass (reference)"] == (0.938, "", None)
    assert got["edgecore proxy CPU vs nginx proxy_pass"] == (1.25, "<= 1.0x (CPU per request)", False)


def test_the_floor_is_found_where_make_bench_builds_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECORE_HYPER_FLOOR", str(tmp_path / "missing"))
    assert L.hyper_floor() is None
    exe = tmp_path / "hyper_floor"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("EDGECORE_HYPER_FLOOR", str(exe))
    assert L.hyper_floor() == exe
