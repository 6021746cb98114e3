"""Variations (``--count N``): N answers to the same turn, made in parallel on the same
history, shown together as U1…U4 with a Use button each.

Only one model turn enters the history. Until someone picks, the first candidate that
finished is the continuation, and the reply says so; Use swaps another in, its thought
signatures byte for byte, because every candidate's model Content is kept (table
``turn_candidates``, its images and signatures as blobs). Each candidate is one
generation in the usage ledger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiosqlite
from google.genai import types

from bot import history, messages, store_files
from bot.errors import ImagebotError, NotFoundError, OptionError
from bot.gemini import Answer, GeminiSession
from bot.model import Candidate, ReplyPart, ThreadKey, TurnView, Usage
from bot.store_api import Store

#: Seeds make the candidates differ where a model would otherwise answer alike.
_SEEDS = random.SystemRandom()


@dataclass(frozen=True)
class Outcome:
    """One candidate's result: an answer or the failure, and when it finished (1 = first)."""

    number: int
    answer: Answer | None = None
    error: ImagebotError | None = None
    finished: int = 0


async def generate_all(gemini: GeminiSession, model: str, contents: list[types.Content],
                       config: types.GenerateContentConfig, count: int) -> list[Outcome]:
    """Asks for ``count`` answers at once (each with its own seed), in candidate order."""
    order = itertools.count(1)
    seeds = _SEEDS.sample(range(1, 2**31 - 1), count)

    async def one(number: int) -> Outcome:
        seeded = config.model_copy(update={"seed": seeds[number - 1]})
        try:
            answer = await gemini.generate(model, contents, seeded)
        except ImagebotError as exc:
            return Outcome(number, error=exc, finished=next(order))
        return Outcome(number, answer=answer, finished=next(order))

    return list(await asyncio.gather(*(one(n) for n in range(1, count + 1))))


def split_one_shot(answer: Answer) -> list[Outcome]:
    """Imagen makes its samples in one call: each image is a candidate."""
    parts = list(answer.content.parts or ())
    return [Outcome(number, finished=number, answer=dataclasses.replace(
                answer, content=types.Content(role="model", parts=[part])))
            for number, part in enumerate(parts, start=1)]


def continuation(outcomes: Sequence[Outcome]) -> Outcome:
    """The first candidate that finished well.

    Raises:
        ImagebotError: every candidate failed (the first failure, as it came).
    """
    good = [o for o in outcomes if o.answer is not None]
    if good:
        return min(good, key=lambda o: o.finished)
    first = min(outcomes, key=lambda o: o.finished)
    assert first.error is not None
    raise first.error


def candidates(outcomes: Sequence[Outcome],
               convert: Callable[[types.Content], tuple[list[ReplyPart], list[ReplyPart]]]
               ) -> tuple[Candidate, ...]:
    """The outcomes as a reply's candidates (CPU work: images are measured)."""
    made = []
    for outcome in outcomes:
        if outcome.answer is None:
            error = outcome.error.user_message if outcome.error else "It failed."
            made.append(Candidate(outcome.number, error=error))
            continue
        parts, thoughts = convert(outcome.answer.content)
        made.append(Candidate(outcome.number, parts=tuple(parts), thoughts=tuple(thoughts),
                              usage=outcome.answer.usage))
    return tuple(made)


def total_usage(outcomes: Sequence[Outcome]) -> Usage:
    used = [o.answer.usage for o in outcomes if o.answer is not None]
    return Usage(**{name: sum(getattr(u, name) for u in used)
                    for name in Usage.__dataclass_fields__})


def notice(outcomes: Sequence[Outcome], chosen: Outcome, *, one_shot: bool) -> str:
    failed = sum(o.answer is None for o in outcomes)
    return messages.candidates_notice(len(outcomes), chosen.number, failed, one_shot=one_shot)


# --- storage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeptCandidates:
    """What a turn with candidates writes besides itself: every candidate's model Content
    (a history row naming blobs) and a usage row for each candidate but the continuation."""

    rows: dict[int, str]
    blobs: history.Blobs
    usage: list[tuple[Usage, int]]


