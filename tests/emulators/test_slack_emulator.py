"""Self-test of the Slack emulator, driven by the real slack-sdk and slack-bolt."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import test_utils
from PIL import Image
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from tests.emulators.slack import FIXTURES_DIR, SlackEmulator, fixture

CHANNEL = "C0GENERAL"
HUMAN = "U0HUMAN"


def _png(width: int = 8, height: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator()
    await emulator.start()
    emulator.add_user(HUMAN, "alice", is_admin=True)
    emulator.add_channel(CHANNEL, "general")
    yield emulator
    await emulator.stop()


@pytest.fixture
def client(slack: SlackEmulator) -> AsyncWebClient:
    return AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)


async def _error_of(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


# ----------------------------------------------------------------------------- Web API


async def test_auth_test_and_token_rules(slack: SlackEmulator, client: AsyncWebClient) -> None:
    resp = await client.auth_test()
    assert resp["user_id"] == "U0BOT" and resp["bot_id"] == "B0BOT"
    assert resp["team_id"] == "T0001" and resp["is_enterprise_install"] is False
    assert resp["url"].startswith("https://") and resp["team"] and resp["user"]
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"

    def other(token: str | None) -> AsyncWebClient:
        return AsyncWebClient(token=token, base_url=slack.api_url)

    assert (await _error_of(other(None).auth_test())).response["error"] == "not_authed"
    assert (await _error_of(other("xoxb-wrong").auth_test())).response["error"] == "invalid_auth"
    wrong_kind = await _error_of(other(slack.app_token).auth_test())
    assert wrong_kind.response["error"] == "not_allowed_token_type"
    assert wrong_kind.response.status_code == 200
    bot_on_socket = await _error_of(client.apps_connections_open(app_token=slack.bot_token))
    assert bot_on_socket.response["error"] == "not_allowed_token_type"
    opened = await client.apps_connections_open(app_token=slack.app_token)
    assert opened["url"].startswith(f"ws://127.0.0.1:{slack.base_url.rsplit(':', 1)[1]}/socket?ticket=")
    unknown = await _error_of(client.api_call("nope.nope"))
    assert unknown.response["error"] == "unknown_method"


async def test_chat_post_message_is_json_and_threads(slack: SlackEmulator, client: AsyncWebClient) -> None:
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}
    root = await client.chat_postMessage(channel=CHANNEL, text="hi", blocks=[section], unfurl_links=False)
    call = slack.calls_to("chat.postMessage")[-1]
    assert call.headers["Content-Type"].startswith("application/json")
    assert call.params["unfurl_links"] is False and call.params["blocks"] == [section]
    assert root["channel"] == CHANNEL and root["ts"] == root["message"]["ts"]
    assert root["message"]["bot_id"] == "B0BOT" and root["message"]["user"] == "U0BOT"
    assert root["message"]["blocks"][0]["block_id"]

    reply = await client.chat_postMessage(channel=CHANNEL, thread_ts=root["ts"], text="in thread")
    assert reply["message"]["thread_ts"] == root["ts"]
    assert reply["message"]["parent_user_id"] == "U0BOT"
    thread = slack.messages(CHANNEL, root["ts"])
    assert [m["ts"] for m in thread] == [root["ts"], reply["ts"]]
    assert thread[0]["reply_count"] == 1 and thread[0]["latest_reply"] == reply["ts"]

    updated = await client.chat_update(channel=CHANNEL, ts=reply["ts"], text="edited")
    assert updated["text"] == "edited" and "edited" in updated["message"]
    await client.chat_delete(channel=CHANNEL, ts=reply["ts"])
    assert "reply_count" not in slack.messages(CHANNEL)[0]

    with pytest.warns(UserWarning, match="`text` argument is missing"):
        no_text = await _error_of(client.chat_postMessage(channel=CHANNEL))
    assert no_text.response["error"] == "no_text"
    missing = await _error_of(client.chat_postMessage(channel="C404", text="x"))
    assert missing.response["error"] == "channel_not_found"
    too_long = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
    invalid = await _error_of(client.chat_postMessage(channel=CHANNEL, text="x", blocks=[too_long]))
    assert invalid.response["error"] == "invalid_blocks"
    assert "/blocks/0/text/text" in invalid.response["response_metadata"]["messages"][0]


async def test_reactions_travel_in_the_query_string(slack: SlackEmulator, client: AsyncWebClient) -> None:
    message = slack.post_user_message(CHANNEL, HUMAN, "hello")
    await client.reactions_add(channel=CHANNEL, timestamp=message["ts"], name="eyes")
    call = slack.calls_to("reactions.add")[-1]
    assert call.query == {"channel": CHANNEL, "timestamp": message["ts"], "name": "eyes"}
    stored = slack.messages(CHANNEL)[0]
    assert stored["reactions"] == [{"name": "eyes", "users": ["U0BOT"], "count": 1}]

    again = await _error_of(client.reactions_add(channel=CHANNEL, timestamp=message["ts"], name="eyes"))
    assert again.response["error"] == "already_reacted"
    await client.reactions_remove(channel=CHANNEL, timestamp=message["ts"], name="eyes")
    gone = await _error_of(client.reactions_remove(channel=CHANNEL, timestamp=message["ts"], name="eyes"))
    assert gone.response["error"] == "no_reaction"
    colons = await _error_of(client.reactions_add(channel=CHANNEL, timestamp=message["ts"], name=":eyes:"))
    assert colons.response["error"] == "invalid_name"


async def test_conversations_replies_is_a_get_with_files(
    slack: SlackEmulator, client: AsyncWebClient
) -> None:
    image = slack.add_file(name="Cat Photo.png", mimetype="image/png", content=_png(), user=HUMAN)
    root = slack.post_user_message(CHANNEL, HUMAN, "look", files=[image])
    reply = await client.chat_postMessage(channel=CHANNEL, thread_ts=root["ts"], text="nice")

    resp = await client.conversations_replies(channel=CHANNEL, ts=root["ts"])
    assert slack.calls_to("conversations.replies")[-1].http_verb == "GET"
    assert [m["ts"] for m in resp["messages"]] == [root["ts"], reply["ts"]]
    first_file = resp["messages"][0]["files"][0]
    assert first_file["id"] == image["id"] and first_file["original_w"] == 8
    assert first_file["url_private"].startswith(slack.base_url + "/files-pri/T0001-")
    assert resp["messages"][0]["reply_count"] == 1
    assert resp["has_more"] is False and resp["response_metadata"] == {"next_cursor": ""}

    page = await client.conversations_replies(channel=CHANNEL, ts=root["ts"], limit=1)
    assert page["has_more"] is True and len(page["messages"]) == 1
    cursor = page["response_metadata"]["next_cursor"]
    rest = await client.conversations_replies(channel=CHANNEL, ts=root["ts"], cursor=cursor)
    assert [m["ts"] for m in rest["messages"]] == [reply["ts"]]
    missing = await _error_of(client.conversations_replies(channel=CHANNEL, ts="1.000001"))
    assert missing.response["error"] == "thread_not_found"


async def test_users_and_conversations_info(slack: SlackEmulator, client: AsyncWebClient) -> None:
    user = (await client.users_info(user=HUMAN))["user"]
    assert user["id"] == HUMAN and user["is_admin"] is True and user["profile"]["display_name"] == "alice"
    channel = (await client.conversations_info(channel=CHANNEL))["channel"]
    assert channel["id"] == CHANNEL and channel["name"] == "general" and channel["is_member"]
    missing = await _error_of(client.users_info(user="U404"))
    assert missing.response["error"] == "user_not_found"


async def test_files_upload_v2_two_files_into_a_thread(
    slack: SlackEmulator, client: AsyncWebClient
) -> None:
    root = slack.post_user_message(CHANNEL, HUMAN, "make two")
    png = _png()
    resp = await client.files_upload_v2(
        file_uploads=[
            {"content": png, "filename": "one.png", "title": "One"},
            {"content": b"second", "filename": "two.txt"},
        ],
        channel=CHANNEL,
        thread_ts=root["ts"],
        initial_comment="here you go",
    )
    methods = [c.method for c in slack.calls]
    assert methods == ["files.getUploadURLExternal"] * 2 + ["files.completeUploadExternal"]
    assert slack.calls[0].query == {"filename": "one.png", "length": str(len(png))}
    assert [f["title"] for f in resp["files"]] == ["One", "two.txt"]
    assert resp["files"][0]["mimetype"] == "image/png" and resp["files"][0]["size"] == len(png)

    assert [(u["filename"], u["bytes"]) for u in slack.uploads] == [("one.png", png), ("two.txt", b"second")]
    assert {(u["channel"], u["thread_ts"], u["initial_comment"]) for u in slack.uploads} == {
        (CHANNEL, root["ts"], "here you go")
    }
    posted = slack.messages(CHANNEL, root["ts"])[-1]
    assert posted["text"] == "here you go" and posted["upload"] is True
    assert [f["name"] for f in posted["files"]] == ["one.png", "two.txt"]
    info = await client.files_info(file=resp["files"][0]["id"])
    assert info["file"]["shares"]["public"][CHANNEL][0]["thread_ts"] == root["ts"]


async def test_a_team_that_restricts_large_uploads_refuses_them(
    slack: SlackEmulator, client: AsyncWebClient
) -> None:
    """Slack takes files up to 1 GB; a team may restrict large uploads further."""
    assert slack.upload_size_limit == 1_000_000_000
    slack.upload_size_limit = 5_000_000
    root = slack.post_user_message(CHANNEL, HUMAN, "a big one")
    with pytest.raises(SlackApiError) as refused:
        await client.files_upload_v2(content=b"x" * 5_000_001, filename="big.jpg",
                                     channel=CHANNEL, thread_ts=root["ts"])
    assert refused.value.response["error"] == "file_upload_size_restricted"
    assert [c.method for c in slack.calls] == ["files.getUploadURLExternal"]
    resp = await client.files_upload_v2(content=b"x" * 5_000_000, filename="fits.jpg",
                                        channel=CHANNEL, thread_ts=root["ts"])
    assert resp["files"][0]["size"] == 5_000_000 and not slack.uploads[:-1]


async def test_rate_limit_then_retry_after(slack: SlackEmulator, client: AsyncWebClient) -> None:
    slack.queue_rate_limit("chat.postMessage", retry_after=1)
    limited = await _error_of(client.chat_postMessage(channel=CHANNEL, text="x"))
    assert limited.response.status_code == 429 and limited.response["error"] == "ratelimited"
    assert limited.response.headers["Retry-After"] == "1"

    slack.queue_rate_limit("chat.postMessage", retry_after=1)
    retrying = AsyncWebClient(
        token=slack.bot_token,
        base_url=slack.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    started = time.monotonic()
    resp = await retrying.chat_postMessage(channel=CHANNEL, text="eventually")
    assert resp["ok"] and time.monotonic() - started >= 1.0
    calls = slack.calls_to("chat.postMessage")
    assert len(calls) == 3 and calls[2].time - calls[1].time >= 1.0


async def test_server_error(slack: SlackEmulator, client: AsyncWebClient) -> None:
    slack.queue_server_error("conversations.info", status=503)
    failed = await _error_of(client.conversations_info(channel=CHANNEL))
    assert failed.response.status_code == 503
    assert (await client.conversations_info(channel=CHANNEL))["ok"]


async def test_url_private_needs_the_bot_token(slack: SlackEmulator) -> None:
    png = _png()
    image = slack.add_file(name="cat.png", mimetype="image/png", content=png, user=HUMAN)
    locked = slack.add_file(name="x.png", mimetype="image/png", content=png, user=HUMAN,
                            serve_html_login=True)
    bearer = {"Authorization": f"Bearer {slack.bot_token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(image["url_private"], headers=bearer) as resp:
            assert resp.status == 200 and resp.content_type == "image/png"
            assert await resp.read() == png
        async with session.get(image["url_private_download"], headers=bearer) as resp:
            assert "attachment" in resp.headers["Content-Disposition"]
        for headers in ({}, {"Authorization": "Bearer xoxb-wrong"}):
            async with session.get(image["url_private"], headers=headers) as resp:
                assert resp.status == 200 and resp.content_type == "text/html"
                assert (await resp.text()).startswith("<!DOCTYPE html>")
        async with session.get(locked["url_private"], headers=bearer) as resp:
            assert resp.content_type == "text/html"
    assert [d["authorized"] for d in slack.downloads] == [True, True, False, False, True]


# ----------------------------------------------------------------------------- Socket Mode


async def test_socket_mode_delivers_and_reconnects(slack: SlackEmulator, client: AsyncWebClient) -> None:
    app = AsyncApp(client=client)
    mentions: list[dict[str, Any]] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any) -> None:
        mentions.append(event)
        await say(text="pong", thread_ts=event["ts"])

    @app.command("/imagine")
    async def on_imagine(ack: Any, command: dict[str, Any]) -> None:
        await ack(text=f"working on {command['text']}")

    handler = AsyncSocketModeHandler(app, slack.app_token)
    await handler.connect_async()
    try:
        await slack.wait_socket_connected()
        opened = slack.calls_to("apps.connections.open")[-1]
        assert opened.headers["Authorization"] == f"Bearer {slack.app_token}"

        event = slack.app_mention_event(CHANNEL, HUMAN, "draw a cat")
        ack = await slack.socket_send("events_api", slack.event_envelope(event))
        assert ack == {"envelope_id": slack.socket_envelopes[-1]["envelope_id"]}
        await slack.wait_for(lambda: len(slack.messages(CHANNEL, event["ts"])) == 2)
        assert mentions[0]["text"] == "<@U0BOT> draw a cat"
        assert len(slack.calls_to("auth.test")) == 1

        command = slack.slash_command_payload("/imagine", "a dog", user=HUMAN, channel=CHANNEL)
        ack = await slack.socket_send("slash_commands", command, accepts_response_payload=True)
        assert ack["payload"]["text"] == "working on a dog"

        await slack.socket_disconnect()
        await slack.wait_socket_connected()
        assert slack.socket_connection_count == 2
        event = slack.app_mention_event(CHANNEL, HUMAN, "again")
        await slack.socket_send("events_api", slack.event_envelope(event))
        await slack.wait_for(lambda: len(mentions) == 2)

        await slack.socket_disconnect(reason="refresh_requested")
        await slack.wait_socket_connected()
        assert slack.socket_connection_count == 3
        event = slack.app_mention_event(CHANNEL, HUMAN, "once more")
        await slack.socket_send("events_api", slack.event_envelope(event))
        await slack.wait_for(lambda: len(mentions) == 3)
    finally:
        await handler.close_async()


# ----------------------------------------------------------------------------- HTTP mode


async def test_http_mode_signed_requests(slack: SlackEmulator, client: AsyncWebClient) -> None:
    app = AsyncApp(client=client, signing_secret=slack.signing_secret)

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any) -> None:
        await say(text="pong", thread_ts=event["ts"])

    @app.command("/imagine")
    async def on_imagine(ack: Any) -> None:
        await ack(text="on it")

    @app.action("approve")
    async def on_approve(ack: Any, respond: Any) -> None:
        await ack()
        await respond(text="approved", replace_original=True)

    server = test_utils.TestServer(app.web_app(path="/slack/events"))
    await server.start_server()
    url = str(server.make_url("/slack/events"))
    try:
        event = slack.app_mention_event(CHANNEL, HUMAN, "hi")
        envelope = slack.event_envelope(event)
        assert (await slack.send_http_event(url, envelope))[0] == 200
        await slack.wait_for(lambda: len(slack.messages(CHANNEL, event["ts"])) == 2)
        assert (await slack.send_http_event(url, envelope, bad_signature=True))[0] == 401
        stale = int(time.time()) - 600
        assert (await slack.send_http_event(url, envelope, timestamp=stale))[0] == 401
        retried = await slack.send_http_event(url, envelope, retry_num=1, retry_reason="http_timeout")
        assert retried[0] == 200

        challenge = {"token": slack.verification_token, "challenge": "c4a11", "type": "url_verification"}
        assert "c4a11" in (await slack.send_http_event(url, challenge))[1]

        command = slack.slash_command_payload("/imagine", "a fox", user=HUMAN, channel=CHANNEL)
        # bolt answers a text-only ack as a plain-text body, which Slack accepts
        assert await slack.send_http_form(url, command) == (200, "on it")

        button = {"type": "button", "action_id": "approve", "value": "yes",
                  "text": {"type": "plain_text", "text": "Approve"}}
        posted = await client.chat_postMessage(
            channel=CHANNEL, text="ok?", blocks=[{"type": "actions", "elements": [button]}]
        )
        payload = slack.block_actions_payload(
            user=HUMAN, channel=CHANNEL, message_ts=posted["ts"], action_id="approve", value="yes"
        )
        assert payload["actions"][0]["block_id"] == posted["message"]["blocks"][0]["block_id"]
        assert (await slack.send_http_form(url, {"payload": payload}))[0] == 200
        await slack.wait_for(lambda: bool(slack.response_url_posts))
        assert slack.response_url_posts[0]["text"] == "approved"
        replaced = [m for m in slack.messages(CHANNEL) if m["ts"] == posted["ts"]][0]
        assert replaced["text"] == "approved" and replaced["blocks"][0]["type"] == "rich_text"
    finally:
        await server.close()


# ----------------------------------------------------------------------------- fixtures


def _example_ids() -> set[str]:
    found: set[str] = set()
    pattern = re.compile(r"\b(?:[UWCDTBFAE](?=[A-Z]*\d)[A-Z0-9]{6,}|Ev[A-Z0-9]{6,})\b")
    for path in FIXTURES_DIR.glob("*.json"):
        found.update(pattern.findall(path.read_text()))
    return found


async def test_builders_fill_every_fixture_value(slack: SlackEmulator, client: AsyncWebClient) -> None:
    image = slack.add_file(name="a.png", mimetype="image/png", content=_png(), user=HUMAN)
    mention = slack.app_mention_event(CHANNEL, HUMAN, "hi", files=[image])
    reply = slack.message_event(CHANNEL, HUMAN, "more", thread_ts=mention["ts"], files=[image])
    plain = slack.message_event(CHANNEL, HUMAN, "plain")
    posted = await client.chat_postMessage(channel=CHANNEL, text="bot says")
    built = {
        "app_mention.json": mention,
        "message_file_share.json": reply,
        "message.json": plain,
        "event_callback.json": slack.event_envelope(mention),
        "file.json": slack.files[image["id"]],
        "bot_message.json": slack.bot_message_event(CHANNEL, "legacy"),
        "message_changed.json": slack.message_changed_event(CHANNEL, plain["ts"], "changed"),
        "message_deleted.json": slack.message_deleted_event(CHANNEL, plain["ts"]),
        "slash_command.json": slack.slash_command_payload("/imagine", "x", user=HUMAN, channel=CHANNEL),
        "block_actions.json": slack.block_actions_payload(
            user=HUMAN, channel=CHANNEL, message_ts=posted["ts"], action_id="a", value="v"
        ),
        "bot_posted_message.json": posted["message"],
        "user.json": slack.users[HUMAN],
        "channel.json": slack.channels[CHANNEL],
    }
    leaked = {name: [i for i in _example_ids() if i in json.dumps(payload)] for name, payload in built.items()}
    assert all(not ids for ids in leaked.values()), leaked
    for name, payload in built.items():
        assert set(fixture(name)) - set(payload) <= {"subtype", "thread_ts"}, name
    assert reply["subtype"] == "file_share" and reply["parent_user_id"] == HUMAN
    assert reply["files"][0]["url_private"].startswith(slack.base_url)
    assert mention["text"].startswith("<@U0BOT>") and mention["blocks"][0]["type"] == "rich_text"
