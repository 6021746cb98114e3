"""End to end: the real slack-bolt app, run by ``serve.running``, against the Slack emulator
and the offline Gemini stand-in, in Socket Mode and in HTTP mode."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from PIL import Image
from slack_bolt.context.respond.async_respond import AsyncRespond

from adapters.serve import Server, running
from adapters.slack import SlackAdapter, render
from bot import messages
from bot.model import ThreadKey
from bot.options import PRO
from offline_gemini import OfflineGemini
from tests import corpus
from tests.emulators.slack import SlackEmulator
from tests.wire import resolved

TEAM = "T0001"
CHANNEL = "C0STUDIO1"
DM = "D0ALICE1"
ALICE = "U0ALICE1"
BOB = "U0BOB001"
BOSS = "U0BOSS01"


# --------------------------------------------------------------------------- harness


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator()
    await emulator.start()
    emulator.add_user(ALICE, "alice")
    emulator.add_user(BOB, "bob")
    emulator.add_user(BOSS, "boss", is_admin=True)
    emulator.add_channel(CHANNEL, "studio")
    emulator.add_channel(DM, "alice", is_im=True, user=ALICE)
    yield emulator
    await emulator.stop()


@pytest.fixture(params=["socket", "http"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Bot:
    """A running imagebot, and Slack traffic delivered to it the way the mode needs."""

    slack: SlackEmulator
    server: Server
    mode: str

    @property
    def adapter(self) -> SlackAdapter:
        return next(a for a in self.server.adapters if isinstance(a, SlackAdapter))

    @property
    def url(self) -> str:
        return self.server.url + "/slack/events"

    async def event(self, event: dict[str, Any], *, event_id: str | None = None,
                    retry: int = 0) -> dict[str, Any]:
        envelope = self.slack.event_envelope(event, event_id=event_id)
        await self.deliver(envelope, retry=retry)
        return envelope

    async def deliver(self, envelope: dict[str, Any], *, retry: int = 0) -> None:
        if self.mode == "socket":
            await self.slack.socket_send("events_api", envelope, retry_attempt=retry,
                                         retry_reason="timeout" if retry else "")
            return
        status, _ = await self.slack.send_http_event(
            self.url, envelope, retry_num=retry or None,
            retry_reason="http_timeout" if retry else None)
        assert status == 200

    async def command(self, text: str, *, user: str = ALICE) -> str:
        """Runs ``/imagine``; returns the acknowledgement's text (within Slack's 3 s)."""
        payload = self.slack.slash_command_payload("/imagine", text, user=user, channel=CHANNEL)
        if self.mode == "socket":
            ack = await self.slack.socket_send("slash_commands", payload,
                                               accepts_response_payload=True, ack_timeout=3.0)
            return str((ack.get("payload") or {}).get("text") or "")
        status, body = await self.slack.send_http_form(self.url, payload, ack_timeout=3.0)
        assert status == 200
        return body

    async def click(self, action: str, turn_id: str, *, user: str, message_ts: str) -> None:
        await self.click_action(f"imagebot_{action}", turn_id, user=user, message_ts=message_ts)

    async def click_action(self, action_id: str, value: str, *, user: str,
                           message_ts: str) -> None:
        payload = self.slack.block_actions_payload(
            user=user, channel=CHANNEL, message_ts=message_ts, action_id=action_id,
            value=value)
        if self.mode == "socket":
            await self.slack.socket_send("interactive", payload)
        else:
            assert (await self.slack.send_http_form(self.url, {"payload": payload}))[0] == 200

    async def settle(self) -> None:
        """Waits until the adapter has no background work left."""
        await self.slack.wait_for(lambda: self.adapter.status()["tasks"] == 0)

    async def results(self, root_ts: str, count: int, channel: str = CHANNEL
                      ) -> list[dict[str, Any]]:
        """Waits for ``count`` finished turns (a result tail or an error) in a thread."""
        await self.slack.wait_for(lambda: len(finals(self.slack, channel, root_ts)) >= count)
        await self.settle()
        return finals(self.slack, channel, root_ts)


@pytest.fixture
def start_bot(slack: SlackEmulator, stand_in: OfflineGemini,
              make_settings: Callable[..., Any], mode: str):
    """Starts imagebot (``serve.running``); several runs share one database."""

    @contextlib.asynccontextmanager
    async def start(*, offline: bool = False, **overrides: Any) -> AsyncIterator[Bot]:
        settings = make_settings(
            stand_in.base_url, slack_bot_token=slack.bot_token, slack_api_url=slack.api_url,
            slack_signing_secret=slack.signing_secret,
            slack_app_token=slack.app_token if mode == "socket" else None, **overrides)
        connections = slack.socket_connection_count
        async with running(settings, offline=offline, port=0) as server:
            if mode == "socket":
                await slack.wait_for(lambda: slack.socket_connection_count > connections)
            yield Bot(slack, server, mode)

    return start


@pytest.fixture
async def bot(start_bot) -> AsyncIterator[Bot]:
    async with start_bot() as running_bot:
        yield running_bot


# --------------------------------------------------------------------------- reading results


def bot_messages(slack: SlackEmulator, channel: str, root_ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages(channel, root_ts) if m.get("bot_id") == slack.bot_id]


def shown(message: dict[str, Any]) -> str:
    """Everything a message shows: its text and the text of its blocks."""
    texts = [message.get("text") or ""]
    for block in message.get("blocks") or ():
        texts.append((block.get("text") or {}).get("text") or "")
        texts.extend(e.get("text") or "" for e in block.get("elements") or ()
                     if isinstance(e.get("text"), str))
    return "\n".join(texts)


def buttons_of(message: dict[str, Any]) -> dict[str, str]:
    return {e["action_id"]: e["value"] for b in message.get("blocks") or ()
            if b["type"] == "actions" for e in b["elements"]}


def is_error(message: dict[str, Any]) -> bool:
    return any(b.get("block_id") == render.ERROR_BLOCK_ID for b in message.get("blocks") or ())


def finals(slack: SlackEmulator, channel: str, root_ts: str) -> list[dict[str, Any]]:
    """The messages that end a turn: a result's tail (with buttons) or an error."""
    return [m for m in bot_messages(slack, channel, root_ts) if buttons_of(m) or is_error(m)]


