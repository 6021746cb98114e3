"""Team controls through the service, with the real SDK against the stand-in: policies and
refusals, quotas that hold under concurrency, refunds, the cost ledger and the audit log."""

from __future__ import annotations

import asyncio
import re

import pytest

from bot.audit import POLICY_CHANGE, REFUSED_POLICY, REFUSED_QUOTA, SAFETY_BLOCK, TURN_DELETE
from bot.errors import (
    CancelledTurn,
    ForbiddenError,
    GenerationError,
    OptionError,
    PolicyError,
    QuotaError,
)
from bot.ledger import Entry
from bot.model import Author, IncomingMessage, ThreadKey
from bot.options import FLASH, PRO, OptionInput
from bot.policy import Scope
from bot.prices import PriceTable
from tests import corpus

TEAM, CHANNEL = "T1", "C1"
ALICE = Author("U1", "alice")
BOB = Author("U2", "bob")
BOSS = Author("U9", "boss")
CHANNEL_ID = f"slack/{TEAM}/{CHANNEL}"


def key(thread: str = "t1", channel: str = CHANNEL) -> ThreadKey:
    return ThreadKey("slack", TEAM, channel, thread)


def msg(text: str, author: Author = ALICE, *, images: int = 0, **options) -> IncomingMessage:
    from bot.model import Attachment

    files = tuple(Attachment.from_bytes(f"r{n}.png", corpus.png(40, 30)) for n in range(images))
    return IncomingMessage(author=author, text=text, attachments=files,
                           options=OptionInput(**options))


def generations(stand_in) -> list:
    return [r for r in stand_in.requests if r.method in ("generateContent",
                                                        "streamGenerateContent")]


async def ledger_rows(core) -> list[dict]:
    async with core.service.store.db.execute("SELECT * FROM ledger ORDER BY created_at") as cur:
        return [dict(r) for r in await cur.fetchall()]


# --------------------------------------------------------------------------- who and what


async def test_a_denied_user_is_refused_before_any_api_call(core_factory, stand_in):
    policy = {"admins": ["slack:U9"],
              "channels": {CHANNEL_ID: {"deny_users": ["U2"]}}}
    async with core_factory(policy=policy) as core:
        with pytest.raises(PolicyError) as refused:
            await core.service.handle(key(), msg("a cat", BOB))
        text = refused.value.user_message
        assert "deny_users" in text and "this channel" in text and "Ask <@U9>" in text
        assert not generations(stand_in)
        await core.service.handle(key("t2"), msg("a cat", ALICE))
        await core.service.handle(key("t3"), msg("a cat", BOSS))  # admins always get in
        [entry] = await core.service.audit_log(actions=[REFUSED_POLICY])
        assert entry.actor == "slack:U2" and entry.detail["rule"] == "deny_users"
        assert entry.where == key()
    assert len(generations(stand_in)) == 2


async def test_allow_lists_and_roles(core_factory, stand_in):
    policy = {"workspaces": {f"slack/{TEAM}": {"allow_roles": ["designers"],
                                               "allow_users": ["slack:U1"]}},
              "contact": "#design-ops"}
    async with core_factory(policy=policy) as core:
        await core.service.handle(key(), msg("a", ALICE))
        await core.service.handle(key("t2"), msg("b", Author("U3", "cat", roles=("designers",))))
        with pytest.raises(PolicyError, match=r"aren't among them.*this workspace.*"
                                              r"Ask #design-ops"):
            await core.service.handle(key("t3"), msg("c", BOB))
    assert len(generations(stand_in)) == 2


async def test_a_disallowed_model_is_refused_and_defaults_comply(core_factory, stand_in):
    policy = {"admins": ["slack:U9"], "channels": {CHANNEL_ID: {"allowed_models": ["flash"]}}}
    async with core_factory(policy=policy) as core:
        with pytest.raises(PolicyError) as refused:
            await core.service.handle(key(), msg("a cat --model pro"))
        text = refused.value.user_message
        assert text.startswith("Nano Banana Pro isn't allowed here")
        assert "allows only Nano Banana" in text and "allowed_models" in text
        assert "this channel" in text and "<@U9>" in text
        assert not generations(stand_in)
        # Not asked for: the configured default (Pro) quietly becomes the allowed model.
        reply = await core.service.handle(key(), msg("a cat"))
        assert reply.options.model == FLASH and generations(stand_in)[-1].model == FLASH
        # Elsewhere Pro is still the default.
        other = await core.service.handle(key("t9", "C2"), msg("a dog"))
        assert other.options.model == PRO


