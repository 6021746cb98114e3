"""Background work that must end cleanly on shutdown."""

from __future__ import annotations

import asyncio
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
