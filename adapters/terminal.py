"""What ``imagebot chat`` shows while a turn runs: one status line on a terminal (stage,
elapsed time, drafts so far), rewritten in place and gone when the turn ends, and the
drafts saved as they arrive when ``--thoughts DIR`` asks for them."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from pathlib import Path
from typing import TextIO

from bot import messages
from bot.model import ReplyImage
from bot.progress import Progress, Stage
from bot.service import TurnStart
from bot.tasks import cancel_and_wait

#: Seconds between redraws of the status line (its elapsed time).
REDRAW = 0.25
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_CLEAR = "\r\x1b[2K"


class StatusLine:
    """A live status line on ``stream`` (a terminal): ``⠹ Thinking… 12 s · 1 draft · …``."""

    def __init__(self, stream: TextIO, *, redraw: float = REDRAW) -> None:
        self.stream = stream
        self.redraw = redraw
        self._stage: Stage = "sending"
        self._settings = ""
        self._drafts = 0
        self._began = time.monotonic()
        self._frame = 0
        self._ticker: asyncio.Task[None] | None = None
        self._shown = False

    async def started(self, start: TurnStart) -> None:
        self._settings = start.options.summary()
        self._began = time.monotonic()
        self._draw()
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick())

    async def progress(self, event: Progress) -> None:
        self._stage, self._drafts = event.stage, event.drafts
        self._draw()

    async def close(self) -> None:
        """Stops redrawing and clears the line (the result or the error follows)."""
        ticker, self._ticker = self._ticker, None
        await cancel_and_wait(ticker)
        if self._shown:
            self.stream.write(_CLEAR)
            self.stream.flush()
            self._shown = False

    def text(self) -> str:
        return messages.live_status(self._stage, elapsed=time.monotonic() - self._began,
                                    drafts=self._drafts, settings=self._settings)

    def _draw(self) -> None:
        self._frame = (self._frame + 1) % len(_SPINNER)
        width = shutil.get_terminal_size((80, 24)).columns - 1
        line = f"{_SPINNER[self._frame]} {self.text()}"[:max(10, width)]
        self.stream.write(_CLEAR + line)
        self.stream.flush()
        self._shown = True

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.redraw)
            self._draw()


class DraftSaver:
    """Saves each draft into ``folder`` as it arrives (``--thoughts DIR``)."""

    def __init__(self, folder: Path, stem: str) -> None:
        self.folder = folder
        self.stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "thread"
        self.saved: list[tuple[Path, ReplyImage]] = []

    async def progress(self, event: Progress) -> None:
        if event.kind != "thought_image" or event.image is None:
            return
        image = event.image
        path = self.folder / (f"{self.stem}-{image.sha256[:8]}-draft{event.drafts}."
                              f"{image.extension}")
        await asyncio.to_thread(self._write, path, image.data)
        self.saved.append((path, image))

    def _write(self, path: Path, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