async def test_size_and_search_limits(core_factory, stand_in):
    policy = {"max_size": "2K", "search": False}
    async with core_factory(policy=policy) as core:
        with pytest.raises(PolicyError, match=r"4K images aren't allowed.*largest size is 2K.*"
                                              r"all of imagebot"):
            await core.service.handle(key(), msg("a cat --size 4K"))
        with pytest.raises(PolicyError, match="Search grounding isn't allowed"):
            await core.service.handle(key(), msg("news --search"))
        first = await core.service.handle(key(), msg("a cat --size 2K"))
        with pytest.raises(PolicyError, match="4K images"):
            await core.service.reroll(first.turn_id, author=ALICE,
                                      changes=OptionInput(model="pro", size="4K"))
    assert len(generations(stand_in)) == 1


async def test_direct_messages_can_be_turned_off(core_factory, stand_in):
    async with core_factory(policy={"direct_messages": False}) as core:
        message = IncomingMessage(author=ALICE, text="a cat", direct=True)
        with pytest.raises(PolicyError, match="direct messages"):
            await core.service.handle(ThreadKey("slack", TEAM, "D1", "1.0"), message)
    assert not generations(stand_in)


async def test_policy_defaults_sit_under_the_threads_settings(core_factory):
    policy = {"channels": {CHANNEL_ID: {"default_model": "flash"}}}
    async with core_factory(policy=policy) as core:
        assert (await core.service.handle(key(), msg("a"))).options.model == FLASH
        await core.service.handle(key("t2"), msg("b --model pro"))
        assert (await core.service.handle(key("t2"), msg("c"))).options.model == PRO


# --------------------------------------------------------------------------- quotas


async def test_twenty_at_once_against_a_quota_of_five(core_factory, stand_in):
    stand_in.faults.latency = 0.2
    async with core_factory(daily_images_per_user=5) as core:
        results = await asyncio.gather(
            *(core.service.handle(key(f"t{n}"), msg(f"cat {n}")) for n in range(20)),
            return_exceptions=True)
        refused = [r for r in results if isinstance(r, QuotaError)]
        assert len(refused) == 15 and len(generations(stand_in)) == 5
        text = refused[0].user_message
        assert "5 of 5" in text and "daily_images_per_user" in text
        assert re.search(r"resets at midnight UTC \(in \d+ h \d+ min\)", text)
        assert "IMAGEBOT_ADMINS" in text  # who to ask, on a surface without admins listed
        # Someone else still has their own five.
        await core.service.handle(key("bob"), msg("a dog", BOB))
        assert len(await core.service.audit_log(actions=[REFUSED_QUOTA])) == 15
        rows = await ledger_rows(core)
        assert sorted(r["state"] for r in rows) == ["committed"] * 6


async def test_a_failed_generation_refunds_its_reservation(core_factory, stand_in):
    async with core_factory(daily_images_per_user=1) as core:
        stand_in.faults.queue_finish("IMAGE_SAFETY")
        with pytest.raises(GenerationError):
            await core.service.handle(key(), msg("something questionable"))
        [row] = await ledger_rows(core)
        assert row["state"] == "refunded"
        [blocked] = await core.service.audit_log(actions=[SAFETY_BLOCK])
        assert blocked.actor == "slack:U1" and blocked.detail["kind"] == "safety"
        await core.service.handle(key(), msg("a harmless cat"))  # the one image is back
        with pytest.raises(QuotaError, match="1 of 1"):
            await core.service.handle(key(), msg("another"))


async def test_a_cancelled_turn_refunds(core_factory, stand_in):
    stand_in.faults.latency = 5
    async with core_factory(daily_images_per_user=1) as core:
        running = asyncio.create_task(core.service.handle(key(), msg("a slow cat")))
        await asyncio.sleep(0.5)
        await core.service.shutdown(0.01)
        with pytest.raises(CancelledTurn):
            await running
        assert [r["state"] for r in await ledger_rows(core)] == ["refunded"]


async def test_an_admission_never_run_is_released(core_factory, stand_in):
    async with core_factory(daily_images_per_user=1) as core:
        admission = await core.service.admit(key(), msg("a cat"))
        with pytest.raises(QuotaError):
            await core.service.admit(key("t2"), msg("a dog"))
        await core.service.release(admission)
        reply = await core.service.handle(key("t2"), msg("a dog"),
                                          admission=await core.service.admit(key("t2"),
                                                                             msg("a dog")))
        assert reply.turn_id and len(generations(stand_in)) == 1


