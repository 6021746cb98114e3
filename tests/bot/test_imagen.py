"""Imagen 4 turns through the core, against the stand-in's ``:predict``: one-shot in the
thread, then a Gemini turn that edits the Imagen result as a reference."""

from __future__ import annotations

import pytest
from aiohttp import web

from bot.errors import AttachmentError, ErrorKind, GenerationError, OptionError, ServiceError
from bot.imagen import parse_predictions, predict_body
from bot.model import Attachment, Author, IncomingMessage, ThreadKey
from bot.options import FLASH, IMAGEN, IMAGEN_ULTRA, PRO, OptionInput
from offline_gemini import OfflineGemini
from tests import corpus

KEY = ThreadKey("test", "w1", "c1", "imagen")
ALICE = Author("U1", "alice")


def msg(text: str, *files: tuple[str, bytes], **options: object) -> IncomingMessage:
    return IncomingMessage(author=ALICE, text=text,
                           attachments=tuple(Attachment.from_bytes(n, d) for n, d in files),
                           options=OptionInput(**options))  # type: ignore[arg-type]


def inline_parts(content: dict) -> list[dict]:
    return [p for p in content["parts"] if "inlineData" in p or "inline_data" in p]


def predictions(stand_in: OfflineGemini) -> list:
    return [r for r in stand_in.requests if r.method == "predict"]


async def test_imagen_turn_then_a_gemini_edit(core, stand_in: OfflineGemini) -> None:
    first = await core.service.handle(KEY, msg("a lighthouse at dusk --model imagen-4 --ar 16:9 "
                                               "--size 2k"))
    sent = predictions(stand_in)[-1]
    assert sent.path == f"/v1beta/models/{IMAGEN}:predict"
    assert sent.headers["x-goog-api-key"] == "test-gemini-key"
    assert sent.body == {"instances": [{"prompt": "a lighthouse at dusk"}],
                         "parameters": {"sampleCount": 1, "includeRaiReason": True,
                                        "aspectRatio": "16:9", "sampleImageSize": "2K"}}
    assert [(i.width, i.height) for i in first.images] == [(2816, 1536)]
    assert first.options.summary() == "Imagen 4 · 2K · 16:9"
    assert any("does not see this conversation" in n for n in first.notices)
    assert await core.service.store.load_history(KEY) == [], "Imagen stays out of the history"
    assert first.view.reply.images[0].sha256 == first.images[0].sha256
    assert await core.service.image(first.images[0].sha256) == first.images[0].data

    second = await core.service.handle(KEY, msg("add a red boat --model pro"))
    body = stand_in.generations[-1].body
    assert stand_in.generations[-1].model == PRO
    assert [c["role"] for c in body["contents"]] == ["user"], "no Imagen turn in the history"
    parts = body["contents"][0]["parts"]
    assert parts[0]["text"] == "add a red boat"
    assert len([p for p in parts if "inlineData" in p or "inline_data" in p]) == 1
    assert any("Imagen 4 image from the previous turn" in n for n in second.notices)
    assert second.view.refs[0].sha256 == first.images[0].sha256
    assert second.images, "the edit made an image"

    third = await core.service.handle(KEY, msg("make it night"))
    assert [c["role"] for c in stand_in.generations[-1].body["contents"]] == [
        "user", "model", "user"], "the chat goes on from the edit"
    assert not any("Imagen" in n for n in third.notices)

    again = await core.service.handle(KEY, msg("a second lighthouse --model imagen-4"))
    assert not any("does not see" in n for n in again.notices), "said once per thread"


async def test_imagen_counts_and_sizes(core, stand_in: OfflineGemini) -> None:
    four = await core.service.handle(KEY, msg("four cats --count 4", model="imagen-4"))
    assert predictions(stand_in)[-1].body["parameters"]["sampleCount"] == 4
    assert [len(c.images) for c in four.candidates] == [1, 1, 1, 1] and four.chosen == 1
    assert four.images == four.candidates[0].images
    assert any("U1 is the one a Gemini turn here would edit" in n for n in four.notices)
    usage = await core.service.usage(KEY)
    assert [(u["images"], u["model"]) for u in usage] == [(1, IMAGEN)] * 4, "4 generations"
    chosen = await core.service.use_candidate(four.turn_id, 3)
    assert chosen.reply.chosen == 3
    assert chosen.reply.images[0].sha256 == four.candidates[2].images[0].sha256
    await core.service.handle(KEY, msg("make it blue", model="flash"))
    carried = inline_parts(stand_in.generations[-1].body["contents"][-1])
    assert len(carried) == 1, "the Gemini edit carries the chosen Imagen candidate"
    assert (await core.service.history(KEY))[-1].refs[0].sha256 == four.candidates[2].images[0].sha256
    fast = await core.service.handle(KEY, msg("a dog", model="imagen-4-fast"))
    assert "sampleImageSize" not in predictions(stand_in)[-1].body["parameters"]
    assert [(i.width, i.height) for i in fast.images] == [(1024, 1024)]


