"""The turn runner: places in line, progress handed to reporters, and Cancel by ticket.

The real core runs against the offline stand-in; the reporter records what it is told.
"""

from __future__ import annotations

import asyncio
from typing import Any

from adapters.turns import Ticket, TurnHooks, TurnRunner
from bot import messages
from bot.errors import CancelledByUser, ImagebotError
from bot.model import Author, IncomingMessage, Reply, ThreadKey
from bot.progress import Progress
from bot.service import TurnStart

KEY = ThreadKey("test", "w", "c", "line")
ALICE, BOB = Author("U1", "alice"), Author("U2", "bob")


class Recorder:
    """A reporter that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.progressed = asyncio.Event()

    def kinds(self) -> list[str]:
        return [k if k != "progress" else f"progress:{e.kind}" for k, e in self.events]

    def positions(self) -> list[int]:
        return [e.position for k, e in self.events if k == "progress" and e.kind == "queued"]

    def failure(self) -> ImagebotError | None:
        return next((e for k, e in self.events if k == "failed"), None)

    async def working(self, *, queued: bool) -> None:
        self.events.append(("working", queued))

    async def started(self, start: TurnStart) -> None:
        self.events.append(("started", start))

    async def progress(self, event: Progress) -> None:
        self.events.append(("progress", event))
        if event.kind == "thought_image":
            self.progressed.set()

    async def finished(self, reply: Reply) -> dict[str, Any]:
        self.events.append(("finished", reply))
        return {}

    async def failed(self, error: ImagebotError) -> None:
        self.events.append(("failed", error))

    async def close(self) -> None:
        self.events.append(("close", None))


def turn(core, text: str, author: Author = ALICE):
    async def call(hooks: TurnHooks) -> Reply:
        return await core.service.handle(KEY, IncomingMessage(author=author, text=text),
                                         on_start=hooks.on_start,
                                         on_progress=hooks.on_progress)

    return call


async def history_ids(core) -> list[str]:
    return [t.id for t in await core.service.history(KEY)]


async def test_progress_reaches_the_reporter_in_order(core) -> None:
    runner = TurnRunner(core.service, name="test")
    reporter = Recorder()
    reply = await runner.run(KEY, reporter, turn(core, "a lighthouse"))
    assert reply is not None
    assert reporter.kinds() == [
        "working", "started", "progress:thought_text", "progress:thought_image",
        "progress:thought_image", "progress:text", "progress:image", "progress:usage",
        "finished", "close"]


async def test_a_call_written_before_progress_still_runs(core) -> None:
    runner = TurnRunner(core.service, name="test")
    reporter = Recorder()

    async def old_style(started) -> Reply:  # passes the hooks as on_start, no progress
        return await core.service.handle(KEY, IncomingMessage(author=ALICE, text="a fox"),
                                         on_start=started)

    assert await runner.run(KEY, reporter, old_style) is not None
    assert reporter.kinds() == ["working", "started", "finished", "close"]


async def test_waiting_turns_are_told_their_place_as_the_line_moves(core, stand_in) -> None:
    stand_in.faults.latency = 0.3
    runner = TurnRunner(core.service, name="test")
    reporters = [Recorder() for _ in range(3)]
    for n, reporter in enumerate(reporters):
        runner.submit(KEY, reporter, turn(core, f"turn {n}"))
    assert runner.busy(KEY)
    await _idle(runner)
    assert [r.positions() for r in reporters] == [[], [1], [2, 1]]
    assert [r.events[0] for r in reporters] == [("working", False), ("working", True),
                                                ("working", True)]
    assert all(r.kinds()[-2:] == ["finished", "close"] for r in reporters)
    assert not runner.busy(KEY)


async def test_cancel_while_waiting_skips_the_turn(core, stand_in) -> None:
    stand_in.faults.latency = 0.3
    runner = TurnRunner(core.service, name="test")
    first, second = Recorder(), Recorder()
    ticket = Ticket.new(ALICE.id)
    runner.submit(KEY, first, turn(core, "first"))
    runner.submit(KEY, second, turn(core, "second"), ticket=ticket)
    await asyncio.sleep(0.05)
    assert runner.cancel(ticket.id, by=ALICE.id, by_name="alice") == "cancelled"
    await _idle(runner)
    error = second.failure()
    assert isinstance(error, CancelledByUser) and error.user_message == messages.cancelled(
        "alice")
    assert "started" not in second.kinds()
    assert len(stand_in.generations) == 1, "the cancelled turn never reached Gemini"
    assert first.kinds()[-2:] == ["finished", "close"]


async def test_only_the_requester_or_an_admin_may_cancel(core, stand_in) -> None:
    stand_in.stream_gap = 0.3
    runner = TurnRunner(core.service, name="test")
    reporter = Recorder()
    await runner.run(KEY, Recorder(), turn(core, "a windmill"))
    before = await history_ids(core)
    ticket = Ticket.new(ALICE.id)
    runner.submit(KEY, reporter, turn(core, "make it red"), ticket=ticket)
    await asyncio.wait_for(reporter.progressed.wait(), 10)
    assert runner.cancel(ticket.id, by=BOB.id) == "not_allowed"
    assert runner.cancel("no-such-ticket", by=ALICE.id) == "gone"
    assert runner.cancel(ticket.id, by=BOB.id, by_name="bob", admin=True) == "cancelled"
    await _idle(runner)
    error = reporter.failure()
    assert isinstance(error, CancelledByUser) and "Cancelled by bob" in error.user_message
    assert "finished" not in reporter.kinds()
    assert await history_ids(core) == before, "nothing stored"
    assert runner.cancel(ticket.id, by=ALICE.id) == "gone", "over once reported"
    stand_in.stream_gap = 0
    assert await runner.run(KEY, Recorder(), turn(core, "make it blue")) is not None


async def test_a_shutdown_is_not_a_cancel(core, stand_in) -> None:
    stand_in.faults.latency = 5
    runner = TurnRunner(core.service, name="test")
    reporter = Recorder()
    runner.submit(KEY, reporter, turn(core, "slow"))
    await asyncio.sleep(0.2)
    await core.service.shutdown(0.01)
    await _idle(runner)
    error = reporter.failure()
    assert error is not None and not isinstance(error, CancelledByUser)
    assert error.user_message == messages.RESTART_CANCELLED


async def _idle(runner: TurnRunner) -> None:
    for _ in range(1000):
        if not runner.status()["tasks"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the runner did not finish its turns")
