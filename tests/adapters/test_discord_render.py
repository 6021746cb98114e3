"""Replies -> Discord messages: pure functions, checked against Discord's own limits."""

from __future__ import annotations

import io
from typing import Any

import discord
from PIL import Image

from adapters.discord import render
from adapters.discord.reporter import edit_kwargs, send_kwargs
from bot.config import DEFAULT_MODELS
from bot.images import image_info, sha256
from bot.model import Reply, ReplyImage, ReplyPart, Source, ThreadKey, Usage
from bot.options import FLASH, PRO, Options
from bot.presentation import footer
from tests import corpus
from tests.emulators.discord import FormErrors, validate_message

KEY = ThreadKey("discord", "1", "2", "3")
TURN = "0123456789abcdef0123456789abcdef"
LIMIT = 10 * 2**20


def image(data: bytes | None = None) -> ReplyPart:
    data = data or corpus.png()
    mime, width, height = image_info(data)
    return ReplyPart(kind="image", image=ReplyImage(data, mime, width, height, sha256(data)))


def text(value: str) -> ReplyPart:
    return ReplyPart(kind="text", text=value)


def reply(*parts: ReplyPart, **fields: Any) -> Reply:
    options = fields.pop("options", Options(model=PRO, size="2K", aspect_ratio="16:9",
                                            caps=DEFAULT_MODELS[PRO]))
    return Reply(turn_id=TURN, thread=KEY, parts=parts, options=options, model=options.model,
                 elapsed=12.34, usage=Usage(total_tokens=2345), **fields)


def assert_valid(payload: render.MessagePayload) -> None:
    """What Discord would refuse: the emulator validates exactly as Discord does."""
    errors = FormErrors()
    body: dict[str, Any] = {"content": payload.content}
    if payload.embed:
        body["embeds"] = [payload.embed]
    validate_message(body, errors)
    errors.raise_if_any()
    assert len(payload.uploads) <= render.FILES_PER_MESSAGE
    assert payload.content or payload.uploads or payload.embed


def test_text_and_image_make_one_message_with_embed_and_buttons() -> None:
    messages = render.reply_payloads(reply(text("Here you go."), image()), upload_limit=LIMIT,
                                     alt="a cat")
    assert len(messages) == 1
    only = messages[0]
    assert only.content == "Here you go."
    assert [u.filename for u in only.uploads] == [f"imagebot-{TURN[:8]}-1.png"]
    assert only.uploads[0].description == "a cat"
    assert only.embed is not None
    assert only.embed["footer"]["text"] == footer(reply()) == (
        "Nano Banana Pro · 2K · 16:9 · 12.3s · 2,345 tokens")
    assert [b.custom_id for b in only.buttons] == [
        f"imagebot:reroll:{TURN}", f"imagebot:4k:{TURN}", f"imagebot:delete:{TURN}"]
    assert_valid(only)


def test_interleaved_parts_keep_the_models_order() -> None:
    first, second = corpus.png(color=(255, 0, 0)), corpus.png(color=(0, 0, 255))
    messages = render.reply_payloads(
        reply(text("Step 1"), image(first), text("Step 2"), image(second)), upload_limit=LIMIT)
    assert [(m.content, [u.data for u in m.uploads]) for m in messages] == [
        ("Step 1", [first]), ("Step 2", [second])]
    assert messages[0].embed is None and not messages[0].buttons
    assert messages[1].embed is not None and messages[1].buttons
    assert [u.filename[-6:] for m in messages for u in m.uploads] == ["-1.png", "-2.png"]


def test_long_text_is_split_under_2000_characters() -> None:
    long = " ".join(f"word{i}" for i in range(900))
    messages = render.reply_payloads(reply(text(long), image(), text("the end")),
                                     upload_limit=LIMIT)
    assert all(len(m.content) <= 2000 for m in messages)
    assert " ".join(m.content for m in messages[:-1]).split() == long.split()
    assert messages[-2].uploads and not messages[0].uploads, "images follow their text"
    assert messages[-1].content == "the end" and messages[-1].embed is not None
    for message in messages:
        assert_valid(message)


def test_many_images_go_ten_per_message() -> None:
    messages = render.reply_payloads(reply(*[image() for _ in range(12)]), upload_limit=LIMIT)
    assert [len(m.uploads) for m in messages] == [10, 2]


