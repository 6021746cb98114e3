"""Slack payloads to neutral values, against the captured payloads in tests/fixtures/slack."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.download import host_allowed
from adapters.slack.events import (
    SlackFile,
    click_from_payload,
    command_from_payload,
    display_name,
    earlier_thread_files,
    file_hosts,
    files_of,
    is_admin,
    looks_like_html,
    mentions,
    message_from_event,
    prompt_text,
    upload_message_ts,
    verdict,
)
from bot.model import ThreadKey
from tests import corpus
from tests.emulators.slack import fixture

BOT = "U0LAN0Z89"  # the app's bot user in the fixtures


def envelope(event: dict[str, Any]) -> dict[str, Any]:
    body = fixture("event_callback.json")
    body["event"] = event
    return body


def test_app_mention_becomes_a_message_with_its_thread_key() -> None:
    message = message_from_event(envelope(fixture("app_mention.json")), bot_user_id=BOT)
    assert message is not None
    assert (message.kind, message.user, message.channel) == ("app_mention", "U061F7AUR",
                                                             "C0LAN2Q65")
    assert message.root_ts == message.ts == "1515449522.000016" and not message.in_thread
    assert message.key == ThreadKey("slack", "T061EG9R6", "C0LAN2Q65", "1515449522.000016")
    assert message.claim == "slack:T061EG9R6:C0LAN2Q65:1515449522.000016"
    assert prompt_text(message.text, BOT) == "is it everything a river should be?"


def test_a_reply_in_a_thread_is_keyed_by_the_root() -> None:
    event = fixture("message.json") | {"thread_ts": "1355517000.000001"}
    message = message_from_event(envelope(event), bot_user_id=BOT)
    assert message is not None and message.in_thread
    assert message.key.thread == "1355517000.000001"


def test_files_of_a_file_share() -> None:
    message = message_from_event(envelope(fixture("message_file_share.json")), bot_user_id=BOT)
    assert message is not None
    assert message.files == (SlackFile(
        id="F0S43PZDF", name="tedair.gif", mime_type="image/gif", size=137531,
        url="https://files.slack.com/files-pri/T061EG9R6-F0S43PZDF/download/tedair.gif"),)


def test_a_file_without_details_needs_files_info() -> None:
    [file] = files_of({"files": [fixture("file_check_info.json")]})
    assert file.id == "F0T82ZQ7X" and file.url is None


@pytest.mark.parametrize("name", ["bot_message.json", "message_changed.json",
                                  "message_deleted.json"])
def test_bots_edits_and_deletions_are_not_messages(name: str) -> None:
    assert message_from_event(envelope(fixture(name)), bot_user_id=BOT) is None


def test_the_bots_own_messages_are_not_messages() -> None:
    own = fixture("bot_posted_message.json") | {"channel": "C0LAN2Q65"}
    assert message_from_event(envelope(own), bot_user_id=BOT) is None
    by_user_id = fixture("message.json") | {"user": BOT}
    assert message_from_event(envelope(by_user_id), bot_user_id=BOT) is None


def _message(name: str, **changes: Any):
    message = message_from_event(envelope(fixture(name) | changes), bot_user_id=BOT)
    assert message is not None
    return message


@pytest.mark.parametrize(("name", "changes", "require", "expected"), [
    ("app_mention.json", {}, False, "answer"),
    ("app_mention.json", {}, True, "answer"),
    ("message.json", {"channel_type": "im", "channel": "D0LAN2Q65"}, True, "answer"),
    ("message.json", {}, False, "ignore"),  # top level, no mention
    ("message.json", {"thread_ts": "1355517000.000001"}, False, "answer_if_session"),
    ("message.json", {"thread_ts": "1355517000.000001"}, True, "ignore"),
    # The app_mention twin of this message does the work.
    ("message.json", {"thread_ts": "1355517000.000001", "text": f"<@{BOT}> again"}, False,
     "ignore"),
])
def test_verdict(name: str, changes: dict[str, Any], require: bool, expected: str) -> None:
    assert verdict(_message(name, **changes), bot_user_id=BOT,
                   require_mention=require) == expected


def test_prompt_text() -> None:
    assert prompt_text(f"<@{BOT}> draw <https://example.com/a?b=1&amp;c=2|example.com> "
                       "&lt;3 &amp; --ar 16:9", BOT) == \
        "draw https://example.com/a?b=1&c=2 <3 & --ar 16:9"
    assert prompt_text(f"<@{BOT}|imagebot>", BOT) == ""
    assert prompt_text("ask <@U2147483697> too", BOT) == "ask <@U2147483697> too"
    assert mentions(f"hi <@{BOT}|imagebot>", BOT) and not mentions("hi <@U2147483697>", BOT)


def test_earlier_thread_files_are_people_s_images_in_order() -> None:
    messages = fixture("conversations_replies.json")["messages"]
    files = earlier_thread_files(messages, before_ts="1700000040.000500", bot_user_id=BOT)
    # Not: the PDF, the bot's own upload, the deleted file, the mention's own file.
    assert [f.name for f in files] == ["tulips.png", "palette.jpg"]
    assert files[1].url == "https://files.slack.com/files-pri/T061EG9R6-F0T82ZQ5V/palette.jpg"


def test_slash_command() -> None:
    command = command_from_payload(fixture("slash_command.json"))
    assert (command.team, command.channel, command.user, command.user_name, command.text) == \
        ("T061EG9R6", "C2147483705", "U2147483697", "Steve", "94070")
    assert command.trigger_id.startswith("13345224609.")


def test_button_clicks() -> None:
    payload = fixture("block_actions.json")
    assert click_from_payload(payload) is None  # not one of ours
    payload["actions"][0].update(action_id="imagebot_4k", value="0123abcd")
    click = click_from_payload(payload)
    assert click is not None
    assert (click.action, click.turn_id, click.user, click.team, click.channel) == \
        ("4k", "0123abcd", "U061F7AUR", "T061EG9R6", "C0LAN2Q65")
    payload["actions"][0]["value"] = ""
    assert click_from_payload(payload) is None


def test_upload_message_ts() -> None:
    shared, unshared = fixture("files_complete_upload_external.json")["files"]
    assert upload_message_ts(shared, "G0T82ZQ9Z") == "1700000100.000700"
    assert upload_message_ts(shared, "C0LAN2Q65") is None
    assert upload_message_ts(unshared, "G0T82ZQ9Z") is None


def test_users() -> None:
    user = fixture("user.json")
    assert display_name(user) == user["profile"]["display_name"]
    assert not is_admin(user | {"is_admin": False, "is_owner": False, "is_primary_owner": False})
    assert is_admin(user | {"is_admin": False, "is_owner": True})


def test_file_hosts() -> None:
    slack_only = file_hosts("https://slack.com/api/")
    assert host_allowed("https://files.slack.com/files-pri/T1-F1/a.png", slack_only)
    assert not host_allowed("http://files.slack.com/files-pri/T1-F1/a.png", slack_only)
    assert not host_allowed("https://evil.example/a.png", slack_only)
    local = file_hosts("http://127.0.0.1:9999/api/")
    assert host_allowed("http://127.0.0.1:9999/files-pri/T1-F1/a.png", local)


def test_looks_like_html() -> None:
    assert looks_like_html(corpus.HTML_LOGIN, "application/octet-stream")
    assert looks_like_html(b"", "text/html; charset=utf-8")
    assert not looks_like_html(corpus.png(), "image/png")
