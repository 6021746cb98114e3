"""Memory of eight concurrent turns that each attach a 48-megapixel PNG, through the service
against the stand-in, in a fresh process: decoding is bounded by the service's pixel budget.

This is the attack run's case (8 turns × 6000×8000 RGBA: 3.9 GB peak before the budget).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.bot.test_decode_memory import MAKE_PNG

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                reason="reads VmHWM/VmRSS from /proc (Linux)")

ROOT = Path(__file__).resolve().parents[2]

TURNS = textwrap.dedent("""
    import asyncio, gc, sys
    from pathlib import Path
    from bot.config import load_settings
    from bot.model import Attachment, Author, IncomingMessage, ThreadKey
    from bot.runtime import open_core
    from offline_gemini import OfflineGemini

    def mb(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024

    async def main(data, db):
        async with OfflineGemini(api_key="k") as server:
            settings = load_settings(env={}, gemini_api_key="k", gemini_base_url=server.base_url,
                                     database_url=f"sqlite:///{db}")
            async with open_core(settings) as core:
                await core.service.handle(ThreadKey("cli", "", "", "warm"), IncomingMessage(
                    Author("u"), "warm up --model flash"))
                gc.collect()
                before = mb("VmRSS")

                async def turn(n):
                    message = IncomingMessage(Author("u"), "a poster --model flash",
                        attachments=(Attachment.from_bytes(f"big-{n}.png", data, "image/png"),))
                    reply = await core.service.handle(ThreadKey("cli", "", "", f"t{n}"), message)
                    assert any("downscaled" in n for n in reply.notices), reply.notices

                await asyncio.gather(*(turn(n) for n in range(8)))
                gc.collect()
                print(before, mb("VmHWM"), mb("VmRSS"))

    asyncio.run(main(Path(sys.argv[1]).read_bytes(), sys.argv[2]))
""")


def test_eight_turns_with_48_megapixel_images_stay_under_600_mb(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    subprocess.run([sys.executable, "-c", MAKE_PNG, str(path)], check=True, timeout=120)
    out = subprocess.run([sys.executable, "-c", TURNS, str(path), str(tmp_path / "db.sqlite3")],
                         cwd=ROOT, check=True, capture_output=True, text=True,
                         timeout=110).stdout
    before, peak, after = (float(v) for v in out.split())
    assert peak < 600, f"peak {peak:.0f} MB (resident before the turns: {before:.0f} MB)"
    assert after - before < 100, f"resident {before:.0f} MB before, {after:.0f} MB after"
