"""What every edge is expected to do, through a running server and a real origin: access lists,
HTTPS only, CORS as browsers send it, request IDs and trace context in the access log."""

from __future__ import annotations

import json
import re

import httpx
import pytest

import edgecore as ec
from tests.e2e.conftest import call
from tests.geo_data import write_city_db
from tests.waiting import wait_for

LONDON, BERLIN, OTHER = "81.2.69.160", "2001:db8::1", "192.0.2.7"


def _app(origin, tmp_path) -> ec.Edge:
    app = ec.Edge(origin=origin.url)
    app.trust_proxies(["127.0.0.1/32"])  # the test client stands in for the load balancer
    app.geo(write_city_db(tmp_path / "city.mmdb"))
    return app


def test_access_lists_by_ip_and_country(origin, tmp_path):
    app = _app(origin, tmp_path)
    app.access(paths="/admin/*", allow_ips=["10.0.0.0/8", "2001:db9:1::/48"], allow_countries=["GB"])
    app.access(deny_countries="DE", deny_ips=["192.0.2.0/24"], status=451, exclude="/status")
    with app.serve() as srv:
        at = lambda path, ip: call(srv.url, path, headers={"x-forwarded-for": ip}).status  # noqa: E731
        assert at("/admin/x", LONDON) == 200
        assert at("/admin/x", "10.9.9.9") == 200
        assert at("/admin/x", "2001:db9:1::5") == 200
        assert at("/admin/x", "198.51.100.1") == 403
        assert at("/page", BERLIN) == 451
        # The first refusing rule answers.
        assert at("/admin/x", BERLIN) == 403
        assert at("/page", OTHER) == 451
        assert at("/status", OTHER) == 200
        assert at("/page", LONDON) == 200
        # The canonical path is what is matched: no way around the list through the path.
        assert at("/%61dmin/x", "198.51.100.1") == 403
        assert at("//admin/x", "198.51.100.1") in (400, 403)
    assert origin.count("/admin/x") == 3 and origin.count("/page") == 1 and origin.count("/%61") == 0
    with pytest.raises(ec.ConfigError, match="allow_ips"):
        app.access(allow_ips=["10.0.0.0/33"])
    with pytest.raises(ec.ConfigError, match="two-letter"):
        app.access(deny_countries=["Germany"])
    with pytest.raises(ec.ConfigError, match="at least one"):
        app.access(paths="/x")


def test_https_only_redirects_and_sends_hsts(origin, tmp_path):
    app = ec.Edge(origin=origin.url)
    app.trust_proxies(["127.0.0.1/32"])
    app.https_only(hsts_max_age=31536000, include_subdomains=True)
    with app.serve() as srv:
        r = call(srv.url, "/a/b?c=1", headers={"host": "shop.example"})
        assert (r.status, r.headers["location"]) == (308, "https://shop.example/a/b?c=1")
        assert origin.count("/a/b") == 0
        r = call(srv.url, "/a", headers={"host": "shop.example", "x-forwarded-proto": "https"})
        assert r.status == 200 and r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        # The client's own X-Forwarded-Proto never reaches the origin (the edge owns it).
        assert r.json()["headers"]["x-forwarded-proto"] == "http"
    with pytest.raises(ec.ConfigError, match="308"):
        app.https_only(status=200)


