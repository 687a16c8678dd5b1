"""Hand a unit of database work to a thread and wait for its end, whatever cancellation arrives:
the one mechanism behind both backends' promise that a unit is never split by a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

import anyio
import anyio.lowlevel

T = TypeVar("T")


async def run_to_end(
    executor: Executor, work: Callable[[], T]
) -> tuple[asyncio.Future[T], asyncio.CancelledError | None]:
    """Run `work` on `executor` and wait until it has ended there. Returns its finished future
    and the cancellation that arrived meanwhile (None if none); the caller re-raises that
    cancellation once its unit has ended.

    The shield keeps anyio cancel scopes (which re-deliver at every await while cancelled) out
    of the wait; a plain `Task.cancel()` still interrupts it, so that cancellation is kept and
    the wait goes on (`asyncio.wait` never cancels the work). A scope cancelled meanwhile is
    taken at one checkpoint after the wait, so a caller whose every await is such a wait still
    learns of it (else a transaction cancelled during BEGIN or its work would go on to commit)."""
    done = asyncio.wrap_future(executor.submit(work))
    cancelled: asyncio.CancelledError | None = None
    with anyio.CancelScope(shield=True):
        while not done.done():
            try:
                await asyncio.wait((done,))
            except asyncio.CancelledError as exc:
                cancelled = exc
    if cancelled is None:
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except asyncio.CancelledError as exc:
            cancelled = exc
    return done, cancelled
