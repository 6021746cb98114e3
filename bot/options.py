"""Generation options: inline flags, thread settings, defaults, and their validation.

Precedence, first match wins: options given in this turn (inline ``--flags`` or a
platform's own fields), then the thread's sticky settings, then configured defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from bot.errors import OptionError

ASPECT_RATIOS: tuple[str, ...] = (
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
)
IMAGE_SIZES: tuple[str, ...] = ("1K", "2K", "4K")

FLASH = "gemini-2.5-flash-image"
PRO = "gemini-3-pro-image-preview"
MODEL_ALIASES: dict[str, str] = {
    "flash": FLASH,
    "nano-banana": FLASH,
    "nanobanana": FLASH,
    "pro": PRO,
    "nano-banana-pro": PRO,
    "nanobananapro": PRO,
}


@dataclass(frozen=True)
class ModelCaps:
    """What one model can do; the table lives in configuration.

    Attributes:
        label: a human name ("Nano Banana Pro").
        sizes: the image sizes it accepts; empty for a fixed size.
        max_reference_images: how many images one turn may attach.
        search: whether Google Search grounding is available.
        thinking: whether the model thinks (thought text and images).
    """

    label: str
    sizes: tuple[str, ...] = ()
    max_reference_images: int = 3
    search: bool = False
    thinking: bool = False


@dataclass(frozen=True)
class OptionInput:
    """Options as given by a user: every field optional, ``None`` meaning "not given"."""

    model: str | None = None
    aspect_ratio: str | None = None
    size: str | None = None
    search: bool | None = None
    image_only: bool | None = None

    def given(self) -> dict[str, Any]:
        """The fields that were set, as a plain dict (this is what thread settings store)."""
        # Not dataclasses.asdict: its deep copy is slow, and every turn merges inputs.
        return {k: v for k in _INPUT_FIELDS if (v := getattr(self, k)) is not None}

    def over(self, other: OptionInput) -> OptionInput:
        """This input with ``other``'s values filling the gaps."""
        return OptionInput(**{**other.given(), **self.given()})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OptionInput:
        return cls(**{k: v for k, v in data.items() if k in _INPUT_FIELDS})


_INPUT_FIELDS = tuple(f.name for f in fields(OptionInput))


@dataclass(frozen=True)
class Options:
    """Fully resolved, validated options for one turn."""

    model: str
    aspect_ratio: str | None = None
    size: str | None = None
    search: bool = False
    image_only: bool = False
    caps: ModelCaps = field(default_factory=lambda: ModelCaps(label="?"), compare=False)

    def summary(self) -> str:
        """One line for replies: ``Nano Banana Pro · 2K · 16:9 · search``."""
        bits = [self.caps.label]
        if self.caps.sizes:
            bits.append(self.size or "1K")
        bits.append(self.aspect_ratio or "auto ratio")
        if self.search:
            bits.append("search")
        if self.image_only:
            bits.append("image only")
        return " · ".join(bits)


_FLAG_TOKEN = re.compile(r"(?<!\S)(?:--|\u2014|\u2013)([a-zA-Z][a-zA-Z-]*)(?:=(\S+))?(?!\S)")
# The one-dash short flags: ``-m flash``.
_SHORT_FLAG = re.compile(r"-(m)(?:=(\S+))?")
_VALUE_FLAGS = {
    "ar": "aspect_ratio", "aspect": "aspect_ratio", "aspect-ratio": "aspect_ratio",
    "ratio": "aspect_ratio",
    "size": "size", "res": "size", "resolution": "size",
    "model": "model", "m": "model",
}
_BOOL_FLAGS = {
    "search": ("search", True), "no-search": ("search", False),
    "image-only": ("image_only", True), "text-and-image": ("image_only", False),
    "with-text": ("image_only", False),
}
KNOWN_FLAGS = (
    "--ar RATIO", "--size 1K|2K|4K", "--model (-m) flash|pro|<model id>",
    "--search", "--no-search", "--image-only", "--with-text",
)