def keep(outcomes: Sequence[Outcome], chosen: Outcome, *, in_history: bool,
         known: dict[int, str]) -> KeptCandidates:
    """Deflates the candidates' Contents (CPU work: run in a worker thread)."""
    rows: dict[int, str] = {}
    blobs: history.Blobs = {}
    usage = []
    for outcome in outcomes:
        if outcome.answer is None:
            continue
        if in_history:
            deflated, found = history.deflate([outcome.answer.content], known)
            rows[outcome.number] = deflated[0][1]
            blobs.update(found)
        if outcome.number != chosen.number:
            images = sum(1 for p in outcome.answer.content.parts or ()
                         if p.inline_data is not None and not p.thought)
            usage.append((outcome.answer.usage, images))
    return KeptCandidates(rows, blobs, usage)


def writer(kept: KeptCandidates, *, turn_id: str, key: ThreadKey, author_id: str, model: str,
           created_at: float) -> Callable[[aiosqlite.Connection], Awaitable[None]]:
    """Writes the kept candidates inside the turn's own transaction."""

    async def write(db: aiosqlite.Connection) -> None:
        await db.executemany(
            "INSERT INTO turn_candidates (turn_id, number, content) VALUES (?,?,?)",
            [(turn_id, number, text) for number, text in kept.rows.items()])
        if kept.blobs:
            # Every candidate's blobs are this turn's uses too: Use may swap any of them
            # into the history, and deleting the turn or thread must release them all.
            async with db.execute("SELECT thread_id FROM contents WHERE turn_id=? LIMIT 1",
                                  (turn_id,)) as cur:
                row = await cur.fetchone()
            if row is not None:
                await store_files.add_uses(db, int(row[0]), turn_id, kept.blobs)
        await db.executemany(
            "INSERT INTO usage (turn_id, platform, workspace, channel, thread, author_id, "
            "model, prompt_tokens, output_tokens, thought_tokens, total_tokens, images, "
            "created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(turn_id, key.platform, key.workspace, key.channel, key.thread, author_id, model,
              u.prompt_tokens, u.output_tokens, u.thought_tokens, u.total_tokens, images,
              created_at) for u, images in kept.usage])

    return write


async def choose(store: Store, record: TurnView, number: int, *,
                 one_shot: bool) -> TurnView:
    """Makes candidate ``number`` the one the conversation continues from.

    Call it under the thread's lock.

    Raises:
        OptionError: no such candidate, it failed, or the thread has moved on since.
        NotFoundError: its stored Content is missing.
    """
    reply = record.reply
    if not reply.candidates:
        raise OptionError("This result has no candidates to choose from.")
    candidate = reply.candidate(number)
    if candidate is None:
        raise OptionError(f"There is no U{number} here; this result has "
                          f"{len(reply.candidates)} candidates.")
    if candidate.error:
        raise OptionError(f"U{number} failed ({candidate.error}), so it cannot be used.")
    if reply.chosen == number:
        return record
    turns = await store.list_turns(record.thread)
    if not turns or turns[-1].id != record.id:
        raise OptionError(messages.moved_on(number, reply.chosen))
    notices = tuple(messages.picked_notice(len(reply.candidates), number)
                    if n.startswith(f"{len(reply.candidates)} candidates.") else n
                    for n in reply.notices)
    chosen = dataclasses.replace(reply, parts=candidate.parts, thoughts=candidate.thoughts,
                                 chosen=number, notices=notices)
    async with store.transaction():
        if not one_shot:
            async with store.db.execute(
                    "SELECT content FROM turn_candidates WHERE turn_id=? AND number=?",
                    (record.id, number)) as cur:
                row = await cur.fetchone()
            if row is None:
                raise NotFoundError(f"U{number}'s answer is missing from imagebot's store.")
            await store.db.execute(
                "UPDATE contents SET content=? WHERE turn_id=? AND role='model'",
                (row[0], record.id))
        await store.db.execute("UPDATE turns SET reply=? WHERE id=?",
                               (json.dumps(chosen.to_dict()), record.id))
    return dataclasses.replace(record, reply=chosen)
