"""Variations from the command line, end to end (separate processes, like a user's shell):
``imagebot chat --count 4`` saves U1…U4, ``imagebot use 3`` picks the third, and the next
``chat`` continues from it."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from offline_gemini import OfflineGemini
from tests.adapters.test_batch_cli import env_for, imagebot
from tests.wire import resolved


async def test_ask_for_four_and_continue_from_the_third(stand_in: OfflineGemini,
                                                        tmp_path: Path) -> None:
    env = env_for(stand_in, tmp_path / "imagebot.sqlite3")
    code, out, err = await imagebot(env, "chat", "--thread", "teapot", "--count", "4", "-m",
                                    "flash", "a teapot shaped like a whale", cwd=tmp_path)
    assert code == 0, err
    saved = dict(re.findall(r"^U(\d): (\S+) \(", out, re.MULTILINE))
    assert sorted(saved) == ["1", "2", "3", "4"]
    assert "finished first, so the conversation continues from it" in out
    assert "choose another with: imagebot use --thread teapot N" in out
    third = (tmp_path / saved["3"]).read_bytes()

    code, out, err = await imagebot(env, "use", "--thread", "teapot", "3", cwd=tmp_path)
    assert code == 0, err
    assert "Continuing from U3" in out
    code, out, err = await imagebot(env, "chat", "--thread", "teapot", "now in porcelain",
                                    cwd=tmp_path)
    assert code == 0, err
    # The history's images may go as Files API references: read them as the model does.
    contents = resolved(stand_in.generations[-1].body, stand_in)["contents"]
    images = [base64.urlsafe_b64decode((p.get("inlineData") or p["inline_data"])["data"])
              for p in contents[1]["parts"] if "inlineData" in p or "inline_data" in p]
    assert images == [third], "the conversation continued from U3"
    code, out, err = await imagebot(env, "use", "--thread", "teapot", "1", cwd=tmp_path)
    assert code == 1 and "no such turn" not in err and "can no longer be chosen" in err
    code, out, err = await imagebot(env, "history", "--thread", "teapot", cwd=tmp_path)
    assert "candidates: 4, continuing from U3" in out
