"""JWKS from a URL: a real HTTP server on loopback serves the key set; rotation, unknown kid,
rate-limited refresh, and a server that goes down."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec as cec

import edgecore as ec
from tests.e2e.conftest import call
from tests.waiting import wait_for

NOW = 1_700_000_000


def make_key(kid: str):
    priv = cec.generate_private_key(cec.SECP256R1())
    jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(priv.public_key()))
    jwk.update(kid=kid, alg="ES256", use="sig")
    return priv, jwk


class JwksServer:
    def __init__(self):
        self.keys: list[dict] = []
        self.hits = 0
        self.fail = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                if outer.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = JwksServer()
    yield s
    s.stop()


def token(priv, kid: str, **claims) -> str:
    return pyjwt.encode({"sub": "u", "exp": NOW + 60, **claims}, priv, algorithm="ES256", headers={"kid": kid})


def test_fetch_rotation_and_unknown_kid(server):
    k1, jwk1 = make_key("k1")
    k2, jwk2 = make_key("k2")
    server.keys = [jwk1]
    v = ec.JWTVerifier(jwks_url=server.url, algorithms=["ES256"], jwks_min_interval=0.2, jwks_refresh=3600)
    assert v.verify(token(k1, "k1"), now=NOW)["sub"] == "u"
    assert server.hits == 1

    # Rotation: the IdP publishes k2; a token with kid k2 triggers one refresh and verifies.
    server.keys = [jwk1, jwk2]
    time.sleep(0.25)
    assert v.verify(token(k2, "k2"), now=NOW)["sub"] == "u"
    assert server.hits == 2

    # A flood of unknown kids causes at most one fetch per min_interval.
    for i in range(50):
        with pytest.raises(ec.KeyNotFoundError, match="no key with kid"):
            v.verify(token(k1, f"bogus-{i}"), now=NOW)
    assert server.hits <= 3
    assert v.jwks_stats()[0] == server.hits


def test_failed_refresh_keeps_the_last_good_set(server):
    k1, jwk1 = make_key("k1")
    server.keys = [jwk1]
    v = ec.JWTVerifier(jwks_url=server.url, algorithms=["ES256"], jwks_min_interval=0.05, jwks_refresh=0.1)
    server.fail = True
    wait_for(lambda: v.jwks_stats()[1] >= 2, what="two failed background refreshes")
    fetches, failures = v.jwks_stats()
    assert failures >= 1 and fetches > failures
    assert v.verify(token(k1, "k1"), now=NOW)["sub"] == "u"
    # Server gone entirely: still the last good set.
    server.stop()
    failed = v.jwks_stats()[1]
    wait_for(lambda: v.jwks_stats()[1] > failed, what="a refresh against the stopped server")
    assert v.verify(token(k1, "k1"), now=NOW)["sub"] == "u"
    with pytest.raises(ec.KeyNotFoundError):
        v.verify(token(k1, "other"), now=NOW)


def test_background_refresh_picks_up_new_keys(server):
    k1, jwk1 = make_key("k1")
    k2, jwk2 = make_key("k2")
    server.keys = [jwk1]
    v = ec.JWTVerifier(jwks_url=server.url, algorithms=["ES256"], jwks_min_interval=3600, jwks_refresh=0.1)
    server.keys = [jwk2]  # k1 retired, k2 published

    def verifies() -> bool:
        try:
            return bool(v.verify(token(k2, "k2"), now=NOW))
        except ec.KeyNotFoundError:
            return False

    wait_for(verifies, what="the background refresh to publish k2")
    assert v.verify(token(k2, "k2"), now=NOW)["sub"] == "u"
    with pytest.raises(ec.KeyNotFoundError):
        v.verify(token(k1, "k1"), now=NOW)


def test_an_unreachable_url_is_a_config_error_when_strict():
    with pytest.raises(ec.ConfigError, match=r"127\.0\.0\.1:1"):
        ec.JWTVerifier(jwks_url="http://127.0.0.1:1/jwks", algorithms=["ES256"], jwks_timeout=1, jwks_strict=True)
    with pytest.raises(ec.ConfigError, match="http"):
        ec.JWTVerifier(jwks_url="ftp://x/jwks", algorithms=["ES256"])


def test_the_edge_starts_while_the_identity_provider_is_down(server, origin, capfd):
    # The JWK Set answers 503 at start: the app starts anyway, refuses every token (401) with a
    # log line saying why, and verifies tokens once the set can be fetched (retried with backoff).
    server.fail = True
    k1, jwk1 = make_key("k1")
    server.keys = [jwk1]
    app = ec.Edge(origin=origin.url)
    app.jwt(paths="/api/*", jwks_url=server.url, algorithms=["ES256"], jwks_refresh=300)
    assert "cannot be fetched" in capfd.readouterr().err
    live = pyjwt.encode({"sub": "u", "exp": int(time.time()) + 600}, k1, algorithm="ES256", headers={"kid": "k1"})
    auth = {"Authorization": f"Bearer {live}"}
    with app.serve() as srv:
        assert call(srv.url, "/api/x", headers=auth).status == 401
        assert origin.requests == []
        server.fail = False
        wait_for(lambda: call(srv.url, "/api/x", headers=auth).status == 200, timeout=15, what="the keys to arrive")
    assert "arrived: tokens are verified" in capfd.readouterr().err


def test_the_server_forgets_remembered_tokens_when_the_key_set_changes(server):
    """Through a running server: a token verified once is remembered, and a JWK Set rotation
    that retires its key makes the next request with it fail (not served from memory)."""
    from tests.e2e.conftest import call

    k1, jwk1 = make_key("k1")
    k2, jwk2 = make_key("k2")
    server.keys = [jwk1]
    exp = int(time.time()) + 600
    old = token(k1, "k1", exp=exp)
    new = token(k2, "k2", exp=exp)
    app = ec.Edge()
    app.jwt(paths="/api/*", jwks_url=server.url, algorithms=["ES256"], jwks_refresh=0.1, jwks_min_interval=3600)

    @app.route("/api/me")
    def me(request, env):
        return request.claims["sub"]

    with app.serve() as s:
        for _ in range(3):
            assert call(s.url, "/api/me", headers={"Authorization": f"Bearer {old}"}).status == 200
        server.keys = [jwk2]  # k1 retired
        wait_for(
            lambda: call(s.url, "/api/me", headers={"Authorization": f"Bearer {new}"}).status == 200,
            what="the background refresh to publish k2",
        )
        r = call(s.url, "/api/me", headers={"Authorization": f"Bearer {old}"})
        assert r.status == 401 and "kid" in r.headers["www-authenticate"], r.headers
