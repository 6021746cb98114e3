"""The one turn lifecycle every surface shares: claiming, the per-thread line, running the
turn in the background, shutdown grace, and turning failures into user messages.

An adapter translates its platform's input into a call of the service and gives the
runner a :class:`Reporter` that shows the turn on that platform. One rule holds for every
platform: a thread's next turn starts after the previous turn's result is posted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from bot import messages
from bot.errors import ErrorKind, ImagebotError
from bot.leases import LinePlace
from bot.model import Reply, ThreadKey
from bot.service import ConversationService, StartCallback, TurnStart
from bot.tasks import drain

logger = logging.getLogger(__name__)

#: How long ``stop`` lets turns in flight post their results before cancelling them.
STOP_GRACE = 10.0

TurnCall = Callable[[StartCallback], Awaitable[Reply]]


class Reporter(Protocol):
    """Shows one turn on one surface. Failures inside a reporter are its own business:
    it logs them and never raises, so a platform hiccup never ends a turn."""

    async def working(self, *, queued: bool) -> None:
        """The request was accepted; ``queued`` when it waits behind another turn."""

    async def started(self, start: TurnStart) -> None:
        """Generation started (options resolved, files fetched)."""

    async def finished(self, reply: Reply) -> dict[str, Any]:
        """Posts the result; returns where it went (kept with the turn for Delete)."""

    async def failed(self, error: ImagebotError) -> None:
        """Tells the user why the turn did not happen (nothing was saved)."""

    async def close(self) -> None:
        """The turn is over, whatever happened (remove a reaction, stop a ticker)."""


class TurnRunner:
    """Runs turns for one adapter, in the background, one at a time per thread."""

    def __init__(self, service: ConversationService, *, name: str,
                 grace: float = STOP_GRACE) -> None:
        self.service = service
        self.name = name
        self.grace = grace
        self.stopping = False
        self.duplicates = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Per thread, how many of this runner's turns wait or run.
        self._line: dict[ThreadKey, int] = {}

    def busy(self, key: ThreadKey) -> bool:
        """Whether a turn of this thread is running or waiting here."""
        return key in self._line

    async def is_session(self, key: ThreadKey) -> bool:
        """A thread whose first turn is still running (in any process) is already a session."""
        return self.busy(key) or await self.service.is_session(key)

    async def claim(self, event_id: str) -> bool:
        """True the first time an event id is seen (persisted, so also across restarts)."""
        if await self.service.claim(event_id):
            return True
        self.duplicates += 1
        logger.info("%s: dropped a duplicate delivery (%s)", self.name, event_id)
        return False

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Runs background work this runner tracks; one failure never stops the adapter."""
        task = asyncio.create_task(self._logged(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def submit(self, key: ThreadKey, reporter: Reporter, call: TurnCall) -> None:
        """Queues a turn in its thread's line now, and runs it in the background."""
        place = self._take_place(key)
        self.spawn(self._run(key, reporter, call, place))

    async def run(self, key: ThreadKey, reporter: Reporter, call: TurnCall) -> Reply | None:
        """Runs a turn in its thread's line and waits for it (the web's request/response).

        Returns:
            The reply once posted, or ``None`` when the turn failed (the reporter was told).
        """
        place = self._take_place(key)
        return await self._run(key, reporter, call, place)

    def _take_place(self, key: ThreadKey) -> LinePlace:
        # Taken before any await, so the line is in arrival order; the service's line is
        # shared with every process on the same database.
        self._line[key] = self._line.get(key, 0) + 1
        return self.service.place(key)

    async def _run(self, key: ThreadKey, reporter: Reporter, call: TurnCall,
                   place: LinePlace) -> Reply | None:
        try:
            queued = await place.join()
            await reporter.working(queued=queued)
            # The place is held until the result is posted: the next turn of the thread,
            # wherever it arrived, starts after that.
            async with place:
                if self.stopping:
                    await reporter.failed(ImagebotError(messages.STOPPING,
                                                        kind=ErrorKind.CANCELLED))
                    return None
                return await self._turn(key, reporter, call)
        finally:
            await place.release()  # when cancelled before it was entered
            self._line[key] -= 1
            if not self._line[key]:
                del self._line[key]
            await reporter.close()

    async def _turn(self, key: ThreadKey, reporter: Reporter, call: TurnCall) -> Reply | None:
        try:
            reply = await call(reporter.started)
        except ImagebotError as exc:
            await reporter.failed(exc)
            return None
        except Exception:
            logger.exception("%s: a turn in %s failed", self.name, key)
            await reporter.failed(ImagebotError(messages.INTERNAL_ERROR, kind=ErrorKind.INTERNAL))
            return None
        posted = await reporter.finished(reply)
        if posted:
            await self.service.record_posts(reply.turn_id, posted)
        return reply

    async def _logged(self, work: Coroutine[Any, Any, Any]) -> None:
        try:
            await work
        except Exception:  # one bad event must not take the adapter down
            logger.exception("%s: background work failed", self.name)

    async def stop(self) -> None:
        """Stops taking turns, lets running ones post for ``grace`` s, cancels the rest."""
        self.stopping = True
        await drain(self._tasks, self.grace)

    def status(self) -> dict[str, Any]:
        return {"busy_threads": len(self._line), "tasks": len(self._tasks),
                "duplicates_dropped": self.duplicates}
