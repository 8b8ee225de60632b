"""Explain: `X-Edge-Explain: 1` and `?__explain` through a running server, and `edgecore explain`
(a dry run: the origin is never contacted)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import jwt as pyjwt

import edgecore as ec
from tests.e2e.conftest import call

SECRET = b"e" * 32


def _app(origin_url: str, **settings) -> ec.Edge:
    app = ec.Edge(origin=origin_url)
    app.jwt(paths="/api/*", key=SECRET, algorithms=["HS256"])
    app.rate_limit(paths="/api/*", limit=100, period=60)
    app.cache(paths="/cached/*", ttl=60)
    app.compress(paths="/cached/*")
    app.configure(**settings)
    return app


def steps(value: str) -> dict[str, str]:
    out = {}
    for part in value.split("; "):
        phase, _, rest = part.partition("=")
        out[phase] = rest.rsplit(" (", 1)[0]
    return out


def test_an_allowed_client_sees_each_phase_and_the_rule_that_decided(origin):
    token = pyjwt.encode({"sub": "u", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    with _app(origin.url, explain_allow=["127.0.0.0/8"]).serve() as srv:
        denied = call(srv.url, "/api/x", headers={"x-edge-explain": "1"})
        assert denied.status == 401
        got = steps(denied.headers["x-edge-explain"])
        assert got["jwt"] == "answered 401 rule#0" and got["response"] == "401 jwt_rejected"
        assert "rate_limit" not in got  # the pipeline ended at the JWT rule
        ok = call(srv.url, "/api/x", headers={"x-edge-explain": "1", "authorization": f"Bearer {token}"})
        got = steps(ok.headers["x-edge-explain"])
        assert got["jwt"] == "continue rule#0" and got["rate_limit"] == "continue rule#0"
        assert got["produce"] == "proxied" and got["response"] == "200 proxied"
        assert got["client"].startswith("ip 127.0.0.1")
        # The ask never reaches the origin.
        assert "x-edge-explain" not in origin.requests[-1]["headers"]
        # Not asked: no trace.
        assert "x-edge-explain" not in call(srv.url, "/api/x").headers


def test_the_query_form_answers_the_trace_as_json_and_the_cache_key_ignores_it(origin):
    with _app(origin.url, explain_allow=["127.0.0.1/32"]).serve() as srv:
        first = call(srv.url, "/cached/a?__explain", headers={"accept-encoding": "br"})
        doc = first.json()
        assert first.headers["content-type"] == "application/json"
        phases = {p["phase"]: p for p in doc["phases"]}
        assert phases["compress"]["decision"] == "br" and phases["compress"]["rule"] == 0
        assert phases["cache"]["decision"] == "miss" and phases["cache"]["rule"] == 0
        assert doc["response"]["status"] == 200 and doc["response"]["headers"]["x-cache"] == "MISS"
        assert all(isinstance(p["micros"], int) for p in doc["phases"])
        assert origin.requests[-1]["path"] == "/cached/a"
        # The same URL without the parameter is the entry the explained request stored.
        again = call(srv.url, "/cached/a", headers={"accept-encoding": "br"})
        assert again.headers["x-cache"] == "HIT" and origin.count("/cached/a") == 1


def test_a_client_outside_explain_allow_gets_the_normal_answer_and_the_origin_no_ask(origin):
    with _app(origin.url, explain_allow=["10.0.0.0/8"]).serve() as srv:
        r = call(srv.url, "/plain?__explain&x=1", headers={"x-edge-explain": "1"})
        assert r.status == 200 and "x-edge-explain" not in r.headers
        assert r.json()["path"] == "/plain?x=1"
        assert "x-edge-explain" not in r.json()["headers"]


def test_edgecore_explain_prints_the_trace_without_contacting_the_origin(origin, tmp_path):
    (tmp_path / "explained.py").write_text(
        textwrap.dedent(
            f"""
            import edgecore as ec
            app = ec.Edge(origin={origin.url!r})
            app.jwt(paths="/api/*", key=b"e" * 32, algorithms=["HS256"])
            app.access(paths="/admin/*", allow_countries=["GB"])
            """
        )
    )

    def explain(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "edgecore", "explain", "explained:app", *args, "--app-dir", str(tmp_path)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    r = explain("GET /api/x")
    assert r.returncode == 0, r.stderr
    assert "jwt" in r.stdout and "answered 401" in r.stdout and "=> 401" in r.stdout
    token = pyjwt.encode({"sub": "u", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    r = explain("GET /api/x?q=1", "-H", f"Authorization: Bearer {token}", "--json")
    doc = json.loads(r.stdout)
    assert doc["response"]["status"] == 200 and doc["response"]["headers"]["x-edge-dry-run"] == "1"
    assert [p["decision"] for p in doc["phases"] if p["phase"] == "jwt"] == ["continue"]
    denied = json.loads(explain("GET /admin/", "--country", "US", "--json").stdout)
    assert denied["response"]["status"] == 403
    allowed = json.loads(explain("GET /admin/", "--country", "GB", "--json").stdout)
    assert allowed["response"]["status"] == 200
    assert origin.requests == []  # a dry run: nothing reached the origin
    bad = explain("/api/x")
    assert bad.returncode == 1 and '"METHOD /path"' in bad.stderr
