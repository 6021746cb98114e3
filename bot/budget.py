"""The request budget: which of a thread's stored turns fit in one request.

A thread's stored history is never trimmed; a request that would exceed the limit leaves
out the oldest whole turns (a user message with the model's answer), so the model keeps
the most recent context and the history sent is still a valid chat.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from bot.history import StoredContent
from bot.presentation import format_size


@dataclass(frozen=True)
class Fit:
    """The part of a history that fits.

    Attributes:
        kept: the Contents to send, in order (the newest whole turns).
        left_out: how many of the oldest turns were left out.
        size: the approximate wire size of ``kept``.
        turns: how many turns the whole history has.
    """

    kept: list[StoredContent]
    left_out: int
    size: int
    turns: int


def turns_of(stored: Sequence[StoredContent]) -> list[list[StoredContent]]:
    """Consecutive Contents grouped by the turn that wrote them."""
    turns: list[list[StoredContent]] = []
    for item in stored:
        if turns and turns[-1][0].turn_id == item.turn_id:
            turns[-1].append(item)
        else:
            turns.append([item])
    return turns


def fit_history(stored: Sequence[StoredContent], sizes: Mapping[str, int], room: int,
                files: Collection[str] = ()) -> Fit:
    """The newest whole turns whose size adds up to at most ``room`` bytes, counting the
    images in ``files`` as Files API references (a few hundred bytes each)."""
    turns = turns_of(stored)
    kept: list[list[StoredContent]] = []
    total = 0
    for turn in reversed(turns):
        size = sum(item.wire_size(sizes, files) for item in turn)
        if total + size > room:
            break
        kept.append(turn)
        total += size
    kept.reverse()
    return Fit(kept=[item for turn in kept for item in turn],
               left_out=len(turns) - len(kept), size=total, turns=len(turns))


def left_out_notice(left_out: int, total: int, limit: int) -> str:
    """Tells the user the request did not carry the whole thread."""
    turns = "turn was" if left_out == 1 else "turns were"
    first = f"turns 1–{left_out}" if left_out > 1 else "turn 1"
    return (f"The {left_out} earliest {turns} left out of this request ({first} of {total}) "
            f"to stay within Gemini's {format_size(limit)} request limit; they stay in the "
            "thread's history, but the model did not see them this time.")