def generations(stand_in: OfflineGemini) -> list[Any]:
    """Generate requests, history files resolved to their bytes (what the model sees)."""
    return [dataclasses.replace(r, body=resolved(r.body, stand_in))
            for r in stand_in.generations]


def image_sizes(content: dict[str, Any]) -> list[tuple[int, int]]:
    sizes = []
    for part in content["parts"]:
        inline = part.get("inlineData") or part.get("inline_data")
        if inline:
            data = base64.urlsafe_b64decode(inline["data"])
            sizes.append(Image.open(io.BytesIO(data)).size)
    return sizes


def prompt_of(content: dict[str, Any]) -> str:
    return " ".join(p["text"] for p in content["parts"] if "text" in p)


def twin_message_event(mention: dict[str, Any]) -> dict[str, Any]:
    """The ``message`` event Slack sends beside an ``app_mention`` for the same message."""
    subtype = {"subtype": "file_share"} if mention.get("files") else {}
    return {**mention, "type": "message", "channel_type": "channel", **subtype}


def result_uploads(slack: SlackEmulator) -> list[dict[str, Any]]:
    """Uploads of results, not of the drafts shown while the model thought."""
    return [u for u in slack.uploads if not u["filename"].startswith("imagebot-draft-")]


def image_file(slack: SlackEmulator, name: str, size: tuple[int, int], **kw: Any) -> dict:
    return slack.add_file(name=name, mimetype="image/png", content=corpus.png(*size),
                          user=kw.pop("user", ALICE), **kw)


# --------------------------------------------------------------------------- sessions