@pytest.mark.parametrize(("text", "files", "options", "error", "words"), [
    ("x --count 2", (), {"model": "imagen-4-ultra"}, OptionError, "one image per request"),
    ("x --count 5", (), {"model": "imagen-4"}, OptionError, "1 to 4"),
    ("x --ar 21:9", (), {"model": "imagen-4"}, OptionError, "1:1, 3:4, 4:3, 9:16, 16:9"),
    ("x --size 4k", (), {"model": "imagen-4"}, OptionError, "sizes 1K, 2K, not 4K"),
    ("x --search", (), {"model": "imagen-4"}, OptionError, "cannot ground on Google Search"),
    ("x --with-text", (), {"model": "imagen-4"}, OptionError, "images only"),
    ("edit this", (("a.png", corpus.png()),), {"model": "imagen-4"}, AttachmentError,
     "takes no reference images"),
])
async def test_what_imagen_refuses_before_any_call(core, stand_in, text, files, options, error,
                                                   words) -> None:
    with pytest.raises(error) as caught:
        await core.service.handle(KEY, msg(text, *files, **options))
    assert words in caught.value.user_message
    assert predictions(stand_in) == []


async def test_sticky_settings_another_model_cannot_use_are_dropped(core, stand_in) -> None:
    await core.service.handle(KEY, msg("wide --ar 21:9 --size 4k", model="pro"))
    reply = await core.service.handle(KEY, msg("now with imagen --model imagen-4"))
    assert "aspectRatio" not in predictions(stand_in)[-1].body["parameters"]
    assert reply.options.summary() == "Imagen 4 · 1K · 1:1"


async def test_a_model_the_key_cannot_use_is_said_plainly(core, stand_in) -> None:
    with pytest.raises(ServiceError) as caught:
        await core.service.handle(KEY, msg("x --model imagen-3.0-generate-002"))
    assert caught.value.kind == ErrorKind.MODEL
    assert "is not available to this Gemini API key" in caught.value.user_message


async def test_billing_refusal_and_safety_filter(make_settings) -> None:
    """A live-shaped server: the billing refusal, then every sample filtered."""
    from bot.runtime import open_core

    answers = [
        web.json_response({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                           "Imagen API is only accessible to billed users at this time."}},
                          status=400),
        web.json_response({"predictions": [{"raiFilteredReason": "Filtered: people."}]}),
    ]

    async def handler(request: web.Request) -> web.Response:
        return answers.pop(0)

    app = web.Application()
    app.router.add_post("/v1beta/models/{model}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with open_core(make_settings(url, gemini_retry_attempts=1)) as core:
            with pytest.raises(ServiceError, match="billed users"):
                await core.service.handle(KEY, msg("x", model="imagen-4"))
            with pytest.raises(GenerationError, match="safety filter .Filtered: people"):
                await core.service.handle(KEY, msg("x", model="imagen-4"))
    finally:
        await runner.cleanup()


def test_wire_shapes() -> None:
    from bot.config import DEFAULT_MODELS
    from bot.options import resolve

    options = resolve(OptionInput(model="imagen-4-ultra", aspect_ratio="9:16"), OptionInput(),
                      OptionInput(model="pro"), DEFAULT_MODELS)
    assert options.model == IMAGEN_ULTRA and options.caps.one_shot
    assert predict_body("p", options)["parameters"] == {
        "sampleCount": 1, "includeRaiReason": True, "aspectRatio": "9:16"}
    images, withheld = parse_predictions({"predictions": [
        {"bytesBase64Encoded": "iVBORw0KGgo=", "mimeType": "image/png"},
        {"raiFilteredReason": "no"}]})
    assert [i.data[:4] for i in images] == [b"\x89PNG"] and withheld == ["no"]
    flash = resolve(OptionInput(model="flash"), OptionInput(), OptionInput(), DEFAULT_MODELS)
    assert flash.model == FLASH and not flash.caps.one_shot
