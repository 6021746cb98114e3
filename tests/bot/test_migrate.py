"""``imagebot migrate-db``: an SQLite database copied into PostgreSQL carries on exactly."""

from __future__ import annotations

import asyncio

import pytest

from adapters.main import main
from bot.model import Attachment, Author, IncomingMessage, ThreadKey
from bot.runtime import open_core, open_store
from tests import corpus

KEY = ThreadKey("slack", "T1", "C1", "1700000000.000100")


def message(text: str, *images: bytes) -> IncomingMessage:
    return IncomingMessage(author=Author("U1", "alice"), text=text, attachments=tuple(
        Attachment.from_bytes(f"ref{n}.png", data) for n, data in enumerate(images)))


def dumped(contents):
    return [c.model_dump(mode="json", exclude_none=True) for c in contents]


async def test_a_copied_thread_carries_on_in_postgresql(stand_in, make_settings, tmp_path,
                                                        postgres_url, capsys):
    sqlite_url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    async with open_core(make_settings(stand_in.base_url, database_url=sqlite_url)) as core:
        first = await core.service.handle(KEY, message("a lighthouse --ar 16:9",
                                                       corpus.png(64, 48)))
        await core.service.handle(KEY, message("now at night"))
        await core.service.record_posts(first.turn_id, {"channel": "C1", "messages": ["1.1"]})
        await core.service.claim("slack:Ev1")
        before = await core.service.store.load_history(KEY)
        turns_before = await core.service.history(KEY)

    with pytest.raises(SystemExit) as done:
        await asyncio.to_thread(main, ["migrate-db", "--from", sqlite_url, "--to", postgres_url])
    out, err = capsys.readouterr()
    assert done.value.code == 0, err
    assert out.startswith("copied blobs ") and "threads 1" in out and "turns 2" in out

    async with open_core(make_settings(stand_in.base_url, database_url=postgres_url)) as core:
        assert dumped(await core.service.store.load_history(KEY)) == dumped(before)
        assert await core.service.history(KEY) == turns_before
        assert not await core.service.claim("slack:Ev1"), "claimed events stay claimed"
        # The next turn sends the stored signatures back; the stand-in checks them.
        third = await core.service.handle(KEY, message("add a boat"))
        assert third.images and third.options.aspect_ratio == "16:9"
        assert len(await core.service.history(KEY)) == 3


async def test_a_target_with_threads_is_refused(tmp_path, postgres_url, capsys):
    store = await open_store(postgres_url)
    from bot.options import OptionInput

    await store.save_settings(KEY, OptionInput(size="2K"))
    await store.close()
    sqlite_url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    await (await open_store(sqlite_url)).close()
    with pytest.raises(SystemExit) as done:
        await asyncio.to_thread(main, ["migrate-db", "--from", sqlite_url, "--to", postgres_url])
    assert done.value.code == 2
    assert "already has threads" in capsys.readouterr().err