async def test_mention_starts_a_session_and_replies_continue_it(
        bot: Bot, slack: SlackEmulator, stand_in: OfflineGemini) -> None:
    cat = image_file(slack, "cat.png", (64, 48))
    mention = slack.app_mention_event(CHANNEL, ALICE, "paint this cat as a watercolor",
                                      files=[cat])
    await bot.event(mention)
    await bot.event(twin_message_event(mention))
    [tail] = await bot.results(mention["ts"], 1)

    [request] = generations(stand_in)
    user_turn = request.body["contents"][-1]
    assert prompt_of(user_turn) == "paint this cat as a watercolor"
    assert image_sizes(user_turn) == [(64, 48)]
    key = ThreadKey("slack", TEAM, CHANNEL, mention["ts"])
    assert await bot.server.core.service.store.thread_exists(key)
    [turn] = await bot.server.core.service.store.list_turns(key)
    assert buttons_of(tail) == {"imagebot_reroll": turn.id, "imagebot_4k": turn.id,
                                "imagebot_delete": turn.id, "imagebot_drafts": turn.id}
    assert "tokens" in shown(tail) and "Nano Banana Pro" in shown(tail)
    uploads = [u for u in slack.uploads if u["thread_ts"] == mention["ts"]]
    drafts = [u for u in uploads if u["filename"].startswith("imagebot-draft-")]
    results = [u for u in uploads if u not in drafts]
    # Without --ar the picture follows the reference's 4:3 shape.
    assert len(results) == 1 and Image.open(io.BytesIO(results[0]["bytes"])).size == (1200, 896)
    assert len(drafts) == 2, "Pro's two drafts showed while it thought"
    assert slack.deleted_files == [d["file_id"] for d in drafts], "and went with the result"
    assert not any("⏳" in shown(m) for m in bot_messages(slack, CHANNEL, mention["ts"]))
    assert [c.params["name"] for c in slack.calls_to("reactions.add")] == \
        ["hourglass_flowing_sand"]
    assert "reactions" not in slack.messages(CHANNEL, mention["ts"])[0]
    assert (await bot.server.core.service.store.get_turn(turn.id)).platform_refs["messages"]

    follow_up = slack.message_event(CHANNEL, ALICE, "now at night", thread_ts=mention["ts"])
    await bot.event(follow_up)
    await bot.results(mention["ts"], 2)
    contents = generations(stand_in)[-1].body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert prompt_of(contents[-1]) == "now at night"


async def test_other_traffic_is_ignored(bot: Bot, slack: SlackEmulator,
                                        stand_in: OfflineGemini) -> None:
    chatter = slack.message_event(CHANNEL, ALICE, "lunch anyone?")
    other_thread = slack.message_event(CHANNEL, BOB, "sure", thread_ts=chatter["ts"])
    for event in (chatter, other_thread,
                  slack.bot_message_event(CHANNEL, "deploy finished"),
                  slack.message_changed_event(CHANNEL, chatter["ts"], "lunch at 1?"),
                  slack.message_deleted_event(CHANNEL, other_thread["ts"])):
        await bot.event(event)
    own = await bot.adapter.client.chat_postMessage(channel=CHANNEL, text="I said this")
    own_event = {**own["message"], "channel": CHANNEL, "channel_type": "channel",
                 "event_ts": own["ts"]}
    await bot.event(own_event)
    mention = slack.app_mention_event(CHANNEL, ALICE, "a red kite")
    await bot.event(mention)
    await bot.results(mention["ts"], 1)
    assert len(generations(stand_in)) == 1
    ours = [m["ts"] for m in slack.messages(CHANNEL) if m.get("bot_id") == slack.bot_id
            and m.get("thread_ts") != mention["ts"]]
    assert ours == [own["ts"]]


async def test_mention_in_an_existing_thread_brings_its_images(
        bot: Bot, slack: SlackEmulator, stand_in: OfflineGemini) -> None:
    root = slack.post_user_message(CHANNEL, BOB, "poster ideas",
                                   files=[image_file(slack, "a.png", (64, 48), user=BOB)])
    slack.post_user_message(CHANNEL, ALICE, "notes", thread_ts=root["ts"], files=[
        slack.add_file(name="brief.pdf", mimetype="application/pdf", content=corpus.PDF,
                       user=ALICE)])
    slack.post_user_message(CHANNEL, ALICE, "and this", thread_ts=root["ts"],
                            files=[image_file(slack, "b.png", (30, 60))])
    mention = slack.app_mention_event(CHANNEL, ALICE, "combine these", thread_ts=root["ts"])
    await bot.event(mention)
    await bot.results(root["ts"], 1)
    assert image_sizes(generations(stand_in)[-1].body["contents"][-1]) == [(64, 48), (30, 60)]

    # Now a session: what is in the history is not sent again, only the new file.
    again = slack.message_event(CHANNEL, ALICE, "use this palette", thread_ts=root["ts"],
                                files=[image_file(slack, "c.png", (40, 40))])
    await bot.event(again)
    await bot.results(root["ts"], 2)
    contents = generations(stand_in)[-1].body["contents"]
    assert image_sizes(contents[-1]) == [(40, 40)]
    assert image_sizes(contents[0]) == [(64, 48), (30, 60)]


