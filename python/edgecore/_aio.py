"""Completes an asyncio future from the Rust core's background threads (KV.get_async)."""

from __future__ import annotations

import asyncio
from typing import Any


def resolve(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    """Runs on the future's loop (call_soon_threadsafe): sets the result or the exception,
    unless the awaiting task was cancelled meanwhile."""
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)
