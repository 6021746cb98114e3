"""``imagebot usage``, ``imagebot audit`` and ``imagebot policy`` on a database that real
turns (the SDK against the stand-in) were written to."""

from __future__ import annotations

import asyncio
import csv
import io

import pytest

from adapters.main import main
from bot.errors import QuotaError
from bot.model import Author, IncomingMessage, ThreadKey


async def imagebot(capsys: pytest.CaptureFixture[str], database: str, *argv: str
                   ) -> tuple[int, str, str]:
    """Runs the command (its own event loop, in a worker thread); (exit code, out, err)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        await asyncio.to_thread(main, ["--database-url", database, *argv])
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


@pytest.fixture
async def database(core_factory, make_settings) -> str:
    async with core_factory(daily_images_per_user=2) as core:
        service = core.service
        await service.handle(ThreadKey("slack", "T1", "C1", "a"),
                             IncomingMessage(Author("U1", "alice"), "a cat"))
        await service.handle(ThreadKey("slack", "T1", "C2", "b"),
                             IncomingMessage(Author("U1", "alice"), "a dog --model flash"))
        await service.handle(ThreadKey("discord", "G", "C", "c"),
                             IncomingMessage(Author("42", "bob"), "a fox --size 4K"))
        with pytest.raises(QuotaError):
            await service.handle(ThreadKey("slack", "T1", "C1", "d"),
                                 IncomingMessage(Author("U1", "alice"), "one more"))
    return make_settings().database_url


async def test_usage_by_person_and_model_and_as_csv(capsys, database) -> None:
    code, out, _ = await imagebot(capsys, database, "usage")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("imagebot usage since ") and "by user" in lines[0]
    assert lines[1].split() == ["person", "turns", "images", "cost"]
    assert lines[3].split()[:4] == ["bob", "(discord:42)", "1", "1"], "dearest first"
    assert lines[4].split()[:4] == ["alice", "(slack:U1)", "2", "2"]
    assert lines[5].split()[:3] == ["total", "3", "3"]

    code, out, _ = await imagebot(capsys, database, "usage", "--since", "today", "--by",
                                  "model", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["label"] for r in rows] == ["Nano Banana Pro", "Nano Banana"]
    assert rows[0]["images"] == "2" and 0.37 < float(rows[0]["cost_usd"]) < 0.45
    assert 0.039 <= float(rows[1]["cost_usd"]) < 0.05

    code, out, _ = await imagebot(capsys, database, "usage", "--by", "channel", "--scope",
                                  "slack/T1")
    assert code == 0 and "slack/T1/C1" in out and "discord" not in out
    code, _, err = await imagebot(capsys, database, "usage", "--since", "last tuesday")
    assert code == 2 and "30d" in err, "a bad option value is a usage error (exit 2)"


async def test_audit_lists_the_refusal(capsys, database) -> None:
    code, out, err = await imagebot(capsys, database, "audit")
    assert code == 0, err
    assert "refused.quota" in out and "alice (slack:U1)" in out
    assert "slack/T1/C1/d" in out and "2 of 2" in out
    code, out, _ = await imagebot(capsys, database, "audit", "--action", "policy.change",
                                  "--csv")
    assert code == 0 and out.splitlines() == ["at,action,actor,actor_name,where,summary,detail"]


async def test_policy_shows_and_changes_a_scope(capsys, database) -> None:
    code, out, _ = await imagebot(capsys, database, "policy")
    assert code == 0 and out.startswith("[*] the whole installation\n")
    code, out, _ = await imagebot(capsys, database, "policy", "--scope", "slack/T1/C1",
                                  "--set", "max_size=2K", "--set", "allowed_models=flash",
                                  "--set", "search=false")
    assert code == 0 and "[slack/T1/C1]" in out and 'max_size = "2K"' in out
    assert 'allowed_models = ["gemini-2.5-flash-image"]' in out and "search = false" in out
    assert "run-time changes by cli:" in out
    code, out, _ = await imagebot(capsys, database, "audit", "--action", "policy.change")
    assert code == 0 and ("slack/T1/C1: max_size = 2K, allowed_models = "
                          "[gemini-2.5-flash-image], search = false") in out
    code, out, _ = await imagebot(capsys, database, "policy", "--scope", "slack/T1/C1",
                                  "--unset", "search")
    assert "search" not in out.split("(run-time")[0]
    code, _, err = await imagebot(capsys, database, "policy", "--scope", "slack/T1/C1",
                                  "--set", "max_size=8K")
    assert code == 1 and "max_size" in err
    code, _, err = await imagebot(capsys, database, "policy", "--set", "max_size=2K")
    assert code == 2 and "--scope" in err
