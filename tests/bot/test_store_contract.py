"""The store contract: every case runs unchanged against SQLite and PostgreSQL.

``database_url`` (tests/conftest.py) gives an SQLite file, then a fresh PostgreSQL schema;
the store is opened as the product opens it (:func:`bot.runtime.open_store`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from google.genai import types

from bot import history
from bot.errors import NotFoundError
from bot.leases import ThreadLines, line_name
from bot.model import StoredImage, StoredReply, ThreadKey
from bot.options import OptionInput
from bot.runtime import expected_schema, open_store
from bot.store_api import NewTurn, Store
from tests import corpus

KEY = ThreadKey("slack", "T1", "C1", "1700000000.000100")
OTHER = ThreadKey("discord", "G1", "C2", "42")
SIGNATURE = bytes(range(256)) * 8  # 2 KiB: stored as a blob
SMALL_SIGNATURE = b"small-signature"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url)
    try:
        yield opened
    finally:
        await opened.close()


def turn(turn_id: str, key: ThreadKey, prompt: str, image: bytes, *,
         created_at: float | None = None, settings: OptionInput | None = None) -> NewTurn:
    user = types.Content(role="user", parts=[
        types.Part(text=prompt),
        types.Part(inline_data=types.Blob(mime_type="image/png", data=image))])
    model = types.Content(role="model", parts=[
        types.Part(text="thinking about it", thought=True),
        types.Part(text="Here it is", thought_signature=SMALL_SIGNATURE),
        types.Part(inline_data=types.Blob(mime_type="image/png", data=image),
                   thought_signature=SIGNATURE)])
    return NewTurn(
        turn_id=turn_id, key=key, contents=[user, model],
        settings=settings or OptionInput(aspect_ratio="16:9"), author_id="U1",
        author_name="alice", prompt=prompt, options={"model": "pro"},
        refs=[StoredImage(history.sha256(image), "image/png", "ref.png")],
        reply=StoredReply.from_dict({}), model="gemini-3-pro-image-preview",
        usage={"prompt_tokens": 10, "output_tokens": 20, "thought_tokens": 5,
               "total_tokens": 35}, images=1, created_at=created_at or time.time())


def dumped(contents: list[types.Content]) -> list[dict]:
    return [c.model_dump(mode="json", exclude_none=True) for c in contents]


async def test_a_new_store_is_migrated_writable_and_empty(store: Store, database_url: str):
    assert await store.schema_version() == expected_schema(database_url)
    assert await store.writable()
    assert await store.list_threads() == []
    assert not await store.thread_exists(KEY)
    assert await store.settings(KEY) == OptionInput()
    assert await store.load_history(KEY) == []


async def test_opening_again_keeps_everything(database_url: str):
    first = await open_store(database_url)
    await first.save_settings(KEY, OptionInput(size="2K"))
    await first.close()
    again = await open_store(database_url)
    try:
        assert await again.settings(KEY) == OptionInput(size="2K")
    finally:
        await again.close()


async def test_history_round_trips_byte_for_byte_with_blobs_once(store: Store):
    image = corpus.png(40, 30)
    first, second = turn("t1", KEY, "a cat", image), turn("t2", KEY, "at night", image)
    await store.commit_turn(first)
    await store.commit_turn(second)
    restored = await store.load_history(KEY)
    assert dumped(restored) == dumped([*first.contents, *second.contents])
    assert restored[1].parts[2].thought_signature == SIGNATURE
    stored = await store.load_stored(KEY)
    hashes = {h for c in stored for h in c.blob_hashes()}
    assert hashes == {history.sha256(image), history.sha256(SIGNATURE)}
    assert await store.blob_sizes(hashes) == {history.sha256(image): len(image),
                                              history.sha256(SIGNATURE): len(SIGNATURE)}
    assert (await store.get_blobs([history.sha256(image)]))[history.sha256(image)] == image
    with pytest.raises(NotFoundError):
        await store.get_blobs(["0" * 64])


async def test_threads_are_listed_found_renamed_and_deleted(store: Store):
    await store.commit_turn(turn("t1", KEY, "a lighthouse", corpus.png(8, 8)))
    await store.save_settings(OTHER, OptionInput(model="flash"))
    assert await store.thread_exists(KEY) and await store.thread_exists(OTHER)
    assert await store.settings(KEY) == OptionInput(aspect_ratio="16:9")
    found = await store.find_thread(KEY)
    assert found is not None and found.title == "a lighthouse" and found.turns == 1
    assert {t.key for t in await store.list_threads()} == {KEY, OTHER}
    assert [t.key for t in await store.list_threads("discord")] == [OTHER]
    assert await store.rename_thread(KEY, "Lighthouses")
    assert (await store.find_thread(KEY)).title == "Lighthouses"  # type: ignore[union-attr]
    assert not await store.rename_thread(ThreadKey("x", "", "", "none"), "nope")
    assert await store.delete_thread(KEY)
    assert not await store.delete_thread(KEY)
    assert await store.load_history(KEY) == [] and await store.list_turns(KEY) == []


async def test_turn_records_in_order_posts_and_deletion(store: Store):
    now = time.time()
    for n in range(3):
        await store.commit_turn(turn(f"t{n}", KEY, f"prompt {n}", corpus.png(8, 8 + n),
                                     created_at=now))
    assert [t.id for t in await store.list_turns(KEY)] == ["t0", "t1", "t2"]
    await store.set_platform_refs("t1", {"channel": "C1", "messages": ["1.2"]})
    record = await store.get_turn("t1")
    assert record is not None and record.platform_refs == {"channel": "C1", "messages": ["1.2"]}
    assert record.author.name == "alice" and record.thread == KEY and not record.deleted
    assert await store.delete_turn("t1") and not await store.delete_turn("t1")
    assert [t.id for t in await store.list_turns(KEY)] == ["t0", "t2"]
    assert [t.id for t in await store.list_turns(KEY, include_deleted=True)] == ["t0", "t1", "t2"]
    assert [c.turn_id for c in await store.load_stored(KEY)] == ["t0", "t0", "t2", "t2"]
    assert await store.get_turn("nope") is None


async def test_usage_rows_per_thread(store: Store):
    await store.commit_turn(turn("t1", KEY, "a", corpus.png(8, 8)))
    await store.commit_turn(turn("t2", OTHER, "b", corpus.png(8, 8)))
    rows = await store.usage_rows(KEY)
    assert [(r["turn_id"], r["total_tokens"], r["images"]) for r in rows] == [("t1", 35, 1)]
    assert [r["turn_id"] for r in await store.usage_rows()] == ["t1", "t2"]


async def test_an_event_id_is_claimed_once_and_forgotten_later(store: Store):
    assert await store.mark_event("slack:Ev1")
    assert not await store.mark_event("slack:Ev1")
    await store.prune_events(older_than=3600)
    assert not await store.mark_event("slack:Ev1")
    await store.prune_events(older_than=-1)
    assert await store.mark_event("slack:Ev1")


async def test_line_tickets_are_ordered_renewed_and_expire(store: Store):
    line = line_name(KEY)
    a = await store.line_join(line, "worker-a", 30)
    b = await store.line_join(line, "worker-b", 0.3)
    assert a < b and await store.line_busy(line)
    assert await store.line_first(line, a) is True
    assert await store.line_first(line, b) is False
    await store.line_renew("worker-b", 30)
    await asyncio.sleep(0.4)
    assert await store.line_first(line, b) is False, "renewed, so still in line"
    await store.line_leave(a)
    assert await store.line_first(line, b) is True
    c = await store.line_join(line, "worker-c", 0.2)
    await asyncio.sleep(0.3)
    assert await store.line_first(line, c) is None, "its own ticket expired"
    await store.line_leave(b)
    assert not await store.line_busy(line)


async def test_installations_and_oauth_states(store: Store):
    assert await store.find_installation("slack", "T1") is None
    await store.save_installation("slack", "T1", {"bot_token": "xoxb-1", "team_id": "T1"})
    await store.save_installation("slack", "T1", {"bot_token": "xoxb-2", "team_id": "T1"})
    assert await store.find_installation("slack", "T1") == {"bot_token": "xoxb-2",
                                                          "team_id": "T1"}
    assert await store.delete_installation("slack", "T1")
    assert not await store.delete_installation("slack", "T1")
    await store.issue_state("s1", time.time() + 60)
    await store.issue_state("old", time.time() - 1)
    assert await store.consume_state("s1") and not await store.consume_state("s1")
    assert not await store.consume_state("old") and not await store.consume_state("never")


async def test_two_processes_share_one_line_in_arrival_order(database_url: str):
    """Two stores on one database stand for two worker processes."""
    first, second = await open_store(database_url), await open_store(database_url)
    lines = [ThreadLines(first, ttl=5), ThreadLines(second, ttl=5)]
    order: list[int] = []
    try:
        async def turn_of(n: int) -> None:
            place = lines[n % 2].place(KEY)
            await place.join()
            joined.set()
            async with place:
                order.append(n)
                await asyncio.sleep(0.05)

        tasks = []
        for n in range(6):
            joined = asyncio.Event()
            tasks.append(asyncio.create_task(turn_of(n)))
            await joined.wait()
        await asyncio.gather(*tasks)
        assert order == list(range(6))
        assert not await first.line_busy(line_name(KEY))
    finally:
        for item in lines:
            await item.close()
        await first.close()
        await second.close()


async def test_a_dead_holder_blocks_the_thread_only_until_its_lease_ends(database_url: str):
    store = await open_store(database_url)
    lines = ThreadLines(store, ttl=5)
    try:
        # A worker that died mid-turn: its ticket is never renewed nor given up.
        await store.line_join(line_name(KEY), "dead-worker", 0.5)
        started = time.monotonic()
        async with lines.place(KEY):
            waited = time.monotonic() - started
        assert 0.4 < waited < 2.0
    finally:
        await lines.close()
        await store.close()
