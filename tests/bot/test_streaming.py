"""Streaming a thinking model's answer: progress on the way, one exact model turn stored.

The real google-genai client streams from the offline stand-in over SSE; the stand-in
checks every thought signature of every later request (strict).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from google.genai import types

from bot.errors import CancelledTurn, GenerationError, ServiceError
from bot.metrics import Metrics
from bot.model import Author, IncomingMessage, ThreadKey
from bot.options import FLASH, PRO
from bot.progress import Progress
from bot.runtime import open_core
from bot.streaming import ChunkAccumulator
from offline_gemini import thought_signature_for

STREAMED = ThreadKey("test", "w", "c", "streamed")
SINGLE = ThreadKey("test", "w", "c", "single")
ALICE = Author("U1", "alice")


def msg(text: str) -> IncomingMessage:
    return IncomingMessage(author=ALICE, text=text)


def methods(stand_in) -> list[str]:
    """The generate calls made (a stored turn's images are then uploaded in the background)."""
    return [r.method for r in stand_in.generations]


async def model_turns(core, key: ThreadKey) -> list[dict]:
    history = await core.service.store.load_history(key)
    return [c.model_dump(mode="json", exclude_none=True) for c in history if c.role == "model"]


def without_thinking(core_settings) -> dict:
    """A capability table in which Pro does not think, so it answers in one call."""
    models = dict(core_settings.models)
    models[PRO] = dataclasses.replace(models[PRO], thinking=False)
    return models


async def test_progress_arrives_in_order_while_pro_thinks(core, stand_in):
    seen: list[Progress] = []

    async def on_progress(event: Progress) -> None:
        seen.append(event)

    reply = await core.service.handle(STREAMED, msg("a castle at dawn --search"),
                                      on_progress=on_progress)
    assert methods(stand_in) == ["streamGenerateContent"]
    assert stand_in.requests[0].query.get("alt") == "sse"
    kinds = [e.kind for e in seen]
    assert kinds == ["thought_text", "thought_image", "thought_image", "text", "image",
                     "grounding", "usage"]
    assert [e.stage for e in seen] == ["thinking", "drawing", "drawing", "finishing",
                                       "finishing", "finishing", "finishing"]
    assert [e.drafts for e in seen] == [0, 1, 2, 2, 2, 2, 2]
    drafts = [e.image for e in seen if e.kind == "thought_image"]
    assert [d.sha256 for d in drafts] == [p.image.sha256 for p in reply.thoughts if p.image]
    assert all(d.width and d.height for d in drafts)
    assert seen[-2].kind == "grounding" and seen[-2].sources == reply.sources
    assert seen[-1].usage == reply.usage
    assert all(b.elapsed >= a.elapsed for a, b in zip(seen, seen[1:], strict=False))


async def test_flash_does_not_think_so_it_answers_in_one_call(core, stand_in):
    seen: list[Progress] = []

    async def on_progress(event: Progress) -> None:
        seen.append(event)

    await core.service.handle(STREAMED, msg("a castle --model flash"), on_progress=on_progress)
    assert methods(stand_in) == ["generateContent"] and stand_in.requests[0].model == FLASH
    assert seen == []


async def test_a_streamed_turn_is_stored_like_the_same_answer_in_one_call(
        core_factory, stand_in):
    async with core_factory() as core:
        streamed = await core.service.handle(STREAMED, msg("a lighthouse in a storm"))
        single_models = without_thinking(core.settings)
    async with core_factory(models=single_models) as core:
        single = await core.service.handle(SINGLE, msg("a lighthouse in a storm"))
        assert methods(stand_in) == ["streamGenerateContent", "generateContent"]
        [streamed_turn] = await model_turns(core, STREAMED)
        [single_turn] = await model_turns(core, SINGLE)
    assert streamed_turn == single_turn, "one Content, same parts, same bytes, same order"
    assert len(streamed_turn["parts"]) == 5
    assert [p.image.sha256 for p in streamed.parts if p.image] == [
        p.image.sha256 for p in single.parts if p.image]


async def test_a_signature_on_a_trailing_empty_part_is_kept_and_sent_back(
        core_factory, stand_in):
    stand_in.trailing_signature = True
    async with core_factory() as core:
        first = await core.service.handle(STREAMED, msg("a fox in the snow"))
        [stored] = await model_turns(core, STREAMED)
        image, carrier = stored["parts"][-2], stored["parts"][-1]
        assert "thought_signature" not in image and carrier["text"] == ""
        data = base64.urlsafe_b64decode(image["inline_data"]["data"])
        signature = base64.urlsafe_b64decode(carrier["thought_signature"])
        assert signature == thought_signature_for(data), "byte for byte"
        assert first.images[0].data == data
        assert [p.kind for p in first.parts] == ["text", "image"], "the carrier shows nothing"

        # The strict stand-in checks the sent-back turn: it passes.
        second = await core.service.handle(STREAMED, msg("now at night"))
        assert second.images
        sent = stand_in.generations[-1].body["contents"]
        assert [c["role"] for c in sent] == ["user", "model", "user"], "one model Content"
        assert sent[1]["parts"][-1]["text"] == "" and "thoughtSignature" in sent[1]["parts"][-1]
    # The same answer in one call has the signature on the image itself; otherwise equal.
    async with core_factory(models=without_thinking(core.settings)) as core:
        await core.service.handle(SINGLE, msg("a fox in the snow"))
        [single] = await model_turns(core, SINGLE)
    assert single["parts"][-1]["thought_signature"] == carrier["thought_signature"]
    assert stored["parts"][:-2] == single["parts"][:-1]
    assert {**image, "thought_signature": carrier["thought_signature"]} == single["parts"][-1]


async def test_cancel_mid_stream_keeps_history_and_closes_the_request(core, stand_in):
    await core.service.handle(STREAMED, msg("a windmill"))
    before = await model_turns(core, STREAMED)
    stand_in.stream_gap = 0.5
    first_draft = asyncio.Event()

    async def on_progress(event: Progress) -> None:
        if event.kind == "thought_image":
            first_draft.set()

    turn = asyncio.create_task(core.service.handle(STREAMED, msg("make it red"),
                                                   on_progress=on_progress))
    await asyncio.wait_for(first_draft.wait(), 10)
    turn.cancel()
    with pytest.raises(CancelledTurn):
        await turn
    # The SDK's read of the stream (on the worker loop) ends now, not with the stream.
    worker = core.service.gemini._worker.loop
    for _ in range(50):
        if not asyncio.all_tasks(worker):
            break
        await asyncio.sleep(0.01)
    assert not asyncio.all_tasks(worker)
    assert await model_turns(core, STREAMED) == before
    assert len(await core.service.history(STREAMED)) == 1
    assert core.service.queue_depth() == 0
    stand_in.stream_gap = 0
    after = await core.service.handle(STREAMED, msg("make it blue"))
    assert after.images and len(await core.service.history(STREAMED)) == 2


async def test_a_cancel_after_the_answer_arrived_is_too_late(core, stand_in, monkeypatch):
    """Once the answer is in, the turn is stored and returned, never half-done."""
    committing = asyncio.Event()
    commit = core.service.store.commit_turn

    async def slow_commit(turn):
        committing.set()
        await asyncio.sleep(0.2)
        await commit(turn)

    monkeypatch.setattr(core.service.store, "commit_turn", slow_commit)
    turn = asyncio.create_task(core.service.handle(STREAMED, msg("a kite")))
    await asyncio.wait_for(committing.wait(), 10)
    turn.cancel()
    reply = await turn
    assert reply.view is not None
    assert [t.id for t in await core.service.history(STREAMED)] == [reply.turn_id]


async def test_a_safety_stop_after_drafts_keeps_history(core, stand_in):
    await core.service.handle(STREAMED, msg("a first good turn"))
    before = await model_turns(core, STREAMED)
    stand_in.faults.queue_finish("IMAGE_SAFETY")
    with pytest.raises(GenerationError, match="image-safety"):
        await core.service.handle(STREAMED, msg("something else"))
    assert await model_turns(core, STREAMED) == before


async def test_metrics_time_first_progress_and_result_per_model(core):
    metrics = Metrics(core.service)
    await core.service.handle(STREAMED, msg("a harbour"))
    text = metrics.render().decode()
    assert f'imagebot_first_progress_seconds_count{{model="{PRO}"}} 1.0' in text
    assert f'imagebot_result_seconds_count{{model="{PRO}"}} 1.0' in text


def chunk(*parts: types.Part, finish: str | None = None,
          usage: int | None = None) -> types.GenerateContentResponse:
    content = types.Content(role="model", parts=list(parts)) if parts else None
    candidate = types.Candidate(content=content, finish_reason=finish, index=0)
    meta = types.GenerateContentResponseUsageMetadata(total_token_count=usage) if usage else None
    return types.GenerateContentResponse(candidates=[candidate], usage_metadata=meta)


def test_chunks_without_content_do_not_drop_the_turn():
    """python-genai issue 1791: a chat drops the turn when a chunk has no content."""
    signature = b"\x00\xffsig" * 100
    accumulator = ChunkAccumulator()
    accumulator.add(chunk(types.Part(text="plan", thought=True)))
    accumulator.add(chunk())  # no content at all
    accumulator.add(types.GenerateContentResponse())  # no candidates either
    accumulator.add(chunk(types.Part(inline_data=types.Blob(data=b"img", mime_type="image/png"))))
    accumulator.add(chunk(types.Part(text="", thought_signature=signature), finish="STOP",
                          usage=42))
    response = accumulator.response()
    [candidate] = response.candidates
    assert [(p.text, p.thought) for p in candidate.content.parts] == [
        ("plan", True), (None, None), ("", None)]
    assert candidate.content.parts[-1].thought_signature == signature
    assert candidate.finish_reason == "STOP" and response.usage_metadata.total_token_count == 42


async def test_a_failure_in_mid_stream_comes_after_what_arrived_and_keeps_nothing(
        make_settings):
    """The stream breaks after the thought (an error event, as the live API sends one)."""
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        thought = {"candidates": [{"index": 0, "content": {"role": "model", "parts": [
            {"text": "**Planning**", "thought": True}]}}], "modelVersion": PRO}
        failure = {"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}
        for event in (thought, failure):
            await response.write(f"data: {json.dumps(event)}\r\n\r\n".encode())
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1beta/models/{model}", stream)
    async with TestServer(app) as server:
        settings = make_settings(str(server.make_url("")).rstrip("/"), gemini_retry_attempts=1)
        async with open_core(settings) as core:
            seen: list[Progress] = []

            async def on_progress(event: Progress) -> None:
                seen.append(event)

            with pytest.raises(ServiceError) as failed:
                await core.service.handle(STREAMED, msg("a fox"), on_progress=on_progress)
            assert failed.value.kind == "outage"
            assert [(e.kind, e.text) for e in seen] == [("thought_text", "**Planning**")]
            assert not await core.service.store.thread_exists(STREAMED)
