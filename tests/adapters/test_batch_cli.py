"""Batch jobs from the command line, end to end: ``imagebot batch`` and ``imagebot serve`` as
separate processes against the offline stand-in (moved on its clock) and the Slack emulator.

The "Done when" of the batch work: a 50-line batch submitted through the CLI survives a
crash of ``serve`` in the middle of the job and every result is posted, with a correct
summary and cost; a JSONL batch (prompts from a .jsonl file, sent as a JSONL input file
through the Files API) works through ``batch status`` and ``batch results``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.serve import running
from bot.prices import cost, dollars
from offline_gemini import OfflineGemini
from offline_gemini.faults import Fault
from tests.conftest import TEST_KEY
from tests.emulators.slack import SlackEmulator

CHANNEL = "C0STUDIO1"
ALICE = "U0ALICE1"
FLASH = "gemini-2.5-flash-image"
ANIMALS = ["fox", "owl", "bear", "heron", "lynx", "otter", "hare", "wolf", "crane", "seal"]
PLACES = ["forest", "harbour", "desert", "glacier", "meadow"]


def env_for(stand_in: OfflineGemini, db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GEMINI_", "GOOGLE_", "IMAGEBOT_", "DATABASE_", "SLACK_",
                                "DISCORD_"))}
    env.update(GEMINI_API_KEY=TEST_KEY, GEMINI_BASE_URL=stand_in.base_url,
               DATABASE_URL=f"sqlite:///{db}", GEMINI_RETRY_ATTEMPTS="1", **extra)
    return env


async def imagebot(env: dict[str, str], *args: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters", *args, env=env, cwd=str(cwd),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def job_row(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return dict(conn.execute("SELECT * FROM batch_jobs").fetchone())


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


@pytest.fixture
async def slack() -> Any:
    emulator = SlackEmulator()
    await emulator.start()
    emulator.add_user(ALICE, "alice")
    emulator.add_channel(CHANNEL, "studio")
    yield emulator
    await emulator.stop()


async def start_serve(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters", "serve", "--port", "0", env=env, cwd=str(cwd),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert b"imagebot is running at" in line, line
    return proc


async def test_a_50_line_cli_batch_survives_a_serve_crash_and_posts_every_result(
        stand_in: OfflineGemini, slack: SlackEmulator, make_settings, tmp_path: Path) -> None:
    db = tmp_path / "imagebot.sqlite3"
    root = slack.post_user_message(CHANNEL, ALICE, "Autumn campaign: posters go here")["ts"]
    thread = f"slack/{slack.team_id}/{CHANNEL}/{root}"
    prompts = ["--model flash --ar 16:9"] + [
        f"Poster {n}: a {ANIMALS[n % 10]} in a {PLACES[n % 5]}, bold type" for n in range(1, 51)]
    (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n")
    stand_in.batches.faults_by_key.update({
        "7": Fault("finish", reason="IMAGE_SAFETY"), "13": Fault("block", reason="SAFETY"),
        "21": Fault("status", code=500)})
    slack_env = {"SLACK_BOT_TOKEN": slack.bot_token, "SLACK_API_URL": slack.api_url,
                 "SLACK_SIGNING_SECRET": slack.signing_secret,
                 "IMAGEBOT_BATCH_POLL_SECONDS": "0.05"}
    env = env_for(stand_in, db, **slack_env)

    code, out, err = await imagebot(env, "batch", "submit", "prompts.txt", "--thread", thread,
                                    cwd=tmp_path)
    assert code == 0, err
    assert "submitted as batches/" in out and "50 prompts on Nano Banana" in out
    assert f"at most {dollars(50 * 0.0195)} at batch price" in out
    assert job_row(db)["state"] == "pending"

    first = await start_serve(env, tmp_path)
    try:
        await until(lambda: job_row(db)["polls"] >= 1)
        stand_in.clock.advance(minutes=2)
        await until(lambda: job_row(db)["state"] == "running")
    finally:
        first.kill()  # a crash in the middle of the job: no shutdown at all
        await first.wait()
    stand_in.clock.advance(minutes=9)

    settings = make_settings(stand_in.base_url, slack_bot_token=slack.bot_token,
                             slack_api_url=slack.api_url,
                             slack_signing_secret=slack.signing_secret, batch_poll_seconds=0.05)
    async with running(settings, port=0):
        await until(lambda: job_row(db)["delivered_at"] is not None)

    creates = [r for r in stand_in.requests if r.path.endswith(":batchGenerateContent")]
    assert len(creates) == 1, "created once, whatever the processes did"
    posted = [m for m in slack.messages(CHANNEL, root) if m.get("bot_id") == slack.bot_id]
    uploads = [u for u in slack.uploads if u["thread_ts"] == root]
    numbers = sorted(int(u["title"].split(".")[0]) for u in uploads)
    assert numbers == [n for n in range(1, 51) if n not in (7, 13, 21)], "each image once"
    assert all(u["title"] == f"{n}. {prompts[n]}" for u in uploads
               for n in [int(u["title"].split(".")[0])]), "each image titled with its prompt"
    text = "\n".join(m.get("text") or "" for m in posted)
    assert f"*7.* {prompts[7]} — Gemini generated an image but withheld it" in text
    assert f"*13.* {prompts[13]} — Gemini blocked the prompt for safety reasons" in text
    assert f"*21.* {prompts[21]} — Gemini could not run this prompt (internal error)" in text
    with sqlite3.connect(db) as conn:
        tokens, output = conn.execute(
            "SELECT SUM(prompt_tokens), SUM(output_tokens) FROM usage").fetchone()
        assert conn.execute("SELECT COUNT(*) FROM batch_lines WHERE posted=0").fetchone()[0] == 0
    price = cost(FLASH, None, images=47, prompt_tokens=tokens, output_tokens=output, batch=True)
    short = job_row(db)["id"][:8]
    summary = posted[-1]["text"]
    assert summary == (f"Batch {short} finished: 50 prompts on Nano Banana: 47 done, 1 failed, "
                       f"2 blocked · 47 images · {dollars(price)} at batch price "
                       f"({dollars(price * 2)} at the usual price).")
    assert dollars(price) == "$0.92"


async def test_a_jsonl_batch_through_status_and_results(stand_in: OfflineGemini,
                                                        tmp_path: Path) -> None:
    db = tmp_path / "imagebot.sqlite3"
    config = tmp_path / "imagebot.toml"
    config.write_text("batch_inline_limit = 2000\n")  # any real campaign is over it
    env = env_for(stand_in, db, IMAGEBOT_CONFIG=str(config))
    lines = [{"prompt": f"Label {n} for a jam jar", "aspect_ratio": "3:4", "size": "2K"}
             for n in range(1, 13)] + [{"prompt": "Label 13, square", "ar": "1:1"}]
    (tmp_path / "labels.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    code, out, err = await imagebot(env, "batch", "submit", "labels.jsonl", "--model", "pro",
                                    "--thread", "jam", cwd=tmp_path)
    assert code == 0, err
    job = job_row(db)
    assert job["input"] == "file" and job["input_file"].startswith("files/")
    sent = stand_in.files.get(job["input_file"].removeprefix("files/"))
    assert sent is not None and len(sent.data.decode().splitlines()) == 13

    code, out, err = await imagebot(env, "batch", "results", job["id"][:6], cwd=tmp_path)
    assert code == 1 and "has not finished yet (pending)" in err
    stand_in.clock.advance(minutes=11)
    code, out, err = await imagebot(env, "batch", "status", job["id"][:6], cwd=tmp_path)
    assert code == 0, err
    assert "state: succeeded; 13 prompts on Nano Banana Pro; input file" in out
    assert "13 done, 0 failed, 0 blocked · 13 images" in out
    code, out, err = await imagebot(env, "batch", "results", job["id"], "--out", "labels",
                                    cwd=tmp_path)
    assert code == 0, err
    saved = sorted((tmp_path / "labels").glob("*.jpg")) + sorted(
        (tmp_path / "labels").glob("*.png"))
    assert len(saved) == 13 and "saved 13 images" in out
    index = (tmp_path / "labels" / f"{job['id'][:8]}-results.csv").read_text().splitlines()
    assert index[0] == "line,status,prompt,file,error" and len(index) == 14
    code, out, err = await imagebot(env, "batch", "list", cwd=tmp_path)
    assert code == 0 and job["id"][:8] in out and "succeeded" in out and "jam" in out
    code, out, err = await imagebot(env, "history", "--thread", "jam", cwd=tmp_path)
    assert code == 0 and f"[batch {job['id'][:8]}] 13 prompts, succeeded: 13 images" in out
