"""TLS termination end to end: real handshakes against certificates generated at test time."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time

import httpx
import pytest

import edgecore as ec
from tests.tls_certs import CA, peer_serial


@pytest.fixture
def ca(tmp_path):
    return CA(tmp_path)


def https_get(ctx: ssl.SSLContext, port: int, path: str, headers: dict | None = None):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def tls_app(leaf, origin_url: str | None = None) -> ec.Edge:
    app = ec.Edge(origin=origin_url).configure(tls_cert=str(leaf.cert), tls_key=str(leaf.key))

    @app.route("/who")
    def who(request, env):
        return {"url": str(request.url)}

    return app


def test_https_serves_handlers_and_tells_the_origin_the_scheme(ca, origin):
    leaf = ca.issue()
    with tls_app(leaf, origin.url).serve() as s:
        assert s.url.startswith("https://127.0.0.1:")
        status, _, body = https_get(ca.client_context(), s.port, "/who")
        assert status == 200 and json.loads(body)["url"].startswith("https://")
        status, _, body = https_get(ca.client_context(), s.port, "/anything")
        assert status == 200
        seen = json.loads(body)["headers"]
        assert seen["x-forwarded-proto"] == "https"
        assert "edgecore" in seen["via"]


def test_alpn_negotiates_http2_and_http11(ca):
    leaf = ca.issue()
    with tls_app(leaf).serve() as s:
        for offered, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
            ctx = ca.client_context(offered)
            with socket.create_connection(("127.0.0.1", s.port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    assert tls.selected_alpn_protocol() == chosen
        with httpx.Client(http2=True, verify=ca.client_context()) as client:
            r = client.get(f"{s.url}/who")
        assert r.status_code == 200 and r.http_version == "HTTP/2"
        assert r.json()["url"].startswith("https://")


def test_reload_renews_the_certificate_without_dropping_connections(ca):
    first = ca.issue()
    app = tls_app(first)
    with app.serve() as s:
        ctx = ca.client_context()
        assert peer_serial(ctx, "127.0.0.1", s.port) == first.serial
        # A keep-alive connection opened before the renewal...
        kept = http.client.HTTPSConnection("127.0.0.1", s.port, context=ctx, timeout=10)
        kept.request("GET", "/who")
        assert kept.getresponse().read()
        second = ca.issue()  # same paths, new certificate and key (written by rename)
        assert second.serial != first.serial
        s.reload(tls_app(second))
        # ...keeps working, and new connections get the new certificate.
        kept.request("GET", "/who")
        r = kept.getresponse()
        assert r.status == 200 and r.read()
        kept.close()
        assert peer_serial(ctx, "127.0.0.1", s.port) == second.serial


def test_a_broken_certificate_on_reload_is_refused_and_the_old_one_kept(ca, tmp_path):
    leaf = ca.issue()
    with tls_app(leaf).serve() as s:
        broken = tmp_path / "broken.crt"
        broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
        bad = ec.Edge().configure(tls_cert=str(broken), tls_key=str(leaf.key))
        with pytest.raises(ec.ConfigError, match=r"broken\.crt.*not valid PEM"):
            s.reload(bad)
        with pytest.raises(ec.ConfigError, match="cannot switch TLS on or off"):
            s.reload(ec.Edge())
        assert peer_serial(ca.client_context(), "127.0.0.1", s.port) == leaf.serial
        assert https_get(ca.client_context(), s.port, "/who")[0] == 200


def test_bad_tls_configuration_names_the_problem(ca, tmp_path):
    leaf, other = ca.issue("one"), ca.issue("two")
    cases = [
        ({"tls_cert": str(tmp_path / "missing.crt"), "tls_key": str(leaf.key)}, "cannot read the TLS certificate"),
        ({"tls_cert": str(leaf.cert), "tls_key": str(tmp_path / "missing.key")}, "cannot read the TLS key"),
        ({"tls_cert": str(leaf.key), "tls_key": str(leaf.key)}, "holds no CERTIFICATE"),
        ({"tls_cert": str(leaf.cert), "tls_key": str(leaf.cert)}, "holds no usable private key"),
        ({"tls_cert": str(leaf.cert), "tls_key": str(other.key)}, "cannot be used together"),
        ({"tls_cert": str(leaf.cert)}, "needs both tls_cert and tls_key"),
    ]
    for settings, message in cases:
        app = ec.Edge().configure(**settings)
        with pytest.raises(ec.ConfigError, match=message):
            app.check()
        with pytest.raises(ec.ConfigError, match=message):
            app.serve()


def test_plain_http_or_a_silent_client_on_the_tls_port_is_closed_and_serving_goes_on(ca):
    leaf = ca.issue()
    app = tls_app(leaf).configure(header_read_timeout=0.5)
    with app.serve() as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = raw.recv(1024)
            except ConnectionResetError:
                data = b""
            assert not data.startswith(b"HTTP/")  # no plaintext answer; an alert at most
        # A client that connects and says nothing is dropped after the header timeout.
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as raw:
            t0 = time.monotonic()
            try:
                assert raw.recv(1024) == b""
            except ConnectionResetError:
                pass
            assert time.monotonic() - t0 < 4
        assert https_get(ca.client_context(), s.port, "/who")[0] == 200


def test_serve_command_terminates_tls_and_sighup_renews_the_certificate(ca, tmp_path):
    import signal

    from tests.e2e.test_cli import start_serve, write_app
    from tests.redis_server import free_port

    write_app(tmp_path, 'app = ec.Edge()\n\n@app.route("/hi")\ndef hi(request, env):\n    return "hi over tls"\n')
    first = ca.issue()
    port = free_port()
    proc = start_serve(tmp_path, port, "--tls-cert", str(first.cert), "--tls-key", str(first.key))
    ctx = ca.client_context()
    try:
        deadline = time.time() + 30
        while True:
            try:
                assert https_get(ctx, port, "/hi")[2] == b"hi over tls"
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.time() < deadline
                time.sleep(0.05)
        second = ca.issue()
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while peer_serial(ctx, "127.0.0.1", port) != second.serial:
            assert time.time() < deadline, "the renewed certificate was never served"
            time.sleep(0.1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"edgecore listening on https://127.0.0.1:{port}" in err
    assert "TLS (" in err
