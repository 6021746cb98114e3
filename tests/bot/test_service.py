"""The core end to end: real google-genai client over HTTP against the offline stand-in."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from PIL import Image

from bot.errors import (
    AttachmentError,
    ConfigError,
    GenerationError,
    NotFoundError,
    OptionError,
    PromptError,
    ServiceError,
    TooLargeError,
)
from bot.gemini import GeminiSession
from bot.model import Attachment, Author, IncomingMessage, ThreadKey
from bot.options import FLASH, PRO, OptionInput
from tests import corpus

KEY = ThreadKey("test", "w1", "c1", "t1")
ALICE = Author("U1", "alice")


def msg(text: str, *images: tuple[str, bytes], options: OptionInput | None = None):
    return IncomingMessage(
        author=ALICE, text=text,
        attachments=tuple(Attachment.from_bytes(n, d) for n, d in images),
        options=options or OptionInput())


def last_user(request) -> dict:
    return request.body["contents"][-1]


def inline_parts(content: dict) -> list[dict]:
    return [p.get("inlineData") or p.get("inline_data") for p in content["parts"]
            if "inlineData" in p or "inline_data" in p]


async def history_rows(core, key=KEY) -> list:
    return [c.model_dump(mode="json", exclude_none=True) for c in
            await core.service.store.load_history(key)]


async def test_multi_turn_with_references(core, stand_in):
    red, blue = corpus.png(color=(255, 0, 0)), corpus.jpeg()
    reply = await core.service.handle(
        KEY, msg("combine these --ar 16:9 --size 2k", ("a.png", red), ("b.jpg", blue)))
    first = stand_in.generations[-1]
    assert first.model == PRO
    parts = last_user(first)["parts"]
    assert parts[0] == {"text": "combine these"}
    assert [p["mime_type"] if "mime_type" in p else p["mimeType"]
            for p in inline_parts(last_user(first))] == ["image/png", "image/jpeg"]
    config = first.body["generationConfig"]
    assert config["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}
    assert [(i.width, i.height) for i in reply.images] == [(2752, 1536)]
    assert reply.thoughts, "pro answers carry thoughts, kept apart"
    assert all(p.kind in ("text", "image") for p in reply.parts)

    second = await core.service.handle(KEY, msg("now make it night"))
    body = stand_in.generations[-1].body
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["generationConfig"]["imageConfig"]["aspectRatio"] == "16:9", "settings stick"
    assert second.options.summary() == "Nano Banana Pro · 2K · 16:9"
    model_parts = body["contents"][1]["parts"]
    assert any(p.get("thought") for p in model_parts), "thought parts are sent back"
    assert any("thoughtSignature" in p or "thought_signature" in p for p in model_parts)


async def test_interleaved_answer_keeps_model_order(core):
    reply = await core.service.handle(KEY, msg("a recipe for paella, step by step"))
    kinds = [p.kind for p in reply.parts]
    assert kinds.count("image") >= 2 and "text" in kinds
    assert kinds[0] == "text" and kinds[1] == "image" and kinds[2] == "text"
    runs = reply.runs()
    assert [k for k, _ in runs] == kinds  # alternating, one part per run


async def test_flash_has_fixed_size_and_no_thoughts(core, stand_in):
    reply = await core.service.handle(KEY, msg("a lighthouse --model flash --ar 21:9"))
    assert stand_in.generations[-1].model == FLASH
    assert "imageSize" not in stand_in.generations[-1].body["generationConfig"]["imageConfig"]
    assert [(i.width, i.height) for i in reply.images] == [(1536, 672)]
    assert reply.thoughts == ()


async def test_search_grounding_maps_sources(core, stand_in):
    reply = await core.service.handle(KEY, msg("weather chart for Paris --search"))
    assert stand_in.generations[-1].body["tools"] == [{"googleSearch": {}}]
    assert reply.sources and all(s.url.startswith("https://") for s in reply.sources)
    assert len({s.url for s in reply.sources}) == len(reply.sources)
    assert reply.search_queries and reply.search_entry_point
    assert reply.options.search is True


async def test_image_only(core, stand_in):
    reply = await core.service.handle(KEY, msg("a stamp --image-only"))
    assert stand_in.generations[-1].body["generationConfig"]["responseModalities"] == ["IMAGE"]
    assert reply.texts == [] and reply.images


async def test_usage_and_turn_records(core):
    reply = await core.service.handle(KEY, msg("a fox"))
    rows = await core.service.store.usage_rows(KEY)
    assert len(rows) == 1 and rows[0]["author_id"] == "U1"
    assert rows[0]["total_tokens"] == reply.usage.total_tokens > 0
    assert rows[0]["images"] == 1 and rows[0]["model"] == PRO
    record = await core.service.store.get_turn(reply.turn_id)
    assert record.prompt == "a fox" and record.thread == KEY


async def test_reroll_and_delete(core, stand_in):
    first = await core.service.handle(KEY, msg("a cat", ("ref.png", corpus.png())))
    again = await core.service.reroll(first.turn_id, author=ALICE)
    body = stand_in.generations[-1].body
    assert len(body["contents"]) == 3 and len(inline_parts(body["contents"][-1])) == 1
    assert again.turn_id != first.turn_id
    big = await core.service.reroll(first.turn_id, author=ALICE,
                                    changes=OptionInput(model="pro", size="4K"))
    assert [(i.width, i.height) for i in big.images] == [(4800, 3584)], "4:3 like the reference"
    assert (await core.service.store.settings(KEY)).size is None, "a 4K re-run does not stick"
    assert await core.service.delete(again.turn_id)
    assert len(await core.service.store.list_turns(KEY)) == 2
    assert len(await core.service.store.load_history(KEY)) == 4
    with pytest.raises(NotFoundError):
        await core.service.reroll(again.turn_id, author=ALICE)


@pytest.mark.parametrize(("reason", "kind", "words"), [
    ("SAFETY", "safety", "safety"),
    ("IMAGE_SAFETY", "safety", "image-safety"),
    ("PROHIBITED_CONTENT", "safety", "prohibited"),
    ("IMAGE_PROHIBITED_CONTENT", "safety", "prohibited"),
    ("RECITATION", "recitation", "recitation"),
    ("IMAGE_RECITATION", "recitation", "recitation"),
    ("NO_IMAGE", "no_image", "without producing an image"),
    ("IMAGE_OTHER", "no_image", "IMAGE_OTHER"),
])
async def test_finish_reasons_leave_history_untouched(core, stand_in, reason, kind, words):
    await core.service.handle(KEY, msg("a first good turn"))
    before = await history_rows(core)
    stand_in.faults.queue_finish(reason)
    with pytest.raises(GenerationError) as err:
        await core.service.handle(KEY, msg("a second turn --ar 9:16"))
    assert err.value.kind == kind and words in err.value.user_message
    assert await history_rows(core) == before
    assert (await core.service.store.settings(KEY)).aspect_ratio is None, "failed turn sets nothing"
    after = await core.service.handle(KEY, msg("third"))
    sent = stand_in.generations[-1].body["contents"]
    assert len(sent) == 3, "the failed turn is never resent"
    assert after.images


async def test_prompt_block(core, stand_in):
    stand_in.faults.queue_block("PROHIBITED_CONTENT")
    with pytest.raises(GenerationError) as err:
        await core.service.handle(KEY, msg("something"))
    assert err.value.kind == "blocked" and "prohibited" in err.value.user_message
    assert await core.service.store.load_history(KEY) == []


async def test_text_only_answer_is_a_valid_turn_with_notice(core, stand_in):
    stand_in.faults.queue_text_only("Which style would you like?")
    reply = await core.service.handle(KEY, msg("draw it"))
    assert reply.images == [] and reply.texts == ["Which style would you like?"]
    assert any("text only" in n for n in reply.notices)
    assert len(await core.service.store.load_history(KEY)) == 2


async def test_rate_limit_after_retries(core, stand_in):
    stand_in.faults.queue_status(429, 429, 429, retry_delay="17s")
    with pytest.raises(ServiceError) as err:
        await core.service.handle(KEY, msg("a fox"))
    assert err.value.kind == "rate_limit" and "17s" in err.value.user_message
    assert len(stand_in.generations) == 3, "the SDK retried up to the configured attempts"
    assert await core.service.store.load_history(KEY) == []


async def test_retry_then_success(core, stand_in):
    stand_in.faults.queue_status(503, 429)
    reply = await core.service.handle(KEY, msg("a fox"))
    assert reply.images and len(stand_in.generations) == 3


async def test_outage_after_retries(core, stand_in):
    stand_in.faults.queue_status(500, 503, 500)
    with pytest.raises(ServiceError) as err:
        await core.service.handle(KEY, msg("a fox"))
    assert err.value.kind == "outage" and "3 attempts" in err.value.user_message


async def test_400_is_never_retried(core, stand_in):
    stand_in.faults.queue_status(400)
    with pytest.raises(ServiceError) as err:
        await core.service.handle(KEY, msg("a fox"))
    assert err.value.kind == "bad_request"
    assert len(stand_in.generations) == 1


async def test_timeout(core_factory, stand_in):
    stand_in.faults.latency = 3.0
    async with core_factory(gemini_timeout=0.3, gemini_retry_attempts=1) as core:
        with pytest.raises(ServiceError) as err:
            await core.service.handle(KEY, msg("a fox --model flash"))
    assert err.value.kind == "timeout"
    # Worded from what was asked: no size advice for a fixed-size Flash turn.
    assert err.value.user_message.startswith("Gemini did not answer within")
    assert "4K" not in err.value.user_message and "2K" not in err.value.user_message


def test_timeout_wording_follows_the_request_and_the_endpoint():
    from google.genai import types

    from bot.gemini import timeout_message

    big = types.GenerateContentConfig(image_config=types.ImageConfig(image_size="4K"))
    assert "Images at 4K take longer" in timeout_message("Gemini", big, 120)
    plain = types.GenerateContentConfig()
    offline = timeout_message("The offline stand-in", plain, 30)
    assert offline.startswith("The offline stand-in did not answer within 30 seconds")
    assert "4K" not in offline


async def test_connection_failure(make_settings):
    from bot.runtime import open_core

    async with open_core(make_settings("http://127.0.0.1:9", gemini_retry_attempts=1),
                         offline=False) as core:
        with pytest.raises(ServiceError) as err:
            await core.service.handle(KEY, msg("a fox"))
    assert err.value.kind == "connection" and "connect" in err.value.user_message


async def test_disconnect_mid_request(core, stand_in):
    stand_in.faults.queue_disconnect()
    stand_in.faults.queue_disconnect()
    stand_in.faults.queue_disconnect()
    with pytest.raises(ServiceError) as err:
        await core.service.handle(KEY, msg("a fox"))
    assert err.value.kind == "connection"


async def test_corrupted_signature_gets_clear_error_and_history_kept(core, stand_in):
    await core.service.handle(KEY, msg("a fox"))
    row = await core.service.store.db.execute_fetchall(
        "SELECT id, content FROM contents WHERE role='model'")
    content = json.loads(row[0][1])
    for part in content["parts"]:
        part.pop("thought_signature", None)
    await core.service.store.db.execute("UPDATE contents SET content=? WHERE id=?",
                                (json.dumps(content), row[0][0]))
    before = await history_rows(core)
    with pytest.raises(ServiceError) as err:
        await core.service.handle(KEY, msg("again"))
    assert "thought_signature" in err.value.user_message
    assert await history_rows(core) == before


@pytest.mark.parametrize(("name", "data", "words"), [
    ("zero.png", b"", "empty"),
    ("cut.png", corpus.truncated_png(), "truncated"),
    ("notes.png", corpus.TEXT, "text file"),
    ("doc.pdf", corpus.PDF, "PDF"),
    ("logo.svg", corpus.SVG, "SVG"),
    ("bomb.png", corpus.png_bomb(), "megapixels"),
])
async def test_bad_files_refused_before_any_call(core, stand_in, name, data, words):
    with pytest.raises(AttachmentError) as err:
        await core.service.handle(KEY, msg("use this", (name, data)))
    assert name in err.value.user_message and words in err.value.user_message
    assert stand_in.generations == []
    assert not await core.service.store.thread_exists(KEY)


async def test_animated_gif_is_used_with_a_notice(core, stand_in):
    reply = await core.service.handle(KEY, msg("animate", ("anim.gif", corpus.animated_gif())))
    sent = inline_parts(last_user(stand_in.generations[-1]))
    assert sent[0].get("mime_type", sent[0].get("mimeType")) == "image/png"
    assert any("anim.gif" in n and "first of 3 frames" in n for n in reply.notices)


async def test_too_many_images(core, stand_in):
    pics = [(f"p{i}.png", corpus.png()) for i in range(15)]
    with pytest.raises(AttachmentError) as err:
        await core.service.handle(KEY, msg("collage", *pics))
    assert "15 images" in err.value.user_message and "14" in err.value.user_message
    with pytest.raises(AttachmentError, match="at most 3"):
        await core.service.handle(KEY, msg("collage --model flash", *pics[:4]))
    assert stand_in.generations == []


@pytest.mark.parametrize(("text", "error", "words"), [
    ("   ", PromptError, "empty"),
    ("--ar 16:9", PromptError, "empty"),
    ("cat --ar 7:3", OptionError, "16:9"),
    ("cat --model ultra", OptionError, "flash"),
    ("cat --size 3K", OptionError, "1K, 2K, 4K"),
    ("cat --model flash --size 2K", OptionError, "fixed size"),
])
async def test_bad_text_input(core, stand_in, text, error, words):
    with pytest.raises(error) as err:
        await core.service.handle(KEY, msg(text))
    assert words in err.value.user_message
    assert stand_in.generations == []


async def test_lowercase_size_is_sent_uppercase(core, stand_in):
    reply = await core.service.handle(KEY, msg("cat --size 2k"))
    assert stand_in.generations[-1].body["generationConfig"]["imageConfig"]["imageSize"] == "2K"
    assert reply.images[0].width == 2048


async def test_oversized_reference_refused(core_factory, stand_in):
    async with core_factory(max_attachment_bytes=1000) as core:
        with pytest.raises(AttachmentError, match="at most"):
            await core.service.handle(KEY, msg("x", ("big.png", corpus.noise_png())))


async def test_a_failed_download_names_the_file_and_changes_nothing(core, stand_in):
    async def reset() -> bytes:
        raise ConnectionResetError("peer reset")

    broken = Attachment(name="sunset.png", mime_type="image/png", fetch=reset)
    message = IncomingMessage(author=Author("U1"), text="warmer", attachments=(broken,))
    with pytest.raises(AttachmentError, match="Could not fetch `sunset.png`"):
        await core.service.handle(KEY, message)
    assert not stand_in.requests
    assert not await core.service.is_session(KEY)


async def test_history_over_request_limit_leaves_out_oldest_turns(core_factory, stand_in):
    async with core_factory(use_files_api=False) as core:
        await _leaves_out_oldest_turns(core, stand_in)


async def _leaves_out_oldest_turns(core, stand_in):
    from dataclasses import replace

    from bot.gemini import request_size

    await core.service.handle(KEY, msg("a fox"))
    one_turn = request_size(await core.service.store.load_history(KEY))
    core.service.settings = replace(core.service.settings, max_request_bytes=int(one_turn * 1.5))
    fits = await core.service.handle(KEY, msg("still fits"))
    assert not any("left out" in n for n in fits.notices)
    stored_before = await history_rows(core)
    reply = await core.service.handle(KEY, msg("one too many"))
    sent = stand_in.generations[-1].body["contents"]
    assert [c["role"] for c in sent] == ["user", "model", "user"], "whole turns only"
    assert sent[0]["parts"][0]["text"] == "still fits", "the oldest turn went, the newest stayed"
    notice = next(n for n in reply.notices if "left out" in n)
    assert "1 earliest turn was left out" in notice and "turn 1 of 2" in notice
    assert reply.view is not None and notice in reply.view.reply.notices
    after = await history_rows(core)
    assert after[:4] == stored_before, "the stored history keeps every turn"
    assert len(after) == 6


async def test_attachments_alone_over_request_limit_are_refused(core_factory, stand_in):
    image = corpus.noise_png()
    async with core_factory(max_request_bytes=len(image)) as core:
        await core.service.handle(KEY, msg("a fox"))
        sent, before = len(stand_in.generations), await history_rows(core)
        with pytest.raises(TooLargeError) as err:
            await core.service.handle(KEY, msg("use this", ("big.png", image)))
        assert "attached images add up to" in err.value.user_message
        assert len(stand_in.generations) == sent, "no request is sent"
        assert await history_rows(core) == before


async def test_downscaled_reference_reaches_model_small(core_factory, stand_in):
    async with core_factory(max_reference_edge=128) as core:
        await core.service.handle(KEY, msg("x", ("big.png", corpus.png(512, 256))))
    sent = inline_parts(last_user(stand_in.generations[-1]))[0]
    import base64

    data = base64.urlsafe_b64decode(sent["data"])
    assert Image.open(io.BytesIO(data)).size == (128, 64)


async def test_threads_run_in_parallel(core, stand_in, monkeypatch):
    # No call is let through to Gemini until all eight are in flight at once: threads that
    # ran one after another would never get there. Overlap, not wall-clock time.
    keys = [ThreadKey("test", "w", "c", f"t{i}") for i in range(8)]
    all_in_flight = asyncio.Barrier(len(keys))
    calls = GeminiSession.stream  # Pro thinks, so its answers stream

    async def stream(self, *args, **kwargs):
        try:
            await asyncio.wait_for(all_in_flight.wait(), timeout=30)
        except TimeoutError:
            pytest.fail(f"only {all_in_flight.n_waiting} of {len(keys)} threads were in "
                        "flight at once")
        async for chunk in calls(self, *args, **kwargs):
            yield chunk

    monkeypatch.setattr(GeminiSession, "stream", stream)
    replies = await asyncio.gather(*(core.service.handle(k, msg("fox")) for k in keys))
    assert all(r.images for r in replies)
    assert len(stand_in.generations) == len(keys)


async def test_one_thread_runs_turns_in_arrival_order(core, stand_in):
    stand_in.faults.latency = 0.2
    started = []

    async def turn(n: int):
        async def on_start(start):
            started.append(n)

        return await core.service.handle(KEY, msg(f"turn {n}"), on_start=on_start)

    tasks = []
    for n in range(3):
        tasks.append(asyncio.create_task(turn(n)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert started == [0, 1, 2]
    prompts = [last_user(r)["parts"][0]["text"] for r in stand_in.generations]
    assert prompts == ["turn 0", "turn 1", "turn 2"]
    assert [len(r.body["contents"]) for r in stand_in.generations] == [1, 3, 5]
    assert core.service.queue_depth() == 0


async def test_event_dedupe_and_schema(core):
    assert await core.service.store.mark_event("Ev1") is True
    assert await core.service.store.mark_event("Ev1") is False
    from bot.store import SCHEMA_VERSION

    assert await core.service.store.schema_version() == SCHEMA_VERSION
    mode = await core.service.store.db.execute_fetchall("PRAGMA journal_mode")
    assert mode[0][0] == "wal"


async def test_newer_schema_is_refused(tmp_path):
    import aiosqlite

    from bot.store import HistoryStore

    path = tmp_path / "future.sqlite3"
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA user_version = 999")
    with pytest.raises(ConfigError, match="newer"):
        await HistoryStore.open(path)
