"""A 30-turn 4K Nano Banana Pro thread through the core, the stand-in at real sizes in its
own process at zero latency: what each turn's request carries and how long each turn takes,
for each ``history_signatures`` window asked for (default: 1, the default, and ``all``).

Per turn: wall time of ``service.handle``, the request's bytes as the stand-in received
them split into thought signatures (each real one ~1.4 MB of base64, two per answer; the
dummy is 44 bytes) and everything else, the CPU time of this process (the core and the SDK;
steadier than wall time on a shared machine), and the uploads so far. Between turns the bench
waits for the background upload of the turn's images (a person looks at the result before
writing the next message); that time is shown apart and is not in the turn's wall time.
The new turn has no attachments (its prompt is a few dozen bytes), so a request's bytes are
all "beyond the new turn's own attachments". Targets: under 1 MB beyond the new turn on
turns 10 and 30; turn 30 takes <= 1.5x turn 2.

    python -m bench.long_thread [--signatures 1,all] [--inline] [--turns N] [--size 4K]

``--inline`` turns the Files API off, for contrast: every earlier image is sent again,
and the 100 MB budget soon leaves the oldest turns out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import peak_rss_mb, settings_for, stand_in_process, stand_in_stats
from bot.model import Author, IncomingMessage, ThreadKey
from bot.runtime import open_core

MB = 1_000_000
SHOWN = (1, 2, 3, 10, 20, 30)


async def run(turns: int, size: str, files: bool, window: str) -> list[dict[str, float]]:
    rows = []
    async with stand_in_process(0.0, real_sizes=True, nice=False, admin=True) as url:
        with tempfile.TemporaryDirectory() as tmp:
            settings = settings_for(url, Path(tmp) / "b.sqlite3", use_files_api=files,
                                    history_signatures=window)
            async with open_core(settings, offline=False) as core:
                key = ThreadKey("bench", "", "", "long")
                for n in range(1, turns + 1):
                    message = IncomingMessage(author=Author("bench"),
                                              text=f"frame {n}, warmer --size {size} --ar 16:9")
                    started, cpu = time.perf_counter(), time.process_time()
                    reply = await core.service.handle(key, message)
                    wall = time.perf_counter() - started
                    cpu = time.process_time() - cpu
                    await core.service.files.drain()  # the person reads the result
                    background = time.perf_counter() - started - wall
                    stats = await stand_in_stats(url)
                    sent = stats["last_generate"]
                    rows.append({"turn": n, "wall": wall, "cpu": cpu, "background": background,
                                 "bytes": sent["bytes"], "signatures": sent["signature_bytes"],
                                 "inline": sent["inline_data_bytes"],
                                 "files": sent["file_parts"], "uploads": stats["uploads"],
                                 "left_out": any("left out" in x for x in reply.notices)})
    return rows


def report(rows: list[dict[str, float]]) -> None:
    print(f"  {'turn':>4} {'wall s':>7} {'cpu ms':>7} {'bg up s':>7} {'request MB':>10} "
          f"{'signatures MB':>13} {'other KB':>9} {'inline MB':>9} {'file parts':>10} "
          f"{'uploads':>7}")
    for row in rows:
        if row["turn"] not in SHOWN and row["turn"] != len(rows):
            continue
        other = row["bytes"] - row["signatures"]
        print(f"  {row['turn']:>4} {row['wall']:>7.2f} {row['cpu'] * 1000:>7.0f} "
              f"{row['background']:>7.2f} "
              f"{row['bytes'] / MB:>10.2f} {row['signatures'] / MB:>13.2f} "
              f"{other / 1000:>9.1f} {row['inline'] / MB:>9.1f} {row['files']:>10} "
              f"{row['uploads']:>7}" + ("  (oldest turns left out)" if row["left_out"] else ""))
    for n in (10, 30):
        if len(rows) >= n:
            verdict = "met" if rows[n - 1]["bytes"] < MB else "missed"
            print(f"  turn {n}: {rows[n - 1]['bytes'] / MB:.2f} MB beyond the new turn "
                  f"(target < 1 MB: {verdict})")
    if len(rows) >= 2:
        last = rows[-1]
        print(f"  turn {last['turn']} / turn 2 wall time: {last['wall'] / rows[1]['wall']:.2f}x "
              f"(target <= 1.5x); this process's CPU: {last['cpu'] / rows[1]['cpu']:.2f}x")
    if len(rows) >= 6:  # steadier on a shared machine: medians of three turns
        early, late = rows[1:4], rows[-3:]
        for name in ("wall", "cpu"):
            ratio = (statistics.median(r[name] for r in late)
                     / statistics.median(r[name] for r in early))
            print(f"  median {name} of the last 3 turns / of turns 2-4: {ratio:.2f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.long_thread")
    parser.add_argument("--signatures", default="1,all",
                        help="history_signatures windows to run, comma-separated (e.g. 0,1,all)")
    parser.add_argument("--inline", action="store_true", help="Files API off (contrast)")
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--size", default="4K")
    args = parser.parse_args()
    files = not args.inline
    for window in (w.strip() for w in args.signatures.split(",") if w.strip()):
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        print(f"long thread: {args.turns} turns of Nano Banana Pro at {args.size} 16:9, "
              f"stand-in at real sizes in its own process, latency 0, "
              f"{'Files API' if files else 'everything inline'}, "
              f"history_signatures={window}")
        report(await run(args.turns, args.size, files, window))
    print(f"  peak RSS of this process: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