def test_cors_preflight_and_simple_requests_as_browsers_send_them(origin):
    app = ec.Edge(origin=origin.url)
    app.jwt(paths="/api/*", key=b"k" * 32, algorithms=["HS256"])
    app.cors(
        "/api/*",
        origins=["https://app.example", "https://*.preview.example"],
        methods=["GET", "POST", "DELETE"],
        headers=["authorization", "content-type"],
        expose=["x-total"],
        credentials=True,
        max_age=300,
    )
    with app.serve() as srv, httpx.Client(base_url=srv.url) as client:
        pre = client.options(
            "/api/items",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "DELETE",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        assert pre.headers["access-control-allow-credentials"] == "true"
        assert pre.headers["access-control-allow-methods"] == "GET, POST, DELETE"
        assert pre.headers["access-control-allow-headers"] == "authorization, content-type"
        assert pre.headers["access-control-max-age"] == "300"
        assert "Origin" in pre.headers.get_list("vary")
        # Answered at the edge: no origin trip, and JWT did not ask the preflight for a token.
        assert origin.count("/api/items") == 0
        bad = client.options(
            "/api/items",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers
        # A rejection is readable by the page: the 401 carries the CORS fields.
        r = client.get("/api/items", headers={"Origin": "https://x.preview.example"})
        assert r.status_code == 401
        assert r.headers["access-control-allow-origin"] == "https://x.preview.example"
        assert r.headers["access-control-expose-headers"] == "x-total"
        r = client.get("/api/items", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers and r.headers["vary"] == "Origin"
        # Off the rule's paths nothing changes.
        r = client.get("/other", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in r.headers and "vary" not in r.headers
    with pytest.raises(ec.ConfigError, match="credentials"):
        app.cors(origins="*", credentials=True)
    with pytest.raises(ec.ConfigError, match="scheme://host"):
        app.cors(origins=["app.example"])


def test_request_ids_and_trace_context_reach_origin_client_and_log(origin, tmp_path):
    log = tmp_path / "access.log"
    app = ec.Edge(origin=origin.url)
    app.request_ids()
    app.rate_limit(paths="/limited", limit=1, period=60)
    app.error_response(429, "slow down (request {request_id})")
    app.headers(paths="/echo", request={"x-seen-id": "{request_id}"}, response={"x-rid-copy": "{request_id}"})
    app.redirect(to="/echo?rid={request_id}", paths="/go")
    app.configure(access_log=str(log))
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with app.serve() as srv:
        r = call(srv.url, "/echo", headers={"traceparent": incoming, "tracestate": "v=1", "user-agent": "ua/1"})
        rid = r.headers["x-request-id"]
        sent = r.json()["headers"]
        assert re.fullmatch("[0-9a-f]{32}", rid) and sent["x-request-id"] == rid
        # {request_id} in templates is the ID this request was given, in both directions.
        assert sent["x-seen-id"] == rid and r.headers["x-rid-copy"] == rid
        go = call(srv.url, "/go")
        assert go.headers["location"] == f"/echo?rid={go.headers['x-request-id']}"
        assert sent["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        assert sent["traceparent"] != incoming and sent["tracestate"] == "v=1"
        # A client's own ID is not trusted (it is not a trusted proxy).
        r2 = call(srv.url, "/echo", headers={"x-request-id": "chosen-by-client"})
        assert r2.headers["x-request-id"] not in ("chosen-by-client", rid)
        call(srv.url, "/limited")
        r3 = call(srv.url, "/limited")
        assert r3.status == 429 and r3.body == f"slow down (request {r3.headers['x-request-id']})".encode()
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 4, what="4 access-log lines")
    first = json.loads(log.read_text().splitlines()[0])
    assert first["request_id"] == rid and first["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert first["user_agent"] == "ua/1" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["timestamp"])


def test_shadow_mode_records_what_each_policy_would_do_and_never_rejects(origin, tmp_path):
    log = tmp_path / "access.log"
    app = _app(origin, tmp_path)
    app.jwt(paths="/api/*", key=b"k" * 32, algorithms=["HS256"], shadow=True)
    app.rate_limit(paths="/api/*", limit=1, period=60, shadow=True)
    app.bots("block", shadow=True)
    app.access(deny_countries=["GB"], shadow=True)
    app.configure(metrics_path="/metrics", access_log=str(log))
    with app.serve() as srv:
        browser = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0", "x-forwarded-for": OTHER}
        r1 = call(srv.url, "/api/x", headers=browser)
        r2 = call(srv.url, "/api/x", headers={"user-agent": "Googlebot/2.1", "x-forwarded-for": LONDON})
        r3 = call(srv.url, "/api/x", headers=browser)
        assert (r1.status, r2.status, r3.status) == (200, 200, 200)
        # Nothing of the policies' own shows: no claims, no bot tag, no RateLimit fields.
        sent = r2.json()["headers"]
        assert "x-edge-bot" not in sent and "ratelimit" not in r2.headers
        metrics = call(srv.url, "/metrics").body.decode()
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 3, what="three access-log lines")
    counts = dict(re.findall(r'edgecore_shadow_decisions_total\{(policy="\w+",outcome="\w+")\} (\d+)', metrics))
    assert counts['policy="jwt",outcome="reject"'] == "3"
    assert counts['policy="rate_limit",outcome="allow"'] == "2"
    assert counts['policy="rate_limit",outcome="reject"'] == "1"
    assert counts['policy="bots",outcome="allow"'] == "2" and counts['policy="bots",outcome="reject"'] == "1"
    assert counts['policy="access",outcome="allow"'] == "2" and counts['policy="access",outcome="reject"'] == "1"
    first, second, third = (json.loads(x) for x in log.read_text().splitlines()[:3])
    assert first["shadow"] == ["jwt"] and first["decision"] == "proxied"
    assert sorted(second["shadow"]) == ["access", "bots", "jwt"]
    assert sorted(third["shadow"]) == ["jwt", "rate_limit"]
    assert origin.count("/api/x") == 3
