"""A real origin server on loopback for end-to-end tests: records every request it receives and
answers according to the path."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Origin:
    def __init__(self, idle_timeout: float | None = None, port: int = 0) -> None:
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.version = 1
        # What /healthz answers: 200 while True, 503 after.
        self.healthy = True
        # /events waits for this between its first and second event (set by a test that has
        # read the first); `gate_timed_out` records a wait that ran out instead.
        self.gate = threading.Event()
        self.gate_timed_out = False
        self.open: set[socket.socket] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Seconds a kept-alive connection may sit idle before the origin closes it.
            timeout = idle_timeout

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with outer.lock:
                    outer.open.add(self.connection)

            def finish(self):
                with outer.lock:
                    outer.open.discard(self.connection)
                super().finish()

            def _record(self, body: bytes) -> dict:
                rec = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                    # The client's port: one per origin connection edgecore opened.
                    "peer": self.client_address[1],
                }
                with outer.lock:
                    outer.requests.append(rec)
                return rec

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                # Head and body in one write: an origin process killed or stopped by a test
                # never leaves a response cut between them (no proxy could retry that one: the
                # head has gone on to the client).
                self._headers_buffer.append(b"\r\n")
                if self.command != "HEAD":
                    self._headers_buffer.append(body)
                self.flush_headers()

            def handle_any(self) -> None:
                body = self._read_body()
                rec = self._record(body)
                path = self.path.split("?")[0]
                if path.startswith("/slow"):
                    time.sleep(float(self.path.split("s=")[-1]) if "s=" in self.path else 2.0)
                    self._send(200, b"slow")
                elif path.startswith("/healthz"):
                    self._send(200 if outer.healthy else 503, b"ok" if outer.healthy else b"sick")
                elif path.startswith("/fail"):
                    self._send(500, b"boom")
                elif path.startswith("/drop"):
                    self.close_connection = True
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: nonsense\r\n\r\n")
                elif path.startswith("/chunked"):
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for part in [b"one-", b"two-", b"three"]:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.flush()
                        time.sleep(0.05)
                    self.wfile.write(b"0\r\n\r\n")
                elif path.startswith("/etag"):
                    tag = f'"v{outer.version}"'
                    if self.headers.get("If-None-Match") == tag:
                        self._send(304, b"", {"ETag": tag, "Cache-Control": "max-age=1"})
                    else:
                        self._send(
                            200, f"version {outer.version}".encode(), {"ETag": tag, "Cache-Control": "max-age=1"}
                        )
                elif path.startswith("/swr"):
                    # Fresh for 1 s, then usable stale for 30 s while revalidated; each answer is
                    # numbered, and a refresh takes 0.5 s.
                    n = sum(1 for r in outer.requests if r["path"].startswith("/swr"))
                    time.sleep(0.5 if n > 1 else 0)
                    self._send(200, f"swr #{n}".encode(), {"Cache-Control": "max-age=1, stale-while-revalidate=30"})
                elif path.startswith(("/product/", "/products/tagged/")):
                    # Tagged for purging: /product/N is tagged product-N and catalog.
                    n = path.rsplit("/", 1)[-1]
                    self._send(
                        200,
                        f"product {n} #{len(outer.requests)}".encode(),
                        {"Cache-Control": "max-age=60", "Cache-Tag": f"product-{n}, catalog", "Surrogate-Key": f"p{n}"},
                    )
                elif path.startswith("/tagged"):
                    self._send(200, b"tagged body", {"ETag": '"t1"', "Cache-Control": "max-age=60"})
                elif path.startswith("/cached"):
                    time.sleep(0.2 if "slowfill" in self.path else 0)
                    self._send(200, f"cached {path} #{len(outer.requests)}".encode(), {"Cache-Control": "max-age=60"})
                elif path.startswith("/close"):
                    # Answers, then closes the connection (announced).
                    self.close_connection = True
                    self._send(200, b"bye", {"Connection": "close"})
                elif path.startswith("/big"):
                    # 8 MiB in 64 KiB writes: more than the socket buffers hold, so a client that
                    # stops reading leaves the response unfinished.
                    size = 8 * 1024 * 1024
                    self.send_response(200)
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    try:
                        for _ in range(size // 65536):
                            self.wfile.write(b"b" * 65536)
                    except OSError:
                        self.close_connection = True
                elif path.startswith("/personal"):
                    # A slow, personal answer: whose it is shows in the body and the cookie.
                    time.sleep(0.5)
                    who = self.headers.get("Cookie") or self.headers.get("Authorization") or "anonymous"
                    self._send(
                        200,
                        f"page of {who}".encode(),
                        {"Cache-Control": "private, no-store", "Set-Cookie": f"session=secret-of-{who}"},
                    )
                elif path.startswith("/vary"):
                    time.sleep(0.3)
                    lang = self.headers.get("Accept-Language", "none")
                    self._send(200, f"lang {lang}".encode(), {"Cache-Control": "max-age=60", "Vary": "Accept-Language"})
                elif path.startswith("/longchunked"):
                    # 2 MiB of known content with no length announced: chunked, cacheable.
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.send_header("Cache-Control", "max-age=60")
                    self.end_headers()
                    for i in range(32):
                        part = bytes([65 + i % 26]) * 65536
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                elif path.startswith("/huge"):
                    # 300 MiB, written as fast as the reader takes it.
                    size = 300 * 1024 * 1024
                    self.send_response(200)
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    chunk = b"h" * (1024 * 1024)
                    try:
                        for _ in range(size // len(chunk)):
                            self.wfile.write(chunk)
                    except OSError:
                        self.close_connection = True
                elif path.startswith("/flaky"):
                    # Good while version is 1, a server error after.
                    if outer.version == 1:
                        cc = "max-age=1, stale-if-error=60" if "sie" in self.path else "max-age=1"
                        self._send(200, b"good", {"Cache-Control": cc})
                    else:
                        self._send(500, b"boom")
                elif path.startswith("/targeted"):
                    self._send(
                        200,
                        f"targeted #{len(outer.requests)}".encode(),
                        {"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=60"},
                    )
                elif path.startswith("/page"):
                    # 24 kB of HTML, cacheable, numbered (how many times the origin made it).
                    n = sum(1 for r in outer.requests if r["path"].startswith("/page"))
                    row = f"<tr><td>{path}</td><td>answer {n}</td></tr>\n".encode()
                    page = b"<html><body><table>\n" + row * (24_000 // len(row)) + b"</table></body></html>"
                    cc = self.headers.get("X-Cache-Control", "max-age=60")
                    self._send(
                        200, page, {"Content-Type": "text/html; charset=utf-8", "ETag": f'"p{n}"', "Cache-Control": cc}
                    )
                elif path.startswith("/events"):
                    # Server-sent events: a stream that pauses after its first event.
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(3):
                        part = f"data: event {i} {'.' * 2000}\n\n".encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.flush()
                        if i == 0 and not outer.gate.wait(5):
                            outer.gate_timed_out = True
                    self.wfile.write(b"0\r\n\r\n")
                elif path.startswith("/gz"):
                    self._send(
                        200,
                        gzip.compress(b"already " * 1000),
                        {"Content-Type": "text/html", "Content-Encoding": "gzip"},
                    )
                elif path.startswith("/png"):
                    self._send(200, bytes(range(256)) * 40, {"Content-Type": "image/png"})
                elif path.startswith("/private"):
                    self._send(200, b"mine", {"Cache-Control": "private, max-age=60"})
                else:
                    out = json.dumps(
                        {
                            "method": rec["method"],
                            "path": rec["path"],
                            "headers": rec["headers"],
                            "body": body.decode("latin-1"),
                        }
                    ).encode()
                    self._send(
                        200,
                        out,
                        {
                            "Content-Type": "application/json",
                            "Connection": "x-hop",
                            "X-Hop": "secret",
                            "Keep-Alive": "timeout=5",
                        },
                    )

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def connections(self, path_prefix: str = "/") -> int:
        """How many connections the requests under `path_prefix` came in on."""
        with self.lock:
            return len({r["peer"] for r in self.requests if r["path"].startswith(path_prefix)})

    def count(self, path_prefix: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r["path"].startswith(path_prefix))

    def stop(self) -> None:
        """Stop as a process would: no new connections, and the kept-alive ones are closed."""
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            open_now = list(self.open)
        for conn in open_now:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


if __name__ == "__main__":
    # An origin in a process of its own, for tests that kill or stop it: prints its URL, then
    # serves until killed.
    import sys

    o = Origin(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(o.url, flush=True)
    threading.Event().wait()
