"""Memory of decoding big reference images: 8 turns at once, each with a 187 KB PNG of
6000×8000 RGBA (48 megapixels, under the 50 MP guard), with and without a pixel budget.

Each scenario runs in a fresh process and reads its own peak (VmHWM) and resident (VmRSS)
memory from ``/proc/self/status`` (Linux only). Target with the budget: peak < 600 MB and
resident memory afterwards within 100 MB of before.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TURNS = 8
SIZE = (6000, 8000)
MAX_EDGE = 3072
MAX_PIXELS = 50_000_000


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def make_png(path: Path) -> None:
    """A flat 6000×8000 RGBA PNG: tiny on disk, 192 MB once decoded."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", SIZE, (40, 90, 160, 255))
    ImageDraw.Draw(image).ellipse((1000, 1000, 5000, 7000), fill=(250, 200, 40, 200))
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=9)
    path.write_bytes(buf.getvalue())


async def run_turns(data: bytes, budget_pixels: int) -> None:
    from bot import images

    budget = images.PixelBudget(budget_pixels) if budget_pixels else None

    async def turn(n: int) -> None:
        if budget is None:
            await asyncio.to_thread(images.prepare_reference, data, f"big-{n}.png",
                                    max_edge=MAX_EDGE, max_pixels=MAX_PIXELS)
            return
        async with budget.hold(images.probe_pixels(data)):
            await asyncio.to_thread(images.prepare_reference, data, f"big-{n}.png",
                                    max_edge=MAX_EDGE, max_pixels=MAX_PIXELS)

    await asyncio.gather(*(turn(n) for n in range(TURNS)))


def child(path: Path, budget_pixels: int) -> None:
    """One scenario; prints ``before peak after seconds`` (MB, MB, MB, s)."""
    import bot.images  # noqa: F401  (imported before measuring, like a running bot)

    data = path.read_bytes()
    gc.collect()
    before = status_mb("VmRSS")
    start = time.perf_counter()
    asyncio.run(run_turns(data, budget_pixels))
    elapsed = time.perf_counter() - start
    gc.collect()
    print(f"{before:.0f} {status_mb('VmHWM'):.0f} {status_mb('VmRSS'):.0f} {elapsed:.1f}")


def measure(path: Path, budget_pixels: int) -> tuple[float, float, float, float]:
    out = subprocess.run([sys.executable, "-m", "bench.decode_memory", "--child", str(path),
                          "--budget", str(budget_pixels)],
                         check=True, capture_output=True, text=True).stdout
    before, peak, after, seconds = (float(v) for v in out.split())
    return before, peak, after, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=Path)
    parser.add_argument("--budget", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.budget)
        return
    from bot.images import DEFAULT_PIXEL_BUDGET

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.png"
        make_png(path)
        print(f"decode memory: {TURNS} turns at once, each a {path.stat().st_size / 1024:.0f} KB "
              f"PNG of {SIZE[0]}×{SIZE[1]} RGBA, max edge {MAX_EDGE}")
        for label, budget in (("no budget", 0),
                              (f"budget {DEFAULT_PIXEL_BUDGET / 1e6:.0f} MP",
                               DEFAULT_PIXEL_BUDGET)):
            before, peak, after, seconds = measure(path, budget)
            print(f"  {label:>14}: peak {peak:.0f} MB, resident {before:.0f} MB before and "
                  f"{after:.0f} MB after (+{after - before:.0f} MB), {seconds:.1f}s")


if __name__ == "__main__":
    main()