async def test_direct_messages_start_a_thread_each(bot: Bot, slack: SlackEmulator,
                                                   stand_in: OfflineGemini) -> None:
    first = slack.message_event(DM, ALICE, "a robot gardener")
    second = slack.message_event(DM, ALICE, "a paper boat")
    await bot.event(first)
    await bot.event(second)
    await bot.results(first["ts"], 1, channel=DM)
    await bot.results(second["ts"], 1, channel=DM)
    threads = {t.key.thread for t in await bot.server.core.service.store.list_threads("slack")}
    assert threads == {first["ts"], second["ts"]}
    assert all(len(r.body["contents"]) == 1 for r in generations(stand_in))


async def test_required_mentions(start_bot, slack: SlackEmulator,
                                 stand_in: OfflineGemini) -> None:
    async with start_bot(slack_require_mention=True) as bot:
        mention = slack.app_mention_event(CHANNEL, ALICE, "a lighthouse")
        await bot.event(mention)
        await bot.results(mention["ts"], 1)
        await bot.event(slack.message_event(CHANNEL, ALICE, "brighter", thread_ts=mention["ts"]))
        again = slack.app_mention_event(CHANNEL, ALICE, "at dawn", thread_ts=mention["ts"])
        await bot.event(again)
        await bot.results(mention["ts"], 2)
    assert [prompt_of(r.body["contents"][-1]) for r in generations(stand_in)] == \
        ["a lighthouse", "at dawn"]


@pytest.mark.parametrize("mode", ["socket"])
async def test_an_offline_preview_says_so(start_bot, slack: SlackEmulator) -> None:
    async with start_bot(offline=True) as bot:
        mention = slack.app_mention_event(CHANNEL, ALICE, "a koi pond")
        await bot.event(mention)
        [tail] = await bot.results(mention["ts"], 1)
    head = bot_messages(slack, CHANNEL, mention["ts"])[0]
    assert "⚠️ Offline preview" in shown(head)
    assert "OFFLINE PREVIEW" in shown(tail)


# --------------------------------------------------------------------------- /imagine


async def test_imagine_posts_the_request_and_works_in_its_thread(
        bot: Bot, slack: SlackEmulator, stand_in: OfflineGemini) -> None:
    started = time.monotonic()
    await bot.command("a lighthouse at dusk --ar 16:9")
    assert time.monotonic() - started < 3
    await slack.wait_for(lambda: bool(slack.messages(CHANNEL)))
    root = slack.messages(CHANNEL)[0]
    assert root.get("bot_id") and f"<@{ALICE}>" in shown(root)
    assert "a lighthouse at dusk --ar 16:9" in shown(root)
    await bot.results(root["ts"], 1)
    request = generations(stand_in)[-1]
    assert request.body["generationConfig"]["imageConfig"]["aspectRatio"] == "16:9"
    assert prompt_of(request.body["contents"][-1]) == "a lighthouse at dusk"
    assert await bot.server.core.service.store.thread_exists(
        ThreadKey("slack", TEAM, CHANNEL, root["ts"]))

    await bot.event(slack.message_event(CHANNEL, ALICE, "add a ship", thread_ts=root["ts"]))
    await bot.results(root["ts"], 2)
    assert len(generations(stand_in)[-1].body["contents"]) == 3


async def test_imagine_without_a_prompt_explains_itself(bot: Bot, slack: SlackEmulator) -> None:
    assert "Usage" in await bot.command("   ")
    assert not slack.messages(CHANNEL)


# --------------------------------------------------------------------------- delivery


