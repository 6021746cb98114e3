"""Each thread's line: its turns run one at a time, in arrival order, across every process
that shares the database.

A place in a line is taken at once, in this process (an asyncio FIFO) and in the database
(a ticket, see :class:`bot.store_api.LineStore`). A turn starts when the turn ahead of it
here is over and its ticket is the oldest live one of the thread. Tickets are leases: this
process renews its own every ``ttl / 3`` seconds, so a process that dies mid-turn holds
its threads up for at most ``ttl`` seconds, and no database transaction is ever held
while Gemini works.

Places are re-entrant within a task: the turn runner takes the thread's place for the
whole turn (until its result is posted) and the service's own place inside it is free.

A ticket may carry its turn's request (an opaque string the adapters write). When its
holder dies, the ticket becomes an orphan that keeps its place in the line for one more
lease; every process watching for orphans (:meth:`ThreadLines.watch`) is offered it, and
the one whose :meth:`ThreadLines.adopt` wins the store's conditional update runs the turn
in its place. An orphan nobody adopts is dropped when that lease ends.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType

from bot.model import ThreadKey
from bot.store_api import LineStore, Orphan
from bot.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

#: Seconds a ticket lives without renewal: how long a dead process can hold a thread up.
DEFAULT_TTL = 30.0
#: Polling bounds while another process's turn is ahead (seconds).
POLL_MIN, POLL_MAX = 0.02, 0.25
#: How many times an orphaned turn is taken over before it is given up (a turn that kills
#: every worker that runs it must not go round forever).
MAX_ADOPTIONS = 2
#: The longest pause between two looks for orphans (seconds): a dead worker's turn is taken
#: over at most this long after its lease ended (a third of the lease when that is less).
SWEEP_MAX = 1.0

_held: contextvars.ContextVar[frozenset[ThreadKey]] = contextvars.ContextVar(
    "imagebot_held_lines", default=frozenset())


def line_name(key: ThreadKey) -> str:
    """The thread's line as stored: its key's parts joined by a separator no id contains."""
    return "\x1f".join((key.platform, key.workspace, key.channel, key.thread))


def line_key(line: str) -> ThreadKey | None:
    """The thread of a stored line name (``None`` for a name that is not one)."""
    parts = line.split("\x1f")
    return ThreadKey(*parts) if len(parts) == 4 else None


@dataclass
class _Local:
    """This process's part of one thread's line: who is last, and how many are in it."""

    last: Place | None = None
    users: int = 0


@dataclass(eq=False)
class Place:
    """One place in a thread's line. ``async with place:`` waits for its turn, holds it,
    and gives it up (also on error or cancellation)."""

    lines: ThreadLines
    key: ThreadKey
    ahead: Place | None
    ticketed: asyncio.Future[None] = field(default_factory=lambda: _future())
    done: asyncio.Future[None] = field(default_factory=lambda: _future())
    ticket: int | None = None
    #: The turn's request, stored with the ticket so that another process can take the
    #: turn over if this one dies (``None``: the turn is not resumable).
    request: str | None = None
    _gone: bool = False
    _token: contextvars.Token[frozenset[ThreadKey]] | None = None

    @property
    def queued(self) -> bool:
        """Whether a turn of this thread is ahead of this one in this process."""
        return self.ahead is not None and not self.ahead.done.done()

    async def join(self) -> bool:
        """Takes the ticket (at most once); whether a turn is ahead, here or elsewhere."""
        try:
            if self.ticket is None and not self.ticketed.done():
                await self._join()
            if self.queued or self.ticket is None:
                return self.queued
            first = await self.lines.store.line_first(self.lines.name(self.key), self.ticket)
            return not first
        except BaseException:
            await self._leave()
            raise

    async def __aenter__(self) -> Place:
        try:
            if self.ticket is None and not self.ticketed.done():
                await self._join()
            await self._wait()
        except BaseException:
            await self._leave()
            raise
        self._token = _held.set(_held.get() | {self.key})
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._token is not None:
            _held.reset(self._token)
        await self._leave()

    async def _join(self) -> None:
        # Tickets are taken in this process's arrival order, so the database's order
        # agrees with it (connections of a pool may otherwise overtake one another).
        if self.ahead is not None:
            await asyncio.wait([self.ahead.ticketed])
        try:
            self.ticket = await self.lines.store.line_join(
                self.lines.name(self.key), self.lines.holder, self.lines.ttl, self.request)
        finally:
            _settle(self.ticketed)

    async def _wait(self) -> None:
        ahead = self.ahead
        if ahead is not None:
            await asyncio.wait([ahead.done])  # not ``await``: cancelling us must not cancel it
        await self.lines.wait_first(self)

    async def release(self) -> None:
        """Gives the place up if it is still held (safe to call more than once)."""
        await self._leave()

    async def _leave(self) -> None:
        if self._gone:
            return
        self._gone = True
        try:
            if self.ticket is not None:
                ticket, self.ticket = self.ticket, None
                # Shielded: a cancelled turn still gives its place up.
                await asyncio.shield(self.lines.store.line_leave(ticket))
        except Exception:  # the ticket then expires on its own
            logger.warning("could not leave the line of %s", self.key, exc_info=True)
        finally:
            _settle(self.ticketed)
            _settle(self.done)
            self.lines.left(self)


class Reentered:
    """The place a task already holds: entering it again waits for nothing."""

    queued = False

    async def join(self) -> bool:
        return False

    async def release(self) -> None:
        return None

    async def __aenter__(self) -> Reentered:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


#: What :meth:`ThreadLines.place` gives: a new place, or the one this task already holds.
LinePlace = Place | Reentered


class ThreadLines:
    """Every thread's line for one process (one store, one holder id)."""

    def __init__(self, store: LineStore, *, ttl: float = DEFAULT_TTL) -> None:
        self.store = store
        self.ttl = ttl
        self.holder = uuid.uuid4().hex
        self._local: dict[ThreadKey, _Local] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @staticmethod
    def name(key: ThreadKey) -> str:
        return line_name(key)

    def place(self, key: ThreadKey) -> LinePlace:
        """Takes the next place in ``key``'s line now (arrival order); enter it to wait."""
        if key in _held.get():
            return Reentered()
        local = self._local.setdefault(key, _Local())
        place = Place(self, key, ahead=local.last)
        local.last = place
        local.users += 1
        self._ensure_renewer()
        return place

    def depth(self) -> int:
        """Turns waiting or running in this process, across all threads."""
        return sum(local.users for local in self._local.values())

    def busy_here(self, key: ThreadKey) -> bool:
        return key in self._local

    async def busy(self, key: ThreadKey) -> bool:
        """Whether a turn of ``key`` waits or runs here or in another process."""
        return self.busy_here(key) or await self.store.line_busy(self.name(key))

    def left(self, place: Place) -> None:
        local = self._local.get(place.key)
        if local is None:
            return
        local.users -= 1
        if local.last is place:
            local.last = None
        if local.users <= 0:
            del self._local[place.key]
        if not self._local and self._renewer is not None:
            # Nothing left to renew: no task outlives the last turn.
            self._renewer.cancel()
            self._renewer = None

    async def wait_first(self, place: Place) -> None:
        """Polls until ``place``'s ticket is the oldest live one of its thread."""
        delay = POLL_MIN
        name = self.name(place.key)
        while True:
            assert place.ticket is not None
            first = await self.store.line_first(name, place.ticket)
            if first:
                return
            if first is None:
                # Our own ticket expired (this process stalled past the lease): queue again.
                logger.warning("the line ticket of %s expired while waiting; queueing again",
                               place.key)
                place.ticket = await self.store.line_join(name, self.holder, self.ttl,
                                                          place.request)
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, POLL_MAX)

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(
                self._renew(), name="imagebot-line-renewer")

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.store.line_renew(self.holder, self.ttl)
            except Exception:  # renewed on the next round, well inside the lease
                logger.warning("renewing line tickets failed", exc_info=True)

    # --- orphans: turns whose process died -------------------------------------------------

    async def adopt(self, orphan: Orphan) -> Place | None:
        """Takes an orphaned ticket over (``None`` when another process got it first, or
        it is not an orphan any more). The place keeps the ticket's place in its line and
        is renewed by this process from now on; ``async with`` it as any other."""
        key = line_key(orphan.line)
        if key is None or not await self.store.line_adopt(orphan.ticket, self.holder, self.ttl):
            return None
        # No place of this process is ahead of it: its ticket is older than theirs.
        place = Place(self, key, ahead=None, ticket=orphan.ticket, request=orphan.request)
        _settle(place.ticketed)
        self._local.setdefault(key, _Local()).users += 1
        self._ensure_renewer()
        logger.info("took over an orphaned turn of %s (ticket %d)", key, orphan.ticket)
        return place

    def watch(self, offer: Callable[[Orphan], Awaitable[None]]) -> None:
        """Offers every orphan found to ``offer``, every ``ttl / 3`` seconds (at most
        :data:`SWEEP_MAX`), until closed
        (``offer`` adopts the ones it can run, and leaves the others to other processes)."""
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep(offer), name="imagebot-line-sweeper")

    async def _sweep(self, offer: Callable[[Orphan], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(min(self.ttl / 3, SWEEP_MAX))
            try:
                for orphan in await self.store.line_orphans(MAX_ADOPTIONS):
                    # Not our own: a ticket of this process that expired (the database was
                    # out of reach for a lease) still has its turn here, waiting or running.
                    if orphan.holder != self.holder:
                        await offer(orphan)
            except Exception:  # looked for again on the next round, inside the window
                logger.warning("looking for orphaned turns failed", exc_info=True)

    async def close(self) -> None:
        renewer, self._renewer = self._renewer, None
        sweeper, self._sweeper = self._sweeper, None
        await cancel_and_wait(renewer)
        await cancel_and_wait(sweeper)


def _future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
