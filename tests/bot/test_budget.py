"""The request budget chooses whole turns, newest first, from sizes alone."""

from __future__ import annotations

from bot.budget import fit_history, left_out_notice, turns_of
from bot.history import StoredContent


def turn(turn_id: str, image: str) -> list[StoredContent]:
    return [StoredContent(turn_id, "user", ({"text": "x"},)),
            StoredContent(turn_id, "model", ({"inline_data": {"blob": image}},
                                             {"text": "y", "signature_blob": "s" + image}))]


STORED = turn("t1", "a") + turn("t2", "b") + turn("t3", "c")
SIZES = {"a": 3000, "b": 3000, "c": 3000, "sa": 300, "sb": 300, "sc": 300}


def test_everything_fits():
    fit = fit_history(STORED, SIZES, room=10**9)
    assert fit.kept == STORED and fit.left_out == 0 and fit.turns == 3


def test_oldest_whole_turns_go_first():
    one = sum(c.wire_size(SIZES) for c in turn("t3", "c"))
    fit = fit_history(STORED, SIZES, room=2 * one + 10)
    assert [c.turn_id for c in fit.kept] == ["t2", "t2", "t3", "t3"]
    assert fit.left_out == 1 and fit.size == 2 * one


def test_nothing_fits():
    fit = fit_history(STORED, SIZES, room=100)
    assert fit.kept == [] and fit.left_out == 3


def test_turns_group_consecutive_contents():
    assert [len(t) for t in turns_of(STORED)] == [2, 2, 2]


def test_notice_counts_turns():
    assert "The 2 earliest turns were left out" in left_out_notice(2, 5, 100 * 2**20)
    assert "turns 1–2 of 5" in left_out_notice(2, 5, 100 * 2**20)
    assert "100 MB" in left_out_notice(1, 5, 100 * 2**20)
