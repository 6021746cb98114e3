"""Team controls on Slack, end to end: the real slack-bolt app against the Slack emulator and
the offline Gemini stand-in, in Socket Mode and in HTTP mode."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from adapters.slack.admin import ACTION_PREFIX, RESET
from bot.audit import POLICY_CHANGE, REFUSED_POLICY, REFUSED_QUOTA
from bot.model import ThreadKey
from bot.options import FLASH
from offline_gemini import OfflineGemini
from tests.adapters.test_slack import (
    ALICE,
    BOB,
    BOSS,
    CHANNEL,
    TEAM,
    Bot,
    finals,
    generations,
    is_error,
    shown,
)
from tests.emulators.slack import SlackEmulator

MANIFEST = Path(__file__).resolve().parents[2] / "config" / "slack-manifest.yaml"


async def imagebot(bot: Bot, text: str, *, user: str) -> None:
    """Runs ``/imagebot TEXT`` (acknowledged within Slack's 3 s)."""
    payload = bot.slack.slash_command_payload("/imagebot", text, user=user, channel=CHANNEL)
    if bot.mode == "socket":
        await bot.slack.socket_send("slash_commands", payload, accepts_response_payload=True,
                                    ack_timeout=3.0)
    else:
        status, _ = await bot.slack.send_http_form(bot.url, payload, ack_timeout=3.0)
        assert status == 200


async def pick(bot: Bot, *, user: str, action_id: str, value: str) -> None:
    """A pick in a menu of an ephemeral message (Slack sends no ``message`` for those)."""
    emulator = bot.slack
    hook = emulator._new_hook("actions", channel=CHANNEL, user=user)
    name = emulator.users[user]["name"]
    action: dict[str, Any] = {"action_id": action_id, "block_id": action_id,
                              "action_ts": f"{time.time():.6f}"}
    if action_id == RESET:
        action.update(type="button", value=value,
                      text={"type": "plain_text", "text": "Reset"})
    else:
        action.update(type="static_select", selected_option={
            "text": {"type": "plain_text", "text": value}, "value": value})
    payload = {
        "type": "block_actions", "api_app_id": emulator.app_id,
        "token": emulator.verification_token,
        "user": {"id": user, "username": name, "name": name, "team_id": TEAM},
        "container": {"type": "message", "message_ts": f"{time.time():.6f}",
                      "channel_id": CHANNEL, "is_ephemeral": True},
        "trigger_id": f"{time.time_ns()}.1.abc", "team": {"id": TEAM, "domain": "testteam"},
        "enterprise": None, "is_enterprise_install": False,
        "channel": {"id": CHANNEL, "name": "studio"}, "state": {"values": {}},
        "response_url": hook, "actions": [action]}
    if bot.mode == "socket":
        await emulator.socket_send("interactive", payload)
    else:
        assert (await emulator.send_http_form(bot.url, {"payload": payload}))[0] == 200


def private_to(emulator: SlackEmulator, user: str) -> list[dict[str, Any]]:
    return [e for e in emulator.ephemerals if e["user"] == user]


def selects(ephemeral: dict[str, Any]) -> dict[str, str]:
    """The settings menus of an ephemeral answer: action id -> the value shown."""
    return {b["accessory"]["action_id"]: b["accessory"]["initial_option"]["value"]
            for b in ephemeral.get("blocks") or () if b.get("accessory")}


async def test_twenty_mentions_at_once_against_a_quota_of_five(
        start_bot, slack: SlackEmulator, stand_in: OfflineGemini) -> None:
    stand_in.faults.latency = 0.3
    async with start_bot(daily_images_per_user=5) as bot:
        mentions = [slack.app_mention_event(CHANNEL, ALICE, f"a kite, take {n}")
                    for n in range(20)]
        await asyncio.gather(*(bot.event(m) for m in mentions))
        await slack.wait_for(lambda: all(finals(slack, CHANNEL, m["ts"]) for m in mentions),
                             timeout=60)
        await bot.settle()
        ends = [finals(slack, CHANNEL, m["ts"])[0] for m in mentions]
        refused = [shown(e) for e in ends if is_error(e)]
        assert len(generations(stand_in)) == 5 and len(refused) == 15
        assert all("5 of 5" in t and "resets at midnight UTC" in t for t in refused)
        refusals = await bot.server.core.service.audit_log(actions=[REFUSED_QUOTA])
        assert len(refusals) == 15 and {r.actor for r in refusals} == {f"slack:{ALICE}"}


async def test_a_denied_user_and_a_disallowed_model_are_refused_before_any_api_call(
        start_bot, slack: SlackEmulator, stand_in: OfflineGemini) -> None:
    policy = {"admins": [f"slack:{BOSS}"],
              "channels": {f"slack/{TEAM}/{CHANNEL}": {"deny_users": [BOB],
                                                       "allowed_models": ["flash"]}}}
    async with start_bot(policy=policy) as bot:
        denied = slack.app_mention_event(CHANNEL, BOB, "a castle")
        pro = slack.app_mention_event(CHANNEL, ALICE, "a castle --model pro")
        for event in (denied, pro):
            await bot.event(event)
        [no] = await bot.results(denied["ts"], 1)
        [not_pro] = await bot.results(pro["ts"], 1)
        assert not generations(stand_in)
        assert "deny_users" in shown(no) and f"<@{BOSS}>" in shown(no)
        assert "Nano Banana Pro isn't allowed here" in shown(not_pro)
        assert "allowed_models" in shown(not_pro) and f"<@{BOSS}>" in shown(not_pro)
        quiet = slack.app_mention_event(CHANNEL, ALICE, "a castle")
        await bot.event(quiet)
        await bot.results(quiet["ts"], 1)
        assert [r.model for r in generations(stand_in)] == [FLASH]
        assert len(await bot.server.core.service.audit_log(actions=[REFUSED_POLICY])) == 2


async def test_usage_and_settings_answer_privately_and_admins_change_the_channel(
        start_bot, slack: SlackEmulator, stand_in: OfflineGemini) -> None:
    async with start_bot(daily_images_per_user=5) as bot:
        mention = slack.app_mention_event(CHANNEL, ALICE, "a lantern")
        await bot.event(mention)
        await bot.results(mention["ts"], 1)
        posted = len(slack.calls_to("chat.postMessage"))

        await imagebot(bot, "usage", user=ALICE)
        await slack.wait_for(lambda: private_to(slack, ALICE))
        usage = private_to(slack, ALICE)[-1]["text"]
        assert usage.startswith("*Your imagebot usage*\nToday: 1 image, $0.1")
        assert "4 of your 5 images a day" in usage and "Top people" not in usage

        await imagebot(bot, "usage", user=BOSS)  # a workspace admin in Slack
        await slack.wait_for(lambda: private_to(slack, BOSS))
        assert f"*Top people this month*: <@{ALICE}> 1 image" in private_to(slack, BOSS)[-1][
            "text"]

        await imagebot(bot, "settings", user=ALICE)
        await slack.wait_for(lambda: len(private_to(slack, ALICE)) == 2)
        assert "Only admins can change these." in private_to(slack, ALICE)[-1]["text"]
        assert not selects(private_to(slack, ALICE)[-1])
        await imagebot(bot, "settings", user=BOSS)
        await slack.wait_for(lambda: len(private_to(slack, BOSS)) == 2)
        menus = selects(private_to(slack, BOSS)[-1])
        assert menus[f"{ACTION_PREFIX}allowed_models"] == "inherit"

        await pick(bot, user=BOSS, action_id=f"{ACTION_PREFIX}allowed_models", value=FLASH)
        await slack.wait_for(lambda: len(private_to(slack, BOSS)) == 3)
        assert selects(private_to(slack, BOSS)[-1])[f"{ACTION_PREFIX}allowed_models"] == FLASH
        await pick(bot, user=ALICE, action_id=f"{ACTION_PREFIX}max_size", value="1K")
        await slack.wait_for(lambda: len(private_to(slack, ALICE)) == 3)
        assert "Only imagebot admins" in private_to(slack, ALICE)[-1]["text"]
        assert len(slack.calls_to("chat.postMessage")) == posted, "nothing said in public"

        service = bot.server.core.service
        where = ThreadKey("slack", TEAM, CHANNEL, "")
        assert (await service.policy_for(where)).allowed_models() == {FLASH}
        [change] = await service.audit_log(actions=[POLICY_CHANGE])
        assert change.actor == f"slack:{BOSS}" and change.where == where
        await pick(bot, user=BOSS, action_id=RESET, value="reset")
        await slack.wait_for(lambda: len(private_to(slack, BOSS)) == 4)
        assert (await service.policy_for(where)).allowed_models() is None


async def test_imagebot_without_a_subcommand_explains_itself(start_bot, slack) -> None:
    async with start_bot() as bot:
        payload = slack.slash_command_payload("/imagebot", "", user=ALICE, channel=CHANNEL)
        if bot.mode == "socket":
            ack = await slack.socket_send("slash_commands", payload,
                                          accepts_response_payload=True)
            text = str((ack.get("payload") or {}).get("text"))
        else:
            text = (await slack.send_http_form(bot.url, payload))[1]
        assert "/imagebot usage" in text and "/imagebot settings" in text
    assert not slack.messages(CHANNEL) and not slack.ephemerals


def test_the_manifest_has_the_command() -> None:
    text = MANIFEST.read_text()
    assert "- command: /imagebot" in text and "- command: /imagine" in text


async def test_a_failed_generation_gives_its_quota_back(start_bot, slack: SlackEmulator,
                                                        stand_in: OfflineGemini) -> None:
    async with start_bot(daily_images_per_user=1) as bot:
        stand_in.faults.queue_finish("IMAGE_SAFETY")
        blocked = slack.app_mention_event(CHANNEL, ALICE, "something questionable")
        await bot.event(blocked)
        [error] = await bot.results(blocked["ts"], 1)
        assert "safety" in shown(error).lower()
        second = slack.app_mention_event(CHANNEL, ALICE, "a harmless cat")
        await bot.event(second)
        [tail] = await bot.results(second["ts"], 1)
        assert not is_error(tail) and len(generations(stand_in)) == 2
        third = slack.app_mention_event(CHANNEL, ALICE, "one more")
        await bot.event(third)
        [refused] = await bot.results(third["ts"], 1)
        assert "1 of 1" in shown(refused) and len(generations(stand_in)) == 2
        [audited] = await bot.server.core.service.audit_log(actions=["blocked.safety"])
        assert audited.actor == f"slack:{ALICE}"
