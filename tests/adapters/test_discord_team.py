"""Team controls on Discord, end to end: a real discord.py client against the Discord
emulator, with the real Gemini SDK against the offline stand-in."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.audit import POLICY_CHANGE, REFUSED_POLICY, REFUSED_QUOTA
from bot.model import ThreadKey
from bot.options import FLASH
from tests.adapters.test_discord import USER, Opener, settled
from tests.emulators.discord import (
    DEFAULT_MEMBER_PERMISSIONS,
    DiscordEmulator,
    InteractionRecord,
    Permission,
)

BOSS = "1400000000000000009"
MALLORY = "1400000000000000007"
MANAGE_GUILD = 1 << 5


def generations(stand_in: Any) -> list[Any]:
    return [r for r in stand_in.requests if r.method in ("generateContent",
                                                        "streamGenerateContent")]


def answered(record: InteractionRecord) -> bool:
    """The interaction's response is there (not the deferred "thinking" state)."""
    return bool(record.original and not record.original["flags"] & (1 << 7))


def text(record: InteractionRecord) -> str:
    return str((record.original or {}).get("content") or "")


def menus(record: InteractionRecord) -> dict[str, list[str]]:
    """Select menus of a response: custom id -> the values marked as chosen."""
    found = {}
    for row in (record.original or {}).get("components") or ():
        for item in row["components"]:
            if item["type"] == 3:
                found[item["custom_id"]] = [o["value"] for o in item["options"]
                                            if o.get("default")]
    return found


def place(discord: DiscordEmulator) -> ThreadKey:
    return ThreadKey("discord", discord.guild_id, discord.channel_id, "")


async def test_twenty_imagines_at_once_against_a_quota_of_five(
        open_bot: Opener, emulator: DiscordEmulator, stand_in: Any) -> None:
    stand_in.faults.latency = 0.3
    async with open_bot(daily_images_per_user=5) as (core, adapter):
        records = await asyncio.gather(*(
            emulator.slash_command("imagine", {"prompt": f"a comet, take {n}"}, user_id=USER,
                                   channel_id=emulator.channel_id) for n in range(20)))
        await emulator.wait_for(lambda: all(r.acknowledged for r in records), timeout=30)
        refused = [r for r in records if r.ephemeral]
        accepted = [r for r in records if r.deferred]
        assert len(refused) == 15 and len(accepted) == 5
        await emulator.wait_for(lambda: all(answered(r) for r in accepted), timeout=60)
        await settled(emulator, adapter)
        assert len(generations(stand_in)) == 5
        assert all(r.original and r.original["attachments"] for r in accepted)
        for record in refused:
            assert "5 of 5" in text(record) and "resets at midnight UTC" in text(record)
            assert record.callbacks[0]["type"] == 4, "refused at once, privately"
        quota_refusals = await core.service.audit_log(actions=[REFUSED_QUOTA])
        assert len(quota_refusals) == 15


async def test_a_denied_role_and_a_disallowed_model_are_refused_before_any_api_call(
        open_bot: Opener, emulator: DiscordEmulator, stand_in: Any) -> None:
    mallory = emulator.add_member(MALLORY, "Mallory", permissions=DEFAULT_MEMBER_PERMISSIONS
                                  & ~Permission.CHANGE_NICKNAME)
    [denied_role] = mallory["roles"]
    policy = {"admins": [f"discord:{BOSS}"],
              "channels": {f"discord/{emulator.guild_id}/{emulator.channel_id}": {
                  "deny_roles": [denied_role], "allowed_models": ["flash"]}}}
    async with open_bot(policy=policy) as (core, adapter):
        denied = await emulator.slash_command("imagine", {"prompt": "a mask"}, user_id=MALLORY,
                                              channel_id=emulator.channel_id)
        pro = await emulator.slash_command("imagine", {"prompt": "a mask", "model": "pro"},
                                           user_id=USER, channel_id=emulator.channel_id)
        await emulator.wait_for(lambda: denied.ephemeral and pro.ephemeral)
        assert not generations(stand_in)
        assert "deny_roles" in text(denied) and f"<@{BOSS}>" in text(denied)
        assert "Nano Banana Pro isn't allowed here" in text(pro)
        assert "allowed_models" in text(pro) and f"<@{BOSS}>" in text(pro)
        allowed = await emulator.slash_command("imagine", {"prompt": "a mask"}, user_id=USER,
                                               channel_id=emulator.channel_id)
        await emulator.wait_for(lambda: answered(allowed))
        await settled(emulator, adapter)
        assert [r.model for r in generations(stand_in)] == [FLASH]
        refusals = await core.service.audit_log(actions=[REFUSED_POLICY])
        assert {r.detail["rule"] for r in refusals} == {"deny_roles", "allowed_models"}


