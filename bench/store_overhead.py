"""A turn's store work on PostgreSQL vs SQLite: everything a turn asks of the store besides
Gemini (claim the event, take and check its place in line, read settings and history, look
up the history images' Files API records and record the new uploads, commit with the
blobs' uses, record the posts, leave the line), timed over many turns of a growing thread.
PostgreSQL is measured twice: with the server's own ``synchronous_commit`` (imagebot's
default: each commit waits for the disk) and with ``IMAGEBOT_PG_SYNCHRONOUS_COMMIT=off``.
Target: PostgreSQL <= 2x SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from google.genai import types

from bench.common import median_ms
from bench.scale_common import postgres_schema
from bot import history
from bot.leases import line_name
from bot.model import StoredImage, StoredReply, ThreadKey
from bot.options import OptionInput
from bot.runtime import open_store
from bot.store_api import NewTurn, Store
from bot.store_files import FileRecord
from tests import corpus

TURNS = 60
KEY = ThreadKey("bench", "w", "c", "overhead")
NAMESPACE = "bench"


def new_turn(n: int, image: bytes, signature: bytes) -> NewTurn:
    user = types.Content(role="user", parts=[types.Part(text=f"turn {n}")])
    model = types.Content(role="model", parts=[
        types.Part(text="thinking", thought=True),
        types.Part(inline_data=types.Blob(mime_type="image/png", data=image),
                   thought_signature=signature)])
    return NewTurn(turn_id=f"t{n}", key=KEY, contents=[user, model],
                   settings=OptionInput(aspect_ratio="1:1"), author_id="u", author_name="u",
                   prompt=f"turn {n}", options={}, refs=[
                       StoredImage(history.sha256(image), "image/png", "x.png")],
                   reply=StoredReply.from_dict({}), model="m", usage={}, images=1,
                   created_at=time.time())


async def one_turn(store: Store, n: int, image: bytes, signature: bytes) -> float:
    start = time.perf_counter()
    await store.mark_event(f"bench:{n}")
    ticket = await store.line_join(line_name(KEY), "bench", 30)
    await store.line_first(line_name(KEY), ticket)
    await store.settings(KEY)
    stored = await store.load_stored(KEY)
    hashes = {h for c in stored for h in c.blob_hashes()}
    await store.blob_sizes(hashes)
    files = store.files  # type: ignore[attr-defined]
    images = {h: m for c in stored for h, m in c.images().items()}
    known = await files.get(NAMESPACE, images)
    for digest in set(images) - set(known):  # the last turn's image, uploaded now
        known[digest] = FileRecord(digest, f"files/{digest[:12]}",
                                   f"https://x/v1beta/files/{digest[:12]}", images[digest],
                                   time.time() + 48 * 3600)
        await files.save(NAMESPACE, known[digest])
    await store.inflate(stored, {h: r.uri for h, r in known.items()})
    await store.commit_turn(new_turn(n, image, signature))
    await store.set_platform_refs(f"t{n}", {"messages": [str(n)]})
    await store.line_leave(ticket)
    return time.perf_counter() - start


async def measure(stores: dict[str, Store]) -> dict[str, float]:
    """Median ms per turn on each store; turn ``n`` runs on every store before turn
    ``n + 1`` on any, so a machine shared with other work loads them alike."""
    samples: dict[str, list[float]] = {name: [] for name in stores}
    for n in range(TURNS):
        image = corpus.png(256, 256 + n)  # a new image each turn, as generated ones are
        signature = bytes([n % 256]) * 4096
        for name, store in stores.items():
            samples[name].append(await one_turn(store, n, image, signature))
    return {name: median_ms(values[5:]) for name, values in samples.items()}


async def main() -> None:
    async with contextlib.AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        durable_url = await stack.enter_async_context(postgres_schema())
        fast_url = await stack.enter_async_context(postgres_schema())
        stores: dict[str, Store] = {
            "sqlite": await open_store(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"),
            "durable": await open_store(durable_url),
            "fast": await open_store(fast_url, synchronous_commit="off")}
        for store in stores.values():
            stack.push_async_callback(store.close)
        setting = await server_setting(stores["durable"])
        ms = await measure(stores)
    sqlite, durable, fast = ms["sqlite"], ms["durable"], ms["fast"]
    print(f"store overhead per turn ({TURNS} turns, median): SQLite {sqlite:.2f} ms; "
          f"PostgreSQL, the server's synchronous_commit ({setting}, the default) "
          f"{durable:.2f} ms = {durable / sqlite:.2f}x; PostgreSQL, synchronous_commit=off "
          f"{fast:.2f} ms = {fast / sqlite:.2f}x (target <= 2x)")


async def server_setting(store: Store) -> str:
    """The server's ``synchronous_commit`` and ``fsync``, as the default run used them."""
    pool = store.pool  # type: ignore[attr-defined]
    commit, fsync = await pool.fetchval("SHOW synchronous_commit"), await pool.fetchval(
        "SHOW fsync")
    return f"{commit}, fsync {fsync}"


if __name__ == "__main__":
    asyncio.run(main())
