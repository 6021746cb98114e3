"""History images through the Files API on PostgreSQL, end to end: the real SDK uploads to
the stand-in, later requests name the files, and deleting turns and threads deletes the
files (and blobs) nothing else uses, as on SQLite (tests/bot/test_files.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bot.images import sha256
from bot.model import ThreadKey
from bot.runtime import Core
from offline_gemini import OfflineGemini
from tests import corpus
from tests.bot.test_service import KEY, msg
from tests.wire import file_parts

OTHER = ThreadKey("test", "w1", "c1", "t2")
REF = corpus.png(80, 60)


@pytest.fixture
async def pg_core(core_factory, postgres_url: str) -> AsyncIterator[Core]:
    async with core_factory(database_url=postgres_url) as core:
        yield core


async def count_rows(url: str, *tables: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [int(await conn.fetchval(f"SELECT COUNT(*) FROM {t}")) for t in tables]
    finally:
        await conn.close()


async def file_ids(core: Core, key: ThreadKey = KEY) -> dict[str, str]:
    """Stand-in file ids of the images the thread's history names, by blob hash."""
    stored = await core.service.store.load_stored(key)
    hashes = {h for c in stored for h in c.images()}
    records = await core.service.store.files.get(  # type: ignore[attr-defined]
        core.service.files.namespace, hashes)
    return {h: r.name.removeprefix("files/") for h, r in records.items()}


def inline_parts(body: dict) -> int:
    return sum("inlineData" in p for c in body["contents"] for p in c["parts"])


async def test_turn_3_names_earlier_images_as_files_and_a_deleted_thread_deletes_them(
        pg_core: Core, stand_in: OfflineGemini, postgres_url: str):
    assert pg_core.settings.database_kind == "postgresql"
    assert pg_core.service.files.enabled, "HistoryFiles is on for the PostgreSQL store"
    await pg_core.service.handle(KEY, msg("a red fox", ("ref.png", REF)))
    await pg_core.service.handle(KEY, msg("make it night"))
    await pg_core.service.handle(KEY, msg("add a moon"))
    third = stand_in.generations[-1].body
    history = third["contents"][:-1]
    assert file_parts(third) == 7, "the reference, turn 1's three images, turn 2's three"
    assert not any("inlineData" in p for c in history for p in c["parts"]), \
        "no history image goes inline"
    ref = history[0]["parts"][1]["fileData"]
    assert ref["file_uri"].startswith(f"{stand_in.base_url}/v1beta/files/")
    assert stand_in.files.uploaded == pg_core.service.files.uploads == 7, "each image once"
    assert [r.status for r in stand_in.generations] == [200, 200, 200]
    ids = await file_ids(pg_core)
    assert len(ids) == 7 and all(stand_in.files.get(i) is not None for i in ids.values())

    assert await pg_core.service.delete_thread(KEY)
    assert all(stand_in.files.get(i) is None for i in ids.values())
    assert stand_in.files.live_count() == 0
    assert await count_rows(postgres_url, "blobs", "blob_uses", "gemini_files",
                            "threads") == [0, 0, 0, 0]


async def test_deleted_turns_and_threads_keep_what_another_thread_uses(
        pg_core: Core, stand_in: OfflineGemini, postgres_url: str):
    for key, prompt in ((KEY, "a red fox"), (OTHER, "a blue fox")):
        await pg_core.service.handle(key, msg(prompt, ("ref.png", REF)))
        await pg_core.service.handle(key, msg("make it night"))
    first, _ = await pg_core.service.history(KEY)
    before = await file_ids(pg_core)
    ref = sha256(REF)

    await pg_core.service.delete(first.id)
    gone = set(before) - set(await file_ids(pg_core))
    assert gone and ref in gone
    for digest, file_id in before.items():
        shared = digest == ref  # OTHER's history still names the reference
        assert (stand_in.files.get(file_id) is not None) == (shared or digest not in gone)

    await pg_core.service.delete_thread(OTHER)
    assert stand_in.files.get(before[ref]) is None, "nothing names it any more"
    await pg_core.service.delete_thread(KEY)
    assert await count_rows(postgres_url, "blobs", "blob_uses", "gemini_files") == [0, 0, 0]
    assert stand_in.files.live_count() == 0


