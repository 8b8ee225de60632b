"""Headers, Response, redirect and hand-built Requests."""

import orjson
import pytest

import edgecore as ec


def test_headers_are_a_case_insensitive_multimap():
    h = ec.Headers({"Content-Type": "text/html", "X-A": "1"})
    assert h["content-type"] == "text/html"
    assert h.get("CONTENT-TYPE") == "text/html"
    assert h.get("missing") is None
    assert h.get("missing", "d") == "d"
    h.append("x-a", "2")
    assert h.get_all("X-A") == ["1", "2"]
    assert len(h) == 3
    h.set("X-A", "3")
    assert h.get_all("x-a") == ["3"]
    assert h.delete("x-a") is True
    assert h.delete("x-a") is False
    assert "x-a" not in h
    h["X-B"] = "b"
    del h["x-b"]
    with pytest.raises(KeyError):
        del h["x-b"]
    with pytest.raises(KeyError):
        h["nope"]
    assert h.items() == [("content-type", "text/html")]
    assert list(h) == ["content-type"]
    assert h == ec.Headers([("content-type", "text/html")])
    assert h.copy() == h and h.copy() is not h


def test_headers_reject_injection():
    h = ec.Headers()
    with pytest.raises(ec.ConfigError, match="control character"):
        h.set("X-A", "a\r\nSet-Cookie: evil=1")
    with pytest.raises(ec.ConfigError, match="invalid header name"):
        h.set("X A", "b")
    with pytest.raises(TypeError):
        h.set("X-A", 1.5)


def test_request_headers_are_one_object_and_edits_stick():
    r = ec.parse_request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert r.headers is r.headers
    r.headers.set("x-added", "1")
    assert b"x-added: 1" in r.to_bytes()


def test_response_body_types_and_defaults():
    r = ec.Response("héllo")
    assert r.status == 200 and r.body == "héllo".encode() and r.text == "héllo"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert ec.Response(b"x", status=201, headers={"X-A": "1"}).headers["x-a"] == "1"
    assert ec.Response().body == b""
    with pytest.raises(TypeError, match="body must be bytes or str"):
        ec.Response(123)
    with pytest.raises(ec.ConfigError, match="invalid HTTP status"):
        ec.Response(b"", status=1000)


def test_response_json():
    r = ec.Response.json({"a": [1, 2], "b": None}, status=404)
    assert r.status == 404
    assert r.headers["content-type"] == "application/json"
    assert orjson.loads(r.body) == {"a": [1, 2], "b": None}


def test_redirect():
    r = ec.redirect("https://example.com/login", 308)
    assert r.status == 308 and r.headers["location"] == "https://example.com/login"
    assert ec.redirect("/x").status == 302
    with pytest.raises(ec.ConfigError, match="301, 302, 303, 307, 308"):
        ec.redirect("/x", 200)
    with pytest.raises(ec.ConfigError, match="not allowed in a header"):
        ec.redirect("/x\r\nSet-Cookie: a=b")


def test_hand_built_request():
    r = ec.Request("POST", "/items?id=3", headers={"Host": "api.test"}, body="{}")
    assert (r.method, r.path, r.query, r.body) == ("POST", "/items", "id=3", b"{}")
    assert str(r.url) == "http://api.test/items?id=3"
    assert r.variant("x") is None and r.params == {}
    with pytest.raises(ec.ConfigError, match="invalid HTTP method"):
        ec.Request("G T", "/")
