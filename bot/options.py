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
#: Imagen 4 takes these ratios only.
IMAGEN_RATIOS: tuple[str, ...] = ("1:1", "3:4", "4:3", "9:16", "16:9")
#: The most candidates (``--count``) one turn may ask for.
MAX_COUNT = 4

FLASH = "gemini-2.5-flash-image"
PRO = "gemini-3-pro-image-preview"
IMAGEN = "imagen-4.0-generate-001"
IMAGEN_ULTRA = "imagen-4.0-ultra-generate-001"
IMAGEN_FAST = "imagen-4.0-fast-generate-001"
MODEL_ALIASES: dict[str, str] = {
    "flash": FLASH,
    "nano-banana": FLASH,
    "nanobanana": FLASH,
    "pro": PRO,
    "nano-banana-pro": PRO,
    "nanobananapro": PRO,
    "imagen": IMAGEN,
    "imagen-4": IMAGEN,
    "imagen-4-ultra": IMAGEN_ULTRA,
    "imagen-ultra": IMAGEN_ULTRA,
    "imagen-4-fast": IMAGEN_FAST,
    "imagen-fast": IMAGEN_FAST,
}
#: A model's kind: a Gemini image chat model, or Imagen (one-shot ``:predict``).
CHAT = "chat"
ONE_SHOT = "imagen"


@dataclass(frozen=True)
class ModelCaps:
    """What one model can do; the table lives in configuration.

    Attributes:
        label: a human name ("Nano Banana Pro").
        sizes: the image sizes it accepts; empty for a fixed size.
        max_reference_images: how many images one turn may attach.
        search: whether Google Search grounding is available.
        thinking: whether the model thinks (thought text and images).
        kind: ``chat`` (a Gemini image model: a conversation, ``:generateContent``) or
            ``imagen`` (one-shot ``:predict``: no history, no references).
        ratios: the aspect ratios it accepts; empty for all of :data:`ASPECT_RATIOS`.
        max_count: the most images one turn may ask for (``--count``).
    """

    label: str
    sizes: tuple[str, ...] = ()
    max_reference_images: int = 3
    search: bool = False
    thinking: bool = False
    kind: str = CHAT
    ratios: tuple[str, ...] = ()
    max_count: int = MAX_COUNT

    @property
    def one_shot(self) -> bool:
        """True for Imagen: each turn stands alone, outside the conversation history."""
        return self.kind == ONE_SHOT


@dataclass(frozen=True)
class OptionInput:
    """Options as given by a user: every field optional, ``None`` meaning "not given"."""

    model: str | None = None
    aspect_ratio: str | None = None
    size: str | None = None
    search: bool | None = None
    image_only: bool | None = None
    #: How many candidates to make (``--count``); never sticks to the thread.
    count: int | None = None

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
    count: int = 1
    caps: ModelCaps = field(default_factory=lambda: ModelCaps(label="?"), compare=False)

    def summary(self) -> str:
        """One line for replies: ``Nano Banana Pro · 2K · 16:9 · search · 4 candidates``."""
        bits = [self.caps.label]
        if self.caps.sizes:
            bits.append(self.size or "1K")
        bits.append(self.aspect_ratio or ("1:1" if self.caps.one_shot else "auto ratio"))
        if self.search:
            bits.append("search")
        if self.image_only and not self.caps.one_shot:
            bits.append("image only")
        if self.count > 1:
            bits.append(f"{self.count} candidates")
        return " · ".join(bits)


