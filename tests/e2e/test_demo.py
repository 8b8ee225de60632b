"""`edgecore demo` as a subprocess: it starts on embedded defaults, and the curl commands it
prints work as written."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from tests.redis_server import free_port


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is needed to run the printed commands")
def test_demo_runs_and_its_curl_commands_work(tmp_path):
    port = free_port()
    commands_file = tmp_path / "commands.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgecore",
            "demo",
            "--port",
            str(port),
            "--seconds",
            "60",
            "--print-commands",
            str(commands_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 30
        while not commands_file.exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, "the demo did not start"
            time.sleep(0.1)
        outputs = {}
        for cmd in json.loads(commands_file.read_text()):
            r = subprocess.run(shlex.split(cmd), capture_output=True, text=True, timeout=10)
            assert r.returncode == 0, (cmd, r.stderr)
            outputs[cmd] = r.stdout
        by = lambda part: next(v for k, v in outputs.items() if part in k)  # noqa: E731
        assert json.loads(by(f"curl -s http://127.0.0.1:{port}/hello"))["hello"] == "from a Python handler"
        assert "401" in by(f"-i http://127.0.0.1:{port}/api/orders").splitlines()[0]
        assert json.loads(by("Authorization"))["headers_from_edge"]["x-user"] == "demo-user"
        assert "x-cache: miss" in by("/cached/item").lower()
        assert json.loads(by(f"curl -s http://127.0.0.1:{port}/page"))["headers_from_edge"]["x-edge-bot"] == "1"
        assert "x-edge-bot" not in json.loads(by("Firefox"))["headers_from_edge"]
        assert "ec-ab-hero=" in by("/ab")
        assert json.loads(by("192.0.2.7"))["country"] == "DE"
        assert "location: /de/shop/boots" in by("/shop/boots").lower()
        codes = [
            subprocess.run(shlex.split(by_cmd), capture_output=True, text=True).stdout.strip()
            for by_cmd in [k for k in outputs if "/limited" in k] * 3
        ]
        assert "429" in codes
        metrics = by("/metrics")
        assert "edgecore_requests_total" in metrics and f":{port}/" not in next(k for k in outputs if "/metrics" in k)
    finally:
        proc.send_signal(2)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Try:" in out
    assert "dev mode: requests may set their client IP" in out and "Never in production" in out
