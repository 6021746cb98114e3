"""Self-test of the Discord emulator: a real discord.py 2.7 bot and raw wire clients."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.ext import commands
from PIL import Image

from tests.emulators.discord import EPHEMERAL, LOADING, DiscordEmulator, Intent, Permission

USER = "1400000000000000001"


def png(width: int = 4, height: int = 3) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- the bot


class FormModal(discord.ui.Modal, title="Describe your image"):
    prompt: discord.ui.TextInput[FormModal] = discord.ui.TextInput(
        label="Prompt", custom_id="prompt"
    )

    def __init__(self) -> None:
        super().__init__(custom_id="prompt_form", timeout=None)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"got {self.prompt.value}", ephemeral=True)


class MenuView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Open form", custom_id="open_form")
    async def open_form(
        self, interaction: discord.Interaction, _button: discord.ui.Button[MenuView]
    ) -> None:
        await interaction.response.send_modal(FormModal())


@app_commands.command(name="imagine", description="Make an image")
async def imagine(interaction: discord.Interaction, prompt: str, image: discord.Attachment) -> None:
    await interaction.response.defer(thinking=True)
    data = await image.read()
    await interaction.edit_original_response(
        content=f"done: {prompt}", attachments=[discord.File(io.BytesIO(data), "result.png")]
    )


@app_commands.command(name="menu", description="Show the menu")
async def menu(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("pick one", view=MenuView())


@app_commands.command(name="later", description="Defer, then follow up")
async def later(interaction: discord.Interaction) -> None:
    await interaction.response.defer(ephemeral=True)
    await interaction.followup.send("first", file=discord.File(io.BytesIO(png()), "first.png"))
    await interaction.followup.send("second")


@app_commands.context_menu(name="Describe")
async def describe(interaction: discord.Interaction, message: discord.Message) -> None:
    await interaction.response.send_message(f"describing {message.id}: {message.content}")


class ProbeBot(commands.Bot):
    """A minimal bot using the features the adapter will use."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(
            command_prefix="!", intents=intents, help_command=None, guild_ready_timeout=0.1
        )
        self.ready = asyncio.Event()
        self.seen: list[str] = []

    async def setup_hook(self) -> None:
        for command in (imagine, menu, later, describe):
            self.tree.add_command(command)
        await self.tree.sync()

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot:
            return
        self.seen.append(message.content)
        if message.content == "!thread":
            thread = await message.create_thread(name="Image thread")
            await thread.send("here", file=discord.File(io.BytesIO(png()), "t.png"))
        elif message.content == "!reply":
            async with message.channel.typing():
                await message.add_reaction("\N{THUMBS UP SIGN}")
                reply = await message.reply("pong")
            await reply.edit(content="pong!")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
async def emulator() -> AsyncIterator[DiscordEmulator]:
    emu = DiscordEmulator()
    await emu.start()
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = emu.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emu.gateway_url)
    emu.add_member(USER, "Alice")
    try:
        yield emu
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
        await emu.stop()


