"""The values a validated generate request is reduced to: parts, contents, the request."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from offline_gemini.models import ModelSpec

PartKind = Literal["text", "image", "file", "other"]

_INTERLEAVE_WORDS = re.compile(r"\bstep[\s-]+by[\s-]+step\b|\brecipe", re.IGNORECASE)


@dataclass(frozen=True)
class Part:
    """One request part; ``data`` holds an image's bytes (a file's, once resolved)."""

    kind: PartKind
    text: str = ""
    data: bytes = b""
    mime: str = ""
    uri: str = ""
    thought: bool = False
    signature: str | None = None
    #: SHA-256 of ``data`` when already known (a file's, computed at upload).
    digest: bytes = b""

    def payload(self) -> bytes:
        """What a thought signature on this part signs."""
        return self.text.encode("utf-8") if self.kind == "text" else self.data

    def payload_digest(self) -> bytes:
        """SHA-256 of :meth:`payload`."""
        if self.digest and self.kind != "text":
            return self.digest
        return hashlib.sha256(self.payload()).digest()


@dataclass(frozen=True)
class Content:
    """One content of ``contents``: a role and its parts."""

    role: str
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Thumb:
    """A decoded input image, small, with the label drawn under it."""

    image: Image.Image
    label: str


@dataclass(frozen=True)
class ParsedRequest:
    """A validated generate request, reduced to what the answer depends on."""

    model: str
    spec: ModelSpec
    contents: tuple[Content, ...]
    aspect_ratio: str
    ratio_from_input: bool
    image_size: str | None
    width: int
    height: int
    want_text: bool
    search: bool
    prompt: str
    thumbs: tuple[Thumb, ...]
    history_images: int
    seed: bytes

    @property
    def interleaved(self) -> bool:
        """True when the prompt asks for steps (a recipe): text and images alternate."""
        return bool(_INTERLEAVE_WORDS.search(self.prompt))
