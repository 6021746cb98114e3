"""The store at real signature sizes: signatures as blobs, the migration, hashing once."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator

import pytest
from google.genai import types

from bot import history
from bot.model import Author, IncomingMessage, ThreadKey
from bot.runtime import open_core
from bot.store import MIGRATIONS, SCHEMA_VERSION, HistoryStore
from offline_gemini import OfflineGemini
from tests import corpus
from tests.conftest import TEST_KEY

KEY = ThreadKey("test", "w", "c", "long")
SIGNATURE_BYTES = 64 * 1024


@pytest.fixture
async def big_signatures() -> AsyncIterator[OfflineGemini]:
    server = OfflineGemini(api_key=TEST_KEY, strict_signatures=True,
                           signature_bytes=SIGNATURE_BYTES)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def message(text: str, *images: bytes) -> IncomingMessage:
    from bot.model import Attachment

    return IncomingMessage(author=Author("U1", "alice"), text=text, attachments=tuple(
        Attachment.from_bytes(f"ref{n}.png", data) for n, data in enumerate(images)))


def dumped(contents: list[types.Content]) -> list[dict]:
    return [c.model_dump(mode="json", exclude_none=True) for c in contents]


async def test_large_signatures_live_in_blobs_and_round_trip(big_signatures, make_settings):
    settings = make_settings(big_signatures.base_url)
    async with open_core(settings) as core:
        await core.service.handle(KEY, message("a lighthouse", corpus.png(64, 48)))
        await core.service.handle(KEY, message("now at night"))
        sent_model_turn = big_signatures.generations[-1].body["contents"][1]
        restored = await core.service.store.load_history(KEY)
    db = sqlite3.connect(settings.database_path)
    rows = [r[0] for r in db.execute("SELECT content FROM contents ORDER BY position")]
    signature_blobs = db.execute("SELECT COUNT(*), MIN(size) FROM blobs WHERE mime_type=?",
                                 (history.SIGNATURE_MIME,)).fetchone()
    db.close()
    assert max(len(r) for r in rows) < 2000, "rows stay small"
    assert all("thought_signature" not in part for r in rows for part in json.loads(r)["parts"])
    assert signature_blobs[0] >= 2 and signature_blobs[1] == SIGNATURE_BYTES
    # What went back to Gemini on turn 2 is what was stored, signatures byte for byte.
    wire = [p.get("thoughtSignature") for p in sent_model_turn["parts"]]
    restored_sigs = [p.thought_signature for p in restored[1].parts or ()]
    assert [history.decode_b64(s) if s else None for s in wire] == restored_sigs
    assert sum(s is not None for s in restored_sigs) >= 2


async def test_migration_moves_inline_signatures_of_an_old_database(tmp_path):
    path = tmp_path / "old.sqlite3"
    signature = bytes(range(256)) * 20
    image = corpus.png(32, 32)
    old = sqlite3.connect(path)
    old.executescript(str(MIGRATIONS[0]) + "\nPRAGMA user_version = 1;")
    old.execute("INSERT INTO threads (platform, workspace, channel, thread, created_at, "
                "updated_at) VALUES ('test','w','c','long',0,0)")
    old.execute("INSERT INTO blobs VALUES (?,?,?,?)",
                (history.sha256(image), "image/png", len(image), image))
    model = types.Content(role="model", parts=[
        types.Part(text="thinking", thought=True),
        types.Part(text="Here it is", thought_signature=b"small-sig"),
        types.Part(inline_data=types.Blob(mime_type="image/png", data=image),
                   thought_signature=signature)])
    user = types.Content(role="user", parts=[types.Part(text="a cat")])
    for position, content in enumerate((user, model)):
        old.execute("INSERT INTO contents (thread_id, turn_id, position, role, content) "
                    "VALUES (1, 't1', ?, ?, ?)", (position, content.role, _old_row(content)))
    old.commit()
    old.close()

    store = await HistoryStore.open(path)
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        restored = await store.load_history(KEY)
    finally:
        await store.close()
    assert dumped(restored) == dumped([user, model])
    db = sqlite3.connect(path)
    row = db.execute("SELECT content FROM contents WHERE position=1").fetchone()[0]
    kept = db.execute("SELECT data FROM blobs WHERE mime_type=?",
                      (history.SIGNATURE_MIME,)).fetchall()
    uses = sorted(db.execute("SELECT sha256, thread_id, turn_id FROM blob_uses").fetchall())
    db.close()
    assert "signature_blob" in row and len(row) < 1000
    assert "thought_signature" in row, "a small signature stays in the row"
    assert [bytes(k[0]) for k in kept] == [signature]
    assert uses == sorted([(history.sha256(image), 1, "t1"), (history.sha256(signature), 1, "t1")])


def _old_row(content: types.Content) -> str:
    """A row as schema 1 wrote it: image bytes as a blob hash, signatures inline."""
    parts = []
    for part in content.parts or ():
        if part.inline_data is not None and part.inline_data.data:
            digest = history.sha256(part.inline_data.data)
            part = part.model_copy(update={"inline_data": types.Blob(
                mime_type=part.inline_data.mime_type)})
            dumped_part = part.model_dump(mode="json", exclude_none=True)
            dumped_part["inline_data"]["blob"] = digest
        else:
            dumped_part = part.model_dump(mode="json", exclude_none=True)
        parts.append(dumped_part)
    return json.dumps({"role": content.role, "parts": parts})


async def test_each_image_is_hashed_once_per_turn(big_signatures, make_settings, monkeypatch):
    hashed: list[int] = []
    real = history.sha256

    def counting(data: bytes) -> str:
        hashed.append(len(data))
        return real(data)

    monkeypatch.setattr(history, "sha256", counting)
    async with open_core(make_settings(big_signatures.base_url)) as core:
        reply = await core.service.handle(KEY, message("a lighthouse", corpus.png(64, 48)))
    assert reply.images
    # Only the signatures are hashed when storing; images were hashed by the turn already.
    assert hashed and all(n == SIGNATURE_BYTES for n in hashed)


async def test_history_is_sized_without_reading_blobs(big_signatures, make_settings):
    async with open_core(make_settings(big_signatures.base_url)) as core:
        await core.service.handle(KEY, message("a lighthouse", corpus.png(64, 48)))
        store = core.service.store
        stored = await store.load_stored(KEY)
        sizes = await store.blob_sizes({h for c in stored for h in c.blob_hashes()})
        from bot.gemini import request_size

        exact = request_size(await store.load_history(KEY))
    estimate = sum(c.wire_size(sizes) for c in stored)
    assert abs(estimate - exact) < 0.01 * exact
