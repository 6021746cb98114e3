"""The store contract, Files API part: file records and blob uses (``store.files``) behave
the same on SQLite and PostgreSQL; every case runs unchanged on both (``database_url``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from bot import history
from bot.errors import NotFoundError
from bot.model import ThreadKey
from bot.runtime import open_store
from bot.store_api import Store
from bot.store_files import FileRecord
from tests import corpus
from tests.bot.test_store_contract import KEY, OTHER, SIGNATURE, turn

NS, OTHER_NS = "ns-a", "ns-b"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url)
    try:
        yield opened
    finally:
        await opened.close()


def record(digest: str, expires_at: float, name: str = "files/abc") -> FileRecord:
    return FileRecord(sha256=digest, name=name, uri=f"https://example.test/v1beta/{name}",
                      mime_type="image/png", expires_at=expires_at)


async def test_file_records_are_kept_per_namespace_replaced_and_forgotten(store: Store):
    files = store.files  # type: ignore[attr-defined]
    now = time.time()
    await files.save(NS, record("a" * 64, now + 100, "files/a1"))
    await files.save(NS, record("b" * 64, now - 1, "files/b1"))
    await files.save(OTHER_NS, record("a" * 64, now + 100, "files/a2"))
    assert await files.get(NS, []) == {}
    found = await files.get(NS, ["a" * 64, "b" * 64, "c" * 64])
    assert found == {"a" * 64: record("a" * 64, now + 100, "files/a1"),
                     "b" * 64: record("b" * 64, now - 1, "files/b1")}, "expired ones too"
    assert isinstance(found["a" * 64].expires_at, float)

    await files.save(NS, record("a" * 64, now + 500, "files/a3"))  # uploaded again
    assert (await files.get(NS, ["a" * 64]))["a" * 64].name == "files/a3"
    assert (await files.get(OTHER_NS, ["a" * 64]))["a" * 64].name == "files/a2"

    assert await files.forget_expired(now) == 1
    assert set(await files.get(NS, ["a" * 64, "b" * 64])) == {"a" * 64}
    await files.forget(NS, ["a" * 64])
    assert await files.get(NS, ["a" * 64]) == {}
    assert set(await files.get(OTHER_NS, ["a" * 64])) == {"a" * 64}, "another namespace's"
    await files.save(NS, record("a" * 64, now + 100))
    await files.forget_everywhere(["a" * 64])
    assert await files.get(NS, ["a" * 64]) == await files.get(OTHER_NS, ["a" * 64]) == {}


async def test_many_hashes_at_once(store: Store):
    files = store.files  # type: ignore[attr-defined]
    hashes = [f"{n:064x}" for n in range(1200)]  # more than one chunk of placeholders
    for digest in hashes[::100]:
        await files.save(NS, record(digest, time.time() + 100))
    assert set(await files.get(NS, hashes)) == set(hashes[::100])
    assert await files.unused(hashes) == set(hashes)


async def test_blob_uses_follow_turns_and_threads(store: Store):
    files = store.files  # type: ignore[attr-defined]
    shared, own = corpus.png(8, 8), corpus.png(9, 9)
    await store.commit_turn(turn("t1", KEY, "a lighthouse", shared))
    await store.commit_turn(turn("t2", KEY, "at night", own))
    await store.commit_turn(turn("o1", OTHER, "a boat", shared))
    signature = history.sha256(SIGNATURE)
    h_shared, h_own = history.sha256(shared), history.sha256(own)
    assert await files.turn_blobs("t1") == {h_shared, signature}
    assert await files.turn_blobs("t2") == {h_own, signature}
    assert await files.thread_blobs(KEY) == {h_shared, h_own, signature}
    assert await files.thread_blobs(ThreadKey("x", "y", "z", "none")) == set()
    assert await files.unused([h_shared, h_own, "f" * 64]) == {"f" * 64}

    assert await store.delete_turn("t2")
    assert await files.turn_blobs("t2") == set()
    assert await files.unused([h_shared, h_own]) == {h_own}
    # The deleted turn's record still names its image, so the thread still counts it.
    assert h_own in await files.thread_blobs(KEY)
    assert await store.get_blobs([h_own]), "kept until its thread goes"

    assert await store.delete_thread(KEY)
    assert await files.unused([h_shared, h_own, signature]) == {h_own}
    with pytest.raises(NotFoundError):
        await store.get_blobs([h_own])
    assert set(await store.get_blobs([h_shared, signature])) == {h_shared, signature}, \
        "the other thread still uses them"
    assert await store.delete_thread(OTHER)
    assert await files.unused([h_shared, signature]) == {h_shared, signature}
    with pytest.raises(NotFoundError):
        await store.get_blobs([h_shared])


async def test_a_turn_restores_blobs_deleted_after_they_were_written(store: Store,
                                                                     monkeypatch):
    image = corpus.png(8, 8)
    await store.commit_turn(turn("o1", OTHER, "a boat", image))
    write_blobs = store._write_blobs  # type: ignore[attr-defined]

    async def written_then_lost(blobs) -> None:
        # The other thread is deleted between this turn writing its blobs (found present,
        # so skipped) and its commit: the commit writes them again.
        await write_blobs(blobs)
        assert await store.delete_thread(OTHER)

    monkeypatch.setattr(store, "_write_blobs", written_then_lost)
    await store.commit_turn(turn("t1", KEY, "a lighthouse", image))
    assert not await store.thread_exists(OTHER)
    history_ = await store.load_history(KEY)
    assert history_[0].parts[1].inline_data.data == image  # type: ignore[index,union-attr]
    assert history.sha256(image) in await store.files.turn_blobs("t1")  # type: ignore[attr-defined]


async def test_an_existing_database_records_the_uses_of_its_blobs(database_url: str):
    first = await open_store(database_url)
    image = corpus.png(8, 8)
    await first.commit_turn(turn("t1", KEY, "a lighthouse", image))
    try:
        expected = await first.files.turn_blobs("t1")  # type: ignore[attr-defined]
        await _back_to_before_files(first)
    finally:
        await first.close()

    again = await open_store(database_url)
    try:
        files = again.files  # type: ignore[attr-defined]
        assert await files.turn_blobs("t1") == expected and expected
        assert await files.get(NS, expected) == {}
        assert await again.delete_turn("t1")
        assert await files.unused(expected) == expected
    finally:
        await again.close()


async def _back_to_before_files(store: Store) -> None:
    """Drops the Files API tables, what later migrations added (the line tickets' request
    columns), and the schema versions from the Files API migration on, as a database
    written before them would be."""
    from bot import store as store_sqlite
    from bot import store_files, store_pg
    from bot.pg_compat import postgres_ddl
    from bot.store_sqlite_scale import LINE_REQUEST_SCHEMA

    await store.db.execute("DROP TABLE blob_uses")
    await store.db.execute("DROP TABLE gemini_files")
    for column in ("request", "ttl", "joined_at", "adoptions"):
        await store.db.execute(f"ALTER TABLE thread_line DROP COLUMN {column}")
    if isinstance(store, store_sqlite.HistoryStore):
        before = store_sqlite.MIGRATIONS.index(store_files.migrate)
        assert store_sqlite.MIGRATIONS[before + 1:] == (LINE_REQUEST_SCHEMA,)
        await store.db.execute(f"PRAGMA user_version = {before}")
        return
    before = store_pg.MIGRATIONS.index(store_pg._files_schema)
    assert store_pg.MIGRATIONS[before + 1:] == (postgres_ddl(LINE_REQUEST_SCHEMA),)
    await store.db.execute("DELETE FROM imagebot_schema WHERE version > ?", (before,))
