"""Variations in the core (``--count N``): N generations on the same history in parallel,
the first finished is the continuation, Use swaps another in with its signatures intact,
each candidate is a generation in the ledger, reroll makes a new set."""

from __future__ import annotations

import base64

import pytest

from bot.errors import GenerationError, OptionError
from bot.model import Author, IncomingMessage, ThreadKey
from bot.options import OptionInput
from offline_gemini import OfflineGemini
from tests.wire import resolved

KEY = ThreadKey("test", "w1", "c1", "variations")
ALICE = Author("U1", "alice")


def msg(text: str, **options: object) -> IncomingMessage:
    return IncomingMessage(author=ALICE, text=text,
                           options=OptionInput(**options))  # type: ignore[arg-type]


def generations(stand_in: OfflineGemini) -> list:
    return [r for r in stand_in.requests
            if r.method in ("generateContent", "streamGenerateContent")]


def model_images(content: dict) -> list[bytes]:
    found = []
    for part in content["parts"]:
        inline = part.get("inlineData") or part.get("inline_data")
        if inline and not part.get("thought"):
            found.append(base64.urlsafe_b64decode(inline["data"]))
    return found


async def test_four_candidates_then_continue_from_the_third(core, stand_in) -> None:
    reply = await core.service.handle(KEY, msg("a paper lantern --count 4", model="pro"))
    sent = generations(stand_in)
    assert len(sent) == 4, "four generations"
    assert all(r.body["contents"] == sent[0].body["contents"] for r in sent), "same history"
    seeds = {r.body["generationConfig"]["seed"] for r in sent}
    assert len(seeds) == 4, "each with its own seed"
    assert [c.number for c in reply.candidates] == [1, 2, 3, 4]
    assert len({c.images[0].sha256 for c in reply.candidates}) == 4, "four different images"
    first = reply.chosen
    assert reply.images == reply.candidates[first - 1].images
    assert any(f"U{first} finished first, so the conversation continues from it" in n
               for n in reply.notices)
    assert reply.options.summary() == "Nano Banana Pro · 1K · auto ratio · 4 candidates"
    assert reply.usage.total_tokens == sum(c.usage.total_tokens for c in reply.candidates)
    usage = await core.service.usage(KEY)
    assert len(usage) == 4 and {u["images"] for u in usage} == {1}, "4 generations in the ledger"
    stored = await core.service.store.load_history(KEY)
    assert len(stored) == 2, "only one model turn enters the history"

    chosen = await core.service.use_candidate(reply.turn_id, 3)
    assert chosen.reply.chosen == 3 and chosen.reply.images == reply.view.reply.candidates[2].images
    again = await core.service.use_candidate(reply.turn_id, 3)
    assert again.reply.chosen == 3

    await core.service.handle(KEY, msg("now with a candle inside"))
    body = resolved(generations(stand_in)[-1].body, stand_in)
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    third = reply.candidates[2].images[0]
    assert model_images(body["contents"][1]) == [third.data], "continues from U3, signed"
    with pytest.raises(OptionError, match="gone on from U3"):
        await core.service.use_candidate(reply.turn_id, 1)


async def test_failures_among_candidates_and_when_all_fail(core, stand_in) -> None:
    stand_in.faults.queue_block("SAFETY")
    reply = await core.service.handle(KEY, msg("a lighthouse --count 3", model="flash"))
    failed = [c for c in reply.candidates if c.error]
    assert len(failed) == 1 and "blocked the prompt" in failed[0].error
    assert any("1 of them failed" in n for n in reply.notices)
    assert len(await core.service.usage(KEY)) == 2, "a failed candidate is not a generation"
    with pytest.raises(OptionError, match=f"U{failed[0].number} failed"):
        await core.service.use_candidate(reply.turn_id, failed[0].number)
    with pytest.raises(OptionError, match="There is no U4"):
        await core.service.use_candidate(reply.turn_id, 4)

    for _ in range(2):
        stand_in.faults.queue_finish("IMAGE_SAFETY")
    before = await core.service.store.load_history(KEY)
    with pytest.raises(GenerationError, match="withheld"):
        await core.service.handle(KEY, msg("x --count 2"))
    assert await core.service.store.load_history(KEY) == before, "nothing was saved"


async def test_reroll_makes_a_new_set_and_use_survives_a_restart(core_factory, stand_in) -> None:
    async with core_factory() as core:
        first = await core.service.handle(KEY, msg("a kite --count 2", model="flash"))
        rerolled = await core.service.reroll(first.turn_id, author=ALICE)
        assert len(rerolled.candidates) == 2 and rerolled.turn_id != first.turn_id
        assert len(generations(stand_in)) == 4
    async with core_factory() as core:
        other = 2 if rerolled.chosen == 1 else 1
        chosen = await core.service.use_candidate(rerolled.turn_id, other)
        assert chosen.reply.chosen == other
        await core.service.handle(KEY, msg("brighter"))
        contents = resolved(generations(stand_in)[-1].body, stand_in)["contents"]
        assert model_images(contents[3]) == [rerolled.candidates[other - 1].images[0].data]
        assert await core.service.delete(rerolled.turn_id) is not None
        with pytest.raises(Exception, match="deleted"):
            await core.service.use_candidate(rerolled.turn_id, 1)


async def test_a_used_candidates_images_are_released_with_its_thread(core, stand_in) -> None:
    key = ThreadKey("test", "w1", "c1", "variations-delete")
    reply = await core.service.handle(key, msg("a brass key --count 2", model="pro"))
    other = 2 if reply.chosen == 1 else 1
    await core.service.use_candidate(reply.turn_id, other)
    await core.service.handle(key, msg("now on a velvet cushion"))
    db = core.service.store.db
    async with db.execute("SELECT sha256 FROM blob_uses") as cur:
        used = {row[0] for row in await cur.fetchall()}
    for candidate in reply.candidates:
        assert {i.sha256 for i in candidate.images} <= used, "every candidate's images are used"
    assert await core.service.delete_thread(key)
    async with db.execute("SELECT COUNT(*) FROM blobs") as cur:
        assert (await cur.fetchone())[0] == 0, "nothing of the thread stays stored"
