"""The platform-neutral values every adapter speaks: threads, messages, attachments, replies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from bot.options import OptionInput, Options


@dataclass(frozen=True)
class ThreadKey:
    """Identifies one conversation: a Slack thread, a Discord thread, a web or CLI thread.

    Attributes:
        platform: ``slack``, ``discord``, ``web`` or ``cli``.
        workspace: Slack team id or Discord guild id (empty where there is none).
        channel: channel id (empty for CLI/web).
        thread: thread id (Slack root ``ts``, Discord thread id, or a local name).
    """

    platform: str
    workspace: str
    channel: str
    thread: str

    def __str__(self) -> str:
        return "/".join((self.platform, self.workspace, self.channel, self.thread))


@dataclass(frozen=True)
class Author:
    """Who sent a message."""

    id: str
    name: str = ""


@dataclass(frozen=True)
class Attachment:
    """A file on an incoming message; the bytes are fetched only when needed.

    Attributes:
        name: the file name the platform declared (never trusted for the type).
        mime_type: the MIME type the platform declared (never trusted either).
        size: declared size in bytes, when the platform tells it.
        fetch: coroutine function returning the bytes.
    """

    name: str
    mime_type: str
    fetch: Callable[[], Awaitable[bytes]] = field(repr=False, compare=False)
    size: int | None = None

    @classmethod
    def from_bytes(cls, name: str, data: bytes, mime_type: str = "") -> Attachment:
        async def fetch() -> bytes:
            return data

        return cls(name=name, mime_type=mime_type, fetch=fetch, size=len(data))


@dataclass(frozen=True)
class IncomingMessage:
    """A message that asks for a turn.

    Attributes:
        author: the sender.
        text: the message text; inline ``--flags`` are parsed out of it.
        attachments: reference images, in order.
        options: options set through platform UI (slash command fields, selectors);
            they take precedence like inline flags.
    """

    author: Author
    text: str
    attachments: tuple[Attachment, ...] = ()
    options: OptionInput = field(default_factory=OptionInput)


@dataclass(frozen=True)
class ReplyImage:
    """One generated image."""

    data: bytes = field(repr=False)
    mime_type: str
    width: int
    height: int
    sha256: str

    @property
    def extension(self) -> str:
        return {"image/jpeg": "jpg", "image/webp": "webp"}.get(self.mime_type, "png")


@dataclass(frozen=True)
class ReplyPart:
    """A part of the answer, in the model's order: either text or an image."""

    kind: Literal["text", "image"]
    text: str = ""
    image: ReplyImage | None = None


@dataclass(frozen=True)
class Source:
    """A web page the answer was grounded on."""

    title: str
    url: str


@dataclass(frozen=True)
class Usage:
    """Token counts as Gemini reported them."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    thought_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True)
class Reply:
    """The result of one successful turn.

    Attributes:
        turn_id: stable id of the turn (buttons and deletes refer to it).
        parts: the non-thought parts in the model's order.
        thoughts: thought text and thought images, kept apart.
        sources: deduplicated grounding sources.
        search_queries: the Google Search queries the model ran.
        search_entry_point: Google's rendered search-suggestions HTML, shown as required.
        usage: token usage.
        model: the model id that answered.
        options: the options the turn used.
        elapsed: seconds from start of the turn to the answer.
        notices: things the user should know (a GIF converted, an image downscaled...).
        offline: True when the answer came from the offline stand-in, not Gemini.
    """

    turn_id: str
    thread: ThreadKey
    parts: tuple[ReplyPart, ...]
    thoughts: tuple[ReplyPart, ...] = ()
    sources: tuple[Source, ...] = ()
    search_queries: tuple[str, ...] = ()
    search_entry_point: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    options: Options | None = None
    elapsed: float = 0.0
    notices: tuple[str, ...] = ()
    offline: bool = False

    @property
    def images(self) -> list[ReplyImage]:
        return [p.image for p in self.parts if p.image is not None]

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.parts if p.kind == "text" and p.text]

    @property
    def thought_images(self) -> list[ReplyImage]:
        return [p.image for p in self.thoughts if p.image is not None]

    def runs(self) -> list[tuple[str, list[ReplyPart]]]:
        """Groups consecutive parts of the same kind, keeping the model's order.

        Adapters post one message per run: a text run, then an upload of the next
        run of images, and so on.
        """
        runs: list[tuple[str, list[ReplyPart]]] = []
        for part in self.parts:
            if runs and runs[-1][0] == part.kind:
                runs[-1][1].append(part)
            else:
                runs.append((part.kind, [part]))
        return runs
