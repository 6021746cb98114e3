"""A turn's store work on PostgreSQL vs SQLite: everything a turn asks of the store besides
Gemini (claim the event, take and check its place in line, read settings and history,
commit, record the posts, leave the line), timed over many turns of a growing thread.
Target: PostgreSQL <= 2x SQLite.
"""

from __future__ import annotations

import asyncio
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
from tests import corpus

TURNS = 60
KEY = ThreadKey("bench", "w", "c", "overhead")


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
    await store.inflate(stored[-8:])
    await store.commit_turn(new_turn(n, image, signature))
    await store.set_platform_refs(f"t{n}", {"messages": [str(n)]})
    await store.line_leave(ticket)
    return time.perf_counter() - start


async def measure(url: str) -> float:
    store = await open_store(url)
    try:
        samples = []
        for n in range(TURNS):
            image = corpus.png(256, 256 + n)  # a new image each turn, as generated ones are
            signature = bytes([n % 256]) * 4096
            samples.append(await one_turn(store, n, image, signature))
        return median_ms(samples[5:])
    finally:
        await store.close()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = await measure(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
    async with postgres_schema() as url:
        pg = await measure(url)
    print(f"store overhead per turn ({TURNS} turns, median): SQLite {sqlite:.2f} ms, "
          f"PostgreSQL {pg:.2f} ms = {pg / sqlite:.2f}x (target <= 2x)")


if __name__ == "__main__":
    asyncio.run(main())
