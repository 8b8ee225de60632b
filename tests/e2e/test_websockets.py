"""WebSockets through the edge, against a real WebSocket server (the `websockets` package) as
the origin and a real WebSocket client: the policies run first, then bytes flow both ways."""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
import time

import jwt as pyjwt
import pytest
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import edgecore as ec
from tests.e2e.conftest import call

SECRET = b"k" * 32


class WsOrigin:
    """A WebSocket echo server on loopback (text and binary echoed; "close:CODE" closes with
    CODE); records each handshake's path and headers."""

    def __init__(self) -> None:
        self.handshakes: list[tuple[str, dict]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.url = f"http://127.0.0.1:{self.port}"

    async def _start(self) -> int:
        async def handler(ws):
            req = ws.request
            self.handshakes.append((req.path, {k.lower(): v for k, v in req.headers.raw_items()}))
            async for msg in ws:
                if isinstance(msg, str) and msg.startswith("close:"):
                    await ws.close(int(msg.split(":")[1]), "asked to")
                    return
                await ws.send(msg)

        self.server = await serve(handler, "127.0.0.1", 0, max_size=None)
        return self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close():
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def ws_origin():
    o = WsOrigin()
    yield o
    o.stop()


def ws_url(srv, path="/ws/chat") -> str:
    return srv.url.replace("http://", "ws://") + path


# A browser's opening handshake, sent by hand where the answer is not a 101.
HANDSHAKE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def test_messages_flow_both_ways_after_the_policies(ws_origin):
    app = ec.Edge(origin=ws_origin.url)
    app.jwt(paths="/ws/*", key=SECRET, algorithms=["HS256"])
    app.configure(metrics_path="/metrics")
    token = pyjwt.encode({"sub": "u1", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    with app.serve() as srv:
        # No token: the JWT policy answers 401 and nothing reaches the origin.
        assert call(srv.url, "/ws/chat", headers=HANDSHAKE).status == 401
        assert ws_origin.handshakes == []
        with connect(
            ws_url(srv) + "?room=1", additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
        ) as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"
            ws.send(b"\x00\x01binary\xff")
            assert ws.recv(timeout=5) == b"\x00\x01binary\xff"
            ws.ping(b"p").wait(timeout=5)  # the origin's pong came back through the tunnel
            big = bytes(range(256)) * (10 * 1024 * 1024 // 256)  # 10 MiB
            ws.send(big)
            assert ws.recv(timeout=30) == big
            ws.send("close:4001")
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd.code == 4001
        path, headers = ws_origin.handshakes[0]
        assert path == "/ws/chat?room=1"
        assert headers["upgrade"].lower() == "websocket" and headers["x-forwarded-for"] == "127.0.0.1"
        metrics = call(srv.url, "/metrics").body.decode()
        assert 'decision="upgraded"' in metrics


def test_an_idle_tunnel_is_closed(ws_origin):
    app = ec.Edge(origin=ws_origin.url)
    app.configure(upgrade_idle_timeout=0.5)
    with app.serve() as srv, connect(ws_url(srv)) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert time.monotonic() - started < 5


def test_tunnels_count_against_max_connections(ws_origin):
    app = ec.Edge(origin=ws_origin.url)
    app.configure(max_connections=1)
    with app.serve() as srv:
        with connect(ws_url(srv)) as ws:
            ws.send("a")
            assert ws.recv(timeout=5) == "a"
            # The one connection is the tunnel: a second one waits in the accept queue.
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.settimeout(0.5)
            s.sendall(b"GET /ws/other HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(socket.timeout):
                s.recv(100)
        # Once the tunnel closed, the waiting connection is served.
        s.settimeout(10)
        assert s.recv(100).startswith(b"HTTP/1.1 ")
        s.close()


def test_open_tunnels_count_against_the_upstream_circuit_breaker(ws_origin):
    # max_requests=1: while one tunnel is open, a second upgrade is refused 503 at once; once
    # it closes, the next one is let through (the count was released with the tunnel).
    app = ec.Edge(origin="upstream:ws")
    app.upstream("ws", [ws_origin.url], max_requests=1)
    with app.serve() as srv:
        with connect(ws_url(srv)) as ws:
            ws.send("a")
            assert ws.recv(timeout=5) == "a"
            refused = call(srv.url, "/ws/second", headers=HANDSHAKE)
            assert refused.status == 503 and refused.headers.get("retry-after") == "1"
            assert len(ws_origin.handshakes) == 1
        deadline = time.monotonic() + 10
        while True:
            try:
                with connect(ws_url(srv)) as ws:
                    ws.send("b")
                    assert ws.recv(timeout=5) == "b"
                break
            except InvalidStatus:
                # The close travels through the tunnel; the count drops when it has ended.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert len(ws_origin.handshakes) == 2


def test_other_upgrades_are_not_proxied(ws_origin, origin):
    app = ec.Edge(origin=origin.url)
    with app.serve() as srv:
        r = call(
            srv.url,
            "/echo",
            headers={"Upgrade": "h2c", "Connection": "Upgrade, HTTP2-Settings", "HTTP2-Settings": "AAMAAABkAAQAAP__"},
        )
        assert r.status == 200
        sent = r.json()["headers"]
        assert "upgrade" not in sent and "http2-settings" not in sent


def test_a_refused_upgrade_comes_back_as_the_origin_answered(origin):
    # A plain HTTP origin answers the upgrade with 200: the client sees that, no tunnel.
    app = ec.Edge(origin=origin.url)
    with app.serve() as srv:
        r = call(srv.url, "/echo", headers=HANDSHAKE)
        assert r.status == 200 and r.json()["headers"]["upgrade"] == "websocket"
        assert "sec-websocket-accept" not in r.headers


def _ws_frame(payload: bytes, opcode: int) -> bytes:
    """A client's (masked) WebSocket frame."""
    import os

    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _ws_messages(data: bytes) -> list[tuple[int, bytes]]:
    """The complete (unmasked) frames in `data`: (opcode, payload)."""
    out, i = [], 0
    while i + 2 <= len(data):
        opcode, n, i = data[i] & 0x0F, data[i + 1] & 0x7F, i + 2
        if n == 126:
            n, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif n == 127:
            n, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        if i + n > len(data):
            break
        out.append((opcode, data[i : i + n]))
        i += n
    return out


class H2Client:
    """HTTP/2 with prior knowledge over a raw socket (the `h2` state machine)."""

    def __init__(self, port: int) -> None:
        import h2.config
        import h2.connection

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.port = port
        self.data: dict[int, bytes] = {}
        self.headers: dict[int, dict[str, str]] = {}
        self.ended: set[int] = set()
        self.settings: dict[int, int] = {}

    def pump(self, until, timeout: float = 10) -> None:
        import h2.events

        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "no answer over HTTP/2"
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            for ev in self.conn.receive_data(chunk):
                if isinstance(ev, h2.events.RemoteSettingsChanged):
                    self.settings.update({k: v.new_value for k, v in ev.changed_settings.items()})
                elif isinstance(ev, h2.events.ResponseReceived):
                    self.headers[ev.stream_id] = {k.decode(): v.decode() for k, v in ev.headers}
                elif isinstance(ev, h2.events.DataReceived):
                    self.data[ev.stream_id] = self.data.get(ev.stream_id, b"") + ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                    self.ended.add(ev.stream_id)
            self.sock.sendall(self.conn.data_to_send())

    def _window_fits(self, sid: int, n: int) -> bool:
        return self.conn.local_flow_control_window(sid) >= n

    def connect_websocket(self, path: str, protocol: str = "websocket", **fields: str) -> int:
        self.pump(lambda: 8 in self.settings)  # SETTINGS_ENABLE_CONNECT_PROTOCOL
        sid = self.conn.get_next_available_stream_id()
        head = [
            (":method", "CONNECT"),
            (":protocol", protocol),
            (":scheme", "http"),
            (":path", path),
            (":authority", f"127.0.0.1:{self.port}"),
            ("sec-websocket-version", "13"),
            *fields.items(),
        ]
        self.conn.send_headers(sid, head)
        self.sock.sendall(self.conn.data_to_send())
        self.pump(lambda: sid in self.headers)
        return sid

    def send(self, sid: int, data: bytes) -> None:
        step = self.conn.max_outbound_frame_size
        for i in range(0, len(data), step):
            piece = data[i : i + step]
            self.pump(functools.partial(self._window_fits, sid, len(piece)))
            self.conn.send_data(sid, piece)
            self.sock.sendall(self.conn.data_to_send())


def test_websockets_over_http2_extended_connect_rfc_8441(ws_origin):
    app = ec.Edge(origin=ws_origin.url)
    app.jwt(paths="/ws/*", key=SECRET, algorithms=["HS256"])
    token = pyjwt.encode({"sub": "u1", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    with app.serve() as srv:
        c = H2Client(srv.port)
        denied = c.connect_websocket("/ws/chat")
        assert c.headers[denied][":status"] == "401" and ws_origin.handshakes == []
        sid = c.connect_websocket("/ws/chat?room=2", authorization=f"Bearer {token}")
        assert c.headers[sid][":status"] == "200"
        assert c.settings[8] == 1
        c.send(sid, _ws_frame(b"hello over h2", 1) + _ws_frame(b"\x00\xffbin", 2))
        c.pump(lambda: len(_ws_messages(c.data.get(sid, b""))) >= 2)
        assert _ws_messages(c.data[sid]) == [(1, b"hello over h2"), (2, b"\x00\xffbin")]
        big = bytes(range(256)) * 4096  # 1 MiB through HTTP/2 flow control both ways
        for i in range(0, len(big), 16384):
            c.send(sid, _ws_frame(big[i : i + 16384], 2))
        c.pump(lambda: len(_ws_messages(c.data[sid])) >= 2 + len(big) // 16384, timeout=30)
        assert b"".join(p for _, p in _ws_messages(c.data[sid])[2:]) == big
        path, headers = ws_origin.handshakes[0]
        assert path == "/ws/chat?room=2" and headers["upgrade"].lower() == "websocket"
        assert headers["sec-websocket-key"] and headers["x-forwarded-for"] == "127.0.0.1"
        # Another :protocol is a plain CONNECT: not served.
        other = c.connect_websocket("/ws/chat", protocol="connect-udp", authorization=f"Bearer {token}")
        assert c.headers[other][":status"] == "405"
        c.sock.close()
