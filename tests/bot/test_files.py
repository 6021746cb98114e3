"""History images through the Files API, end to end: the real SDK uploads to the stand-in
and names the files in later requests; expiry, lost files, a model that refuses its own
images as files, deletion and the sweep; a stored turn's images go up in the background.

Most tests wait for a turn's background uploads (`turn`) so that upload counts do not
depend on timing."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator

import pytest

from bot.files import HistoryFiles
from bot.gemini import request_size
from bot.model import ThreadKey
from offline_gemini import ApiError, OfflineGemini
from tests import corpus
from tests.bot.test_service import KEY, msg
from tests.conftest import TEST_KEY
from tests.wire import file_parts

OTHER = ThreadKey("test", "w1", "c1", "t2")
REF = corpus.png(80, 60)


def parts_of(request, index: int) -> list[dict]:
    return request.body["contents"][index]["parts"]


def statuses(server: OfflineGemini) -> list[int]:
    return [r.status for r in server.generations]


async def turn(core, key: ThreadKey, message):
    """A turn, then its images' background uploads (as a next turn a moment later finds)."""
    reply = await core.service.handle(key, message)
    await core.service.files.drain()
    return reply


async def file_ids(core, key: ThreadKey = KEY) -> dict[str, str]:
    """Stand-in file ids of the images the thread's history names, by blob hash."""
    stored = await core.service.store.load_stored(key)
    hashes = {h for c in stored for h in c.images()}
    records = await core.service.store.files.get(core.service.files.namespace, hashes)
    return {h: r.name.removeprefix("files/") for h, r in records.items()}


async def test_history_images_are_uploaded_once_and_named_by_uri(core, stand_in):
    await turn(core, KEY, msg("a red fox", ("ref.png", REF)))
    first = stand_in.generations[-1]
    assert file_parts(first.body) == 0, "the new turn's own images go inline"
    assert stand_in.files.uploaded == 4, "then up in the background: the reference, 3 images"
    await turn(core, KEY, msg("make it night"))
    second = stand_in.generations[-1]
    user, model = parts_of(second, 0), parts_of(second, 1)
    ref = user[1]["fileData"]
    assert ref["mime_type"] == "image/png"
    assert ref["file_uri"].startswith(f"{stand_in.base_url}/v1beta/files/"), "the full URI"
    images = [p for p in model if "fileData" in p]
    assert [bool(p.get("thought")) for p in images] == [True, True, False]
    assert "thoughtSignature" in images[-1], "the signed image keeps its signature"
    assert not any("inlineData" in p for c in second.body["contents"][:-1] for p in c["parts"])
    assert stand_in.files.uploaded == core.service.files.uploads == 7

    await turn(core, KEY, msg("add a moon"))
    assert stand_in.files.uploaded == 10, "only the new turn's images are new"
    assert file_parts(stand_in.generations[-1].body) == 7
    assert statuses(stand_in) == [200, 200, 200]


async def test_with_the_setting_off_everything_goes_inline(core_factory, stand_in):
    async with core_factory(use_files_api=False) as core:
        await turn(core, KEY, msg("a red fox", ("ref.png", REF)))
        await turn(core, KEY, msg("make it night"))
    assert stand_in.files.uploaded == 0
    assert file_parts(stand_in.generations[-1].body) == 0
    assert "inlineData" in parts_of(stand_in.generations[-1], 0)[1]


async def test_a_file_expiring_within_the_hour_is_uploaded_again_first(core, stand_in):
    await turn(core, KEY, msg("a red fox", ("ref.png", REF)))
    await turn(core, KEY, msg("make it night"))
    assert stand_in.files.uploaded == 7
    core.service.files.clock = lambda: time.time() + 47.5 * 3600
    await turn(core, KEY, msg("add a moon"))
    assert stand_in.files.uploaded == 7 + 7 + 3, "the old seven again, then turn 3's three"
    assert statuses(stand_in) == [200, 200, 200], "no request named a dying file"


async def test_49_hours_later_the_thread_costs_only_reuploads(core, stand_in):
    await turn(core, KEY, msg("a red fox", ("ref.png", REF)))
    await turn(core, KEY, msg("make it night"))
    stand_in.clock.advance(hours=49)
    reply = await turn(core, KEY, msg("add a moon"))
    assert reply.images and not any("left out" in n for n in reply.notices)
    assert statuses(stand_in) == [200, 200, 403, 200], "one refusal, then the retry"
    assert stand_in.files.uploaded == 7 + 7 + 3
    assert file_parts(stand_in.generations[-1].body) == 7
    assert len(stand_in.generations[-1].body["contents"]) == 5, "nothing left out"


async def test_a_file_deleted_behind_our_back_is_uploaded_again(core, stand_in):
    await turn(core, KEY, msg("a red fox", ("ref.png", REF)))
    await turn(core, KEY, msg("make it night"))
    ref_id = (await file_ids(core))[corpus_hash(REF)]
    assert stand_in.files.delete(ref_id)
    await turn(core, KEY, msg("add a moon"))
    assert statuses(stand_in) == [200, 200, 403, 200]
    assert stand_in.files.uploaded == 7 + 1 + 3, "only the lost file goes up again"


def corpus_hash(data: bytes) -> str:
    from bot.images import sha256

    return sha256(data)


