"""Restore a 30-turn 4K Pro thread from SQLite: time and peak RSS.

The thread is written through the store as real Gemini would leave it, without lifting any
limit: per turn a 7.8 MB 4K JPEG-sized image, two 2 MB interim thought images, and two
~1 MB thought signatures (the signed text and the signed image), all incompressible. That
is ~14 MB a turn, ~420 MB a thread: far more than one request may carry.

Measured in a fresh process per pass, with the kernel's peak-RSS mark reset just before:
- *restore*: what a turn reads to plan its request (rows and blob sizes, no blob bytes);
- *inflate all*: every byte of the history back as SDK Contents (for contrast only).
Targets: restore <= 100 ms and peak memory <= 64 MB.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from google.genai import types

from bot import history
from bot.model import StoredReply, ThreadKey
from bot.options import OptionInput
from bot.store import HistoryStore, NewTurn

TURNS = 30
KEY = ThreadKey("bench", "", "", "restore")
MB = 1_000_000


def _turn_contents(n: int) -> list[types.Content]:
    def blob(size: int) -> types.Blob:
        return types.Blob(mime_type="image/jpeg", data=os.urandom(size))

    user = types.Content(role="user", parts=[types.Part(text=f"frame {n}, a bit warmer")])
    model = types.Content(role="model", parts=[
        types.Part(text="Planning the composition…", thought=True),
        types.Part(inline_data=blob(2 * MB), thought=True),
        types.Part(inline_data=blob(2 * MB), thought=True),
        types.Part(text=f"Here is frame {n}.", thought_signature=os.urandom(MB)),
        types.Part(inline_data=blob(7_800_000), thought_signature=os.urandom(MB)),
    ])
    return [user, model]


async def build(path: Path) -> None:
    store = await HistoryStore.open(path)
    try:
        for n in range(TURNS):
            await store.commit_turn(NewTurn(
                turn_id=f"turn-{n}", key=KEY, contents=_turn_contents(n),
                settings=OptionInput(size="4K"), author_id="b", author_name="b",
                prompt=f"frame {n}", options={}, refs=[], reply=StoredReply(),
                model="gemini-3-pro-image-preview", usage={}, images=1,
                created_at=time.time()))
    finally:
        await store.close()


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


async def measure(path: Path, mode: str) -> None:
    """One pass in this (fresh) process; prints `seconds peak_growth_kb peak_kb size`."""
    store = await HistoryStore.open(path)
    try:
        await store.load_stored(ThreadKey("bench", "", "", "warm-up"))
        before = _rss_kb("VmRSS")
        exact = _reset_peak()
        start = time.perf_counter()
        stored = await store.load_stored(KEY)
        sizes = await store.blob_sizes({h for c in stored for h in c.blob_hashes()})
        if mode == "all":
            contents = await store.inflate(stored)
            assert len(contents) == len(stored)
        elapsed = time.perf_counter() - start
        peak = _rss_kb("VmHWM")
    finally:
        await store.close()
    size = sum(c.wire_size(sizes) for c in stored)
    growth = peak - before if exact else -1
    print(f"{elapsed:.6f} {growth} {peak} {size}")


def _pass(path: Path, mode: str) -> tuple[float, int, int, int]:
    out = subprocess.run([sys.executable, "-m", "bench.restore", "--measure", str(path), mode],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1]), int(out[2]), int(out[3])


def main() -> None:
    if sys.argv[1:2] == ["--measure"]:
        asyncio.run(measure(Path(sys.argv[2]), sys.argv[3]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "restore.sqlite3"
        asyncio.run(build(path))
        print(f"restore: {TURNS}-turn 4K Pro thread, {path.stat().st_size / MB:.0f} MB on disk")
        for mode, label in (("rows", "restore (rows + sizes)"), ("all", "inflate every byte")):
            runs = [_pass(path, mode) for _ in range(5 if mode == "rows" else 2)]
            seconds = statistics.median(r[0] for r in runs)
            growth = max(r[1] for r in runs) / 1024
            peak = max(r[2] for r in runs) / 1024
            print(f"  {label}: median {seconds * 1000:.1f} ms, peak RSS growth {growth:.1f} MB "
                  f"(process peak {peak:.0f} MB); history as one request "
                  f"{runs[0][3] / MB:.0f} MB")
        print("  targets: restore <= 100 ms, peak memory <= 64 MB "
              f"(signatures > {history.INLINE_SIGNATURE_MAX} B are blobs)")


if __name__ == "__main__":
    main()
