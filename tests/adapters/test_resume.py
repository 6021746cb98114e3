"""Taking over the turns of a worker that died (adapters.resume), in one process: a dead
worker is a second line holder on the same database that stops renewing its tickets.

The real service runs the turns against the stand-in; the adapter is a stand-in whose
reporter records what it would post.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.resume import RESUMED, Resumer
from adapters.turns import Reporter, Ticket, TurnCall, TurnDescription, TurnHooks, TurnRunner
from bot.errors import ImagebotError
from bot.leases import MAX_ADOPTIONS, Place, ThreadLines
from bot.model import Author, IncomingMessage, Reply, ThreadKey
from bot.progress import Progress
from bot.runtime import Core
from bot.service import ConversationService, TurnStart
from offline_gemini import OfflineGemini

KEY = ThreadKey("slack", "T1", "C1", "1700000000.000100")
REQUEST = TurnDescription(platform="slack", kind="message", requester="U1",
                          text="a lighthouse --ratio 16:9", post={"ts": KEY.thread})
LEASE = 0.6


class Posts:
    """A reporter that keeps what it was asked to post."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.errors: list[ImagebotError] = []
        self.closed = asyncio.Event()

    async def working(self, *, queued: bool) -> None: ...

    async def started(self, start: TurnStart) -> None: ...

    async def progress(self, event: Progress) -> None: ...

    async def finished(self, reply: Reply) -> dict[str, Any]:
        self.replies.append(reply)
        return {"channel": KEY.channel, "messages": ["1.1"]}

    async def failed(self, error: ImagebotError) -> None:
        self.errors.append(error)

    async def close(self) -> None:
        self.closed.set()


class Adapter:
    """The Slack adapter as far as resuming goes: a runner, and turns from requests."""

    def __init__(self, service: ConversationService) -> None:
        self.service = service
        self.runner = TurnRunner(service, name="slack")
        self.posts = Posts()
        self.calls = 0

    def resumed(self, key: ThreadKey, request: TurnDescription,
                ticket: Ticket) -> tuple[Reporter, TurnCall] | None:
        async def call(hooks: TurnHooks) -> Reply:
            self.calls += 1
            message = IncomingMessage(author=Author(request.requester), text=request.text)
            return await self.service.handle(key, message, on_start=hooks.on_start,
                                             on_progress=hooks.on_progress)

        return self.posts, call


@pytest.fixture
async def cores(core_factory: Any) -> AsyncIterator[tuple[Core, Core]]:
    """Two workers on one SQLite database."""
    async with core_factory(lease_seconds=LEASE) as first, \
            core_factory(lease_seconds=LEASE) as second:
        yield first, second


async def died_in(core: Core, request: TurnDescription, *, store_turn: bool) -> ThreadLines:
    """A worker that took its place for ``request`` (and stored the turn, if asked), then
    died: its ticket is never renewed nor given up."""
    dead = ThreadLines(core.service.store, ttl=LEASE / 2)
    place = dead.place(KEY)
    assert isinstance(place, Place)
    place.request = request.to_json()
    await place.__aenter__()
    if store_turn:  # killed after the store's commit, before posting
        await core.service.handle(KEY, IncomingMessage(Author(request.requester),
                                                       request.text))
    await dead.close()  # no more renewals
    return dead


async def orphans(core: Core) -> list[Any]:
    await asyncio.sleep(LEASE / 2 + 0.1)
    return await core.service.store.line_orphans(MAX_ADOPTIONS)


def generations(stand_in: OfflineGemini) -> int:
    return sum(1 for r in stand_in.requests if r.body and "contents" in r.body)


async def test_exactly_one_of_two_workers_runs_an_orphaned_turn(
        cores: tuple[Core, Core], stand_in: OfflineGemini):
    adapters = [Adapter(core.service) for core in cores]
    resumers = [Resumer(core.service, core.service.lines, {"slack": a})
                for core, a in zip(cores, adapters, strict=True)]
    await died_in(cores[0], REQUEST, store_turn=False)
    [orphan] = await orphans(cores[0])
    await asyncio.gather(*(r.offer(orphan) for r in resumers))
    assert sorted(r.resumed for r in resumers) == [0, 1]
    runner = next(a for a in adapters if a.calls or a.runner.busy(KEY))
    await asyncio.wait_for(runner.posts.closed.wait(), 30)
    assert sum(a.calls for a in adapters) == 1 and generations(stand_in) == 1
    [reply] = runner.posts.replies
    assert RESUMED in reply.notices and reply.images
    [turn] = await cores[1].service.history(KEY)
    assert turn.prompt == "a lighthouse" and turn.options["aspect_ratio"] == "16:9"
    assert turn.platform_refs == {"channel": KEY.channel, "messages": ["1.1"]}
    assert not await cores[0].service.store.line_busy("\x1f".join(
        (KEY.platform, KEY.workspace, KEY.channel, KEY.thread)))