def test_notices_open_the_reply() -> None:
    notices = ("Offline preview: made by imagebot's offline stand-in, not by Gemini.",
               "`a.gif`: converted GIF to PNG")
    messages = render.reply_payloads(reply(text("Done."), image(), notices=notices,
                                           offline=True), upload_limit=LIMIT)
    assert messages[0].content.startswith("⚠️ Offline preview")
    assert "ℹ️ `a.gif`: converted GIF to PNG\n\nDone." in messages[0].content
    assert messages[0].embed is not None
    assert messages[0].embed["footer"]["text"].startswith("OFFLINE PREVIEW")
    assert messages[0].embed["color"] == render.OFFLINE_COLOR


def test_notices_too_long_to_share_go_first_alone() -> None:
    messages = render.reply_payloads(reply(text("x" * 1990), notices=("n" * 100,)),
                                     upload_limit=LIMIT)
    assert [len(m.content) for m in messages] == [103, 1990]


def test_images_over_the_upload_limit_become_jpeg_and_the_reply_says_so() -> None:
    big = corpus.noise_png(200, 200)
    limit = len(big) // 2
    messages = render.reply_payloads(reply(text("Here."), image(big)), upload_limit=limit)
    upload = messages[0].uploads[0]
    assert upload.mime_type == "image/jpeg" and upload.filename.endswith("-1.jpg")
    assert len(upload.data) <= limit
    with Image.open(io.BytesIO(upload.data)) as decoded:
        assert decoded.size == (200, 200)
    assert "Image 1 is" in messages[0].content and "high-quality JPEG" in messages[0].content


def test_an_image_that_cannot_fit_is_left_out_and_said() -> None:
    messages = render.reply_payloads(reply(image(corpus.noise_png(300, 300))), upload_limit=500)
    assert len(messages) == 1 and not messages[0].uploads
    assert "even re-encoded it does not fit" in messages[0].content
    assert_valid(messages[0])


def test_embed_lists_sources_and_searches_as_links() -> None:
    sources = (Source("Harbor [guide]", "https://example.com/a_(b) c"),
               Source("", "https://x.org/p"))
    found = render.reply_embed(reply(sources=sources, search_queries=("lighthouse at dusk",)))
    assert found["description"].splitlines() == [
        "**Sources**",
        "• [Harbor (guide)](https://example.com/a_%28b%29%20c)",
        "• [x.org](https://x.org/p)",
        "**Searched:** [lighthouse at dusk](https://www.google.com/search?q=lighthouse+at+dusk)",
    ]
    many = tuple(Source(f"Source {i} " + "t" * 80, f"https://example.com/{i}") for i in range(80))
    crowded = render.reply_embed(reply(sources=many))
    assert len(crowded["description"]) <= render.DESCRIPTION_LIMIT
    assert crowded["description"].endswith("more)")
    assert "description" not in render.reply_embed(reply())


def test_buttons_offer_4k_unless_the_result_is_4k_pro() -> None:
    four_k = Options(model=PRO, size="4K", caps=DEFAULT_MODELS[PRO])
    assert [b.action for b in render.buttons(reply(options=four_k))] == ["reroll", "delete"]
    flash = Options(model=FLASH, caps=DEFAULT_MODELS[FLASH])
    assert [b.action for b in render.buttons(reply(options=flash))] == ["reroll", "4k", "delete"]


def test_text_only_and_empty_replies_still_carry_the_embed() -> None:
    [only] = render.reply_payloads(reply(text("No image, sorry.")), upload_limit=LIMIT)
    assert only.content == "No image, sorry." and only.embed is not None and only.buttons
    [empty] = render.reply_payloads(reply(), upload_limit=LIMIT)
    assert empty.content == "" and empty.embed is not None
    assert_valid(empty)


def test_statuses_and_errors() -> None:
    assert render.status_text("Generating with Nano Banana…", 12.7) == (
        "⏳ Generating with Nano Banana… 12 s")
    assert render.error_message("x" * 3000).startswith("⚠️ ")
    assert len(render.error_message("x" * 3000)) == 2000
    upload = render.Upload("a.png", b"", "image/png")
    failed = render.MessagePayload(content="Here.", uploads=(upload,))
    [fallback] = failed.without_uploads(render.upload_failed(1, "HTTP 413"))
    assert not fallback.uploads and fallback.content.startswith("Here.\n\n⚠️ Discord did not")


