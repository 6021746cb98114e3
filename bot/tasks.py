"""Background work that must end cleanly on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def drain(tasks: set[asyncio.Task[Any]], grace: float) -> None:
    """Waits up to ``grace`` seconds for ``tasks`` to finish, then cancels what is left.

    ``tasks`` is a live set (tasks remove themselves when done); it is re-read while
    waiting, since work that was already running may start more.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while tasks and loop.time() < deadline:
        await asyncio.wait(set(tasks), timeout=deadline - loop.time())
    late = set(tasks)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=5)


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancels ``task`` (if any) and waits until it has ended; its cancellation is absorbed,
    any other failure of it is not."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
