"""The one turn lifecycle every surface shares: claiming, the per-thread line, running the
turn in the background, progress, Cancel, shutdown grace, and turning failures into user
messages.

An adapter translates its platform's input into a call of the service and gives the
runner a :class:`Reporter` that shows the turn on that platform. One rule holds for every
platform: a thread's next turn starts after the previous turn's result is posted. A
waiting turn is told its place in line as the line moves; a running one, what the model
streams. Each turn has a :class:`Ticket`, by which its requester (or an admin) cancels it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol

from bot import messages
from bot.errors import CancelledByUser, ErrorKind, ImagebotError
from bot.leases import LinePlace, Place
from bot.model import Reply, ThreadKey
from bot.progress import Progress, ProgressCallback
from bot.service import ConversationService, StartCallback, TurnStart
from bot.tasks import drain

logger = logging.getLogger(__name__)

#: How long ``stop`` lets turns in flight post their results before cancelling them.
STOP_GRACE = 10.0

#: What :meth:`TurnRunner.cancel` did: stopped the turn, refused (not the requester nor an
#: admin), or found nothing to stop (finished, posting its result, or run elsewhere).
CancelOutcome = Literal["cancelled", "not_allowed", "gone"]


class Reporter(Protocol):
    """Shows one turn on one surface. Failures inside a reporter are its own business:
    it logs them and never raises, so a platform hiccup never ends a turn."""

    async def working(self, *, queued: bool) -> None:
        """The request was accepted; ``queued`` when it waits behind another turn (a
        ``queued`` progress event with its place in line follows)."""

    async def started(self, start: TurnStart) -> None:
        """Generation started (options resolved, files fetched)."""

    async def progress(self, event: Progress) -> None:
        """Something happened: a new place in line, thought text, a draft, final parts."""

    async def finished(self, reply: Reply) -> dict[str, Any]:
        """Posts the result; returns where it went (kept with the turn for Delete)."""

    async def failed(self, error: ImagebotError) -> None:
        """Tells the user why the turn did not happen (nothing was saved)."""

    async def close(self) -> None:
        """The turn is over, whatever happened (remove a reaction, stop a ticker)."""


@dataclass(frozen=True)
class TurnHooks:
    """What a turn's call passes on to the service:
    ``service.handle(key, message, on_start=hooks.on_start, on_progress=hooks.on_progress)``.

    The hooks object is itself the start callback, so a call written before progress
    existed (``on_start=hooks``) still works; it just shows no progress.
    """

    on_start: StartCallback
    on_progress: ProgressCallback

    async def __call__(self, start: TurnStart) -> None:
        await self.on_start(start)


TurnCall = Callable[[TurnHooks], Awaitable[Reply]]


@dataclass(frozen=True)
class Ticket:
    """The handle of one turn, made before it is submitted so that its status message can
    carry it on a Cancel button. ``requester`` is the platform user id allowed to cancel."""

    id: str
    requester: str = ""

    @classmethod
    def new(cls, requester: str = "") -> Ticket:
        return cls(id=uuid.uuid4().hex, requester=requester)


@dataclass(frozen=True)
class TurnDescription:
    """A turn as its platform asked for it, in neutral, serialisable terms: stored with the
    turn's ticket so that another worker can run it if this one dies mid-turn
    (:mod:`adapters.resume`). File references, never bytes; where to post, never a token
    that expires (a Discord interaction token): the resuming worker posts with its own.

    Attributes:
        kind: ``message`` (a new message or /imagine), ``reroll`` or ``4k``.
        text: the message text as the service takes it (inline flags included).
        options: options given through platform UI (:meth:`OptionInput.given`).
        files: the attachments as the platform described them (ids, names, URLs).
        post: where the result goes and what the platform needs to rebuild the turn
            (channel and thread ids, the message to react to...).
        turn_id: the turn a reroll or 4K re-run repeats.
        ticket: the turn's :class:`Ticket` id where it was accepted (set by the runner):
            its status message carries it on a Cancel button, so a resuming worker can
            find that message and take it over.
    """

    platform: str
    kind: str
    requester: str
    text: str = ""
    requester_name: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    direct: bool = False
    files: tuple[dict[str, Any], ...] = ()
    post: dict[str, Any] = field(default_factory=dict)
    turn_id: str = ""
    ticket: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TurnDescription:
        data = json.loads(text)
        data["files"] = tuple(data.get("files") or ())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(eq=False)
class _Live:
    """A turn from taking its place in line until it is over."""

    ticket: Ticket
    cancel_asked: asyncio.Future[str]
    #: The thread's place in the line every process on the database shares.
    place: LinePlace
    call: asyncio.Task[Reply] | None = None
    #: False once the answer is in: a Cancel then is too late.
    cancellable: bool = True

    def cancel(self, by: str) -> None:
        if not self.cancel_asked.done():
            self.cancel_asked.set_result(by)
        if self.call is not None:
            self.call.cancel()

    def cancel_error(self) -> CancelledByUser:
        return CancelledByUser(messages.cancelled(self.cancel_asked.result()))


@dataclass(eq=False)
class _Line:
    """One thread's turns in arrival order: the first runs, the others wait."""

    turns: list[_Live] = field(default_factory=list)
    #: Resolved (and replaced) whenever a turn leaves, so waiting turns see their new place.
    moved: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    def leave(self, live: _Live) -> None:
        self.turns.remove(live)
        self.moved.set_result(None)
        self.moved = asyncio.get_running_loop().create_future()


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
        self._lines: dict[ThreadKey, _Line] = {}
        self._live: dict[str, _Live] = {}

    def busy(self, key: ThreadKey) -> bool:
        """Whether a turn of this thread is running or waiting here."""
        return key in self._lines

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

    def submit(self, key: ThreadKey, reporter: Reporter, call: TurnCall, *,
               ticket: Ticket | None = None, request: TurnDescription | None = None) -> None:
        """Queues a turn in its thread's line now, and runs it in the background.

        Args:
            ticket: the turn's handle for :meth:`cancel` (one is made when not given).
            request: the turn described for another worker to resume it if this one
                dies (stored with the line ticket); without one it is not resumable.
        """
        live = self._take_place(key, ticket or Ticket.new(), request)
        self.spawn(self._run(key, reporter, call, live))

    async def run(self, key: ThreadKey, reporter: Reporter, call: TurnCall, *,
                  ticket: Ticket | None = None,
                  request: TurnDescription | None = None) -> Reply | None:
        """Runs a turn in its thread's line and waits for it (the web's request/response).

        Returns:
            The reply once posted, or ``None`` when the turn failed (the reporter was told).
        """
        live = self._take_place(key, ticket or Ticket.new(), request)
        return await self._run(key, reporter, call, live)

    def resume(self, key: ThreadKey, reporter: Reporter, call: TurnCall, place: Place,
               ticket: Ticket) -> None:
        """Runs, in the background, a turn taken over from a worker that died: ``place``
        holds its old ticket, so it goes where that ticket stands in the thread's line."""
        loop = asyncio.get_running_loop()
        live = _Live(ticket=ticket, cancel_asked=loop.create_future(), place=place)
        turns = self._lines.setdefault(key, _Line()).turns
        # Before this process's turns that took their tickets after it (all but the ones
        # holding older tickets), so neither order waits on the other.
        older = [t for t in turns if isinstance(t.place, Place) and t.place.ticket is not None
                 and place.ticket is not None and t.place.ticket < place.ticket]
        turns.insert(turns.index(older[-1]) + 1 if older else 0, live)
        self._live[ticket.id] = live
        self.spawn(self._run(key, reporter, call, live))

    def cancel(self, ticket_id: str, *, by: str, by_name: str = "",
               admin: bool = False) -> CancelOutcome:
        """Stops a turn that waits or runs here (the Cancel button); nothing is stored.

        Args:
            by: the platform user id of who asks; only the requester or an admin may.
            by_name: how the status names them ("Cancelled by …").
            admin: whether ``by`` may cancel anyone's turn here.
        """
        live = self._live.get(ticket_id)
        if live is None or not live.cancellable:
            return "gone"
        if not admin and by != live.ticket.requester:
            return "not_allowed"
        logger.info("%s: turn %s cancelled by %s", self.name, ticket_id[:8], by)
        live.cancel(by_name or by)
        return "cancelled"

    def _take_place(self, key: ThreadKey, ticket: Ticket,
                    request: TurnDescription | None = None) -> _Live:
        # Taken before any await, so the line is in arrival order.
        loop = asyncio.get_running_loop()
        place = self.service.place(key)
        if request is not None and isinstance(place, Place):
            place.request = replace(request, ticket=ticket.id).to_json()
        live = _Live(ticket=ticket, cancel_asked=loop.create_future(), place=place)
        self._lines.setdefault(key, _Line()).turns.append(live)
        self._live[ticket.id] = live
        return live

    async def _run(self, key: ThreadKey, reporter: Reporter, call: TurnCall,
                   live: _Live) -> Reply | None:
        line = self._lines[key]
        try:
            elsewhere = await live.place.join()  # a turn ahead here, or in another process
            await reporter.working(queued=line.turns[0] is not live or elsewhere)
            if not await self._wait_turn(line, live, reporter):
                await reporter.failed(live.cancel_error())
                return None
            # The shared place is held until the result is posted: the thread's next turn,
            # wherever it arrived, starts after that. (A Cancel while another process holds
            # the thread is honoured as soon as this turn's place comes.)
            async with live.place:
                if live.cancel_asked.done():
                    await reporter.failed(live.cancel_error())
                    return None
                if self.stopping:
                    await reporter.failed(ImagebotError(messages.STOPPING,
                                                        kind=ErrorKind.CANCELLED))
                    return None
                return await self._turn(key, reporter, call, live)
        finally:
            await live.place.release()  # when cancelled before it was entered
            self._live.pop(live.ticket.id, None)
            line.leave(live)
            if not line.turns:
                self._lines.pop(key, None)
            await reporter.close()

    async def _wait_turn(self, line: _Line, live: _Live, reporter: Reporter) -> bool:
        """Waits until ``live`` is first in its line, telling its place whenever it moves.

        Returns:
            False when it was cancelled while waiting.
        """
        shown = 0
        while line.turns[0] is not live:
            position = line.turns.index(live)
            if position != shown:
                await reporter.progress(Progress.queued(position))
                shown = position
            # Not ``await line.moved``: cancelling us must not cancel what others wait on.
            await asyncio.wait([line.moved, live.cancel_asked],
                               return_when=asyncio.FIRST_COMPLETED)
            if live.cancel_asked.done():
                return False
        return not live.cancel_asked.done()

    async def _turn(self, key: ThreadKey, reporter: Reporter, call: TurnCall,
                    live: _Live) -> Reply | None:
        hooks = TurnHooks(on_start=reporter.started, on_progress=reporter.progress)
        # The call runs as a task of its own, so Cancel stops the call and nothing else.
        live.call = asyncio.ensure_future(call(hooks))
        try:
            reply = await live.call
        except (ImagebotError, asyncio.CancelledError) as exc:
            if not live.cancel_asked.done():
                if isinstance(exc, asyncio.CancelledError):
                    raise
                await reporter.failed(exc)
                return None
            await reporter.failed(live.cancel_error())
            return None
        except Exception:
            logger.exception("%s: a turn in %s failed", self.name, key)
            await reporter.failed(ImagebotError(messages.INTERNAL_ERROR, kind=ErrorKind.INTERNAL))
            return None
        finally:
            live.cancellable = False
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
        return {"busy_threads": len(self._lines), "tasks": len(self._tasks),
                "duplicates_dropped": self.duplicates}