def test_an_upload_failure_note_is_never_cut() -> None:
    upload = render.Upload("a.png", b"", "image/png")
    embed = {"type": "rich", "description": "sources"}
    buttons = (render.Button("reroll", TURN, "Reroll"),)
    full = render.MessagePayload(content="x" * 1990, uploads=(upload,), embed=embed,
                                 buttons=buttons)
    note = render.upload_failed(1, "HTTP 413")
    text, own = full.without_uploads(note)
    assert text == render.MessagePayload(content="x" * 1990)
    assert own == render.MessagePayload(content=note, embed=embed, buttons=buttons)
    assert_valid(text)
    assert_valid(own)


async def test_payloads_become_discord_py_arguments() -> None:
    [payload] = render.reply_payloads(reply(text("Hi"), image()), upload_limit=LIMIT)
    sent = send_kwargs(payload)
    assert sent["content"] == "Hi" and isinstance(sent["embed"], discord.Embed)
    assert [f.filename for f in sent["files"]] == [payload.uploads[0].filename]
    view = sent["view"]
    assert view.timeout is None
    assert [item.custom_id for item in view.children] == [b.custom_id for b in payload.buttons]
    assert [item.item.style for item in view.children] == [
        discord.ButtonStyle.secondary, discord.ButtonStyle.primary, discord.ButtonStyle.danger]
    status = edit_kwargs(render.MessagePayload(content="⏳ working"))
    assert status == {"content": "⏳ working", "attachments": [], "embed": None, "view": None}


# --- live progress --------------------------------------------------------------------------


def test_a_status_carries_cancel_and_attaches_a_draft_only_when_one_arrives() -> None:
    draft = image(corpus.png(64, 48)).image
    assert draft is not None
    shown = render.status_payload("Drawing… 4 s · 1 draft", ticket=TURN, thought="Layout",
                                  draft=draft, number=1, upload_limit=LIMIT)
    assert shown.content.splitlines() == ["⏳ Drawing… 4 s · 1 draft", "💭 Layout",
                                          "🖼️ Draft 1, still thinking…"]
    assert [b.custom_id for b in shown.buttons] == [f"imagebot:cancel:{TURN}"]
    assert [u.filename for u in shown.uploads] == ["imagebot-draft-1.png"]
    assert "attachments" in edit_kwargs(shown)
    tick = render.status_payload("Drawing… 9 s · 1 draft", ticket=TURN)
    assert tick.keep_files and "attachments" not in edit_kwargs(tick), "the draft stays"
    errors = FormErrors()
    validate_message({"content": shown.content}, errors)
    errors.raise_if_any()


def test_a_draft_over_the_upload_limit_is_reencoded_or_left_out() -> None:
    noisy = corpus.noise_png(512, 512)
    draft = image(noisy).image
    assert draft is not None
    small = render.status_payload("Drawing…", ticket=None, draft=draft, number=2,
                                  upload_limit=len(noisy) - 1)
    assert all(len(u.data) < len(noisy) for u in small.uploads)
    none = render.status_payload("Drawing…", ticket=None, draft=draft, number=2, upload_limit=10)
    assert none.uploads == () and not none.keep_files and none.buttons == ()


def test_drafts_button_only_when_the_model_drew_drafts() -> None:
    plain = reply(image())
    assert [b.action for b in render.buttons(plain)] == ["reroll", "4k", "delete"]
    drafted = reply(image(), thoughts=(text("plan"), image()))
    assert [b.action for b in render.buttons(drafted)] == ["reroll", "4k", "delete", "drafts"]
    shown = render.drafts_payload([image().image, image().image], upload_limit=LIMIT)
    assert shown.content == "Drafts Gemini made while thinking (not part of the conversation):"
    assert [u.filename for u in shown.uploads] == ["imagebot-draft-1.png", "imagebot-draft-2.png"]
    assert render.drafts_payload([], upload_limit=LIMIT).content.startswith("This result has no")