async def test_a_redelivered_event_generates_once(bot: Bot, slack: SlackEmulator,
                                                  stand_in: OfflineGemini) -> None:
    mention = slack.app_mention_event(CHANNEL, ALICE, "a blue heron")
    envelope = await bot.event(mention)
    await bot.deliver(envelope, retry=1)
    await slack.wait_for(lambda: bot.adapter.status()["duplicates_dropped"] >= 1)
    await bot.results(mention["ts"], 1)
    assert len(generations(stand_in)) == 1
    assert len(finals(slack, CHANNEL, mention["ts"])) == 1
    assert len(result_uploads(slack)) == 1


@pytest.mark.parametrize("mode", ["http"])
async def test_http_requests_must_be_signed_and_fresh(start_bot, slack: SlackEmulator,
                                                      stand_in: OfflineGemini) -> None:
    async with start_bot() as bot:
        envelope = slack.event_envelope(slack.app_mention_event(CHANNEL, ALICE, "a fox"))
        assert (await slack.send_http_event(bot.url, envelope, bad_signature=True))[0] == 401
        stale = int(time.time()) - 600
        assert (await slack.send_http_event(bot.url, envelope, timestamp=stale))[0] == 401
        challenge = {"token": slack.verification_token, "challenge": "c4a11",
                     "type": "url_verification"}
        assert "c4a11" in (await slack.send_http_event(bot.url, challenge))[1]
        await bot.settle()
    assert not generations(stand_in)
    assert not slack.calls_to("chat.postMessage")


async def test_a_sign_in_page_instead_of_the_file_names_files_read(
        bot: Bot, slack: SlackEmulator, stand_in: OfflineGemini) -> None:
    locked = image_file(slack, "locked.png", (20, 20), serve_html_login=True)
    mention = slack.app_mention_event(CHANNEL, ALICE, "use this", files=[locked])
    await bot.event(mention)
    [error] = await bot.results(mention["ts"], 1)
    assert "files:read" in shown(error) and "locked.png" in shown(error)
    assert not generations(stand_in)
    assert slack.downloads[-1]["authorized"] is True


# --------------------------------------------------------------------------- restarts and buttons


async def test_a_restart_keeps_the_thread(start_bot, slack: SlackEmulator,
                                          stand_in: OfflineGemini) -> None:
    async with start_bot() as bot:
        mention = slack.app_mention_event(CHANNEL, ALICE, "a castle on a hill",
                                          files=[image_file(slack, "ref.png", (50, 40))])
        await bot.event(mention)
        await bot.results(mention["ts"], 1)
    async with start_bot() as bot:
        await bot.event(slack.message_event(CHANNEL, ALICE, "add a dragon",
                                            thread_ts=mention["ts"]))
        await bot.results(mention["ts"], 2)
    first, second = generations(stand_in)
    contents = second.body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[0] == first.body["contents"][0]
    assert image_sizes(contents[0]) == [(50, 40)] and image_sizes(contents[1])