def parse_inline(text: str) -> tuple[str, OptionInput]:
    """Removes inline flags from a message and returns (prompt, options given).

    Accepts ``--ar 16:9`` and ``--ar=16:9``; an em or en dash stands for ``--``, since
    chat apps often turn a typed ``--`` into one. Values are checked later by
    :func:`resolve`, so the error can list what is valid for the chosen model.

    Raises:
        OptionError: for an unknown flag or a flag missing its value.
    """
    given: dict[str, Any] = {}
    tokens = text.split()
    kept: list[str] = []
    i = 0
    while i < len(tokens):
        match = _FLAG_TOKEN.fullmatch(tokens[i]) or _SHORT_FLAG.fullmatch(tokens[i])
        if not match:
            kept.append(tokens[i])
            i += 1
            continue
        name, inline_value = match.group(1).lower(), match.group(2)
        if name in _BOOL_FLAGS:
            key, value = _BOOL_FLAGS[name]
            given[key] = value
            i += 1
        elif name in _VALUE_FLAGS:
            if inline_value is None:
                if i + 1 >= len(tokens):
                    shown = f"-{name}" if len(name) == 1 else f"--{name}"
                    raise OptionError(f"`{shown}` needs a value. Flags: {', '.join(KNOWN_FLAGS)}.")
                inline_value = tokens[i + 1]
                i += 1
            given[_VALUE_FLAGS[name]] = inline_value
            i += 1
        else:
            raise OptionError(f"Unknown flag `--{name}`. Flags: {', '.join(KNOWN_FLAGS)}.")
    return " ".join(kept), OptionInput(**given)


def resolve_model(value: str) -> str:
    """Maps an alias to a model id; any ``gemini-*`` id passes through.

    Raises:
        OptionError: for a value that is neither an alias nor a model id.
    """
    name = value.strip()
    lowered = name.lower()
    if lowered in MODEL_ALIASES:
        return MODEL_ALIASES[lowered]
    if lowered.startswith("models/"):
        name, lowered = name[len("models/"):], lowered[len("models/"):]
    if lowered.startswith(("gemini-", "imagen-")) and re.fullmatch(r"[a-z0-9.\-]+", lowered):
        return lowered
    raise OptionError(
        f"Unknown model `{value}`. Use `flash` (Nano Banana, {FLASH}), "
        f"`pro` (Nano Banana Pro, {PRO}), or a full Gemini model id."
    )


def caps_for(model: str, table: Mapping[str, ModelCaps]) -> ModelCaps:
    """The capabilities of a model; unknown ids get a conservative entry."""
    return table.get(model) or ModelCaps(label=model, sizes=(), max_reference_images=3)


def resolve(
    turn: OptionInput,
    thread: OptionInput,
    defaults: OptionInput,
    table: Mapping[str, ModelCaps],
) -> Options:
    """Merges and validates options; a bad value given in this turn is an error.

    A sticky or default value that the chosen model cannot use (a 2K size after a switch
    to Flash) is dropped rather than refused, since the user did not ask for it now.

    Raises:
        OptionError: listing the valid values, before any API call.
    """
    merged = turn.over(thread).over(defaults)
    model = resolve_model(merged.model or PRO)
    caps = caps_for(model, table)

    ratio = merged.aspect_ratio
    if ratio is not None and ratio.lower() not in ("auto", ""):
        ratio = ratio.strip()
        if ratio not in ASPECT_RATIOS:
            raise OptionError(
                f"`{ratio}` is not a supported aspect ratio. Use one of: {', '.join(ASPECT_RATIOS)}."
            )
    else:
        ratio = None

    size = _resolve_size(merged.size, turn.size is not None, model, caps)
    search = bool(merged.search)
    if search and not caps.search:
        if turn.search:
            raise OptionError(
                f"{caps.label} cannot ground on Google Search. Use `--model pro` for search."
            )
        search = False
    return Options(model=model, aspect_ratio=ratio, size=size, search=search,
                   image_only=bool(merged.image_only), caps=caps)


def _resolve_size(value: str | None, given_now: bool, model: str, caps: ModelCaps) -> str | None:
    if value is None or value.strip().lower() in ("", "auto"):
        return None
    size = value.strip().upper()
    if size not in IMAGE_SIZES:
        raise OptionError(f"`{value}` is not a supported size. Use one of: {', '.join(IMAGE_SIZES)}.")
    if not caps.sizes:
        if given_now:
            raise OptionError(
                f"{caps.label} ({model}) makes images at one fixed size (about 1024 px), so it "
                f"takes no size. Drop `--size`, or use `--model pro` for {', '.join(IMAGE_SIZES)}."
            )
        return None
    if size not in caps.sizes:
        raise OptionError(f"{caps.label} supports sizes {', '.join(caps.sizes)}, not {size}.")
    return size