async def test_a_turn_stored_before_its_worker_died_is_posted_not_generated_again(
        cores: tuple[Core, Core], stand_in: OfflineGemini):
    core = cores[1]
    adapter = Adapter(core.service)
    await died_in(cores[0], REQUEST, store_turn=True)
    assert generations(stand_in) == 1
    [stored] = await core.service.history(KEY)
    [orphan] = await orphans(core)
    await Resumer(core.service, core.service.lines, {"slack": adapter}).offer(orphan)
    await asyncio.wait_for(adapter.posts.closed.wait(), 30)
    assert adapter.calls == 0 and generations(stand_in) == 1, "never generated twice"
    [reply] = adapter.posts.replies
    assert reply.turn_id == stored.id and RESUMED in reply.notices
    assert [i.sha256 for i in reply.images] == [i.sha256 for i in stored.reply.images]
    assert reply.images[0].data == await core.service.image(reply.images[0].sha256)
    [turn] = await core.service.history(KEY)
    assert turn.id == stored.id and turn.platform_refs, "once in the history, now posted"


async def test_a_platform_this_worker_does_not_serve_is_left_for_another(
        cores: tuple[Core, Core], stand_in: OfflineGemini):
    core = cores[1]
    adapter = Adapter(core.service)
    discord = TurnDescription(platform="discord", kind="message", requester="42",
                              text="a lighthouse", post={"channel": "C1"})
    await died_in(cores[0], discord, store_turn=False)
    [orphan] = await orphans(core)
    resumer = Resumer(core.service, core.service.lines, {"slack": adapter})
    await resumer.offer(orphan)
    assert resumer.resumed == 0 and adapter.calls == 0
    assert [o.ticket for o in await core.service.store.line_orphans(MAX_ADOPTIONS)] == [
        orphan.ticket], "still there for a Discord worker"


async def test_the_sweeper_finds_and_runs_an_orphan_on_its_own(
        cores: tuple[Core, Core], stand_in: OfflineGemini):
    core = cores[1]
    adapter = Adapter(core.service)
    await died_in(cores[0], REQUEST, store_turn=False)
    Resumer(core.service, core.service.lines, {"slack": adapter}).start()
    await asyncio.wait_for(adapter.posts.closed.wait(), 30)
    assert adapter.calls == 1 and len(await core.service.history(KEY)) == 1


async def test_the_turn_before_it_is_not_taken_for_the_stored_orphan(
        cores: tuple[Core, Core], stand_in: OfflineGemini):
    """The turn ahead of the orphan, by the same person, stored after the orphan's ticket
    was taken and never posted (as on the web), is not the orphan's: it is generated."""
    core = cores[1]
    adapter = Adapter(core.service)
    ahead = cores[0].service.lines.place(KEY)
    await ahead.join()
    dead = ThreadLines(core.service.store, ttl=LEASE / 2)
    place = dead.place(KEY)
    assert isinstance(place, Place)
    place.request = REQUEST.to_json()
    await place.join()
    async with ahead:
        await cores[0].service.handle(KEY, IncomingMessage(Author("U1"), "lighthouse"))
    await dead.close()
    [orphan] = await orphans(core)
    await Resumer(core.service, core.service.lines, {"slack": adapter}).offer(orphan)
    await asyncio.wait_for(adapter.posts.closed.wait(), 30)
    assert adapter.calls == 1 and generations(stand_in) == 2
    assert [t.prompt for t in await core.service.history(KEY)] == ["lighthouse", "a lighthouse"]


async def test_a_dead_workers_web_turn_runs_and_shows_in_the_thread(
        cores: tuple[Core, Core], stand_in: OfflineGemini):
    from adapters.web import WebPlayground

    core = cores[1]
    web = WebPlayground(core)
    key = ThreadKey("web", "", "", "t-resume")
    dead = ThreadLines(core.service.store, ttl=LEASE / 2)
    place = dead.place(key)
    assert isinstance(place, Place)
    place.request = TurnDescription(platform="web", kind="message", requester="web",
                                    text="a lighthouse", options={"aspect_ratio": "3:2"}
                                    ).to_json()
    await place.__aenter__()
    await dead.close()
    [orphan] = await orphans(core)
    resumer = Resumer(core.service, core.service.lines, {"web": web})
    await resumer.offer(orphan)
    await asyncio.wait_for(asyncio.gather(*web.runner._tasks), 30)  # the resumed turn
    [turn] = await core.service.history(key)
    assert resumer.resumed == 1 and turn.prompt == "a lighthouse"
    assert turn.options["aspect_ratio"] == "3:2" and generations(stand_in) == 1
