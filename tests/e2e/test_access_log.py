"""The JSON-lines access log: one line per request with the decision that answered it."""

from __future__ import annotations

import json
import time

import jwt as pyjwt

import edgecore as ec
from tests.e2e.conftest import call


def test_access_log_lines_and_decisions(origin, tmp_path):
    log = tmp_path / "access.jsonl"
    app = ec.Edge(origin=origin.url).configure(access_log=str(log))
    app.jwt(paths=["/api/*"], key=b"k" * 32, algorithms=["HS256"])
    app.rate_limit(paths=["/limited"], limit=1, period=60)
    app.cache(paths=["/cached/*"])
    app.redirect(to="/new", paths=["/old"])

    @app.route("/py")
    def py(request, env):
        return "hi"

    token = pyjwt.encode({"exp": int(time.time()) + 60}, b"k" * 32, algorithm="HS256")
    with app.serve() as s:
        requests = [
            ("/plain", {}, 200, "proxied"),
            ("/api/x", {}, 401, "jwt_rejected"),
            ("/api/x", {"Authorization": f"Bearer {token}"}, 200, "proxied"),
            ("/limited", {}, 200, "proxied"),
            ("/limited", {}, 429, "rate_limited"),
            ("/cached/a", {}, 200, "cache_miss"),
            ("/cached/a", {}, 200, "cache_hit"),
            ("/old", {}, 302, "redirect"),
            ("/py", {}, 200, "handler"),
        ]
        for path, headers, status, _ in requests:
            assert call(s.url, path, headers=headers).status == status, path
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(x["path"], x["status"], x["decision"]) for x in lines] == [(p, st, d) for p, _, st, d in requests]
    first = lines[0]
    assert set(first) == {
        "time",
        "timestamp",
        "client_ip",
        "method",
        "path",
        "status",
        "bytes",
        "duration_ms",
        "decision",
        "user_agent",
        "request_id",
        "trace_id",
        "shadow",
    }
    assert first["request_id"] is None and first["trace_id"] is None and first["shadow"] == []
    assert first["client_ip"] == "127.0.0.1" and first["method"] == "GET" and first["duration_ms"] >= 0
    assert abs(first["time"] - time.time()) < 60
    assert lines[-1]["bytes"] == 2


def test_access_log_is_off_by_default_and_a_bad_path_is_a_config_error(origin, tmp_path):
    with ec.Edge(origin=origin.url).serve() as s:
        assert call(s.url, "/").status == 200
    assert list(tmp_path.iterdir()) == []
    import pytest

    with pytest.raises(ec.ConfigError, match="access log"):
        ec.Edge().configure(access_log=str(tmp_path / "no" / "such" / "dir.log")).serve()
