"""Compression at the edge (`app.compress`), through a running server, with real clients (httpx
decodes gzip, br and zstd) and independent decoders (gzip, brotli, zstandard) on the raw bytes."""

from __future__ import annotations

import gzip
import socket
from urllib.parse import urlsplit

import brotli
import httpx
import pytest
import zstandard

import edgecore as ec
from tests.e2e.conftest import call

DECODE = {
    "gzip": gzip.decompress,
    "br": brotli.decompress,
    "zstd": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
    None: lambda b: b,
}


def raw(base: str, path: str, accept: str | None, method: str = "GET", **headers: str) -> httpx.Response:
    """The response as sent (not decoded): `content` is the bytes on the wire."""
    h = {"accept-encoding": accept} if accept is not None else {}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    with httpx.Client(base_url=base, timeout=10) as c:
        r = c.build_request(method, path, headers=h)
        if accept is None:
            r.headers.pop("accept-encoding", None)
        resp = c.send(r, stream=True)
        body = b"".join(resp.iter_raw())
        resp.close()
    resp._content = body
    return resp


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, deflate, br, zstd", "zstd"),  # a browser's list: the server's order breaks the tie
        ("gzip;q=1, br;q=0.5", "gzip"),
        ("br;q=0, *", "zstd"),
        ("deflate", None),
        ("identity", None),
        ("gzip;q=0.4, identity", None),
        (None, None),
    ],
)
def test_a_proxied_page_is_compressed_as_the_client_accepts_and_decodes_to_the_origins(origin, accept, coding):
    app = ec.Edge(origin=origin.url)
    app.compress(paths="/page/*")
    with app.serve() as srv:
        plain = call(srv.url, "/page/a").body
        r = raw(srv.url, "/page/a", accept)
    assert r.status_code == 200 and r.headers.get("content-encoding") == coding
    assert r.headers["vary"] == "Accept-Encoding"
    assert DECODE[coding](r.content).split(b"answer")[0] == plain.split(b"answer")[0]
    if coding:
        assert len(r.content) < len(plain) / 5
        assert r.headers["etag"].startswith('W/"') and "content-length" not in r.headers
    # The origin was told the edge's choice, one value: never the client's list.
    assert origin.requests[-1]["headers"]["accept-encoding"] == (coding or "identity")


def test_what_must_not_be_compressed_passes_as_the_origin_sent_it(origin):
    app = ec.Edge(origin=origin.url)
    app.compress()
    with app.serve() as srv:
        precompressed = raw(srv.url, "/gz", "br, gzip")
        assert precompressed.headers["content-encoding"] == "gzip"
        assert gzip.decompress(precompressed.content) == b"already " * 1000
        png = raw(srv.url, "/png", "br")
        assert "content-encoding" not in png.headers and png.content == bytes(range(256)) * 40
        assert "vary" not in png.headers
        small = raw(srv.url, "/echo", "br")  # JSON, a few hundred bytes: under min_bytes
        assert "content-encoding" not in small.headers and small.json()["path"] == "/echo"
        kept = raw(srv.url, "/page/nt", "br", x_cache_control="max-age=60, no-transform")
        assert "content-encoding" not in kept.headers and kept.content.startswith(b"<html>")
        head = raw(srv.url, "/page/h", "br", method="HEAD")
        assert head.headers["content-encoding"] == "br" and head.content == b""


def test_a_cached_page_is_stored_once_per_coding_and_hits_are_not_compressed_again(origin):
    app = ec.Edge(origin=origin.url)
    app.cache(paths="/page/*", ttl=60)
    app.compress(paths="/page/*")
    with app.serve() as srv:
        seen: dict[str | None, bytes] = {}
        for accept, coding in [("br", "br"), ("gzip", "gzip"), (None, None), ("zstd", "zstd")] * 2:
            r = raw(srv.url, "/page/c", accept)
            assert r.headers.get("content-encoding") == coding
            body = DECODE[coding](r.content)
            # Every coding of one stored answer: the first fill's number, decoded identically.
            assert b"answer" in body
            if coding in seen:
                assert r.headers["x-cache"] == "HIT" and r.content == seen[coding]
            else:
                assert r.headers["x-cache"] == "MISS"
                seen[coding] = r.content
        # One origin trip per coding, and a browser's list lands on a stored variant.
        assert origin.count("/page/c") == 4
        browser = raw(srv.url, "/page/c", "gzip, deflate, br, zstd")
        assert browser.headers["x-cache"] == "HIT" and browser.content == seen["zstd"]
        assert origin.count("/page/c") == 4
        # A client's conditional on the weak ETag gets its 304 from the stored variant.
        tag = raw(srv.url, "/page/c", "br").headers["etag"]
        assert raw(srv.url, "/page/c", "br", if_none_match=tag).status_code == 304


