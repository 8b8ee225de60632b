"""HTTP/2 at the frame level (RFC 9113), with frames built by hand (hyperframe, hpack): what a
hostile client sends that no well-behaved client library would. Each attack must be answered per
the RFC (a stream error resets that stream, a connection error sends GOAWAY), must not reach the
origin, and must not harm the other streams or connections."""

from __future__ import annotations

import socket
import time

import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

import edgecore as ec

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR = 0x1
GOOD = [(":method", "GET"), (":scheme", "http"), (":authority", "shop.example"), (":path", "/ok")]


class RawH2:
    """One HTTP/2 connection (prior knowledge) that sends exactly the frames it is given."""

    def __init__(self, port: int, stream_window_updates: bool = True) -> None:
        # Off: only the connection's window is reopened, so a stream stalls once it received its
        # initial window (a client that stopped reading one response).
        self.stream_window_updates = stream_window_updates
        self.data_bytes: dict[int, int] = {}
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buf = b""
        self.statuses: dict[int, int] = {}
        self.resets: dict[int, int] = {}
        self.goaway: int | None = None
        self.closed = False
        self.send(PREFACE + SettingsFrame(0).serialize())

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True

    def block(self, headers: list[tuple[str, str]]) -> bytes:
        return self.encoder.encode(headers)

    def headers(self, stream: int, headers: list[tuple[str, str]], end_stream: bool = True) -> None:
        flags = ["END_HEADERS"] + (["END_STREAM"] if end_stream else [])
        self.send(HeadersFrame(stream, self.block(headers), flags=flags).serialize())

    def pump(self, until, timeout: float = 5.0) -> None:
        """Reads frames until `until()` holds, the connection closes, or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not until() and not self.closed and time.monotonic() < deadline:
            try:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                break
            self.buf += data
            self._frames()

    def _frames(self) -> None:
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(self.buf[9 : 9 + length]))
            self.buf = self.buf[9 + length :]
            if isinstance(frame, HeadersFrame):
                status = dict(self.decoder.decode(frame.data)).get(":status")
                if status:
                    self.statuses[frame.stream_id] = int(status)
            elif isinstance(frame, RstStreamFrame):
                self.resets[frame.stream_id] = frame.error_code
            elif isinstance(frame, GoAwayFrame):
                self.goaway = frame.error_code
            elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.send(SettingsFrame(0, flags=["ACK"]).serialize())
            elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                self.send(PingFrame(0, frame.opaque_data, flags=["ACK"]).serialize())
            elif isinstance(frame, DataFrame):
                self.data_bytes[frame.stream_id] = self.data_bytes.get(frame.stream_id, 0) + len(frame.data)
                n = frame.flow_controlled_length
                if n:
                    update = WindowUpdateFrame(0, n).serialize()
                    if self.stream_window_updates and "END_STREAM" not in frame.flags:
                        update += WindowUpdateFrame(frame.stream_id, n).serialize()
                    self.send(update)

    def answered(self, stream: int) -> bool:
        return stream in self.statuses or stream in self.resets

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def edge(origin):
    with ec.Edge(origin=origin.url).configure(max_header_bytes=8192).serve() as s:
        yield s


def good_request_works(port: int) -> bool:
    c = RawH2(port)
    try:
        c.headers(1, GOOD)
        c.pump(lambda: c.answered(1))
        return c.statuses.get(1) == 200
    finally:
        c.close()


MALFORMED = {
    "no :path": [(":method", "GET"), (":scheme", "http"), (":authority", "shop.example")],
    "pseudo-header after a field": [(":method", "GET"), ("x-a", "1"), (":scheme", "http"), (":path", "/bad")],
    "duplicate :path": [*GOOD, (":path", "/bad")],
    "connection field": [*GOOD, ("connection", "keep-alive")],
    "transfer-encoding field": [*GOOD, ("transfer-encoding", "chunked")],
    "te other than trailers": [*GOOD, ("te", "gzip")],
    "keep-alive field": [*GOOD, ("keep-alive", "timeout=5")],
    "upgrade field": [*GOOD, ("upgrade", "websocket")],
    "empty :path": [(":method", "GET"), (":scheme", "http"), (":authority", "shop.example"), (":path", "")],
}


def test_malformed_requests_reset_their_stream_and_spare_the_others(edge, origin):
    """RFC 9113 §8.1.1: a malformed request is a stream error of type PROTOCOL_ERROR (or a 4xx
    response); the streams before and after it on the same connection are served."""
    c = RawH2(edge.port)
    try:
        c.headers(1, GOOD)
        streams = {}
        for i, (name, headers) in enumerate(MALFORMED.items()):
            stream = 3 + 2 * i
            streams[stream] = name
            c.headers(stream, headers)
        last = 3 + 2 * len(MALFORMED)
        c.headers(last, GOOD)
        c.pump(lambda: all(c.answered(s) for s in [1, last, *streams]), timeout=10)
        assert c.statuses.get(1) == 200 and c.statuses.get(last) == 200, (c.statuses, c.resets, c.goaway)
        for stream, name in streams.items():
            status = c.statuses.get(stream)
            assert c.resets.get(stream) == PROTOCOL_ERROR or (status is not None and 400 <= status < 500), (
                f"{name}: status {status}, reset {c.resets.get(stream)}"
            )
        assert c.goaway is None, "a stream error became a connection error"
    finally:
        c.close()
    assert origin.count("/bad") == 0
    assert [r["path"] for r in origin.requests] == ["/ok", "/ok"]


# The h2 crate treats these as connection errors (GOAWAY PROTOCOL_ERROR) rather than stream
# errors, which RFC 9113 §5.4.1 allows ("an endpoint MAY treat a stream error as a connection
# error"): the connection ends, after the streams already answered.
CONNECTION_ERRORS = {
    "unknown pseudo-header": [*GOOD[:3], (":path", "/bad"), (":foo", "bar")],
    "upper-case name": [*GOOD[:3], (":path", "/bad"), ("X-Upper", "1")],
}


@pytest.mark.parametrize("name", list(CONNECTION_ERRORS))
def test_some_malformed_requests_end_the_connection_after_the_answered_streams(edge, origin, name):
    c = RawH2(edge.port)
    try:
        c.headers(1, GOOD)
        c.pump(lambda: c.answered(1))
        c.headers(3, CONNECTION_ERRORS[name])
        c.pump(lambda: c.goaway is not None or c.answered(3))
        assert c.statuses.get(1) == 200
        assert c.goaway == PROTOCOL_ERROR or c.resets.get(3) == PROTOCOL_ERROR, (c.statuses, c.resets, c.goaway)
    finally:
        c.close()
    assert good_request_works(edge.port)
    assert origin.count("/bad") == 0


def test_authority_and_host_must_agree(edge, origin):
    c = RawH2(edge.port)
    try:
        c.headers(1, [*GOOD[:3], (":path", "/bad"), ("host", "evil.example")])
        c.headers(3, [*GOOD[:3], (":path", "/ok"), ("host", "shop.example")])
        c.pump(lambda: c.answered(1) and c.answered(3))
        assert c.statuses.get(1) == 400 or c.resets.get(1) == PROTOCOL_ERROR, (c.statuses, c.resets)
        assert c.statuses.get(3) == 200
    finally:
        c.close()
    assert origin.count("/bad") == 0


def test_rapid_reset_is_cut_off(edge, origin):
    """CVE-2023-44487: streams opened and reset at once, thousands per connection. The server
    sends GOAWAY (ENHANCE_YOUR_CALM, or closes), the origin sees a bounded number of them, and
    a new connection is served."""
    c = RawH2(edge.port)
    try:
        n = 5000
        burst = b"".join(
            HeadersFrame(
                s, c.block([*GOOD[:3], (":path", "/slow?s=1")]), flags=["END_HEADERS", "END_STREAM"]
            ).serialize()
            + RstStreamFrame(s, error_code=0x8).serialize()
            for s in range(1, 2 * n, 2)
        )
        c.send(burst)
        c.pump(lambda: c.goaway is not None, timeout=10)
        assert c.goaway is not None or c.closed, "thousands of reset streams and no GOAWAY"
    finally:
        c.close()
    assert good_request_works(edge.port)
    time.sleep(0.2)
    assert origin.count("/slow") <= 200, f"{origin.count('/slow')} reset streams reached the origin"


def test_continuation_flood_is_cut_off(edge, origin):
    """CVE-2024-27316 and kin: a header block that never ends, in CONTINUATION frames. The server
    stops reading it past its header-list limit (GOAWAY or a closed connection), long before the
    16 MiB sent here, and a new connection is served."""
    c = RawH2(edge.port)
    try:
        first = c.block([*GOOD[:3], (":path", "/bad")])
        c.send(HeadersFrame(1, first, flags=[]).serialize())
        junk = hpack.Encoder()
        sent = 0
        while sent < 16 << 20 and not c.closed:
            block = junk.encode([(f"x-flood-{sent}", "v" * 4000)])
            c.send(ContinuationFrame(1, block, flags=[]).serialize())
            sent += len(block)
            if c.goaway is not None:
                break
            c.pump(lambda: c.goaway is not None, timeout=0.001)
        c.pump(lambda: c.goaway is not None or c.closed, timeout=5)
        assert c.goaway is not None or c.closed or c.resets.get(1) is not None, "the flood was read to its end"
        assert sent < 16 << 20, "16 MiB of CONTINUATION frames were accepted"
    finally:
        c.close()
    assert good_request_works(edge.port)
    assert origin.count("/bad") == 0


def test_an_oversized_header_list_is_refused(edge, origin):
    """A header list past max_header_bytes (8 KiB here) is answered 431 or reset (RFC 9113
    §10.5.1); the next stream on the connection is served."""
    c = RawH2(edge.port)
    try:
        block = c.block([*GOOD[:3], (":path", "/bad"), ("x-big", "v" * 12000)])
        frames = HeadersFrame(1, block[:8000], flags=[]).serialize()
        frames += ContinuationFrame(1, block[8000:], flags=["END_HEADERS"]).serialize()
        c.send(frames)
        c.pump(lambda: c.answered(1) or c.goaway is not None)
        assert c.statuses.get(1) == 431 or c.resets.get(1) is not None or c.goaway is not None, (
            c.statuses,
            c.resets,
        )
    finally:
        c.close()
    assert good_request_works(edge.port)
    assert origin.count("/bad") == 0
