"""Usage reports and the settings view, through the service against the stand-in."""

from __future__ import annotations

import time

from bot.model import Author, IncomingMessage, ThreadKey
from bot.options import FLASH, PRO
from bot.policy_view import INHERIT, view_text
from bot.reports import usage_text

ALICE, BOB, BOSS = Author("U1", "alice"), Author("U2", "bob"), Author("U9", "boss")
POLICY = {"admins": ["slack:U9"],
          "channels": {"slack/T1/C1": {"daily_images_per_user": 5, "max_size": "2K"}},
          "workspaces": {"slack/T1": {"daily_budget_usd": 10}}}


def key(thread: str, channel: str = "C1") -> ThreadKey:
    return ThreadKey("slack", "T1", channel, thread)


def bold(text: str) -> str:
    return f"*{text}*"


async def three_turns(core) -> None:
    await core.service.handle(key("a"), IncomingMessage(ALICE, "a cat"))
    await core.service.handle(key("b"), IncomingMessage(ALICE, "a dog --model flash"))
    await core.service.handle(key("c", "C2"), IncomingMessage(BOB, "a fox"))


async def test_a_person_sees_their_own_usage_and_quotas(core_factory):
    async with core_factory(policy=POLICY) as core:
        await three_turns(core)
        summary = await core.service.usage_summary(key("x"), ALICE)
        assert not summary.admin and summary.today.images == 2 and summary.month.images == 2
        text = usage_text(summary, bold=bold)
    assert text.startswith("*Your imagebot usage*\nToday: 2 images, $0.1")
    assert "Left today: 3 of your 5 images a day (this channel)" in text
    assert "of the $10.00 daily budget (this workspace)" in text
    assert "Quotas reset at midnight UTC" in text
    assert "Top people" not in text and "This channel" not in text


async def test_admins_see_the_channel_the_workspace_and_top_people(core_factory):
    async with core_factory(policy=POLICY) as core:
        await three_turns(core)
        summary = await core.service.usage_summary(key("x"), BOSS)
        text = usage_text(summary, bold=bold)
        also = await core.service.usage_summary(key("x"), BOB, workspace_admin=True)
    assert summary.admin and also.admin
    assert "*This channel* (<#C1>): today 2 images" in text
    assert "*This workspace*: today 3 images" in text
    assert "*Top people this month*: <@U1> 2 images" in text and "<@U2> 1 image," in text
    assert "Nano Banana Pro $0.2" in text and "Nano Banana $0.0" in text


async def test_the_settings_view_names_where_each_rule_comes_from(core_factory):
    async with core_factory(policy=POLICY) as core:
        view = await core.service.policy_view(key("x"), ALICE)
        lines = dict(view.lines)
        assert lines["Images per person a day"] == "5 (this channel)"
        assert lines["Budget a day"] == "$10.00 (this workspace)"
        assert lines["Largest size"] == "2K" and lines["Admins"] == "<@U9>"
        assert lines["Policy id"] == "`slack/T1/C1`"
        assert not view.controls and "Only admins" in view_text(view, bold=bold)

        admin_view = await core.service.policy_view(key("x"), BOSS)
        controls = {c.rule: c for c in admin_view.controls}
        assert controls["max_size"].current == "2K"
        assert controls["allowed_models"].current == INHERIT
        changed = await core.service.choose(key("x"), "allowed_models", FLASH, by=BOSS)
        assert dict(changed.lines)["Models allowed"] == "Nano Banana"
        assert {c.rule: c for c in changed.controls}["allowed_models"].current == FLASH
        await core.service.choose(key("x"), "daily_budget_usd", "25", by=BOSS)
        lines = dict((await core.service.policy_view(key("x"), ALICE)).lines)
        assert lines["Budget a day"] == "$25.00 (this channel) · $10.00 (this workspace)"


async def test_reports_group_and_chart(core_factory):
    async with core_factory(policy=POLICY) as core:
        await three_turns(core)
        since = time.time() - 3600
        people, totals = await core.service.usage_report(since=since, by="user")
        assert [(r.key, r.images) for r in people] == [("slack:U1", 2), ("slack:U2", 1)]
        assert totals.images == 3 and totals.turns == 3
        models, _ = await core.service.usage_report(since=since, by="model")
        assert [r.key for r in models] == [PRO, FLASH]
        channels, _ = await core.service.usage_report(since=since, by="channel",
                                                     scope="slack/T1/C2")
        assert [(r.key, r.images) for r in channels] == [("slack/T1/C2", 1)]
        charts = (await core.service.usage_charts(since=since)).as_json(
            core.service.model_labels())
        assert charts["totals"]["images"] == 3 and len(charts["days"]) in (1, 2)
        assert {m["label"] for m in charts["models"]} == {"Nano Banana", "Nano Banana Pro"}
        assert sum(d["images"] for d in charts["daily"]) == 3
        overview = await core.service.policy_overview()
        assert [s.id for s, _, _ in overview] == ["*", "slack/T1", "slack/T1/C1"]
