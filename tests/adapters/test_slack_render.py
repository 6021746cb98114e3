"""Replies as Slack messages: order, limits, links, buttons; every block checked the way
chat.postMessage checks it."""

from __future__ import annotations

import hashlib

from adapters.slack import render
from adapters.slack.render import ImagePost, TextPost
from bot.config import DEFAULT_MODELS
from bot.model import Reply, ReplyImage, ReplyPart, Source, ThreadKey, Usage
from bot.options import FLASH, PRO, Options
from bot.planning import display_prompt
from tests import corpus
from tests.emulators.slack import validate_blocks

KEY = ThreadKey("slack", "T1", "C1", "1.0")


def image(color: tuple[int, int, int] = (200, 40, 40)) -> ReplyImage:
    data = corpus.png(color=color)
    return ReplyImage(data=data, mime_type="image/png", width=64, height=48,
                      sha256=hashlib.sha256(data).hexdigest())


def text(value: str) -> ReplyPart:
    return ReplyPart(kind="text", text=value)


def picture(color: tuple[int, int, int] = (200, 40, 40)) -> ReplyPart:
    return ReplyPart(kind="image", image=image(color))


def reply(*parts: ReplyPart, **fields: object) -> Reply:
    options = Options(model=PRO, size="2K", aspect_ratio="16:9", caps=DEFAULT_MODELS[PRO])
    values: dict = {"turn_id": "turn123", "thread": KEY, "parts": parts, "options": options,
                    "model": PRO, "elapsed": 12.34, "usage": Usage(total_tokens=2345)}
    values.update(fields)
    return Reply(**values)


def posts_of(reply: Reply) -> list:
    head, rest = render.reply_posts(reply, requester="U1")
    return [head, *rest]


def check(posts: list) -> None:
    for post in posts:
        if isinstance(post, TextPost):
            validate_blocks(post.blocks)
            assert 0 < len(post.text) <= render.FALLBACK_LIMIT


def test_interleaved_parts_keep_the_models_order() -> None:
    posts = posts_of(reply(text("First."), picture(), text("Then."), picture(),
                                     picture((1, 2, 3))))
    check(posts)
    kinds = [type(p).__name__ for p in posts]
    assert kinds == ["TextPost", "ImagePost", "TextPost", "ImagePost", "TextPost"]
    assert posts[0].blocks[0]["text"]["text"] == "First."
    assert len(posts[3].images) == 2  # one upload per run of images
    tail = posts[-1]
    assert tail.text == "Nano Banana Pro · 2K · 16:9 · 12.3s · 2,345 tokens"
    actions = tail.blocks[-1]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        ("imagebot_reroll", "turn123"), ("imagebot_4k", "turn123"), ("imagebot_delete", "turn123")]


def test_an_image_first_reply_greets_the_requester() -> None:
    posts = posts_of(reply(picture()))
    check(posts)
    head = posts[0]
    assert isinstance(head, TextPost) and "<@U1>" in head.blocks[0]["text"]["text"]
    assert isinstance(posts[1], ImagePost)


def test_notices_lead_and_the_offline_badge_shows() -> None:
    posts = posts_of(reply(picture(), offline=True, notices=(
        "Offline preview: made by imagebot's offline stand-in, not by Gemini.",
        "The GIF was converted to PNG.")))
    check(posts)
    head = posts[0].blocks[0]["text"]["text"]
    assert head.startswith("⚠️ Offline preview") and "ℹ️ The GIF" in head
    assert posts[-1].text.startswith("OFFLINE PREVIEW · ")


def test_long_text_is_split_under_slacks_limits() -> None:
    long = "\n\n".join(f"Paragraph {i}. " + "word " * 120 for i in range(80))
    posts = posts_of(reply(text(long)))
    check(posts)
    sections = [b for p in posts if isinstance(p, TextPost) for b in p.blocks
                if b["type"] == "section"]
    assert all(len(b["text"]["text"]) < 3000 for b in sections)
    assert all(len(p.blocks) <= render.SECTIONS_PER_MESSAGE for p in posts)
    joined = " ".join(b["text"]["text"] for b in sections)
    assert joined.split() == long.split()