async def test_buttons_work_after_a_restart(start_bot, slack: SlackEmulator,
                                            stand_in: OfflineGemini) -> None:
    async with start_bot() as bot:
        mention = slack.app_mention_event(CHANNEL, ALICE, "a tiny house")
        await bot.event(mention)
        [tail] = await bot.results(mention["ts"], 1)
    turn_id = buttons_of(tail)["imagebot_reroll"]
    first_messages = [m["ts"] for m in bot_messages(slack, CHANNEL, mention["ts"])]

    async with start_bot() as bot:
        store = bot.server.core.service.store
        await bot.click("reroll", turn_id, user=BOB, message_ts=tail["ts"])
        await bot.results(mention["ts"], 2)
        await bot.click("4k", turn_id, user=ALICE, message_ts=tail["ts"])
        [*_, tail_4k] = await bot.results(mention["ts"], 3)
        reroll, four_k = generations(stand_in)[1:]
        assert prompt_of(reroll.body["contents"][-1]) == "a tiny house"
        assert four_k.model == PRO
        assert four_k.body["generationConfig"]["imageConfig"]["imageSize"] == "4K"
        assert max(Image.open(io.BytesIO(slack.uploads[-1]["bytes"])).size) >= 4096
        assert "imagebot_4k" not in buttons_of(tail_4k)

        await bot.click("delete", turn_id, user=BOB, message_ts=tail["ts"])
        await slack.wait_for(lambda: bool(slack.ephemerals))
        assert "Only the person" in slack.ephemerals[-1]["text"]
        assert not (await store.get_turn(turn_id)).deleted

        await bot.click("delete", turn_id, user=ALICE, message_ts=tail["ts"])
        await slack.wait_for(lambda: len(slack.ephemerals) == 2)
        assert (await store.get_turn(turn_id)).deleted
        left = {m["ts"] for m in slack.messages(CHANNEL, mention["ts"])}
        assert not left & set(first_messages) and mention["ts"] in left

        reroll_id = buttons_of(finals(slack, CHANNEL, mention["ts"])[0])["imagebot_delete"]
        await bot.click("delete", reroll_id, user=BOSS, message_ts=tail_4k["ts"])
        await slack.wait_for(lambda: len(slack.ephemerals) == 3)
        assert (await store.get_turn(reroll_id)).deleted
        history = await store.load_history(ThreadKey("slack", TEAM, CHANNEL, mention["ts"]))
        assert len(history) == 2  # only the 4K turn is left


# --------------------------------------------------------------------------- failures


async def test_slack_rate_limits_are_waited_out(bot: Bot, slack: SlackEmulator) -> None:
    slack.queue_rate_limit("chat.postMessage", retry_after=1)
    slack.queue_rate_limit("files.completeUploadExternal", retry_after=1)
    # Nano Banana draws no drafts, so every upload is the result's.
    mention = slack.app_mention_event(CHANNEL, ALICE, "a hot air balloon --model flash")
    await bot.event(mention)
    await bot.results(mention["ts"], 1)
    posted = bot_messages(slack, CHANNEL, mention["ts"])
    messages = [m for m in posted if not m.get("upload")]
    assert len(slack.uploads) == 1 and len(posted) == len(messages) + 1
    # Each limited call was answered 429 once, waited out (Retry-After: 1) and sent again.
    for method, succeeded in (("chat.postMessage", len(messages)),
                              ("files.completeUploadExternal", 1)):
        calls = slack.calls_to(method)
        assert len(calls) == succeeded + 1 and calls[1].time - calls[0].time >= 1


async def test_a_failed_upload_is_reported(bot: Bot, slack: SlackEmulator) -> None:
    slack.queue_server_error("files.completeUploadExternal", status=500, times=3)
    mention = slack.app_mention_event(CHANNEL, ALICE, "a snow globe --model flash")
    await bot.event(mention)
    await slack.wait_for(lambda: any(buttons_of(m) for m in
                                     bot_messages(slack, CHANNEL, mention["ts"])))
    await bot.settle()
    texts = [shown(m) for m in bot_messages(slack, CHANNEL, mention["ts"])]
    assert any("did not accept the upload" in t for t in texts)
    assert not slack.uploads


async def test_a_safety_block_is_shown_in_the_thread(bot: Bot, slack: SlackEmulator,
                                                     stand_in: OfflineGemini) -> None:
    stand_in.faults.queue_finish("IMAGE_SAFETY")
    mention = slack.app_mention_event(CHANNEL, ALICE, "something questionable")
    await bot.event(mention)
    [error] = await bot.results(mention["ts"], 1)
    assert "safety" in shown(error).lower()
    assert len(bot_messages(slack, CHANNEL, mention["ts"])) == 1  # the status, now the error
    assert not await bot.server.core.service.store.thread_exists(
        ThreadKey("slack", TEAM, CHANNEL, mention["ts"]))


async def test_a_busy_thread_says_queued(bot: Bot, slack: SlackEmulator,
                                         stand_in: OfflineGemini) -> None:
    mention = slack.app_mention_event(CHANNEL, ALICE, "a windmill")
    await bot.event(mention)
    await bot.results(mention["ts"], 1)
    stand_in.faults.latency = 0.5
    for text in ("make it red", "make it blue"):
        await bot.event(slack.message_event(CHANNEL, ALICE, text, thread_ts=mention["ts"]))
    await bot.results(mention["ts"], 3)
    statuses = [c.params for c in slack.calls if c.method in ("chat.postMessage", "chat.update")]
    assert any(messages.QUEUED in str(p.get("text")) for p in statuses)
    prompts = [prompt_of(r.body["contents"][-1]) for r in generations(stand_in)]
    assert prompts == ["a windmill", "make it red", "make it blue"]