async def test_rerolls_and_4k_count(core_factory, stand_in):
    async with core_factory(daily_images_per_user=3) as core:
        first = await core.service.handle(key(), msg("a cat"))
        await core.service.reroll(first.turn_id, author=ALICE)
        four_k = await core.service.reroll(first.turn_id, author=ALICE,
                                           changes=OptionInput(model="pro", size="4K"))
        assert four_k.options.size == "4K"
        with pytest.raises(QuotaError):
            await core.service.reroll(first.turn_id, author=ALICE)
        kinds = [r["kind"] for r in await ledger_rows(core)]
        assert kinds == ["turn", "reroll", "4k"]


async def test_channel_quota_and_budgets(core_factory, stand_in):
    policy = {"channels": {CHANNEL_ID: {"daily_images_per_channel": 2}},
              "workspaces": {f"slack/{TEAM}": {"daily_budget_usd": 0.50}}}
    async with core_factory(policy=policy) as core:
        await core.service.handle(key("a"), msg("one"))
        await core.service.handle(key("b"), msg("two", BOB))
        with pytest.raises(QuotaError, match=r"This channel has used its images.*2 of 2"):
            await core.service.handle(key("c"), msg("three"))
        # Another channel of the workspace: room for images, but not for a fourth Pro turn.
        await core.service.handle(key("d", "C2"), msg("four"))
        with pytest.raises(QuotaError) as over:
            await core.service.handle(key("e", "C2"), msg("five"))
        text = over.value.user_message
        assert text.startswith("This workspace's daily budget of $0.50 has no room")
        assert "daily_budget_usd" in text and "would cost about $0.14" in text
        await core.service.handle(key("f", "C2"), msg("six --model flash"))


async def test_a_stale_reservation_is_refunded_and_a_committed_one_settled(core_factory):
    async with core_factory() as core:
        team = core.service.team
        reply = await core.service.handle(key(), msg("a cat"))
        # As if the process had stopped: one reservation of a turn that never ran, and one
        # whose turn was committed before its cost was.
        for entry_id in ("dead", reply.turn_id):
            await core.service.store.db.execute(
                "DELETE FROM ledger WHERE id=?", (entry_id,))
            await team.ledger.reserve(Entry(entry_id, "turn", key(), "U1", "alice", PRO,
                                            "", 0.13), [], lambda *a: Exception())
        await core.service.store.db.execute("UPDATE ledger SET created_at = created_at - 9000")
        team._recovered = False
        await core.service.admit(key("t2"), msg("a dog"))
        states = {r["id"]: (r["state"], r["cost_usd"]) for r in await ledger_rows(core)}
        assert states["dead"][0] == "refunded"
        assert states[reply.turn_id] == ("committed", pytest.approx(
            PriceTable().cost(PRO, None, images=1, usage=reply.usage).total))


# --------------------------------------------------------------------------- costs


