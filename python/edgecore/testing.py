"""Testing edge apps with pytest: ``TestClient`` sends requests through the real Rust pipeline and
Python handlers (a server on an ephemeral loopback port), with a clock tests can move forward.

    from edgecore.testing import TestClient

    def test_tokens_expire():
        with TestClient(app) as client:
            assert client.get("/api/x", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            client.advance(3600)                      # token expiry, cache freshness, rate limits
            assert client.get("/api/x", headers={"Authorization": f"Bearer {token}"}).status_code == 401

``TestClient`` is an ``httpx.Client`` whose base URL is the app's server: responses are
``httpx.Response`` objects (``status_code``, ``headers``, ``text``, ``content``, ``json()``,
``cookies``), cookies set by the app are kept and sent back (``client.cookies``), every HTTP
method is a method (``client.patch(...)``, ``client.request("PURGE", ...)``), and
``follow_redirects=True`` follows redirects (per client, or per request as in httpx).

``advance(seconds)`` moves every clock the app owns: the pipeline's (JWT ``exp``/``nbf``/``iat``,
cache freshness, the ``rate_limit`` policies) and the in-process stores and limiters made through
the app (``app.kv(...)``, ``app.limiter(...)``, reached by handlers as ``env.kv``/``env.limiters``):
TTLs run out and buckets refill with no sleeping. What lives in Redis keeps Redis's clock.

The pytest plugin (installed with edgecore) gives an ``edge_client`` fixture: define an
``edge_app`` fixture returning your ``ec.Edge`` and take ``edge_client`` in a test.

httpx is needed: ``pip install 'edgecore[testing]'``.
"""

from __future__ import annotations

from typing import Any

try:
    import httpx
except ImportError as e:  # pragma: no cover - exercised by hand without httpx
    raise ImportError("edgecore.testing needs httpx: pip install 'edgecore[testing]'") from e

from edgecore.app import Edge, Running


class TestClient(httpx.Client):
    """An ``httpx.Client`` for ``app``, served on a loopback port for the client's lifetime, with
    a controllable clock; a context manager (closing it stops the server).

    ``workers`` are the server's worker threads; every other keyword (``headers``, ``cookies``,
    ``follow_redirects``, ``timeout``…) is ``httpx.Client``'s."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: Edge, *, workers: int = 2, timeout: float = 30.0, **client: Any) -> None:
        self.app = app
        self._running: Running = app.serve("127.0.0.1", 0, workers=workers)
        try:
            super().__init__(base_url=self._running.url, timeout=timeout, **client)
        except BaseException:
            self._running.stop()
            raise

    @property
    def url(self) -> str:
        """The server's base URL (``http://127.0.0.1:PORT``), for other clients."""
        return self._running.url

    @property
    def running(self) -> Running:
        """The running server (``purge``, ``reload``, ``requests``…)."""
        return self._running

    def advance(self, seconds: float) -> None:
        """Moves the app's clocks forward by ``seconds``: the pipeline's (tokens, cache
        freshness, rate-limit policies) and those of the in-process KV stores and limiters made
        through the app."""
        if not seconds >= 0:
            raise ValueError(f"advance() takes a non-negative number of seconds, not {seconds!r}")
        self._running.core.advance_clock(seconds)
        for kv in self.app._kv.values():
            kv.advance_clock(seconds)
        for limiter in self.app._named_limiters.values():
            limiter.advance_clock(seconds)

    def close(self) -> None:
        """Closes the client's connections, then stops the server."""
        try:
            super().close()
        finally:
            self._running.stop()

    def __enter__(self) -> TestClient:  # noqa: PYI034 (typing.Self needs Python 3.11)
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