async def test_a_turn_cut_short_by_a_shutdown_says_so(core_factory, slack: SlackEmulator,
                                                      stand_in: OfflineGemini) -> None:
    stand_in.faults.latency = 5
    async with core_factory(slack_bot_token=slack.bot_token, slack_app_token=slack.app_token,
                            slack_api_url=slack.api_url) as core:
        adapter = SlackAdapter(core)
        await adapter.start()
        try:
            await slack.wait_socket_connected()
            assert adapter.status()["ok"] and adapter.status()["mode"] == "socket"
            mention = slack.app_mention_event(CHANNEL, ALICE, "a slow sunrise")
            await slack.socket_send("events_api", slack.event_envelope(mention))
            await slack.wait_for(lambda: any("Generating" in shown(m) for m in
                                             bot_messages(slack, CHANNEL, mention["ts"])))
            await core.service.shutdown(0.01)
        finally:
            await adapter.stop()
        assert not adapter.status()["ok"]
    [error] = finals(slack, CHANNEL, mention["ts"])
    assert "restarting" in shown(error)
    assert len(bot_messages(slack, CHANNEL, mention["ts"])) == 1


# --------------------------------------------------------------------------- escaping


def posted_texts(slack: SlackEmulator) -> list[str]:
    """The notification ``text`` of every message posted or updated."""
    return [str(c.params.get("text") or "") for c in slack.calls
            if c.method in ("chat.postMessage", "chat.update")]


async def test_user_content_never_pings_from_notification_text(
        bot: Bot, slack: SlackEmulator) -> None:
    trap = slack.add_file(name="<!channel> <@U123>.png", mimetype="image/png",
                          content=corpus.PDF, user=ALICE)
    mention = slack.app_mention_event(CHANNEL, ALICE, "use this", files=[trap])
    await bot.event(mention)
    [error] = await bot.results(mention["ts"], 1)
    assert "&lt;!channel&gt; &lt;@U123&gt;.png" in error["text"]

    await bot.command("<!here> fox")
    await slack.wait_for(lambda: any(m.get("bot_id") and "fox" in m.get("text", "")
                                     for m in slack.messages(CHANNEL)))
    root = next(m for m in slack.messages(CHANNEL) if "fox" in m.get("text", ""))
    await bot.results(root["ts"], 1)
    assert "&lt;!here&gt; fox" in root["text"]
    texts = posted_texts(slack)
    assert len(texts) >= 4
    for text in texts:
        assert "<!" not in text and "<@" not in text, text


# --------------------------------------------------------------------------- unreachable hosts


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_file_on_another_port_of_slacks_host_is_not_fetched(
        bot: Bot, slack: SlackEmulator, stand_in: OfflineGemini) -> None:
    photo = image_file(slack, "sunset.png", (20, 20))
    closed = f"http://127.0.0.1:{closed_port()}/"
    for field in ("url_private", "url_private_download"):
        slack.files[photo["id"]][field] = photo[field].replace(slack.base_url + "/", closed)
    mention = slack.app_mention_event(CHANNEL, ALICE, "warmer colours", files=[photo])
    await bot.event(mention)
    [error] = await bot.results(mention["ts"], 1)
    # Same host, another port: not Slack's file server (scheme, host and port must match).
    assert "`sunset.png` is not hosted on the platform's own file servers" in shown(error)
    assert messages.INTERNAL_ERROR not in shown(error)
    assert not generations(stand_in)


async def test_an_ephemeral_answer_that_cannot_be_sent_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    respond = AsyncRespond(response_url=f"http://127.0.0.1:{closed_port()}/actions/T1/1/x")
    await SlackAdapter._tell(respond, "Deleted.")
    assert any("could not answer with an ephemeral message: ClientConnectorError"
               in r.getMessage() for r in caplog.records)
