"""Testing edge apps with pytest: ``TestClient`` sends requests through the real Rust pipeline and
Python handlers (a server on an ephemeral loopback port), with a clock tests can move forward.

    from edgecore.testing import TestClient

    def test_tokens_expire():
        with TestClient(app) as client:
            assert client.get("/api/x", headers={"Authorization": f"Bearer {token}"}).status == 200
            client.advance(3600)                      # token expiry, cache freshness, rate limits
            assert client.get("/api/x", headers={"Authorization": f"Bearer {token}"}).status == 401

The clock moves what the pipeline decides with: JWT ``exp``/``nbf``/``iat``, cache freshness and
in-process rate limits (a Redis-backed limiter keeps Redis's clock). Responses come back as
``ec.Response`` objects (status, headers, body).
"""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from typing import Any

from edgecore import _core
from edgecore.app import Edge, Running


class TestClient:
    """A client for ``app`` with a controllable clock; a context manager (stops the server)."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: Edge, *, workers: int = 2, base_headers: Mapping[str, str] | None = None) -> None:
        self.app = app
        self._running: Running = app.serve("127.0.0.1", 0, workers=workers)
        self._base = dict(base_headers or {})
        self._conn: http.client.HTTPConnection | None = None

    @property
    def url(self) -> str:
        return self._running.url

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self._running.port, timeout=30)
        return self._conn

    def request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, body: bytes | str | None = None
    ) -> _core.Response:
        """Sends one request; returns the response as an ``ec.Response``."""
        all_headers = {**self._base, **(headers or {})}
        data = body.encode() if isinstance(body, str) else body
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=all_headers)
                r = conn.getresponse()
                payload = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self._drop()
                return _core.Response(payload, status=r.status, headers=r.getheaders())
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed a kept-alive connection (after a 4xx, say): reconnect once.
                self._drop()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str, **kw: Any) -> _core.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> _core.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> _core.Response:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> _core.Response:
        return self.request("DELETE", path, **kw)

    def advance(self, seconds: float) -> None:
        """Moves the server's clock forward by ``seconds``."""
        self._running.core.advance_clock(seconds)

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._drop()
        self._running.stop()

    def __enter__(self) -> TestClient:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
