"""Thought signatures in long threads, end to end (real google-genai against the stand-in):
only the most recent model turns go back with their real signatures (``history_signatures``),
older ones with Google's documented dummy; a model that refuses the dummy gets the turn again
with real signatures everywhere and keeps them for the process; the stored history never
changes. Also: a stored turn's images go up to the Files API in the background."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from bot.history import DUMMY_SIGNATURE
from bot.model import ThreadKey
from bot.options import FLASH, OptionInput
from offline_gemini import OfflineGemini, thought_signature_for
from tests import corpus
from tests.bot.test_service import KEY, history_rows, msg
from tests.conftest import TEST_KEY
from tests.wire import file_parts, resolved

REF = corpus.png(80, 60)
FLASH_KEY = ThreadKey("test", "w1", "c1", "flash")


def statuses(server: OfflineGemini) -> list[int]:
    return [r.status for r in server.generations]


def signature_of(part: dict) -> bytes | None:
    raw = part.get("thoughtSignature") or part.get("thought_signature")
    return base64.urlsafe_b64decode(raw.replace("+", "-").replace("/", "_")) if raw else None


def model_signatures(body: dict, server: OfflineGemini) -> list[list[str]]:
    """Per model Content of a request: ``real``, ``dummy`` or ``none`` for each part
    (``real``: the stand-in's own signature of that part's text or image bytes, byte for
    byte). Thought parts are never signed."""
    kinds = []
    for content in resolved(body, server)["contents"]:
        if content["role"] != "model":
            continue
        row = []
        for part in content["parts"]:
            signature = signature_of(part)
            if signature is None:
                row.append("none")
                continue
            assert not part.get("thought"), "thought parts stay unsigned"
            if signature == DUMMY_SIGNATURE:
                row.append("dummy")
                continue
            payload = (part["text"].encode() if "text" in part
                       else base64.urlsafe_b64decode(part["inlineData"]["data"]))
            assert signature == thought_signature_for(payload), "real, byte for byte"
            row.append("real")
        kinds.append(row)
    return kinds


def signed(kinds: list[str]) -> set[str]:
    return set(kinds) - {"none"}


async def run_turns(core, n: int, key: ThreadKey = KEY, **options: str) -> None:
    for i in range(n):
        await core.service.handle(key, msg(f"frame {i + 1}", options=OptionInput(**options)))


@pytest.mark.parametrize(("window", "real"), [("0", 0), ("1", 1), ("2", 2), ("all", 3)])
async def test_only_the_last_n_model_turns_carry_real_signatures(
        core_factory, stand_in, window, real):
    async with core_factory(history_signatures=window) as core:
        await run_turns(core, 4)
        stored = await history_rows(core)
    fourth = stand_in.generations[-1].body
    kinds = model_signatures(fourth, stand_in)
    assert len(kinds) == 3
    assert [signed(k) for k in kinds] == [{"dummy"}] * (3 - real) + [{"real"}] * real
    assert all(k.count("none") == 3 for k in kinds), "2 thought images, 1 thought text"
    assert statuses(stand_in) == [200] * 4, "the stand-in takes the dummy by default"
    # The stored history keeps every real signature.
    assert not any(signature_of(part) == DUMMY_SIGNATURE
                   for content in stored for part in content["parts"])


async def test_a_model_refusing_the_dummy_gets_real_signatures_for_the_process(
        core, stand_in, caplog):
    caplog.set_level(logging.INFO, logger="bot")
    stand_in.refuse_dummy_signatures = True
    await run_turns(core, 2)
    assert statuses(stand_in) == [200, 200], "turn 2 sends turn 1 real (the window)"
    before = await history_rows(core)

    reply = await core.service.handle(KEY, msg("frame 3"))
    assert reply.images and not any("left out" in n for n in reply.notices)
    assert statuses(stand_in) == [200, 200, 400, 200], "refused once, then real signatures"
    refused, retry = stand_in.generations[-2:]
    assert [signed(k) for k in model_signatures(refused.body, stand_in)] == [{"dummy"}, {"real"}]
    assert [signed(k) for k in model_signatures(retry.body, stand_in)] == [{"real"}, {"real"}]
    after = await history_rows(core)
    assert after[:len(before)] == before, "the stored history is unchanged"
    assert len(after) == len(before) + 2

    await core.service.handle(KEY, msg("frame 4"))
    assert statuses(stand_in) == [200, 200, 400, 200, 200], "remembered: validated at once"
    assert [signed(k) for k in model_signatures(stand_in.generations[-1].body, stand_in)] == [
        {"real"}] * 3
    remembered = [r for r in caplog.records if "refused the documented dummy" in r.getMessage()]
    assert len(remembered) == 1 and remembered[0].levelno == logging.WARNING

    # Per model: Flash has not refused anything yet, so its thread starts with the dummy.
    await run_turns(core, 3, FLASH_KEY, model=FLASH)
    assert statuses(stand_in)[5:] == [200, 200, 400, 200]
    assert stand_in.generations[-1].model == FLASH


@pytest.fixture
async def big_signatures() -> AsyncIterator[OfflineGemini]:
    server = OfflineGemini(api_key=TEST_KEY, signature_bytes=64 * 1024,
                           refuse_dummy_signatures=True, keep_requests=1000)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_the_real_signature_retry_leaves_out_the_oldest_turns_to_fit(
        big_signatures, make_settings):
    from bot.runtime import open_core

    async with open_core(make_settings(big_signatures.base_url)) as core:
        await run_turns(core, 2)
        # Turn 2's request carried one turn's real signatures (two of 64 KiB); turn 3 fits
        # with turn 1's as dummies, not with both turns' real ones.
        room = big_signatures.generations[-1].size * 3 // 2
        core.service.settings = replace(core.service.settings, max_request_bytes=room)
        reply = await core.service.handle(KEY, msg("frame 3"))
    assert statuses(big_signatures) == [200, 200, 400, 200]
    sent = big_signatures.generations[-1].body["contents"]
    assert [c["parts"][0].get("text") for c in sent if c["role"] == "user"] == [
        "frame 2", "frame 3"]
    notice = next(n for n in reply.notices if "left out" in n)
    assert "turn 1 of 2" in notice


# --------------------------------------------------------------- background uploads


def upload_starts(requests) -> int:
    return sum(1 for r in requests if r.path.startswith("/upload/") and "upload_id" not in r.query)


async def test_a_stored_turns_images_go_up_before_the_next_turn(core, stand_in):
    await core.service.handle(KEY, msg("a red fox", ("ref.png", REF)))
    await core.service.files.drain()
    assert stand_in.files.uploaded == 4, "the reference and turn 1's three images"
    seen = len(stand_in.requests)
    await core.service.handle(KEY, msg("make it night"))
    generate = next(i for i, r in enumerate(stand_in.requests)
                    if i >= seen and r.method.endswith("enerateContent"))
    assert upload_starts(stand_in.requests[seen:generate]) == 0, \
        "turn 2 uploaded nothing before its call"
    assert file_parts(stand_in.requests[generate].body) == 4


async def test_the_next_turn_waits_for_an_upload_in_flight(core, stand_in):
    files = core.service.files
    gate = asyncio.Event()
    real_upload = core.service.gemini.upload_file
    calls: list[tuple[str, bool, bool]] = []  # digest, background, shared an upload

    async def slow_upload(*args, **kwargs):
        await gate.wait()
        return await real_upload(*args, **kwargs)

    original = files._upload_once

    async def spy(digest, mime_type, *, background=False):
        calls.append((digest, background, digest in files._uploading))
        return await original(digest, mime_type, background=background)

    core.service.gemini.upload_file = slow_upload
    files._upload_once = spy
    await core.service.handle(KEY, msg("a red fox", ("ref.png", REF)))
    second = asyncio.create_task(core.service.handle(KEY, msg("make it night")))
    for _ in range(2000):  # until turn 2 asks for the images the background holds
        if sum(not background for _, background, _ in calls) == 4:
            break
        await asyncio.sleep(0.005)
    gate.set()
    await second
    await files.drain()
    foreground = [c for c in calls if not c[1]]
    assert len(foreground) == 4 and all(shared for _, _, shared in foreground)
    assert stand_in.files.uploaded == files.uploads == 4 + 3, "never twice"
    assert file_parts(stand_in.generations[-1].body) == 4


async def test_background_uploads_are_drained_on_close(core_factory, stand_in):
    async with core_factory() as core:
        await core.service.handle(KEY, msg("a red fox", ("ref.png", REF)))
        files = core.service.files
    assert files.background == 0
    assert stand_in.files.uploaded == 4, "finished before the session closed"


async def test_a_failed_background_upload_is_made_by_the_next_turn(core, stand_in, caplog):
    caplog.set_level(logging.INFO, logger="bot")
    real_start = stand_in.files.start_upload

    def refuse_once(**kwargs: object) -> str:
        from offline_gemini import ApiError

        raise ApiError(503, "The service is currently unavailable.")

    stand_in.files.start_upload = refuse_once  # type: ignore[method-assign]
    await core.service.handle(KEY, msg("a red fox", ("ref.png", REF)))
    await core.service.files.drain()
    assert stand_in.files.uploaded == 0 and "the next turn tries again" in caplog.text
    stand_in.files.start_upload = real_start  # type: ignore[method-assign]
    await core.service.handle(KEY, msg("make it night"))
    assert file_parts(stand_in.generations[-1].body) == 4, "uploaded on the normal path"
    assert statuses(stand_in) == [200, 200]


# ------------------------------------------------------------------ setting and rows


@pytest.mark.parametrize(("given", "window"), [("all", None), ("ALL", None), ("0", 0),
                                               ("3", 3), (2, 2)])
def test_the_setting_takes_all_or_a_number(tmp_path, given, window):
    from bot.config import load_settings

    from_env = load_settings(env={"IMAGEBOT_HISTORY_SIGNATURES": str(given)})
    assert from_env.signature_window == window
    toml = tmp_path / "imagebot.toml"
    value = given if isinstance(given, int) else f'"{given}"'
    toml.write_text(f"history_signatures = {value}\n")
    assert load_settings(toml, env={}).signature_window == window
    assert load_settings(env={}).signature_window == 1, "the default"


@pytest.mark.parametrize("given", ["-1", "some", "1.5"])
def test_a_wrong_setting_is_refused_at_start(given):
    from bot.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="IMAGEBOT_HISTORY_SIGNATURES must be all or a number"):
        load_settings(env={"IMAGEBOT_HISTORY_SIGNATURES": given})


def test_the_window_counts_turns_and_leaves_the_rows_alone():
    from bot.history import StoredContent, signature_window

    def model(turn: str, *parts: dict) -> StoredContent:
        return StoredContent(turn, "model", parts)

    user = [StoredContent(t, "user", ({"text": t},)) for t in ("t1", "t2", "t3")]
    signed = {"text": "x", "signature_blob": "ab" * 32}
    small = {"text": "y", "thought_signature": "c2lnMQ=="}
    thought = {"text": "thinking", "thought": True}
    # A streamed turn may be stored as several model Contents: they count as one turn.
    stored = [user[0], model("t1", thought, signed), user[1], model("t2", small),
              model("t2", signed), user[2], model("t3", signed)]
    before = [c.parts for c in stored]
    sent, dummied = signature_window(stored, 1)
    assert dummied == {"t1", "t2"}
    dummy = base64.b64encode(DUMMY_SIGNATURE).decode()
    assert sent[1].parts == (thought, {"text": "x", "thought_signature": dummy})
    assert [p["thought_signature"] for c in sent[3:5] for p in c.parts] == [dummy, dummy]
    assert sent[6] is stored[6] and sent[0] is stored[0]
    assert [c.parts for c in stored] == before, "the stored rows are not changed"
    assert signature_window(stored, 3)[1] == set() and signature_window(stored, None)[1] == set()
    assert signature_window(stored, 0)[1] == {"t1", "t2", "t3"}
    assert sent[1].wire_size({}) < 64 * 2 + 100, "the dummy costs bytes, not a blob"
