"""The platform-neutral values every adapter speaks: threads, messages, attachments, replies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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
    """Who sent a message.

    Attributes:
        roles: the person's role ids where the platform has roles (Discord), for policies.
    """

    id: str
    name: str = ""
    roles: tuple[str, ...] = field(default=(), compare=False)


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
        direct: a direct message with the bot (policies may turn DMs off).
    """

    author: Author
    text: str
    attachments: tuple[Attachment, ...] = ()
    options: OptionInput = field(default_factory=OptionInput)
    direct: bool = False


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
class Candidate:
    """One of several answers made for the same turn (``--count``), shown as U1…U4.

    Attributes:
        number: 1 for U1, and so on, in the order they were asked for.
        parts: the non-thought parts, in the model's order (empty when it failed).
        thoughts: its thought text and images.
        error: why it failed (nothing else of it is kept), or ``""``.
        usage: its token usage.
    """

    number: int
    parts: tuple[ReplyPart, ...] = ()
    thoughts: tuple[ReplyPart, ...] = ()
    error: str = ""
    usage: Usage = field(default_factory=Usage)

    @property
    def images(self) -> list[ReplyImage]:
        return [p.image for p in self.parts if p.image is not None]


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
        view: the turn as stored (what a page or a later command shows of it).
        candidates: with ``--count``, every answer made (U1…); ``parts`` are the chosen
            one's, the one the conversation continues from.
        chosen: the number of the chosen candidate (0 without candidates).
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
    view: TurnView | None = field(default=None, compare=False)
    candidates: tuple[Candidate, ...] = ()
    chosen: int = 0

    @property
    def images(self) -> list[ReplyImage]:
        return [p.image for p in self.parts if p.image is not None]

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.parts if p.kind == "text" and p.text]

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


# --- what is stored of a turn ---------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    """A stored image, by the hash of its bytes (fetch them with the service's ``image``)."""

    sha256: str
    mime_type: str
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class StoredImage:
    """A reference image a turn was given (rerolls send it again)."""

    sha256: str
    mime_type: str
    name: str


@dataclass(frozen=True)
class ViewPart:
    """A part of a stored answer, in the model's order: text, or an image by hash."""

    kind: Literal["text", "image"]
    text: str = ""
    image: ImageRef | None = None


@dataclass(frozen=True)
class StoredCandidate:
    """A candidate as a turn keeps it (images by hash)."""

    number: int
    parts: tuple[ViewPart, ...] = ()
    thoughts: tuple[ViewPart, ...] = ()
    error: str = ""
    usage: Usage = field(default_factory=Usage)

    @property
    def images(self) -> list[ImageRef]:
        return [p.image for p in self.parts if p.image is not None]

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "parts": [_part_dict(p) for p in self.parts],
                "thoughts": [_part_dict(p) for p in self.thoughts], "error": self.error,
                "usage": dict(self.usage.__dict__)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredCandidate:
        return cls(number=int(data["number"]),
                   parts=tuple(_part_of(p) for p in data.get("parts") or ()),
                   thoughts=tuple(_part_of(p) for p in data.get("thoughts") or ()),
                   error=str(data.get("error") or ""), usage=_usage_of(data.get("usage")))


