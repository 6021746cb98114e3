"""Discord input -> neutral requests: pure functions, with objects built from the fixtures."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import discord
import pytest
from discord import app_commands

from adapters.discord.client import (
    REQUIRED_PERMISSIONS,
    TurnButton,
    batch,
    edit_with_gemini,
    imagine,
    invite_url,
)
from adapters.discord.inbound import (
    BUTTON_TEMPLATE,
    CDN_HOSTS,
    FileRef,
    TurnRequest,
    allowed_hosts,
    button_id,
    edit_request,
    event_id,
    image_files,
    imagine_request,
    message_request,
    strip_mention,
    thread_key,
    thread_name,
)
from adapters.download import host_allowed
from bot.config import Settings, load_settings
from bot.model import ThreadKey
from bot.options import ASPECT_RATIOS, OptionInput
from tests.emulators.discord import fixture

BOT_ID = 1100000000000000001
TURN = "0123456789abcdef0123456789abcdef"


def attachment(**changes: Any) -> discord.Attachment:
    data = {**fixture("attachment"), **changes}
    return discord.Attachment(data=data, state=SimpleNamespace(http=None))  # type: ignore[arg-type]


@pytest.fixture
def settings() -> Settings:
    return load_settings(env={}, max_attachment_bytes=1_000_000)


def test_file_ref_takes_the_name_from_filename_not_the_signed_url() -> None:
    ref = FileRef.of(attachment())
    assert ref.name == "cat.png" and "?ex=" in ref.url
    assert (ref.size, ref.content_type, ref.looks_like_image) == (21837, "image/png", True)
    text = FileRef.of(attachment(filename="a.txt", content_type="text/plain; charset=utf-8"))
    assert text.content_type == "text/plain" and not text.looks_like_image
    untyped = FileRef.of(attachment(filename="photo.JPG", content_type=None))
    assert untyped.content_type == "" and untyped.looks_like_image


def test_imagine_options_become_option_input_and_references() -> None:
    request = imagine_request("  a cat  ", images=(attachment(), None, attachment(id="2")),
                              aspect_ratio="16:9", resolution="2K", model="pro", search=True)
    assert request.text == "a cat"
    assert request.options == OptionInput(model="pro", aspect_ratio="16:9", size="2K",
                                          search=True)
    assert [f.name for f in request.files] == ["cat.png", "cat.png"]
    assert imagine_request("x").options == OptionInput()


def test_message_text_loses_only_the_bot_mention() -> None:
    content = f"<@{BOT_ID}> a fox\n  with <@42> --ar 1:1 <@!{BOT_ID}>"
    assert strip_mention(content, BOT_ID) == "a fox\n with <@42> --ar 1:1"
    request = message_request(content, [attachment()], bot_id=BOT_ID)
    assert request.text.startswith("a fox") and len(request.files) == 1
    assert request.options == OptionInput()


def test_edit_requests_use_only_image_attachments() -> None:
    files = image_files([attachment(), attachment(filename="notes.pdf",
                                                  content_type="application/pdf")])
    assert [f.name for f in files] == ["cat.png"]
    assert edit_request(" night ", files) == TurnRequest(text="night", files=files)


def test_thread_keys_names_and_event_ids() -> None:
    assert thread_key(1, 2, 3) == ThreadKey("discord", "1", "2", "3")
    assert thread_name("a  red\nfox --ar 16:9") == "a red fox"
    assert thread_name("--ar 16:9") == "imagebot"
    long = thread_name("word " * 50)
    assert len(long) == 100 and long.endswith("…")
    assert event_id("message", 5) == "discord:message:5"


def parse_button_id(custom_id: str) -> tuple[str, str] | None:
    """What the client's DynamicItem template reads back out of a custom id."""
    match = re.fullmatch(BUTTON_TEMPLATE, custom_id)
    return (match["action"], match["turn"]) if match else None


def test_button_ids_round_trip_and_fit_discord() -> None:
    for action in ("reroll", "4k", "delete"):
        custom_id = button_id(action, TURN)
        assert len(custom_id) <= 100 and parse_button_id(custom_id) == (action, TURN)
    assert parse_button_id("imagebot:explode:" + TURN) is None
    assert parse_button_id("open_form") is None
    with pytest.raises(ValueError):
        button_id("explode", TURN)
    assert TurnButton.__discord_ui_compiled_template__.pattern == BUTTON_TEMPLATE


def test_downloads_are_allowed_from_discords_cdn_and_a_local_api_only() -> None:
    assert allowed_hosts("https://discord.com/api/v10") == CDN_HOSTS
    local = allowed_hosts("http://127.0.0.1:5555/api/v10")
    assert local == CDN_HOSTS | {"http://127.0.0.1:5555"}
    assert host_allowed(attachment().url, local) and host_allowed(attachment().proxy_url, local)
    assert host_allowed("http://127.0.0.1:5555/cdn/attachments/1/2/a.png?ex=1", local)
    assert not host_allowed("https://evil.example/cat.png", local)


def test_commands_as_discord_receives_them() -> None:
    client = discord.Client(intents=discord.Intents.none())
    tree = app_commands.CommandTree(client)
    payload = imagine.to_dict(tree)
    options = {o["name"]: o for o in payload["options"]}
    assert list(options) == ["prompt", "image1", "image2", "image3", "aspect_ratio",
                             "resolution", "model", "search", "count"]
    assert (options["count"]["type"], options["count"]["min_value"],
            options["count"]["max_value"]) == (4, 1, 4)
    assert options["prompt"]["required"] and options["prompt"]["type"] == 3
    assert [options[f"image{i}"]["type"] for i in (1, 2, 3)] == [11, 11, 11]
    assert [c["value"] for c in options["aspect_ratio"]["choices"]] == list(ASPECT_RATIOS)
    assert [c["value"] for c in options["resolution"]["choices"]] == ["1K", "2K", "4K"]
    assert [(c["name"], c["value"]) for c in options["model"]["choices"]] == [
        ("Nano Banana", "flash"), ("Nano Banana Pro", "pro"), ("Imagen 4", "imagen-4"),
        ("Imagen 4 Ultra", "imagen-4-ultra"), ("Imagen 4 Fast", "imagen-4-fast")]
    assert options["search"]["type"] == 5
    batch_options = {o["name"]: o for o in batch.to_dict(tree)["options"]}
    assert list(batch_options) == ["prompts", "file", "image1", "image2", "model",
                                   "aspect_ratio", "resolution", "search"]
    assert not any(o.get("required") for o in batch_options.values())
    assert batch_options["file"]["type"] == 11
    assert [c["value"] for c in batch_options["model"]["choices"]] == ["flash", "pro"]
    menu = edit_with_gemini.to_dict(tree)
    assert (menu["name"], menu["type"]) == ("Edit with Gemini", 3)


def test_invite_url_asks_for_exactly_the_needed_permissions() -> None:
    expected = discord.Permissions(
        view_channel=True, send_messages=True, send_messages_in_threads=True,
        create_public_threads=True, attach_files=True, embed_links=True,
        read_message_history=True)
    assert REQUIRED_PERMISSIONS == expected and expected.value == 309237763072
    assert not REQUIRED_PERMISSIONS.manage_messages
    assert invite_url(123) == ("https://discord.com/oauth2/authorize?client_id=123"
                               "&scope=bot+applications.commands&permissions=309237763072")