def test_a_stream_that_pauses_reaches_the_client_compressed_without_waiting_for_its_end(origin):
    app = ec.Edge(origin=origin.url)
    app.compress(paths="/events", min_bytes=0)
    with app.serve() as srv, httpx.Client(base_url=srv.url, timeout=10) as c:
        with c.stream("GET", "/events", headers={"accept-encoding": "br"}) as r:
            assert r.headers["content-encoding"] == "br"
            got = b""
            chunks = r.iter_bytes()
            while b"event 0" not in got:
                got += next(chunks)
            # The first event arrived while the origin still holds the stream open.
            origin.gate.set()
            got += b"".join(chunks)
    assert not origin.gate_timed_out
    assert [line.split()[1:3] for line in got.split(b"\n\n") if line] == [[b"event", str(i).encode()] for i in range(3)]


def test_a_handlers_answer_is_compressed_and_httpx_reads_it(origin):
    app = ec.Edge(origin=origin.url)
    app.compress(paths="/report", algorithms=["gzip"], levels={"gzip": 9})

    @app.route("/report")
    def report(request, env):
        return ec.Response("line of the report\n" * 500, headers={"content-type": "text/plain"})

    with app.serve() as srv, httpx.Client(base_url=srv.url) as c:
        r = c.get("/report", headers={"accept-encoding": "gzip, br"})
        assert r.headers["content-encoding"] == "gzip" and r.text == "line of the report\n" * 500
        assert int(r.headers.get("content-length", "0")) < 1000 or "content-length" not in r.headers


def test_http2_clients_get_the_same_coding(origin):
    app = ec.Edge(origin=origin.url)
    app.compress(paths="/page/*")
    with app.serve() as srv, httpx.Client(base_url=srv.url, http2=True, http1=False) as c:
        r = c.get("/page/h2", headers={"accept-encoding": "br"})
        assert r.http_version == "HTTP/2" and r.headers["content-encoding"] == "br"
        assert r.text.startswith("<html>")


def test_duplicate_and_odd_accept_encoding_fields_from_a_raw_socket(origin):
    app = ec.Edge(origin=origin.url)
    app.compress(paths="/page/*")
    with app.serve() as srv:
        u = urlsplit(srv.url)
        with socket.create_connection((u.hostname, u.port), timeout=5) as s:
            s.sendall(
                b"GET /page/raw HTTP/1.1\r\nHost: x\r\nAccept-Encoding: deflate\r\n"
                b"Accept-Encoding: gzip;q=0.5, br;q=2\r\nConnection: close\r\n\r\n"
            )
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    head = data.split(b"\r\n\r\n")[0].lower()
    # br's weight is malformed (over 1): that element is dropped, gzip remains.
    assert b"content-encoding: gzip" in head
    assert origin.requests[-1]["headers"]["accept-encoding"] == "gzip"


def test_bad_compress_settings_fail_at_the_call():
    app = ec.Edge(origin="http://127.0.0.1:9")
    for kwargs, match in [
        ({"algorithms": ["deflate"]}, 'unknown algorithm "deflate"'),
        ({"levels": {"zstd": 22}}, "zstd takes 1..=19, not 22"),
        ({"min_bytes": -1}, "min_bytes must be an int >= 0"),
        ({"types": ["html"]}, '"html" is not a media type'),
        ({"algorithms": []}, "at least one algorithm"),
        ({"max_streams": 0}, "max_streams must be an int >= 1"),
    ]:
        with pytest.raises(ec.ConfigError, match=match):
            app.compress(**kwargs)