async def test_costs_match_the_price_table(core_factory):
    async with core_factory() as core:
        pro = await core.service.handle(key(), msg("a cat --size 4K", images=2))
        flash = await core.service.handle(key("t2"), msg("a dog --model flash"))
        rows = {r["id"]: r for r in await ledger_rows(core)}
    table = PriceTable()
    for reply, image_price, size in ((pro, 0.24, "4K"), (flash, 0.039, "")):
        row = rows[reply.turn_id]
        assert row["state"] == "committed" and row["size"] == size and row["images"] == 1
        price = table.price(reply.options.model)
        text = reply.usage.output_tokens - price.tokens_per_image(size or None) \
            + reply.usage.thought_tokens
        expected = (image_price + reply.usage.prompt_tokens * price.input_per_million / 1e6
                    + text * price.text_output_per_million / 1e6)
        assert row["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert rows[pro.turn_id]["reference_images"] == 2
    assert rows[pro.turn_id]["prompt_tokens"] == pro.usage.prompt_tokens


# --------------------------------------------------------------------------- run-time policy


async def test_run_time_policy_changes_are_stored_and_audited(core_factory, stand_in):
    policy = {"channels": {CHANNEL_ID: {"max_size": "4K", "daily_images_per_user": 9}}}
    async with core_factory(policy=policy, admins=("slack:U9",)) as core:
        service = core.service
        where = key()
        assert not await service.is_admin(where, ALICE)
        assert await service.is_admin(where, BOSS)
        assert await service.is_admin(where, ALICE, workspace_admin=True)
        with pytest.raises(ForbiddenError, match="admin"):
            await service.change_policy(where, "allowed_models", "flash", by=ALICE)
        await service.change_policy(where, "allowed_models", "flash", by=BOSS)
        await service.change_policy(where, "daily_images_per_user", None, by=BOSS)
        with pytest.raises(OptionError):
            await service.change_policy(where, "max_size", "8K", by=BOSS)
        policy_now = await service.policy_for(where)
        assert policy_now.allowed_models() == {FLASH} and policy_now.max_size() == "4K"
        assert not any(q.kind == "user_images" for q in policy_now.quotas("U1"))
        changes = await service.audit_log(actions=[POLICY_CHANGE])
        assert [c.summary for c in changes] == [
            f"{CHANNEL_ID}: daily_images_per_user = inherited",
            f"{CHANNEL_ID}: allowed_models = [{FLASH}]"]
        assert changes[0].actor == "slack:U9" and changes[0].detail["configured"] == {
            "max_size": "4K", "daily_images_per_user": 9}
        await service.reset_policy(where, by=BOSS)
        assert (await service.policy_for(where)).allowed_models() is None
    async with core_factory(policy=policy) as core:  # stored: survives a restart
        await core.service.change_policy(where, "max_size", "1K", by=BOSS,
                                         workspace_admin=True)
    async with core_factory(policy=policy) as core:
        assert (await core.service.policy_for(where)).max_size() == "1K"


async def test_deletions_are_audited(core):
    reply = await core.service.handle(key(), msg("a cat"))
    await core.service.delete(reply.turn_id, by=BOSS)
    [entry] = await core.service.audit_log(actions=[TURN_DELETE])
    assert entry.actor == "slack:U9" and entry.detail["author"] == "U1"
    assert entry.where == key()


def test_scope_ids_round_trip():
    for scope in (Scope(), Scope("slack", "T1"), Scope("discord", "1", "2")):
        assert Scope.parse(scope.id) == scope
    assert Scope.of(key()) == Scope("slack", TEAM, CHANNEL)
    assert Scope.of(ThreadKey("web", "", "", "x")) == Scope()


async def test_refusals_reach_the_metrics(core_factory):
    async with core_factory(daily_images_per_user=0, policy={"max_size": "1K"}) as core:
        seen: list[str] = []
        core.service.observers.append(lambda event, data: seen.append(data.get("kind", "")))
        with pytest.raises(QuotaError):
            await core.service.admit(key(), msg("a cat"))
        with pytest.raises(PolicyError):
            await core.service.handle(key(), msg("a cat --size 2K"))
    assert seen == ["quota", "policy"]


async def test_quotas_hold_across_two_workers_on_either_database(core_factory, stand_in,
                                                                  database_url):
    """Two processes' cores on one database (SQLite file or PostgreSQL schema): twenty
    requests from one person, spread over both, against a quota of five run five."""
    stand_in.faults.latency = 0.2
    async with core_factory(daily_images_per_user=5, database_url=database_url) as one, \
            core_factory(daily_images_per_user=5, database_url=database_url) as two:
        workers = (one.service, two.service)
        results = await asyncio.gather(
            *(workers[n % 2].handle(key(f"w{n}"), msg(f"cat {n}")) for n in range(20)),
            return_exceptions=True)
        refused = [r for r in results if isinstance(r, QuotaError)]
        others = [r for r in results if isinstance(r, Exception) and r not in refused]
        assert others == [] and len(refused) == 15
        assert len(generations(stand_in)) == 5
        assert "5 of 5" in refused[0].user_message


async def test_every_candidate_counts_in_the_quota_and_the_cost(core_factory, stand_in):
    async with core_factory(daily_images_per_user=5) as core:
        four = await core.service.handle(key("v1"), msg("four cats --count 4 --model flash"))
        assert len(four.candidates) == 4
        with pytest.raises(QuotaError, match="4 of 5"):
            await core.service.handle(key("v2"), msg("four more --count 4 --model flash"))
        one = await core.service.handle(key("v3"), msg("one more --model flash"))
        assert one.images
        rows = await ledger_rows(core)
        committed = [r for r in rows if r["state"] == "committed"]
        assert sorted(r["images"] for r in committed) == [1, 4]
        assert abs(sum(r["cost_usd"] for r in committed) - 5 * 0.039) < 0.01
