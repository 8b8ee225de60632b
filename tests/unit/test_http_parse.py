"""parse_request: the accepted forms, and every rejection RFC 9112 asks for, each with its message."""

import pytest

import edgecore as ec


def req(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_parses_method_target_headers_and_query():
    r = ec.parse_request(
        req("GET /a/b?x=1&y=2 HTTP/1.1", "Host: example.com:8080", "Accept: */*", "X-Multi: 1", "x-multi: 2")
    )
    assert r.method == "GET"
    assert r.path == "/a/b"
    assert r.query == "x=1&y=2"
    assert r.target == "/a/b?x=1&y=2"
    assert r.http_version == "1.1"
    assert r.url.host == "example.com"
    assert r.url.port == 8080
    assert str(r.url) == "http://example.com:8080/a/b?x=1&y=2"
    assert r.headers.get("ACCEPT") == "*/*"
    assert r.headers.get_all("X-MULTI") == ["1", "2"]
    assert "host" in r.headers
    assert r.body == b""
    assert r.client_ip is None and r.geo is None and r.claims is None and r.is_bot is False


def test_content_length_body():
    r = ec.parse_request(req("POST /p HTTP/1.1", "Host: h", "Content-Length: 5", body=b"hello"))
    assert r.body == b"hello"


def test_chunked_body_with_extensions_and_trailers():
    raw = (
        req("POST /p HTTP/1.1", "Host: h", "Transfer-Encoding: chunked")
        + b"5;a=b\r\nhello\r\n1\r\n!\r\n0\r\nX-T: 1\r\n\r\n"
    )
    assert ec.parse_request(raw).body == b"hello!"


def test_absolute_form_target_sets_scheme_and_host():
    r = ec.parse_request(req("GET https://other.test/x HTTP/1.1", "Host: ignored.test"))
    assert str(r.url) == "https://other.test/x"


def test_http10_without_host_is_accepted():
    r = ec.parse_request(b"GET / HTTP/1.0\r\n\r\n")
    assert r.http_version == "1.0"


@pytest.mark.parametrize(
    ("raw", "message", "status"),
    [
        (
            req("POST / HTTP/1.1", "Host: h", "Content-Length: 3", "Transfer-Encoding: chunked"),
            "both Content-Length and Transfer-Encoding",
            400,
        ),
        (
            req("POST / HTTP/1.1", "Host: h", "Content-Length: 3", "Content-Length: 4"),
            "conflicting Content-Length",
            400,
        ),
        (req("POST / HTTP/1.1", "Host: h", "Content-Length: 3, 4"), "conflicting Content-Length", 400),
        (req("POST / HTTP/1.1", "Host: h", "Content-Length: -1"), "malformed Content-Length", 400),
        (req("POST / HTTP/1.1", "Host: h", "Content-Length: 1e3"), "malformed Content-Length", 400),
        (req("POST / HTTP/1.1", "Host: h", "Content-Length: 99999999999999999999999"), "too large", 400),
        (req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: gzip"), "does not end in chunked", 400),
        (req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked, identity"), "does not end in chunked", 400),
        (req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked, chunked"), "more than once", 400),
        (req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: foo, chunked"), "unsupported transfer coding", 501),
        (req("GET / HTTP/1.1", "Host : h"), "whitespace between a header name and the colon", 400),
        (req("GET / HTTP/1.1", "Host: h", "X-Folded: a", " b"), "obs-fold", 400),
        (req("GET / HTTP/1.1", "Host: h", "X-Folded: a", "\tb"), "obs-fold", 400),
        (req("GET / HTTP/1.1", "Host: h", "X-Bad: a\x00b"), "control character", 400),
        (req("GET / HTTP/1.1", "Host: h", "X-Bad: a\x7fb"), "control character", 400),
        (req("GET / HTTP/1.1", "Host: h", "X\x01Bad: a"), "invalid character", 400),
        (req("GET / HTTP/1.1", "Host: h", "X(Bad): a"), "invalid character", 400),
        (req("GET / HTTP/1.1", "Host: h", ": novalue"), "empty header name", 400),
        (req("GET / HTTP/1.1"), "missing Host", 400),
        (req("GET / HTTP/1.1", "Host: a", "Host: b"), "more than one Host", 400),
        (req("GET / HTTP/1.1", "Host: a b"), "invalid Host", 400),
        (req("GET / HTTP/1.1", "Host: user@evil"), "invalid Host", 400),
        (req("GET  / HTTP/1.1", "Host: a"), "request line", 400),
        (req("GET / HTTP/2.0", "Host: a"), "version", 400),
        (req("G(T / HTTP/1.1", "Host: a"), "method", 400),
        (req("GET * HTTP/1.1", "Host: a"), "asterisk-form", 400),
        (req("GET example.com:443 HTTP/1.1", "Host: a"), "authority-form", 400),
        (req("GET ftp://x/ HTTP/1.1", "Host: a"), "http or https", 400),
        (req("POST / HTTP/1.0", "Transfer-Encoding: chunked"), "HTTP/1.0", 400),
        (b"GET / HTTP/1.1\nHost: a\n\n", "bare LF", 400),
        (req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked") + b"zz\r\n", "invalid chunk size", 400),
        (req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked") + b"3\r\nabcXY0\r\n\r\n", "terminator", 400),
        (
            req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked") + b"3 x\r\nabc\r\n0\r\n\r\n",
            "chunk size",
            400,
        ),
        (req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked") + b"3\nabc\r\n0\r\n\r\n", "bare LF", 400),
    ],
)
def test_rejections_name_the_problem(raw, message, status):
    with pytest.raises(ec.HTTPParseError, match=message) as info:
        ec.parse_request(raw)
    assert info.value.status == status
    assert not isinstance(info.value, ec.IncompleteRequest)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ec.EdgeError)


def test_every_prefix_of_a_valid_message_is_incomplete_not_malformed():
    full = req("POST /p HTTP/1.1", "Host: h", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n"
    for cut in range(1, len(full)):
        with pytest.raises(ec.IncompleteRequest):
            ec.parse_request(full[:cut])
    assert ec.parse_request(full).body == b"hello"


def test_trailing_bytes_are_rejected_but_prefix_parsing_returns_the_rest():
    two = req("GET /1 HTTP/1.1", "Host: h") + req("GET /2 HTTP/1.1", "Host: h")
    with pytest.raises(ec.HTTPParseError, match="unexpected bytes after the end"):
        ec.parse_request(two)
    first, used = ec.parse_request_prefix(two)
    assert first.path == "/1"
    assert ec.parse_request(two[used:]).path == "/2"


def test_limits_have_defaults_and_can_be_changed():
    d = ec.ParserLimits()
    assert (d.max_headers, d.max_uri_bytes) == (100, 8192)
    small = ec.ParserLimits(max_headers=2, max_header_bytes=300, max_uri_bytes=10, max_body_bytes=4)
    with pytest.raises(ec.HTTPParseError, match="the limit is 10") as e:
        ec.parse_request(req("GET /aaaaaaaaaaaaaaa HTTP/1.1", "Host: h"), limits=small)
    assert e.value.status == 414
    with pytest.raises(ec.HTTPParseError, match="more than 2 header fields") as e:
        ec.parse_request(req("GET / HTTP/1.1", "Host: h", "A: 1", "B: 2"), limits=small)
    assert e.value.status == 431
    with pytest.raises(ec.HTTPParseError) as e:
        ec.parse_request(req("GET / HTTP/1.1", "Host: h", "A: " + "x" * 400), limits=small)
    assert e.value.status == 431
    with pytest.raises(ec.HTTPParseError, match="body limit") as e:
        ec.parse_request(req("POST / HTTP/1.1", "Host: h", "Content-Length: 5"), limits=small)
    assert e.value.status == 413
    with pytest.raises(ec.HTTPParseError) as e:
        ec.parse_request(req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked") + b"5\r\n", limits=small)
    assert e.value.status == 413
    # An over-long request line is refused before it ends: 414, not "incomplete".
    with pytest.raises(ec.HTTPParseError) as e:
        ec.parse_request(b"GET /" + b"a" * 200, limits=small)
    assert e.value.status == 414
    with pytest.raises(ec.ConfigError, match="max_headers"):
        ec.ParserLimits(max_headers=0)
    assert "max_uri_bytes=10" in repr(small)


def test_obs_text_in_values_is_kept_as_latin1():
    r = ec.parse_request(b"GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xe9\r\n\r\n")
    assert r.headers["x-name"] == "café"


def test_a_framing_field_line_over_256_bytes_is_refused_as_the_server_guard_does():
    padded = "chunked" + " " * 250
    with pytest.raises(ec.HTTPParseError, match="longer than 256 bytes"):
        ec.parse_request(f"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {padded}\r\n\r\n0\r\n\r\n".encode())
    ok = ec.parse_request(b"POST / HTTP/1.1\r\nHost: x\r\nX-Transfer-Encodin: " + b"a" * 300 + b"\r\n\r\n")
    assert ok.method == "POST"


@pytest.mark.parametrize("te", ["chunked;", "chunked;q=1", "gzip, chunked ;x"])
def test_chunked_takes_no_parameters(te):
    with pytest.raises(ec.HTTPParseError, match="no parameters"):
        ec.parse_request(f"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n".encode())