async def test_concurrent_turns_on_two_cores_share_the_database_records(
        core_factory, stand_in: OfflineGemini, postgres_url: str):
    """Two workers on one database: a file one uploaded is named by the other."""
    async with core_factory(database_url=postgres_url) as one, \
            core_factory(database_url=postgres_url) as two:
        await one.service.handle(KEY, msg("a red fox", ("ref.png", REF)))
        await one.service.handle(KEY, msg("make it night"))
        await one.service.files.drain()
        assert stand_in.files.uploaded == 4 + 3, "worker one uploads each turn's images"
        await two.service.handle(KEY, msg("add a moon"))
        assert two.service.files.uploads == 0, "worker two names worker one's files"
        assert file_parts(stand_in.generations[-1].body) == 7
        await two.service.files.drain()
        assert stand_in.files.uploaded == 4 + 3 + 3, "then uploads its own turn's images"
        await asyncio.gather(one.service.handle(KEY, msg("a boat")),
                             two.service.handle(OTHER, msg("a blue fox", ("ref.png", REF))))
        named = sorted(file_parts(g.body) for g in stand_in.generations[-2:])
        assert named == [0, 10], "the new thread sends its own image inline"


async def test_the_sweep_forgets_expired_records(pg_core: Core, stand_in: OfflineGemini):
    await pg_core.service.handle(KEY, msg("a red fox", ("ref.png", REF)))
    await pg_core.service.handle(KEY, msg("make it night"))
    await pg_core.service.files.drain()
    assert await pg_core.service.sweep_files() == 0
    hashes = list(await file_ids(pg_core))
    assert len(hashes) == 7, "both turns' images, uploaded once each is stored"
    pg_core.service.files.clock = lambda: time.time() + 49 * 3600
    assert await pg_core.service.sweep_files() == 7
    assert await pg_core.service.store.files.get(  # type: ignore[attr-defined]
        pg_core.service.files.namespace, hashes) == {}


async def test_a_migrated_thread_keeps_its_files_and_blob_uses(
        core_factory, stand_in: OfflineGemini, postgres_url: str, tmp_path, capsys):
    from adapters.main import main

    sqlite_url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    async with core_factory(database_url=sqlite_url) as core:
        await core.service.handle(KEY, msg("a red fox", ("ref.png", REF)))
        await core.service.handle(KEY, msg("make it night"))
        await core.service.files.drain()
        files_before = await file_ids(core)
    with pytest.raises(SystemExit) as done:
        await asyncio.to_thread(main, ["migrate-db", "--from", sqlite_url, "--to", postgres_url])
    assert done.value.code == 0, capsys.readouterr().err
    uses, records = await count_rows(postgres_url, "blob_uses", "gemini_files")
    assert records == 7 and uses > 0

    async with core_factory(database_url=postgres_url) as core:
        assert await file_ids(core) == files_before, "the same files, not uploaded again"
        await core.service.handle(KEY, msg("add a moon"))
        assert file_parts(stand_in.generations[-1].body) == 7
        await core.service.files.drain()
        assert stand_in.files.uploaded == 7 + 3, "only turn 3's images are new"
        await core.service.delete_thread(KEY)
    assert stand_in.files.live_count() == 0
    assert await count_rows(postgres_url, "blobs", "blob_uses") == [0, 0]


async def test_a_thread_deleted_while_a_turn_commits_leaves_its_blobs(postgres_url: str):
    """Worker one commits a turn naming an image that worker two's thread delete would
    free: the delete waits for the commit, then keeps the image the new turn uses."""
    from bot.runtime import open_store
    from tests.bot.test_store_contract import turn

    one, two = await open_store(postgres_url), await open_store(postgres_url)
    inside, release = asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task] = []
    try:
        await one.commit_turn(turn("o1", OTHER, "a boat", REF))

        async def pause(_db) -> None:  # inside the turn's transaction, its uses written
            inside.set()
            await release.wait()

        committing = turn("t1", KEY, "a fox", REF)
        committing.also = pause
        commit = asyncio.create_task(one.commit_turn(committing))
        tasks.append(commit)
        await asyncio.wait_for(inside.wait(), 30)
        delete = asyncio.create_task(two.delete_thread(OTHER))
        tasks.append(delete)
        await wait_for_a_lock_wait(postgres_url)
        assert not delete.done(), "the delete waits for the commit"
        release.set()
        await commit
        assert await delete
        history = await two.load_history(KEY)
        assert history[0].parts[1].inline_data.data == REF  # type: ignore[index,union-attr]
    finally:
        release.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await one.close()
        await two.close()


async def wait_for_a_lock_wait(url: str) -> None:
    """Until a session waits for the blobs lock of the URL's schema."""
    conn = await asyncpg.connect(url)
    try:
        for _ in range(500):
            if await conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND objid::bigint = (hashtext('imagebot:blobs:' || current_schema())"
                    "::bigint & 4294967295)"):
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the delete never waited for the turn's commit")
    finally:
        await conn.close()
