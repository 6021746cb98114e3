"""A worker's capacity: how many turns it has at Gemini at once.

Each turn in flight holds a response in memory (a 4K Pro answer is tens of MB once
decoded, its base64 and thought signatures included) and counts against the API key's rate
limits, so a worker takes at most ``IMAGEBOT_MAX_CONCURRENT_TURNS`` at a time. Turns beyond
that wait in arrival order (a first-come, first-served line, no barging); a waiting turn
that is cancelled leaves the line at once. The thread's own order is not touched: a turn
waits here only after it holds its thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

#: Told how many turns are ahead when a turn has to wait for a free place.
OnWait = Callable[[int], Awaitable[None]]


class Capacity:
    """At most ``limit`` holders at once; the rest wait first come, first served."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"capacity must be at least 1, got {limit}")
        self.limit = limit
        self.in_flight = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Turns waiting for a place now."""
        return sum(1 for f in self._waiting if not f.done())

    @contextlib.asynccontextmanager
    async def hold(self, on_wait: OnWait | None = None) -> AsyncIterator[None]:
        """Holds one place for the duration of the block, waiting for it if all are taken.

        ``on_wait(ahead)`` is awaited once, before waiting, with the number of turns
        ahead in the line (0: the next one to go in).
        """
        await self._acquire(on_wait)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, on_wait: OnWait | None) -> None:
        if self.in_flight < self.limit and not self._waiting:
            self.in_flight += 1
            return
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ahead = self.waiting
        self._waiting.append(place)
        try:
            if on_wait is not None:
                await on_wait(ahead)
            await place  # the place is counted in ``in_flight`` once it is granted
        except BaseException:
            if place.done() and not place.cancelled():
                self._release()  # granted just as it was cancelled: pass it on
            else:
                place.cancel()
                with contextlib.suppress(ValueError):
                    self._waiting.remove(place)
            raise

    def _release(self) -> None:
        self.in_flight -= 1
        while self._waiting:
            place = self._waiting.popleft()
            if not place.done():
                self.in_flight += 1
                place.set_result(None)
                return