@pytest.fixture
async def refusing() -> AsyncIterator[OfflineGemini]:
    server = OfflineGemini(api_key=TEST_KEY, refuse_model_files=True)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_a_model_refusing_its_images_as_files_gets_them_inline(
        refusing, make_settings, caplog):
    from bot.runtime import open_core

    caplog.set_level(logging.INFO, logger="bot")
    async with open_core(make_settings(refusing.base_url)) as core:
        await turn(core, KEY, msg("a red fox", ("ref.png", REF)))
        reply = await turn(core, KEY, msg("make it night"))
        assert reply.images
        assert statuses(refusing) == [200, 400, 200], "refused once, then inline"
        retry = refusing.generations[-1]
        assert "fileData" in parts_of(retry, 0)[1], "user images stay files"
        assert file_parts({"contents": [retry.body["contents"][1]]}) == 0
        await turn(core, KEY, msg("add a moon"))
        assert statuses(refusing) == [200, 400, 200, 200], "remembered for the process"
    remembered = [r for r in caplog.records if "refused its own images" in r.getMessage()]
    assert len(remembered) == 1 and remembered[0].levelno == logging.WARNING


async def test_the_inline_retry_leaves_out_the_oldest_turns_to_fit(core, stand_in):
    from dataclasses import replace

    await turn(core, KEY, msg("a red fox", ("ref.png", REF)))
    await turn(core, KEY, msg("make it night"))
    inline = await core.service.store.load_history(KEY)
    room = request_size(inline[2:]) + 4096  # turn 2 inline fits, turns 1 and 2 do not
    assert request_size(inline) > room
    core.service.settings = replace(core.service.settings, max_request_bytes=room)
    stand_in.refuse_model_files = True
    reply = await turn(core, KEY, msg("add a moon"))
    assert statuses(stand_in) == [200, 200, 400, 200]
    sent = stand_in.generations[-1].body["contents"]
    assert [c["parts"][0].get("text") for c in sent if c["role"] == "user"] == [
        "make it night", "add a moon"]
    notice = next(n for n in reply.notices if "left out" in n)
    assert "turn 1 of 2" in notice


async def test_a_failed_upload_sends_that_image_inline(core, stand_in, caplog):
    caplog.set_level(logging.INFO, logger="bot")
    def quota(**_: object) -> str:
        raise ApiError(400, "Storage quota exceeded for this project.")

    stand_in.files.start_upload = quota  # type: ignore[method-assign]
    await turn(core, KEY, msg("a red fox", ("ref.png", REF)))
    assert "could not upload image" in caplog.text and "the next turn tries" in caplog.text
    caplog.clear()
    reply = await turn(core, KEY, msg("make it night"))
    assert reply.images and stand_in.files.uploaded == 0
    assert file_parts(stand_in.generations[-1].body) == 0
    assert "could not upload image" in caplog.text


async def test_concurrent_turns_share_one_upload_of_a_shared_image(core, stand_in):
    for key, prompt in ((KEY, "a red fox"), (OTHER, "a blue fox")):  # uploads overlap
        await core.service.handle(key, msg(prompt, ("ref.png", REF)))
    await asyncio.gather(core.service.handle(KEY, msg("night")),
                         core.service.handle(OTHER, msg("day")))
    await core.service.files.drain()
    assert stand_in.files.uploaded == 1 + 4 * 3, "the shared reference went up once"


async def test_deleting_turns_and_threads_deletes_what_nothing_uses(core, stand_in):
    for key, prompt in ((KEY, "a red fox"), (OTHER, "a blue fox")):
        await turn(core, key, msg(prompt, ("ref.png", REF)))
        await turn(core, key, msg("make it night"))
    first, second = await core.service.history(KEY)
    files_before = await file_ids(core)
    ref = corpus_hash(REF)
    first_blobs = await core.service.store.files.turn_blobs(first.id)

    await core.service.delete(first.id)
    gone = set(files_before) - set(await file_ids(core))  # what KEY's history no longer names
    assert gone and ref in gone
    for digest, file_id in files_before.items():
        shared = digest == ref  # OTHER's history still names the reference
        assert (stand_in.files.get(file_id) is not None) == (shared or digest not in gone)

    await core.service.delete_thread(OTHER)
    assert stand_in.files.get(files_before[ref]) is None, "nothing names it any more"
    db = sqlite3.connect(core.settings.database_path)
    blobs = {r[0] for r in db.execute("SELECT sha256 FROM blobs")}
    used = {r[0] for r in db.execute("SELECT sha256 FROM blob_uses")}
    assert ref not in blobs and used <= blobs
    assert blobs - used <= first_blobs, "KEY's deleted turn keeps its blobs until KEY goes"
    await core.service.delete_thread(KEY)
    assert [db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("blobs", "blob_uses", "gemini_files")] == [0, 0, 0]
    assert stand_in.files.live_count() == 0
    db.close()


async def test_the_sweep_forgets_expired_records(core, stand_in):
    await turn(core, KEY, msg("a red fox", ("ref.png", REF)))
    await turn(core, KEY, msg("make it night"))
    assert await core.service.sweep_files() == 0
    hashes = list(await file_ids(core))
    assert len(hashes) == 7
    files: HistoryFiles = core.service.files
    files.clock = lambda: time.time() + 49 * 3600
    assert await core.service.sweep_files() == 7
    assert await core.service.store.files.get(files.namespace, hashes) == {}