@pytest.fixture
async def bot(emulator: DiscordEmulator) -> AsyncIterator[ProbeBot]:
    before = asyncio.all_tasks()
    probe = ProbeBot()
    task = asyncio.create_task(probe.start(emulator.token))
    try:
        await asyncio.wait_for(probe.ready.wait(), 10)
        yield probe
    finally:
        await probe.close()
        await asyncio.wait_for(task, 10)
        await asyncio.sleep(0)
        current = asyncio.current_task()
        leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
        assert not leaked, leaked


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class RawGateway:
    """A bare gateway client, to check the wire protocol itself."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, emu: DiscordEmulator) -> RawGateway:
        gateway = cls(await session.ws_connect(emu.gateway_url + "?v=10&encoding=json"))
        hello = await gateway.recv()
        assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 41250
        return gateway

    async def recv(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        frame: dict[str, Any] = json.loads(msg.data)
        return frame

    async def identify(self, token: str, intents: int, shard: Any = None) -> None:
        props = {"os": "linux", "browser": "raw", "device": "raw"}
        data = {"token": token, "intents": intents, "properties": props}
        if shard is not None:
            data["shard"] = shard
        await self.ws.send_json({"op": 2, "d": data})

    async def next_dispatch(self, event: str) -> dict[str, Any]:
        while True:
            frame = await self.recv()
            if frame.get("t") == event:
                return frame


def bot_headers(emu: DiscordEmulator) -> dict[str, str]:
    return {"Authorization": f"Bot {emu.token}"}


async def sync_commands(http: aiohttp.ClientSession, emu: DiscordEmulator) -> None:
    body = [
        {
            "name": "imagine",
            "description": "Make an image",
            "type": 1,
            "options": [{"name": "prompt", "description": "What", "type": 3, "required": True}],
        }
    ]
    url = f"{emu.api_base}/applications/{emu.app_id}/commands"
    async with http.put(url, json=body, headers=bot_headers(emu)) as resp:
        assert resp.status == 200


# --------------------------------------------------------------------------- real bot


async def test_login_ready_and_guild_create(bot: ProbeBot, emulator: DiscordEmulator) -> None:
    assert emulator.identifies == 1 and emulator.resumes == 0
    assert bot.user is not None and bot.user.id == int(emulator.bot_user_id)
    guild = bot.get_guild(int(emulator.guild_id))
    assert guild is not None and guild.default_role.id == guild.id
    assert isinstance(guild.get_channel(int(emulator.channel_id)), discord.TextChannel)
    assert emulator.gateway_connections[0]["compress"] == "zlib-stream"
    assert emulator.identify_payloads[0]["intents"] & Intent.MESSAGE_CONTENT
    paths = [(c.method, c.path) for c in emulator.requests]
    assert paths[:3] == [
        ("GET", "/users/@me"),
        ("GET", "/oauth2/applications/@me"),
        ("PUT", f"/applications/{emulator.app_id}/commands"),
    ]
    synced = {c["name"]: c for c in emulator.global_commands}
    assert synced["imagine"]["options"][1]["type"] == 11
    assert synced["Describe"]["type"] == 3 and synced["Describe"]["description"] == ""


async def test_slash_command_with_attachment_defers_then_edits_with_file(
    bot: ProbeBot, emulator: DiscordEmulator, http: aiohttp.ClientSession
) -> None:
    image = png(8, 6)
    attachment = emulator.add_attachment("cat.png", image, "image/png")
    record = await emulator.slash_command(
        "imagine",
        {"prompt": "a cat"},
        user_id=USER,
        channel_id=emulator.channel_id,
        attachments={"image": attachment},
    )
    await emulator.wait_for(lambda: bool(record.original and record.original["attachments"]))

    assert record.callbacks == [{"type": 5}]
    callback = emulator.rest_calls("POST", f"/interactions/{record.id}/{record.token}/callback")[0]
    assert callback.query == {"with_response": "1"} and callback.status == 200
    patch = emulator.rest_calls(
        "PATCH", f"/webhooks/{emulator.app_id}/{record.token}/messages/@original"
    )[0]
    assert patch.multipart and patch.files[0][0] == "result.png" and patch.files[0][1] == image
    assert patch.json["attachments"] == [{"id": 0, "filename": "result.png"}]

    original = record.original
    assert original is not None and not original["flags"] & LOADING
    assert original["content"] == "done: a cat" and original["type"] == 20
    sent = original["attachments"][0]
    assert (sent["filename"], sent["content_type"], sent["width"], sent["height"]) == (
        "result.png",
        "image/png",
        8,
        6,
    )
    assert emulator.cdn_bytes(sent["url"]) == image
    assert any(attachment["id"] in c.path for c in emulator.cdn_requests)
    assert original in emulator.messages_in(emulator.channel_id)

    async with http.get(sent["url"]) as resp:
        assert resp.status == 200 and await resp.read() == image
    second = f"{emulator.api_base}/interactions/{record.id}/{record.token}/callback"
    async with http.post(second, json={"type": 4, "data": {"content": "again"}}) as resp:
        assert resp.status == 400 and (await resp.json())["code"] == 40060


async def test_thread_from_message_and_file_upload(
    bot: ProbeBot, emulator: DiscordEmulator
) -> None:
    starter = await emulator.send_message(emulator.channel_id, USER, "!thread")
    thread_id = starter["id"]
    await emulator.wait_for(lambda: bool(emulator.messages_in(thread_id)))

    thread = emulator.channels[thread_id]
    assert (
        thread["type"] == 11
        and thread["parent_id"] == emulator.channel_id
        and thread["name"] == "Image thread"
    )
    assert emulator.messages_in(emulator.channel_id)[0]["flags"] & 32
    posted = emulator.messages_in(thread_id)[0]
    assert posted["content"] == "here" and posted["attachments"][0]["filename"] == "t.png"
    upload = emulator.rest_calls("POST", f"/channels/{thread_id}/messages")[0]
    assert upload.multipart and upload.json["content"] == "here" and upload.files[0][1] == png()
    await emulator.wait_for(lambda: bot.get_channel(int(thread_id)) is not None)


async def test_rate_limit_with_via_header_is_waited_out(
    bot: ProbeBot, emulator: DiscordEmulator
) -> None:
    path = f"/channels/{emulator.channel_id}/messages"
    emulator.queue_rate_limit("POST", path, retry_after=0.3)
    channel = bot.get_channel(int(emulator.channel_id))
    assert isinstance(channel, discord.TextChannel)
    started = time.monotonic()
    message = await channel.send("after the limit")
    assert time.monotonic() - started >= 0.3
    first, second = emulator.rest_calls("POST", path)
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.3 and emulator.rate_limit_violations == 0
    assert message.content == "after the limit"


async def test_reconnect_resumes_and_replays_missed_events(
    bot: ProbeBot, emulator: DiscordEmulator
) -> None:
    await emulator.send_reconnect()
    await emulator.send_message(emulator.channel_id, USER, "sent while away")
    await emulator.wait_for(lambda: emulator.resumes == 1)
    await emulator.wait_for(lambda: "sent while away" in bot.seen)
    assert emulator.identifies == 1 and len(emulator.gateway_connections) == 2
    await emulator.send_message(emulator.channel_id, USER, "after resume")
    await emulator.wait_for(lambda: "after resume" in bot.seen)


async def test_button_click_then_modal_submit(bot: ProbeBot, emulator: DiscordEmulator) -> None:
    channel = emulator.channel_id
    shown = await emulator.slash_command("menu", {}, user_id=USER, channel_id=channel)
    await emulator.wait_for(lambda: shown.original is not None)
    assert shown.original is not None
    assert shown.original["components"][0]["components"][0]["custom_id"] == "open_form"

    click = await emulator.click_button(
        shown.original, "open_form", user_id=USER, channel_id=channel
    )
    await emulator.wait_for(lambda: click.modal is not None)
    assert (
        click.callbacks[0]["type"] == 9 and click.callbacks[0]["data"]["custom_id"] == "prompt_form"
    )

    submit = await emulator.submit_modal(
        "prompt_form", {"prompt": "a dog"}, user_id=USER, channel_id=channel
    )
    await emulator.wait_for(lambda: submit.original is not None)
    assert submit.original is not None and submit.original["content"] == "got a dog"
    assert submit.ephemeral and submit.original["flags"] & EPHEMERAL
    assert submit.original not in emulator.messages_in(channel)


async def test_followup_after_defer_edits_the_original(
    bot: ProbeBot, emulator: DiscordEmulator
) -> None:
    record = await emulator.slash_command("later", {}, user_id=USER, channel_id=emulator.channel_id)
    await emulator.wait_for(lambda: len(record.followups) == 1)
    assert record.callbacks == [{"type": 5, "data": {"flags": 64}}]
    original = record.original
    assert original is not None and original["content"] == "first" and record.ephemeral
    assert original["attachments"][0]["ephemeral"] is True
    assert (
        record.followups[0]["content"] == "second" and not record.followups[0]["flags"] & EPHEMERAL
    )
    assert record.followups[0] in emulator.messages_in(emulator.channel_id)


async def test_reply_reaction_typing_and_edit(bot: ProbeBot, emulator: DiscordEmulator) -> None:
    request = await emulator.send_message(emulator.channel_id, USER, "!reply")
    await emulator.wait_for(
        lambda: any(m.get("edited_timestamp") for m in emulator.messages_in(emulator.channel_id))
    )
    reply = emulator.messages_in(emulator.channel_id)[-1]
    assert reply["type"] == 19 and reply["content"] == "pong!"
    assert reply["message_reference"]["message_id"] == request["id"]
    assert [u["id"] for u in reply["mentions"]] == [USER]
    stored = emulator.find_message(request["id"])
    assert stored is not None and stored["reactions"][0]["emoji"] == {
        "id": None,
        "name": "\N{THUMBS UP SIGN}",
    }
    assert emulator.rest_calls("POST", f"/channels/{emulator.channel_id}/typing")


async def test_message_context_menu(bot: ProbeBot, emulator: DiscordEmulator) -> None:
    target = await emulator.send_message(emulator.channel_id, USER, "describe me")
    record = await emulator.message_command(
        "Describe", target, user_id=USER, channel_id=emulator.channel_id
    )
    await emulator.wait_for(lambda: record.original is not None)
    assert record.original is not None
    assert record.original["content"] == f"describing {target['id']}: describe me"
    assert record.original["type"] == 23


# --------------------------------------------------------------------------- raw wire checks


async def test_rest_validation_errors(
    emulator: DiscordEmulator, http: aiohttp.ClientSession
) -> None:
    url = f"{emulator.api_base}/channels/{emulator.channel_id}/messages"
    async with http.get(
        f"{emulator.api_base}/users/@me", headers={"Authorization": "Bot wrong"}
    ) as resp:
        assert resp.status == 401 and resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == {"message": "401: Unauthorized", "code": 0}

    async def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with http.post(url, json=body, headers=bot_headers(emulator)) as resp:
            return resp.status, await resp.json()

    status, data = await post({"content": "x" * 2001})
    assert status == 400 and data["code"] == 50035 and "content" in data["errors"]
    status, data = await post({"embeds": [{"description": "x" * 4097}]})
    assert (
        data["errors"]["embeds"]["0"]["description"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    )
    status, data = await post(
        {"embeds": [{"title": "t", "fields": [{"name": "n", "value": "v"}] * 26}]}
    )
    assert status == 400 and "fields" in data["errors"]["embeds"]["0"]
    status, data = await post({"content": "  "})
    assert (status, data["code"]) == (400, 50006)
    status, data = await post({"content": "ok", "message_reference": {"message_id": "1"}})
    assert status == 400 and "message_reference" in data["errors"]
    status, data = await post({"content": "ok"})
    assert status == 200 and "guild_id" not in data and data["author"]["bot"] is True

    emulator.guild_upload_limit = 10
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("payload_json", json.dumps({"attachments": [{"id": 0, "filename": "big.bin"}]}))
    form.add_field(
        "files[0]", b"x" * 11, filename="big.bin", content_type="application/octet-stream"
    )
    async with http.post(url, data=form, headers=bot_headers(emulator)) as resp:
        assert resp.status == 413 and (await resp.json())["code"] == 40005

    async with http.get(
        f"{emulator.api_base}/channels/1/messages/1", headers=bot_headers(emulator)
    ) as resp:
        assert resp.status == 404 and (await resp.json())["code"] == 10003
    attachment = emulator.add_attachment("a.txt", b"hello")
    assert attachment["content_type"] == "text/plain; charset=utf-8"
    async with http.get(attachment["url"].split("?")[0]) as resp:
        assert resp.status == 404


async def test_the_upload_limit_follows_the_guilds_boost_tier(
    emulator: DiscordEmulator, http: aiohttp.ClientSession
) -> None:
    url = f"{emulator.api_base}/channels/{emulator.channel_id}/messages"

    async def upload(size: int) -> int:
        form = aiohttp.FormData(quote_fields=False)
        form.add_field("payload_json",
                       json.dumps({"attachments": [{"id": 0, "filename": "a.bin"}]}))
        form.add_field("files[0]", b"x" * size, filename="a.bin",
                       content_type="application/octet-stream")
        async with http.post(url, data=form, headers=bot_headers(emulator)) as resp:
            return resp.status

    mib = 2**20
    assert emulator.guild_upload_limit == 10 * mib
    assert await upload(10 * mib) == 200 and await upload(10 * mib + 1) == 413
    emulator.guild["premium_tier"] = 2
    assert await upload(10 * mib + 1) == 200 and await upload(50 * mib + 1) == 413
    assert DiscordEmulator(premium_tier=3).guild_upload_limit == 100 * mib
    # discord.py reads the same limit from the guild's tier.
    assert discord.Guild._PREMIUM_GUILD_LIMITS[2].filesize == 50 * mib


async def test_a_message_takes_25_mib_of_files_and_10_files_at_most(
    emulator: DiscordEmulator, http: aiohttp.ClientSession
) -> None:
    """Each file stays under the per-file limit, and the whole request under 25 MiB."""
    url = f"{emulator.api_base}/channels/{emulator.channel_id}/messages"

    async def upload(*sizes: int) -> tuple[int, Any]:
        form = aiohttp.FormData(quote_fields=False)
        entries = [{"id": i, "filename": f"{i}.bin"} for i in range(len(sizes))]
        form.add_field("payload_json", json.dumps({"attachments": entries}))
        for i, size in enumerate(sizes):
            form.add_field(f"files[{i}]", b"x" * size, filename=f"{i}.bin",
                           content_type="application/octet-stream")
        async with http.post(url, data=form, headers=bot_headers(emulator)) as resp:
            return resp.status, await resp.json()

    mb = 1_000_000
    status, _ = await upload(*[8 * mb] * 3)  # three 4K JPEGs: 24 MB
    assert status == 200
    status, body = await upload(*[8 * mb] * 4)  # each one fits, the message does not
    assert (status, body) == (413, {"message": "Request entity too large", "code": 40005})
    status, body = await upload(*[10] * 11)
    assert status == 400 and body["code"] == 50035
    assert body["errors"]["attachments"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    assert (await upload(*[10] * 10))[0] == 200
    emulator.guild["premium_tier"] = 2  # a 50 MiB file fits in a boosted guild's message
    assert emulator.message_request_limit == 50 * 2**20


async def test_threads_reactions_and_faults(
    emulator: DiscordEmulator, http: aiohttp.ClientSession
) -> None:
    api, headers = emulator.api_base, bot_headers(emulator)
    channel = emulator.channel_id
    async with http.post(
        f"{api}/channels/{channel}/threads", json={"name": "t", "type": 11}, headers=headers
    ) as resp:
        thread = await resp.json()
        assert (
            resp.status == 200
            and thread["type"] == 11
            and thread["thread_metadata"]["archived"] is False
        )
    notice = emulator.messages_in(channel)[-1]
    assert notice["type"] == 18 and notice["message_reference"]["channel_id"] == thread["id"]
    async with http.post(
        f"{api}/channels/{thread['id']}/threads", json={"name": "t"}, headers=headers
    ) as resp:
        assert (await resp.json())["code"] == 50024
    async with http.post(
        f"{api}/channels/{channel}/messages/{notice['id']}/threads",
        json={"name": ""},
        headers=headers,
    ) as resp:
        assert (await resp.json())["code"] == 50035

    user_message = emulator.message_payload(channel, USER, "hi")
    reaction = f"{api}/channels/{channel}/messages/{user_message['id']}/reactions/x/@me"
    async with http.put(reaction, headers=headers) as resp:
        assert (resp.status, (await resp.json())["code"]) == (400, 10014)
    async with http.patch(
        f"{api}/channels/{channel}/messages/{user_message['id']}",
        json={"content": "no"},
        headers=headers,
    ) as resp:
        assert (resp.status, (await resp.json())["code"]) == (403, 50005)
    async with http.delete(
        f"{api}/channels/{channel}/messages/{user_message['id']}", headers=headers
    ) as resp:
        assert resp.status == 204 and emulator.find_message(user_message["id"]) is None

    emulator.queue_rate_limit("GET", "/gateway", retry_after=0.1, cloudflare=True)
    async with http.get(f"{api}/gateway") as resp:
        assert resp.status == 429 and "Via" not in resp.headers and resp.content_type == "text/html"
    emulator.queue_error("GET", f"/channels/{channel}", status=502)
    emulator.queue_rate_limit("GET", "/users/@me", retry_after=5, global_=True)
    async with http.get(f"{api}/channels/{channel}", headers=headers) as resp:
        assert resp.status == 502 and (await resp.json())["message"] == "502: Bad Gateway"
    async with http.get(f"{api}/users/@me", headers=headers) as resp:
        assert resp.status == 429 and resp.headers["X-RateLimit-Global"] == "true"
        assert resp.headers["Via"] == "1.1 google" and resp.headers["Retry-After"] == "5"
        assert await resp.json() == {
            "message": "You are being rate limited.",
            "retry_after": 5.0,
            "global": True,
        }
    async with http.get(f"{api}/channels/{channel}", headers=headers) as resp:
        assert resp.status == 429 and emulator.rate_limit_violations == 1


async def test_permissions_history_and_content_redaction(
    emulator: DiscordEmulator, http: aiohttp.ClientSession
) -> None:
    api, headers = emulator.api_base, bot_headers(emulator)
    url = f"{api}/channels/{emulator.channel_id}/messages"
    emulator.bot_permissions &= ~Permission.ATTACH_FILES
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("payload_json", json.dumps({"content": "file"}))
    form.add_field("files[0]", png(), filename="a b.png", content_type="application/octet-stream")
    async with http.post(url, data=form, headers=headers) as resp:
        assert (resp.status, (await resp.json())["code"]) == (403, 50013)
    emulator.bot_permissions |= Permission.ATTACH_FILES
    form = aiohttp.FormData(quote_fields=False)
    form.add_field(
        "payload_json", json.dumps({"embeds": [{"image": {"url": "attachment://a_b.png"}}]})
    )
    form.add_field("files[0]", png(), filename="a b.png", content_type="application/octet-stream")
    async with http.post(url, data=form, headers=headers) as resp:
        sent = await resp.json()
    assert sent["attachments"] == [] and sent["embeds"][0]["image"]["width"] == 4
    assert emulator.cdn_bytes(sent["embeds"][0]["image"]["url"]) == png()

    private = emulator.message_payload(emulator.channel_id, USER, "private words")
    emulator.message_content_intent = False
    async with http.get(url + "?limit=2", headers=headers) as resp:
        newest_first = await resp.json()
    assert [m["id"] for m in newest_first] == [private["id"], sent["id"]]
    assert newest_first[0]["content"] == "" and private["content"] == "private words"


async def test_gateway_handshake_and_close_codes(
    emulator: DiscordEmulator, http: aiohttp.ClientSession
) -> None:
    gateway = await RawGateway.connect(http, emulator)
    await gateway.ws.send_json({"op": 1, "d": None})
    assert (await gateway.recv())["op"] == 11
    await gateway.identify(emulator.token, int(Intent.GUILDS | Intent.GUILD_MESSAGES))
    ready = await gateway.recv()
    assert (ready["t"], ready["s"]) == ("READY", 1)
    assert ready["d"]["resume_gateway_url"] == emulator.gateway_url
    assert ready["d"]["guilds"] == [{"id": emulator.guild_id, "unavailable": True}]
    guild = await gateway.recv()
    assert (guild["t"], guild["s"]) == ("GUILD_CREATE", 2)
    assert (
        guild["d"]["member_count"] == 2 and len(guild["d"]["members"]) == 1
    )  # no GUILD_MEMBERS intent
    await emulator.wait_identified()

    await emulator.send_message(emulator.channel_id, USER, "secret")
    await emulator.send_message(emulator.channel_id, USER, "hi bot", mentions_bot=True)
    hidden, shown = (
        await gateway.next_dispatch("MESSAGE_CREATE"),
        await gateway.next_dispatch("MESSAGE_CREATE"),
    )
    assert hidden["d"]["content"] == "" and "user" not in hidden["d"]["member"]
    assert shown["d"]["content"] == f"<@{emulator.bot_user_id}> hi bot"
    await gateway.ws.close()

    bad = await RawGateway.connect(http, emulator)
    await bad.identify("wrong", 1)
    closed = await bad.ws.receive(timeout=5)
    assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4004

    emulator.message_content_intent = False
    denied = await RawGateway.connect(http, emulator)
    await denied.identify(emulator.token, int(Intent.GUILDS | Intent.MESSAGE_CONTENT))
    closed = await denied.ws.receive(timeout=5)
    assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4014


async def test_each_shard_gets_its_own_session_and_only_its_guilds_events(
    emulator: DiscordEmulator, http: aiohttp.ClientSession
) -> None:
    first = emulator.guild_shard(emulator.guild_id, 2)
    other = emulator.add_guild("Second Guild", shard=(1 - first, 2))
    second = other["guild_id"]
    assert emulator.guild_shard(second, 2) == 1 - first
    emulator.recommended_shards = 2
    async with http.get(f"{emulator.api_base}/gateway/bot", headers=bot_headers(emulator)) as r:
        answer = await r.json()
    assert answer["shards"] == 2 and answer["url"] == emulator.gateway_url
    assert set(answer["session_start_limit"]) == {"total", "remaining", "reset_after",
                                                  "max_concurrency"}
    intents = int(Intent.GUILDS | Intent.GUILD_MESSAGES)
    gateways = {}
    for shard in (0, 1):
        gateway = await RawGateway.connect(http, emulator)
        await gateway.identify(emulator.token, intents, [shard, 2])
        ready = await gateway.next_dispatch("READY")
        owned = emulator.guild_id if shard == first else second
        assert ready["d"]["shard"] == [shard, 2] and ready["s"] == 1
        assert ready["d"]["guilds"] == [{"id": owned, "unavailable": True}]
        created = await gateway.next_dispatch("GUILD_CREATE")
        assert created["d"]["id"] == owned and created["s"] == 2
        channels = [c["id"] for c in created["d"]["channels"]]
        assert channels == [emulator.channel_id if shard == first else other["id"]]
        everyone = [r for r in created["d"]["roles"] if r["name"] == "@everyone"]
        assert [r["id"] for r in everyone] == [owned]
        gateways[shard] = gateway
    assert sorted(emulator.sessions) == [0, 1]
    assert emulator.sessions[0].session_id != emulator.sessions[1].session_id

    await emulator.send_message(other["id"], USER, "in the second guild")
    await emulator.send_message(emulator.channel_id, USER, "in the first guild")
    got = await gateways[1 - first].next_dispatch("MESSAGE_CREATE")
    assert got["d"]["guild_id"] == second and got["s"] == 3
    got = await gateways[first].next_dispatch("MESSAGE_CREATE")
    assert got["d"]["guild_id"] == emulator.guild_id and got["s"] == 3, "one event each"
    assert emulator.sessions[0].seq == emulator.sessions[1].seq == 3
    for gateway in gateways.values():
        await gateway.ws.close()


@pytest.mark.parametrize(("shard", "code"), [
    ([2, 2], 4010), ([-1, 2], 4010), ([0, 0], 4010), ([0], 4010), ("0,2", 4010),
    (None, 4011), ([0, 1], 4011),
])
async def test_an_invalid_or_missing_shard_is_refused(
    emulator: DiscordEmulator, http: aiohttp.ClientSession, shard: Any, code: int
) -> None:
    emulator.recommended_shards, emulator.sharding_required = 2, True
    gateway = await RawGateway.connect(http, emulator)
    await gateway.identify(emulator.token, int(Intent.GUILDS), shard)
    closed = await gateway.ws.receive(timeout=5)
    assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == code
    assert not emulator.sessions


async def test_interaction_tokens_and_deadlines(
    emulator: DiscordEmulator, http: aiohttp.ClientSession
) -> None:
    gateway = await RawGateway.connect(http, emulator)
    await gateway.identify(emulator.token, int(Intent.GUILDS))
    await sync_commands(http, emulator)
    await emulator.wait_identified()
    channel = emulator.channel_id

    record = await emulator.slash_command(
        "imagine", {"prompt": "x"}, user_id=USER, channel_id=channel
    )
    event = await gateway.next_dispatch("INTERACTION_CREATE")
    assert event["d"]["data"]["options"] == [{"name": "prompt", "type": 3, "value": "x"}]
    assert event["d"]["attachment_size_limit"] == 10 * 1024 * 1024
    hook = f"{emulator.api_base}/webhooks/{emulator.app_id}/{record.token}"
    async with http.post(hook + "?wait=true", json={"content": "too early"}) as resp:
        assert resp.status == 404 and (await resp.json())["code"] == 10015
    callback = f"{emulator.api_base}/interactions/{record.id}/{record.token}/callback"
    async with http.post(callback, json={"type": 7, "data": {"content": "no"}}) as resp:
        assert resp.status == 400 and (await resp.json())["code"] == 50035
    async with http.post(
        callback, json={"type": 4, "data": {"content": "hello", "flags": 64}}
    ) as resp:
        assert resp.status == 204
    assert record.ephemeral and record.original is not None
    async with http.post(hook + "?wait=true", json={"content": "follow"}) as resp:
        assert resp.status == 200 and (await resp.json())["content"] == "follow"
    assert [m["content"] for m in record.followups] == ["follow"]

    emulator.interaction_ack_seconds = 0.05
    late = await emulator.slash_command(
        "imagine", {"prompt": "y"}, user_id=USER, channel_id=channel
    )
    await asyncio.sleep(0.1)
    late_url = (
        f"{emulator.api_base}/interactions/{late.id}/{late.token}/callback?with_response=true"
    )
    async with http.post(late_url, json={"type": 5}) as resp:
        assert resp.status == 404 and (await resp.json())["code"] == 10062
    await gateway.ws.close()
