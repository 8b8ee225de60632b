"""parse_request vs httptools (with Python callbacks building an equivalent request) and h11."""

from __future__ import annotations

import edgecore as ec

from ._harness import Ratio, SuiteResult, compare, version

# A typical ~700-byte browser request (Chrome navigating to a product page).
BROWSER_REQUEST = (
    b"GET /products/shoes/running?color=blue&size=42&utm_source=newsletter HTTP/1.1\r\n"
    b"Host: shop.example.com\r\n"
    b"Connection: keep-alive\r\n"
    b'sec-ch-ua: "Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"\r\n'
    b"sec-ch-ua-mobile: ?0\r\n"
    b'sec-ch-ua-platform: "macOS"\r\n'
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"User-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Referer: https://shop.example.com/products/shoes\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-GB,en;q=0.9,de;q=0.8\r\n"
    b"Cookie: session=9f8e7d6c5b4a39281706; theme=dark\r\n"
    b"\r\n"
)


class _HttptoolsRequest:
    """What a server built on httptools assembles from the callbacks (as uvicorn does)."""

    __slots__ = ("body", "complete", "headers", "method", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.complete = False
        self.method = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def run(quick: bool = False) -> SuiteResult:
    import h11
    import httptools

    data = BROWSER_REQUEST

    def edgecore_parse() -> object:
        return ec.parse_request(data)

    def httptools_parse() -> object:
        req = _HttptoolsRequest()
        parser = httptools.HttpRequestParser(req)
        parser.feed_data(data)
        req.method = parser.get_method()
        return req

    def h11_parse() -> object:
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(data)
        event = conn.next_event()
        conn.next_event()
        return event

    stats = compare(
        {"edgecore.parse_request": edgecore_parse, "httptools + callbacks": httptools_parse, "h11": h11_parse},
        rounds=7 if quick else 11,
    )
    return SuiteResult(
        "HTTP request parsing (700-byte browser request)",
        stats,
        [
            Ratio("edgecore.parse_request", "httptools + callbacks", 3.0),
            Ratio("edgecore.parse_request", "h11", 50.0),
        ],
        notes=[f"request: {len(data)} bytes, 17 header fields", version("httptools"), version("h11")],
    )
