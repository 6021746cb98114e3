"""Orphaned line tickets (their process died mid-turn) and their takeover, on SQLite and
PostgreSQL: the ticket keeps the turn's request and its place in the line for one more
lease, exactly one live process takes it over, and nobody is held up past that."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.leases import MAX_ADOPTIONS, Place, ThreadLines, line_key, line_name
from bot.model import ThreadKey
from bot.runtime import open_store
from bot.store_api import Orphan, Store

KEY = ThreadKey("slack", "T1", "C1", "1700000000.000100")
REQUEST = '{"platform": "slack", "text": "a lighthouse"}'


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url)
    try:
        yield opened
    finally:
        await opened.close()


async def orphans_of(store: Store) -> list[Orphan]:
    return await store.line_orphans(MAX_ADOPTIONS)


async def test_an_expired_ticket_with_a_request_keeps_its_place_for_one_more_lease(
        store: Store):
    line = line_name(KEY)
    dead = await store.line_join(line, "dead", 0.3, REQUEST)
    plain = await store.line_join(line, "dead", 0.3)
    live = await store.line_join(line, "live", 30)
    assert await orphans_of(store) == []
    await asyncio.sleep(0.4)
    assert await store.line_first(line, live) is False, "the orphan is still ahead"
    assert await store.line_busy(line)
    orphans = await orphans_of(store)
    assert [(o.ticket, o.line, o.request, o.adoptions, o.holder) for o in orphans] == [
        (dead, line, REQUEST, 0, "dead")]
    assert orphans[0].joined_at > 0
    await asyncio.sleep(0.3)  # past its adoption window: dropped
    assert await store.line_first(line, live) is True
    assert await orphans_of(store) == []
    assert plain < live


async def test_exactly_one_of_two_processes_takes_an_orphan_over(database_url: str):
    first, second = await open_store(database_url), await open_store(database_url)
    try:
        line = line_name(KEY)
        ticket = await first.line_join(line, "dead", 0.2, REQUEST)
        waiting = await first.line_join(line, "waiting", 30)
        await asyncio.sleep(0.3)
        for _ in range(5):  # the race, several times over fresh orphans
            won = await asyncio.gather(first.line_adopt(ticket, "a", 30),
                                       second.line_adopt(ticket, "b", 30))
            assert sorted(won) == [False, True]
            assert await first.line_orphans(MAX_ADOPTIONS + 10) == []
            assert await first.line_first(line, waiting) is False, "adopted: still ahead"
            await first.line_renew("a", 0.2)
            await first.line_renew("b", 0.2)
            await asyncio.sleep(0.3)
        await first.line_leave(ticket)
        assert await first.line_first(line, waiting) is True
    finally:
        await first.close()
        await second.close()


async def test_a_turn_is_taken_over_at_most_max_adoptions_times(store: Store):
    line = line_name(KEY)
    ticket = await store.line_join(line, "dead", 0.3, REQUEST)
    for n in range(MAX_ADOPTIONS):
        await asyncio.sleep(0.4)
        [orphan] = await orphans_of(store)
        assert orphan.adoptions == n
        assert await store.line_adopt(ticket, f"worker-{n}", 0.3)
    await asyncio.sleep(0.4)
    assert await orphans_of(store) == [], "a turn that kills its workers is given up"


async def test_thread_lines_adopt_in_the_orphans_place(database_url: str):
    """The dead worker's turn runs before the turn that arrived after it, here; a
    watching process is offered the orphan within a lease."""
    store = await open_store(database_url)
    lines = ThreadLines(store, ttl=0.6)
    order: list[str] = []
    try:
        await store.line_join(line_name(KEY), "dead-worker", 0.3, REQUEST)
        offered: asyncio.Queue[Orphan] = asyncio.Queue()
        lines.watch(offered.put)
        later = lines.place(KEY)

        async def later_turn() -> None:
            async with later:
                order.append("later")

        task = asyncio.create_task(later_turn())
        orphan = await asyncio.wait_for(offered.get(), 10)
        assert line_key(orphan.line) == KEY and orphan.request == REQUEST
        place = await lines.adopt(orphan)
        assert place is not None and place.request == REQUEST
        assert await lines.adopt(orphan) is None, "taken already"
        async with place:
            order.append("resumed")
        await task
        assert order == ["resumed", "later"]
        assert not await store.line_busy(line_name(KEY))
    finally:
        await lines.close()
        await store.close()


async def test_a_process_is_never_offered_its_own_expired_ticket(database_url: str):
    """A process whose renewals failed for a lease (the database out of reach) still has
    that turn; only other processes may take it over."""
    first, second = await open_store(database_url), await open_store(database_url)
    stalled, other = ThreadLines(first, ttl=0.3), ThreadLines(second, ttl=0.3)
    try:
        place = stalled.place(KEY)
        assert isinstance(place, Place)
        place.request = REQUEST
        await place.join()
        assert stalled._renewer is not None
        stalled._renewer.cancel()  # its renewals fail from now on
        mine: asyncio.Queue[Orphan] = asyncio.Queue()
        theirs: asyncio.Queue[Orphan] = asyncio.Queue()
        stalled.watch(mine.put)
        other.watch(theirs.put)
        orphan = await asyncio.wait_for(theirs.get(), 10)
        assert orphan.ticket == place.ticket
        await asyncio.sleep(0.3)  # three more rounds of its own sweeper
        assert mine.empty()
    finally:
        await stalled.close()
        await other.close()
        await first.close()
        await second.close()
