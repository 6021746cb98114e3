"""``imagebot chat`` while a turn runs: the live status line on a terminal, drafts saved as
they arrive (``--thoughts``), and one JSON result for scripts (``--json``)."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from adapters import cli
from adapters.main import main
from bot.options import OptionInput

PREFIXES = ("GEMINI_", "GOOGLE_", "SLACK_", "DISCORD_", "IMAGEBOT_", "DATABASE_URL",
            "XDG_DATA_HOME")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith(PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("IMAGEBOT_OFFLINE_STREAM_GAP", "0")
    monkeypatch.chdir(tmp_path)


def run(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    return done.value.code, out, err


def test_json_and_thoughts_give_scripts_everything(clean_env, capsys, tmp_path):
    code, out, err = run(["chat", "--offline", "--thread", "logo", "--json", "--thoughts",
                          str(tmp_path / "drafts"), "--out", str(tmp_path / "out"),
                          "a fox --ar 16:9 --search"], capsys)
    assert code == 0 and err == "", err  # not a terminal: no status line
    result = json.loads(out)
    assert out.count("\n") == 1, "one JSON object"
    assert result["thread"] == "logo" and len(result["turn_id"]) == 32
    assert result["settings"] == "Nano Banana Pro · 1K · 16:9 · search"
    [image] = result["images"]
    assert Path(image["path"]).is_file() and (image["width"], image["height"]) == (1376, 768)
    assert image["bytes"] == Path(image["path"]).stat().st_size
    assert [Path(d["path"]).parent.name for d in result["drafts"]] == ["drafts", "drafts"]
    for draft in result["drafts"]:
        with Image.open(draft["path"]) as saved:
            assert saved.size == (draft["width"], draft["height"])
    assert result["sources"] and result["search_queries"] and result["usage"]["total_tokens"]
    assert result["offline"] is True and result["texts"]


def test_a_failure_in_json_is_json_too(clean_env, capsys, tmp_path):
    code, out, err = run(["chat", "--offline", "--thread", "t", "--json", "--out",
                          str(tmp_path), "a fox --size 9K"], capsys)
    assert code == 1 and json.loads(out)["kind"] == "option" and "9K" in err


async def test_the_status_line_tells_stage_elapsed_and_drafts(core, stand_in, tmp_path):
    stand_in.stream_gap = 0.3
    terminal, out = io.StringIO(), io.StringIO()
    await cli.chat(core, thread="t", prompt="a lighthouse", image_paths=[],
                   options=OptionInput(), out_dir=str(tmp_path), out=out, status=terminal,
                   thoughts_dir=str(tmp_path / "drafts"))
    frames = [f for f in terminal.getvalue().split("\r\x1b[2K") if f]
    assert frames[0].endswith("Generating… 0 s · Nano Banana Pro · 1K · auto ratio")
    assert any(re.search(r"Thinking… \d+ s · Nano Banana Pro", f) for f in frames)
    assert any(re.search(r"Drawing… \d+ s · 1 draft · ", f) for f in frames)
    assert any("2 drafts" in f for f in frames)
    assert terminal.getvalue().endswith("\r\x1b[2K"), "the line is cleared at the end"
    printed = out.getvalue()
    assert printed.count("draft: ") == 2 and "image: " in printed
