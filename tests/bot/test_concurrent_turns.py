"""What a hundred turns at once depend on (issue 9): each image is hashed once per turn, a
turn's new blobs are written in one short transaction of their own, new databases have
pages large enough for ~1 MB blobs, and many turns committing together keep each thread's
history whole and in order."""

from __future__ import annotations

import asyncio
import collections
import sqlite3

from bot import history, images
from bot.model import Author, IncomingMessage, ThreadKey
from bot.progress import Progress
from bot.store import HistoryStore

ALICE = Author("U1", "alice")


def msg(text: str) -> IncomingMessage:
    return IncomingMessage(author=ALICE, text=text)


async def test_a_streamed_turn_hashes_each_image_once(core, monkeypatch):
    """Pro streams (its drafts are shown), then the turn is stored: every image (the two
    drafts and the result) and every large signature is hashed exactly once."""
    digests: collections.Counter[str] = collections.Counter()

    def counted(data: bytes) -> str:
        digest = real(data)
        digests[digest] += 1
        return digest

    real = images.sha256
    monkeypatch.setattr(images, "sha256", counted)
    monkeypatch.setattr(history, "sha256", counted)
    shown: list[Progress] = []

    async def on_progress(event: Progress) -> None:
        shown.append(event)

    reply = await core.service.handle(ThreadKey("test", "", "", "once"), msg("a red fox"),
                                      on_progress=on_progress)
    drafts = [e for e in shown if e.kind == "thought_image"]
    assert len(drafts) == 2 and reply.images and reply.thoughts
    made = {i.sha256 for i in reply.images} | {p.image.sha256 for p in reply.thoughts
                                               if p.image is not None}
    assert made <= set(digests) and len(made) == 3
    assert [d for d, n in digests.items() if n > 1] == []
    stored = await core.service.store.load_history(ThreadKey("test", "", "", "once"))
    assert stored[-1].parts and any(p.inline_data for p in stored[-1].parts)


async def test_a_turns_new_blobs_go_in_one_transaction_before_its_rows(core):
    """One write transaction for the turn's new blobs, one for its rows: not one per blob
    (each is a queue of trips to the database thread that other turns wait behind)."""
    store = core.service.store
    assert isinstance(store, HistoryStore)
    statements: list[str] = []
    await store.db.set_trace_callback(statements.append)
    try:
        await core.service.handle(ThreadKey("test", "", "", "blobs"), msg("a lighthouse"))
    finally:
        await store.db.set_trace_callback(None)
    begins = [i for i, s in enumerate(statements) if s.startswith("BEGIN IMMEDIATE")]
    blob_inserts = [i for i, s in enumerate(statements) if s.startswith("INSERT OR IGNORE "
                                                                         "INTO blobs")]
    row_insert = next(i for i, s in enumerate(statements) if s.startswith("INSERT INTO "
                                                                          "contents"))
    # The answer has an image and two drafts (the test stand-in's signatures are small).
    assert len(blob_inserts) >= 3
    blob_begin = max(b for b in begins if b < blob_inserts[0])
    row_begin = max(b for b in begins if b < row_insert)
    assert all(blob_begin < i < row_begin for i in blob_inserts)
    assert not [b for b in begins if blob_begin < b < blob_inserts[-1]]


async def test_turns_committing_together_keep_every_thread_in_order(core):
    """Twenty threads, three turns each, all at once: each history is its turns' Contents
    at consecutive positions, user then model, in the order the turns were sent."""
    keys = [ThreadKey("test", "", "", f"many-{n}") for n in range(20)]

    async def thread(key: ThreadKey) -> None:
        for turn in range(3):
            await core.service.handle(key, msg(f"{key.thread} turn {turn}"))

    await asyncio.gather(*(thread(k) for k in keys))
    db = sqlite3.connect(core.service.store.path)
    try:
        for key in keys:
            rows = db.execute(
                "SELECT c.position, c.role, c.content FROM contents c JOIN threads t "
                "ON t.id = c.thread_id WHERE t.thread=? ORDER BY c.position",
                (key.thread,)).fetchall()
            assert [r[0] for r in rows] == list(range(6))
            assert [r[1] for r in rows] == ["user", "model"] * 3
            prompts = [r[2] for r in rows if r[1] == "user"]
            assert all(f"turn {n}" in p for n, p in enumerate(prompts))
    finally:
        db.close()
    for key in keys:
        assert [t.prompt for t in await core.service.history(key)] == [
            f"{key.thread} turn {n}" for n in range(3)]


async def test_a_new_database_has_large_pages_and_an_old_one_keeps_its_own(tmp_path):
    store = await HistoryStore.open(tmp_path / "new.sqlite3")
    await store.close()
    with sqlite3.connect(tmp_path / "new.sqlite3") as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == 65536
    old = sqlite3.connect(tmp_path / "old.sqlite3")
    old.execute("CREATE TABLE something (x)")
    old.commit()
    old.close()
    store = await HistoryStore.open(tmp_path / "old.sqlite3")
    await store.close()
    with sqlite3.connect(tmp_path / "old.sqlite3") as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == 4096


async def test_asking_for_a_place_in_line_writes_only_when_a_ticket_expired(tmp_path):
    """Every turn asks whether it is first in its thread's line; that is a read, not a
    write transaction, unless a ticket ahead has expired (its process died)."""
    store = await HistoryStore.open(tmp_path / "lines.sqlite3")
    try:
        first = await store.line_join("t", "worker-1", 60)
        second = await store.line_join("t", "worker-2", 60)
        statements: list[str] = []
        await store.db.set_trace_callback(statements.append)
        assert await store.line_first("t", first) is True
        assert await store.line_first("t", second) is False
        assert not [s for s in statements if s.startswith(("BEGIN", "DELETE"))]
        await store.db.execute("UPDATE thread_line SET expires_at=0 WHERE ticket=?", (first,))
        assert await store.line_first("t", second) is True
        assert [s for s in statements if s.startswith("DELETE FROM thread_line")]
        await store.db.set_trace_callback(None)
    finally:
        await store.close()


async def test_a_turn_whose_rows_fail_leaves_the_thread_as_it_was(tmp_path):
    """The rows are written in one trip to the database thread; a failure in the middle
    (here a turn id already used, refused after its Contents were inserted) still rolls
    the whole turn back: history, settings and usage as they were."""
    from bot.options import OptionInput
    from tests import corpus
    from tests.bot.test_store_contract import KEY, turn

    store = await HistoryStore.open(tmp_path / "fail.sqlite3")
    try:
        await store.commit_turn(turn("t1", KEY, "first", corpus.png(8, 8)))
        before = [c.model_dump() for c in await store.load_history(KEY)]
        again = turn("t1", KEY, "second", corpus.png(8, 9),
                     settings=OptionInput(aspect_ratio="1:1"))
        try:
            await store.commit_turn(again)
        except sqlite3.IntegrityError:
            pass
        else:
            raise AssertionError("a second turn with the same id was stored")
        assert [c.model_dump() for c in await store.load_history(KEY)] == before
        assert (await store.settings(KEY)).aspect_ratio == "16:9"
        assert len(await store.usage_rows(KEY)) == 1
        assert not store.db.in_transaction
    finally:
        await store.close()
