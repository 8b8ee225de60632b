"""The security suite: attacks sent through a running edge, and what the origin received.

Fixtures: a recording origin (every request's raw target and headers), real Flask and Starlette
apps as origins (they normalise paths as production origins do), a raw-socket client that sends
exact bytes, and an HTTP/2 client (the h2 package, prior knowledge) that sends exact `:path`s.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.e2e.origin import Origin


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.stop()


def raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Sends `data` on a fresh connection and reads until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        s.settimeout(1.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                if out:
                    break
                continue
            if not chunk:
                break
            out += chunk
        return out


def status_of(response: bytes) -> int:
    """The status code of the first response in `response` (0 for none)."""
    if not response.startswith(b"HTTP/1."):
        return 0
    return int(response.split(b" ", 2)[1])


def get(port: int, target: str, headers: dict[str, str] | None = None, host: str = "shop.example") -> int:
    """One GET with an exact target (nothing normalised on the way); returns the status."""
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return status_of(raw(port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")))


def h2_get(port: int, path: str, authority: str = "shop.example", extra: list | None = None) -> int:
    """One HTTP/2 GET (prior knowledge) with an exact `:path`; returns the status (0: reset)."""
    import h2.config
    import h2.connection
    import h2.events

    # No client-side checks: the point is to send what a hostile client would.
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding="utf-8",
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    headers = [(":method", "GET"), (":scheme", "http"), (":authority", authority), (":path", path)]
    headers += extra or []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(conn.data_to_send())
        conn.send_headers(1, headers, end_stream=True)
        s.sendall(conn.data_to_send())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                return 0
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    return int(dict(event.headers)[":status"])
                if isinstance(event, h2.events.StreamReset):
                    return 0
            s.sendall(conn.data_to_send())
    return 0


class ThreadedServer:
    """A WSGI or ASGI app served on loopback in a thread."""

    def __init__(self, app, kind: str) -> None:
        if kind == "wsgi":
            from werkzeug.serving import make_server

            self.server = make_server("127.0.0.1", 0, app, threaded=True)
            self.port = self.server.server_port
            self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
            self.stop = self.server.shutdown
        else:
            import uvicorn

            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
            config = uvicorn.Config(app, log_level="error", lifespan="off")
            self.server = uvicorn.Server(config)
            self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

            def stop() -> None:
                self.server.should_exit = True
                self.thread.join(5)

            self.stop = stop
        self.thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"


def flask_origin() -> ThreadedServer:
    from flask import Flask

    app = Flask("origin")

    @app.route("/api/x")
    def api():
        return "SECRET api"

    @app.route("/admin/reports")
    def admin():
        return "SECRET admin"

    @app.route("/login", methods=["GET", "POST"])
    def login():
        return "login"

    return ThreadedServer(app, "wsgi")


def starlette_origin() -> ThreadedServer:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def api(request):
        return PlainTextResponse("SECRET api")

    async def admin(request):
        return PlainTextResponse("SECRET admin")

    async def login(request):
        return PlainTextResponse("login")

    app = Starlette(routes=[Route("/api/x", api), Route("/admin/reports", admin), Route("/login", login)])
    return ThreadedServer(app, "asgi")


@pytest.fixture(params=["flask", "starlette"])
def real_origin(request):
    server = flask_origin() if request.param == "flask" else starlette_origin()
    yield server
    server.stop()
