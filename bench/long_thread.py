"""A 30-turn 4K Nano Banana Pro thread through the core, the stand-in at real sizes in its
own process at zero latency: what each turn's request carries and how long each turn takes.

Per turn: wall time of ``service.handle``, the request's bytes as the stand-in received
them split into thought signatures (which must go back byte for byte, ~1.4 MB of base64
each, two per turn) and everything else, and the uploads so far. Targets: turn 30 takes
<= 1.5x turn 2; a request carries "under 1 MB beyond the new turn's own attachments"
(impossible as written with ~1 MiB signatures: the signatures are reported apart).

    python -m bench.long_thread [--inline] [--turns N] [--size 4K]

``--inline`` turns the Files API off, for contrast: every earlier image is sent again,
and the 100 MB budget soon leaves the oldest turns out.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.common import peak_rss_mb, settings_for, stand_in_process, stand_in_stats
from bot.model import Author, IncomingMessage, ThreadKey
from bot.runtime import open_core

MB = 1_000_000
SHOWN = (1, 2, 3, 10, 20, 30)


async def run(turns: int, size: str, files: bool) -> list[dict[str, float]]:
    rows = []
    async with stand_in_process(0.0, real_sizes=True, nice=False, admin=True) as url:
        with tempfile.TemporaryDirectory() as tmp:
            settings = settings_for(url, Path(tmp) / "b.sqlite3", use_files_api=files)
            async with open_core(settings, offline=False) as core:
                key = ThreadKey("bench", "", "", "long")
                for n in range(1, turns + 1):
                    message = IncomingMessage(author=Author("bench"),
                                              text=f"frame {n}, warmer --size {size} --ar 16:9")
                    started = time.perf_counter()
                    reply = await core.service.handle(key, message)
                    wall = time.perf_counter() - started
                    stats = await stand_in_stats(url)
                    sent = stats["last_generate"]
                    rows.append({"turn": n, "wall": wall, "bytes": sent["bytes"],
                                 "signatures": sent["signature_bytes"],
                                 "inline": sent["inline_data_bytes"],
                                 "files": sent["file_parts"], "uploads": stats["uploads"],
                                 "left_out": any("left out" in x for x in reply.notices)})
    return rows


def report(rows: list[dict[str, float]], files: bool) -> None:
    print(f"  {'turn':>4} {'wall s':>7} {'request MB':>10} {'signatures MB':>13} "
          f"{'other KB':>9} {'inline MB':>9} {'file parts':>10} {'uploads':>7}")
    for row in rows:
        if row["turn"] not in SHOWN and row["turn"] != len(rows):
            continue
        other = row["bytes"] - row["signatures"]
        print(f"  {row['turn']:>4} {row['wall']:>7.2f} {row['bytes'] / MB:>10.1f} "
              f"{row['signatures'] / MB:>13.1f} {other / 1000:>9.1f} "
              f"{row['inline'] / MB:>9.1f} {row['files']:>10} {row['uploads']:>7}"
              + ("  (oldest turns left out)" if row["left_out"] else ""))
    if len(rows) >= 2:
        last = rows[-1]
        print(f"  turn {last['turn']} / turn 2 wall time: {last['wall'] / rows[1]['wall']:.2f}x "
              "(target <= 1.5x)")
    print(f"  peak RSS of this process: {peak_rss_mb():.0f} MB")


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.long_thread")
    parser.add_argument("--inline", action="store_true", help="Files API off (contrast)")
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--size", default="4K")
    args = parser.parse_args()
    files = not args.inline
    print(f"long thread: {args.turns} turns of Nano Banana Pro at {args.size} 16:9, stand-in "
          f"at real sizes in its own process, latency 0, "
          f"{'Files API' if files else 'everything inline'}")
    report(await run(args.turns, args.size, files), files)


if __name__ == "__main__":
    asyncio.run(main())