@dataclass(frozen=True)
class StoredReply:
    """What a turn keeps of its reply, to show it again later (no image bytes)."""

    parts: tuple[ViewPart, ...] = ()
    thoughts: tuple[ViewPart, ...] = ()
    sources: tuple[Source, ...] = ()
    search_queries: tuple[str, ...] = ()
    search_entry_point: str | None = None
    notices: tuple[str, ...] = ()
    settings: str = ""
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    elapsed: float = 0.0
    offline: bool = False
    candidates: tuple[StoredCandidate, ...] = ()
    chosen: int = 0

    @property
    def images(self) -> list[ImageRef]:
        return [p.image for p in self.parts if p.image is not None]

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.parts if p.kind == "text" and p.text]

    def candidate(self, number: int) -> StoredCandidate | None:
        return next((c for c in self.candidates if c.number == number), None)

    @classmethod
    def of(cls, reply: Reply) -> StoredReply:
        return cls(
            parts=tuple(_view_part(p) for p in reply.parts),
            thoughts=tuple(_view_part(p) for p in reply.thoughts),
            sources=reply.sources, search_queries=reply.search_queries,
            search_entry_point=reply.search_entry_point, notices=reply.notices,
            settings=reply.options.summary() if reply.options else "",
            usage=reply.usage, model=reply.model, elapsed=round(reply.elapsed, 3),
            offline=reply.offline, chosen=reply.chosen,
            candidates=tuple(StoredCandidate(
                number=c.number, parts=tuple(_view_part(p) for p in c.parts),
                thoughts=tuple(_view_part(p) for p in c.thoughts), error=c.error,
                usage=c.usage) for c in reply.candidates))

    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.candidates:
            extra = {"candidates": [c.to_dict() for c in self.candidates],
                     "chosen": self.chosen}
        return {**extra,
            "parts": [_part_dict(p) for p in self.parts],
            "thoughts": [_part_dict(p) for p in self.thoughts],
            "sources": [{"title": s.title, "url": s.url} for s in self.sources],
            "search_queries": list(self.search_queries),
            "search_entry_point": self.search_entry_point,
            "notices": list(self.notices),
            "settings": self.settings,
            "usage": dict(self.usage.__dict__),
            "model": self.model,
            "elapsed": self.elapsed,
            "offline": self.offline,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredReply:
        usage = data.get("usage") or {}
        return cls(
            parts=tuple(_part_of(p) for p in data.get("parts") or ()),
            thoughts=tuple(_part_of(p) for p in data.get("thoughts") or ()),
            sources=tuple(Source(title=s["title"], url=s["url"])
                          for s in data.get("sources") or ()),
            search_queries=tuple(data.get("search_queries") or ()),
            search_entry_point=data.get("search_entry_point"),
            notices=tuple(data.get("notices") or ()),
            settings=str(data.get("settings") or ""),
            usage=_usage_of(usage),
            model=str(data.get("model") or ""),
            elapsed=float(data.get("elapsed") or 0.0),
            offline=bool(data.get("offline")),
            candidates=tuple(StoredCandidate.from_dict(c) for c in data.get("candidates") or ()),
            chosen=int(data.get("chosen") or 0))


@dataclass(frozen=True)
class TurnView:
    """One stored turn: what was asked, what was answered, where it was posted."""

    id: str
    thread: ThreadKey
    author: Author
    prompt: str
    options: Mapping[str, Any]
    refs: tuple[StoredImage, ...]
    reply: StoredReply
    platform_refs: Mapping[str, Any] = field(default_factory=dict)
    deleted: bool = False
    created_at: float = 0.0


@dataclass(frozen=True)
class ThreadSummary:
    """A thread as listed: its key, title, number of turns and settings."""

    key: ThreadKey
    title: str
    turns: int
    updated_at: float
    settings: Mapping[str, Any]


def _usage_of(data: Mapping[str, Any] | None) -> Usage:
    data = data or {}
    return Usage(**{k: int(data.get(k, 0)) for k in Usage.__dataclass_fields__})


def _view_part(part: ReplyPart) -> ViewPart:
    if part.image is None:
        return ViewPart(kind="text", text=part.text)
    image = part.image
    return ViewPart(kind="image", image=ImageRef(image.sha256, image.mime_type, image.width,
                                                 image.height))


def _part_dict(part: ViewPart) -> dict[str, Any]:
    if part.image is None:
        return {"kind": "text", "text": part.text}
    image = part.image
    return {"kind": "image", "sha256": image.sha256, "mime_type": image.mime_type,
            "width": image.width, "height": image.height}


def _part_of(data: Mapping[str, Any]) -> ViewPart:
    if data.get("kind") != "image":
        return ViewPart(kind="text", text=str(data.get("text") or ""))
    return ViewPart(kind="image", image=ImageRef(
        sha256=data["sha256"], mime_type=str(data.get("mime_type") or ""),
        width=int(data.get("width") or 0), height=int(data.get("height") or 0)))
