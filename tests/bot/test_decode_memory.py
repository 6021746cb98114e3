"""Memory of decoding large reference images, measured in a fresh process.

Eight turns at once, each with a 6000×8000 RGBA PNG (48 megapixels, under the 50 MP limit,
about 200 KB on disk), prepared under a :class:`bot.images.PixelBudget`: the peak stays
under 600 MB and the memory is handed back afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                reason="reads VmHWM/VmRSS from /proc (Linux)")

ROOT = Path(__file__).resolve().parents[2]

MAKE_PNG = """
import io, sys
from PIL import Image, ImageDraw
image = Image.new("RGBA", (6000, 8000), (40, 90, 160, 255))
ImageDraw.Draw(image).ellipse((1000, 1000, 5000, 7000), fill=(250, 200, 40, 200))
image.save(sys.argv[1], "PNG", compress_level=9)
"""

MEASURE = textwrap.dedent("""
    import asyncio, gc, sys
    from pathlib import Path
    from bot import images

    def mb(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024

    async def run(data):
        budget = images.PixelBudget()

        async def turn(n):
            async with budget.hold(images.probe_pixels(data, max_pixels=50_000_000)):
                prepared = await asyncio.to_thread(
                    images.prepare_reference, data, f"big-{n}.png", max_edge=3072,
                    max_pixels=50_000_000)
            assert (prepared.width, prepared.height) == (2304, 3072), prepared
            assert "downscaled from 6000×8000" in prepared.notice

        await asyncio.gather(*(turn(n) for n in range(8)))

    data = Path(sys.argv[1]).read_bytes()
    gc.collect()
    before = mb("VmRSS")
    asyncio.run(run(data))
    gc.collect()
    print(before, mb("VmHWM"), mb("VmRSS"))
""")


def test_eight_large_pngs_at_once_stay_under_600_mb(tmp_path):
    path = tmp_path / "big.png"
    subprocess.run([sys.executable, "-c", MAKE_PNG, str(path)], check=True, timeout=120)
    assert path.stat().st_size < 400_000
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=110).stdout
    before, peak, after = (float(v) for v in out.split())
    assert peak < 600, f"peak {peak:.0f} MB (resident before: {before:.0f} MB)"
    assert after - before < 100, f"resident {before:.0f} MB before, {after:.0f} MB after"