_FLAG_TOKEN = re.compile(r"(?<!\S)(?:--|\u2014|\u2013)([a-zA-Z][a-zA-Z-]*)(?:=(\S+))?(?!\S)")
# The one-dash short flags: ``-m flash``.
_SHORT_FLAG = re.compile(r"-(m)(?:=(\S+))?")
_VALUE_FLAGS = {
    "ar": "aspect_ratio", "aspect": "aspect_ratio", "aspect-ratio": "aspect_ratio",
    "ratio": "aspect_ratio",
    "size": "size", "res": "size", "resolution": "size",
    "model": "model", "m": "model",
    "count": "count", "variations": "count",
}
_BOOL_FLAGS = {
    "search": ("search", True), "no-search": ("search", False),
    "image-only": ("image_only", True), "text-and-image": ("image_only", False),
    "with-text": ("image_only", False),
}
KNOWN_FLAGS = (
    "--ar RATIO", "--size 1K|2K|4K", "--model (-m) flash|pro|imagen-4|<model id>",
    "--search", "--no-search", "--image-only", "--with-text", "--count 1-4",
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
            field_name = _VALUE_FLAGS[name]
            given[field_name] = parse_count(inline_value) if field_name == "count" else inline_value
            i += 1
        else:
            raise OptionError(f"Unknown flag `--{name}`. Flags: {', '.join(KNOWN_FLAGS)}.")
    return " ".join(kept), OptionInput(**given)


def parse_count(value: str | int) -> int:
    """``--count``'s value as a number (checked against the model by :func:`resolve`).

    Raises:
        OptionError: for anything but a whole number.
    """
    try:
        return int(str(value).strip())
    except ValueError:
        raise OptionError(f"`--count {value}` needs a whole number from 1 to {MAX_COUNT}.") from None


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
        f"`pro` (Nano Banana Pro, {PRO}), `imagen-4`, `imagen-4-ultra`, `imagen-4-fast`, "
        "or a full Gemini model id."
    )


def caps_for(model: str, table: Mapping[str, ModelCaps]) -> ModelCaps:
    """The capabilities of a model; unknown ids get a conservative entry (an unknown
    ``imagen-*`` id is taken for an Imagen model)."""
    known = table.get(model)
    if known is not None:
        return known
    if model.startswith("imagen-"):
        return ModelCaps(label=model, sizes=(), max_reference_images=0, kind=ONE_SHOT,
                         ratios=IMAGEN_RATIOS, max_count=1)
    return ModelCaps(label=model, sizes=(), max_reference_images=3)


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

    ratio = _resolve_ratio(merged.aspect_ratio, turn.aspect_ratio is not None, caps)
    size = _resolve_size(merged.size, turn.size is not None, model, caps)
    search = bool(merged.search)
    if search and not caps.search:
        if turn.search:
            raise OptionError(
                f"{caps.label} cannot ground on Google Search. Use `--model pro` for search."
            )
        search = False
    if caps.one_shot and turn.image_only is False:
        raise OptionError(f"{caps.label} answers with images only, never text. "
                          "Drop `--with-text`, or use `--model pro`.")
    return Options(model=model, aspect_ratio=ratio, size=size, search=search,
                   image_only=bool(merged.image_only) or caps.one_shot,
                   count=_resolve_count(turn.count, caps), caps=caps)


def _resolve_ratio(value: str | None, given_now: bool, caps: ModelCaps) -> str | None:
    if value is None or value.strip().lower() in ("auto", ""):
        return None
    ratio = value.strip()
    if ratio not in ASPECT_RATIOS:
        raise OptionError(
            f"`{ratio}` is not a supported aspect ratio. Use one of: {', '.join(ASPECT_RATIOS)}."
        )
    if caps.ratios and ratio not in caps.ratios:
        if given_now:
            raise OptionError(f"{caps.label} supports the aspect ratios "
                              f"{', '.join(caps.ratios)}, not {ratio}.")
        return None  # a sticky ratio another model could use
    return ratio


def _resolve_count(value: int | None, caps: ModelCaps) -> int:
    if value is None:
        return 1
    most = max(1, min(caps.max_count, MAX_COUNT))
    if not 1 <= value <= most:
        if most == 1:
            raise OptionError(f"{caps.label} makes one image per request, so it takes no "
                              "`--count`. Use `--model imagen-4` for up to 4.")
        raise OptionError(f"`--count` takes 1 to {most} with {caps.label}, not {value}.")
    return value


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
        if not given_now:
            return None  # a sticky size another model could use
        raise OptionError(f"{caps.label} supports sizes {', '.join(caps.sizes)}, not {size}.")
    return size