async def test_usage_and_settings_answer_privately_and_admins_change_the_channel(
        open_bot: Opener, emulator: DiscordEmulator, stand_in: Any) -> None:
    emulator.add_member(BOSS, "Boss", permissions=DEFAULT_MEMBER_PERMISSIONS | MANAGE_GUILD)
    async with open_bot(daily_images_per_user=5) as (core, adapter):
        [imagebot] = [c for c in emulator.guild_commands.get(emulator.guild_id, [])
                      or emulator.global_commands if c["name"] == "imagebot"]
        assert {o["name"] for o in imagebot["options"]} == {"usage", "settings"}
        first = await emulator.slash_command("imagine", {"prompt": "a lantern"}, user_id=USER,
                                             channel_id=emulator.channel_id)
        await emulator.wait_for(lambda: answered(first))
        await settled(emulator, adapter)

        usage = await emulator.slash_command("imagebot usage", user_id=USER,
                                             channel_id=emulator.channel_id)
        await emulator.wait_for(lambda: answered(usage))
        assert usage.ephemeral and text(usage).startswith("**Your imagebot usage**")
        assert "4 of your 5 images a day" in text(usage) and "Top people" not in text(usage)
        boss_usage = await emulator.slash_command("imagebot usage", user_id=BOSS,
                                                  channel_id=emulator.channel_id)
        await emulator.wait_for(lambda: answered(boss_usage))
        assert f"**Top people this month**: <@{USER}> 1 image" in text(boss_usage)

        mine = await emulator.slash_command("imagebot settings", user_id=USER,
                                            channel_id=emulator.channel_id)
        await emulator.wait_for(lambda: answered(mine))
        assert mine.ephemeral and not menus(mine) and "Only admins" in text(mine)
        settings = await emulator.slash_command("imagebot settings", user_id=BOSS,
                                                channel_id=emulator.channel_id)
        await emulator.wait_for(lambda: answered(settings))
        assert settings.ephemeral
        assert menus(settings)["imagebot:policy:allowed_models"] == ["inherit"]

        assert settings.original is not None
        pick = await emulator.click_button(settings.original, "imagebot:policy:allowed_models",
                                           user_id=BOSS, channel_id=emulator.channel_id,
                                           values=[FLASH])
        await emulator.wait_for(lambda: pick.acknowledged)
        assert pick.callbacks[0]["type"] == 7, "the menu message is updated in place"
        assert menus(pick)["imagebot:policy:allowed_models"] == [FLASH]
        assert (await core.service.policy_for(place(emulator))).allowed_models() == {FLASH}
        [change] = await core.service.audit_log(actions=[POLICY_CHANGE])
        assert change.actor == f"discord:{BOSS}"

        sneaky = await emulator.click_button(settings.original,
                                             "imagebot:policy:daily_budget_usd",
                                             user_id=USER, channel_id=emulator.channel_id,
                                             values=["100"])
        await emulator.wait_for(lambda: sneaky.acknowledged)
        assert sneaky.ephemeral and "Only imagebot admins" in text(sneaky)
        assert (await core.service.policy_for(place(emulator))).setting(
            "daily_budget_usd") == []