def test_sources_and_search_queries_are_links() -> None:
    posts = posts_of(reply(
        picture(), sources=(Source("Tide <tables>", "https://example.com/t?a=1&b=2"),
                            Source("Moon | phases", "https://example.org/moon")),
        search_queries=("high tide today", "moon phase")))
    check(posts)
    sources, searches = (b["elements"][0]["text"] for b in posts[-1].blocks[:2])
    assert sources == ("*Sources:* <https://example.com/t?a=1&b=2|Tide &lt;tables&gt;> · "
                       "<https://example.org/moon|Moon ¦ phases>")
    assert searches == ("*Searched:* <https://www.google.com/search?q=high+tide+today|"
                        "high tide today> · <https://www.google.com/search?q=moon+phase|"
                        "moon phase>")


def test_no_4k_button_on_a_4k_result() -> None:
    options = Options(model=PRO, size="4K", caps=DEFAULT_MODELS[PRO])
    actions = render.buttons(reply(picture(), options=options))
    assert [e["action_id"] for e in actions["elements"]] == ["imagebot_reroll",
                                                             "imagebot_delete"]
    flash = Options(model=FLASH, caps=DEFAULT_MODELS[FLASH])
    assert len(render.buttons(reply(picture(), options=flash))["elements"]) == 3


def test_mrkdwn() -> None:
    assert render.mrkdwn("**Bold** and ~~gone~~ <!channel> & [docs](https://x.dev/a)") == \
        "*Bold* and ~gone~ &lt;!channel&gt; &amp; <https://x.dev/a|docs>"
    assert render.mrkdwn("## Steps\n1. mix") == "*Steps*\n1. mix"


def test_status_error_and_command_posts_are_valid() -> None:
    for post in (render.status_post("Generating with Nano Banana Pro · 2K · 16:9…"),
                 render.error_post("Gemini blocked <this>."),
                 render.command_root_post("U1", "a fox\n--ar 16:9"),
                 render.upload_failed_post(2, "ratelimited")):
        validate_blocks(post.blocks)
    assert "&lt;this&gt;" in render.error_post("Gemini blocked <this>.").blocks[0]["text"]["text"]
    root = render.command_root_post("U1", "a fox\n--ar 16:9").blocks[0]["text"]["text"]
    assert root == "<@U1> asked for an image:\n>a fox\n>--ar 16:9"


def test_uploads_carry_alt_text_without_flags() -> None:
    post = ImagePost((image(), image((0, 0, 0))))
    alt = display_prompt("a fox in snow --ar 16:9 --size 2K")
    items = render.upload_items(post, turn_id="abcdef0123", alt=alt)
    assert [i["title"] for i in items] == ["Image 1", "Image 2"]
    assert all(i["alt_txt"] == "a fox in snow" and i["filename"].startswith("imagebot-abcdef01-")
               and i["filename"].endswith(".png") for i in items)
    empty = render.upload_items(post, turn_id="abcdef0123", alt=display_prompt("--ar 1:1"))
    assert empty[0]["alt_txt"] == "Generated image"


# --- live progress --------------------------------------------------------------------------


def test_a_status_with_its_thought_and_cancel_button_is_valid_block_kit() -> None:
    post = render.status_post("Thinking… 3 s · Nano Banana Pro", cancel="ab" * 16,
                              thought="Composing <the> layout")
    validate_blocks(post.blocks)
    assert post.text == "⏳ Thinking… 3 s · Nano Banana Pro"
    assert post.blocks[1]["elements"][0]["text"] == "💭 Composing &lt;the&gt; layout"
    [button] = post.blocks[2]["elements"]
    assert (button["action_id"], button["value"]) == ("imagebot_cancel", "ab" * 16)
    assert [b["type"] for b in render.status_post("Waiting").blocks] == ["context"]


def test_drafts_show_as_image_blocks_of_their_files() -> None:
    post = render.drafts_post(["F1", "F2"])
    validate_blocks(post.blocks)
    assert [b["slack_file"] for b in post.blocks if b["type"] == "image"] == [
        {"id": "F1"}, {"id": "F2"}]
    item = render.draft_upload(image(), 2, alt="a fox")
    assert item["filename"].startswith("imagebot-draft-2-") and item["title"] == "Draft 2"
    assert item["alt_txt"] == "a fox"
