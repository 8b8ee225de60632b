"""What handlers and middleware receive as ``env``, as a Cloudflare Worker does: ``env.kv``,
``env.vars``, ``await env.fetch(...)`` (the origin, through the Rust proxy) and
``env.wait_until(...)`` (work that runs after the response is sent)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from edgecore import _core

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("edgecore")

#: The work a handler handed to ``wait_until`` while it runs (None outside a handler: the work
#: starts at once).
_deferred: contextvars.ContextVar[list[Awaitable[Any]] | None] = contextvars.ContextVar(
    "edgecore_deferred", default=None
)

#: The most a fetched response body may hold in memory, unless ``fetch(max_bytes=...)`` says.
FETCH_MAX_BYTES = 16 << 20


class Vars(Mapping[str, str]):
    """Configured variables and secrets (``env.vars["API_KEY"]``): a read-only mapping whose
    ``repr`` shows the names only, so a logged ``env`` never prints a secret."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Vars({sorted(self._values)})"


class Env:
    """``env.kv[name]`` for each ``app.kv(name, ...)``; ``env.limiters[name]`` for each
    ``app.limiter(name, ...)``; ``env.vars`` (``app.vars(...)``);
    ``await env.fetch(request_or_path)``; ``env.wait_until(awaitable)``."""

    def __init__(
        self,
        kv: Mapping[str, _core.KV],
        vars: Mapping[str, str] | None = None,
        *,
        limiters: Mapping[str, _core.RateLimiter] | None = None,
        server: _core.Server | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.kv = dict(kv)
        self.limiters = dict(limiters or {})
        self.vars = Vars(vars or {})
        self._server = server
        self._loop = loop
        self._background: set[Any] = set()

    def __repr__(self) -> str:
        return f"Env(kv={sorted(self.kv)}, limiters={sorted(self.limiters)}, vars={self.vars!r})"

    # ---- fetch ----

    def _request(
        self,
        target: _core.Request | str,
        method: str | None,
        headers: Any,
        body: bytes | str | None,
    ) -> _core.Request:
        if isinstance(target, _core.Request):
            if method is None and headers is None and body is None:
                return target
            return _core.Request(
                method or target.method,
                target.url.path + (f"?{target.url.query}" if target.url.query else ""),
                headers=target.headers if headers is None else headers,
                body=target.body if body is None else body,
            )
        if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
            raise ValueError(
                f"fetch takes a Request or a path on the origin (starting with /), not {target!r}; "
                "it reaches the configured origins only"
            )
        return _core.Request(method or "GET", target, headers=headers, body=body)

    def _running(self) -> _core.Server:
        if self._server is None:
            raise RuntimeError("env.fetch needs a running server (app.serve(), app.run() or TestClient)")
        return self._server

    async def fetch(
        self,
        target: _core.Request | str,
        *,
        method: str | None = None,
        headers: Any = None,
        body: bytes | str | None = None,
        max_bytes: int = FETCH_MAX_BYTES,
    ) -> _core.Response:
        """Sends ``target`` (the request the handler got, or a path) to the origin through the
        server's proxy — the same origin choice, connection pool, forwarding fields and timeouts
        as a proxied request — and returns its answer as an ``ec.Response`` the handler may edit
        and return. Raises ``ec.UpstreamError`` when the origin cannot be reached or answers
        with more than ``max_bytes``."""
        server = self._running()
        request = self._request(target, method, headers, body)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_core.Response] = loop.create_future()

        def settle(response: _core.Response | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(response)  # type: ignore[arg-type]

        def done(response: _core.Response | None, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(settle, response, error)

        server.fetch(request, max_bytes, done)
        return await future

    def fetch_sync(
        self,
        target: _core.Request | str,
        *,
        method: str | None = None,
        headers: Any = None,
        body: bytes | str | None = None,
        max_bytes: int = FETCH_MAX_BYTES,
    ) -> _core.Response:
        """``fetch`` for a ``def`` handler: waits for the answer (other handlers keep running)."""
        return self._running().fetch_blocking(self._request(target, method, headers, body), max_bytes)

    # ---- wait_until ----

    def wait_until(self, work: Awaitable[Any]) -> None:
        """Runs ``work`` (a coroutine or other awaitable) after the response is sent, on the
        server's event loop; an exception it raises is logged. Outside a handler it starts at
        once. ``stop()`` waits for pending work up to the grace period."""
        if not inspect_awaitable(work):
            raise TypeError(f"wait_until takes an awaitable (a coroutine), not {type(work).__name__}")
        pending = _deferred.get()
        if pending is not None:
            pending.append(work)
        else:
            self.start_background(work)

    def start_background(self, work: Awaitable[Any]) -> None:
        if self._loop is None or self._loop.is_closed():
            close = getattr(work, "close", None)
            if close is not None:
                close()
            log.error("wait_until: no running server to run %r on", work)
            return
        future = asyncio.run_coroutine_threadsafe(_logged(work), self._loop)
        self._background.add(future)
        future.add_done_callback(self._background.discard)

    def drain(self, timeout: float) -> None:
        """Waits up to ``timeout`` seconds for background work to finish."""
        import concurrent.futures

        pending = list(self._background)
        if pending:
            concurrent.futures.wait(pending, timeout=timeout)


def inspect_awaitable(obj: object) -> bool:
    return asyncio.iscoroutine(obj) or hasattr(obj, "__await__")


async def _logged(work: Awaitable[Any]) -> None:
    try:
        await work
    except Exception:
        log.exception("work passed to env.wait_until failed")


def run_deferring(call: Callable[[], Any]) -> tuple[Any, list[Awaitable[Any]]]:
    """Calls ``call()`` with ``wait_until`` collecting work; returns its result and the work."""
    pending: list[Awaitable[Any]] = []
    token = _deferred.set(pending)
    try:
        return call(), pending
    finally:
        _deferred.reset(token)


async def await_deferring(awaitable: Awaitable[Any]) -> tuple[Any, list[Awaitable[Any]]]:
    """Awaits ``awaitable`` with ``wait_until`` collecting work (the task's own context)."""
    pending: list[Awaitable[Any]] = []
    _deferred.set(pending)
    return await awaitable, pending
