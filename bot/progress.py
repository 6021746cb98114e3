"""Live progress of one turn: the neutral events a surface shows while the turn runs.

The runner says where a waiting turn stands in its thread's line; the core says what
Gemini has streamed so far (thought text, each draft image, the final parts, grounding,
usage). Adapters render these events; the words come from :mod:`bot.messages`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from bot import messages
from bot.model import ReplyImage, Source, Usage

#: Where a turn is: waiting in its thread's line, request sent (nothing back yet),
#: thought text arriving, a draft image in (the final image is being drawn), final parts in.
Stage = Literal["queued", "sending", "thinking", "drawing", "finishing"]
#: What one event carries.
Kind = Literal["queued", "thought_text", "thought_image", "text", "image", "grounding",
               "usage"]


@dataclass(frozen=True)
class Progress:
    """One thing that happened while a turn runs.

    Attributes:
        kind: what arrived (``queued`` is the runner's: the turn waits in its line).
        stage: where the turn is now (after this event).
        elapsed: seconds since the request went to Gemini (0 while queued).
        text: thought text or answer text, for those kinds (``queued``: the wait is for
            the worker's capacity, and this says so).
        image: the draft (``thought_image``) or final image (``image``).
        drafts: draft images received so far (this one included).
        position: turns ahead in the thread's line (``queued`` only).
        sources: grounding sources (``grounding``).
        usage: token counts as last reported (``usage``).
    """

    kind: Kind
    stage: Stage
    elapsed: float = 0.0
    text: str = ""
    image: ReplyImage | None = None
    drafts: int = 0
    position: int = 0
    sources: tuple[Source, ...] = ()
    usage: Usage | None = None

    @classmethod
    def queued(cls, position: int) -> Progress:
        return cls(kind="queued", stage="queued", position=position)

    @classmethod
    def busy(cls, ahead: int) -> Progress:
        """Waiting for a free place at Gemini (all of this worker's are taken)."""
        return cls(kind="queued", stage="queued", position=0, text=messages.busy(ahead))

    def status(self, settings: str = "") -> str:
        """One line for a status message: ``Thinking… 12 s · 1 draft · Nano Banana Pro``."""
        if self.kind == "queued":
            return self.text or messages.queued(self.position)
        return messages.live_status(self.stage, elapsed=self.elapsed, drafts=self.drafts,
                                    settings=settings)


ProgressCallback = Callable[[Progress], Awaitable[None]]


def headline(thought: str, limit: int = 150) -> str:
    """What a thought is about: its first line without Markdown marks (Gemini opens each
    thought with a bold title, like ``**Composing the layout**``)."""
    for line in thought.splitlines():
        line = line.strip().strip("#").strip().strip("*_").strip()
        if line:
            return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"
    return ""
