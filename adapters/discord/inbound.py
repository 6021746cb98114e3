"""Discord input as neutral values: command options, message text, files and custom ids.

Pure functions, no I/O, so they are tested with payloads built from the fixtures. The
adapter hands them discord.py objects (``discord.Attachment`` fits :class:`AttachmentLike`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from adapters.download import hosts_of
from bot.config import DEFAULT_DISCORD_API_BASE
from bot.model import ThreadKey
from bot.options import OptionInput
from bot.planning import display_prompt

PLATFORM = "discord"
#: Where Discord serves attachments; files are downloaded from nowhere else.
CDN_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
#: ``/imagine``'s model choices: what users see, and the alias the core resolves.
MODEL_CHOICES: tuple[tuple[str, str], ...] = (("Nano Banana", "flash"),
                                               ("Nano Banana Pro", "pro"),
                                               ("Imagen 4", "imagen-4"),
                                               ("Imagen 4 Ultra", "imagen-4-ultra"),
                                               ("Imagen 4 Fast", "imagen-4-fast"))
BUTTON_ACTIONS = ("reroll", "4k", "delete", "drafts", "cancel", "use1", "use2", "use3", "use4")
#: Buttons carry their action and turn id, so any process can answer a click (restarts).
#: Cancel carries the running turn's ticket id instead; ``useN`` continues the thread from
#: candidate N.
BUTTON_TEMPLATE = (r"imagebot:(?P<action>reroll|4k|delete|drafts|cancel|use[1-4])"
                   r":(?P<turn>[0-9a-f]{8,64})")
EDIT_MODAL_PREFIX = "imagebot:edit:"
#: A batch's Cancel button carries the job id (so it works after restarts).
CANCEL_TEMPLATE = r"imagebot:batch-cancel:(?P<job>[0-9a-f]{8,32})"
THREAD_NAME_LIMIT = 100
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".heic", ".heif", ".bmp",
                   ".tif", ".tiff")


class AttachmentLike(Protocol):
    """What is read of a Discord attachment (``discord.Attachment`` has these)."""

    @property
    def filename(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def content_type(self) -> str | None: ...


@dataclass(frozen=True)
class FileRef:
    """A file on Discord's CDN: declared name, type and size, and where to fetch it.

    The URL carries a signed query string, so the name comes from ``filename``.
    """

    name: str
    url: str
    size: int
    content_type: str = ""

    @classmethod
    def of(cls, attachment: AttachmentLike) -> FileRef:
        return cls(name=attachment.filename, url=attachment.url, size=attachment.size,
                   content_type=(attachment.content_type or "").split(";")[0].strip())

    @property
    def looks_like_image(self) -> bool:
        """By the declared type, or by the name when Discord declared none."""
        if self.content_type:
            return self.content_type.startswith("image/")
        return self.name.lower().endswith(_IMAGE_SUFFIXES)


@dataclass(frozen=True)
class TurnRequest:
    """What one Discord action asks of the core.

    Attributes:
        text: the prompt as typed; inline ``--flags`` stay in it for the core to parse.
        options: options set through Discord's UI (slash command fields).
        files: reference images, in order.
    """

    text: str
    options: OptionInput = OptionInput()
    files: tuple[FileRef, ...] = ()


@dataclass(frozen=True)
class BatchRequest:
    """What ``/batch`` was given: prompts typed (``|``-separated) or a prompt file,
    reference images for every prompt, and options for all of them."""

    prompts: str
    file: FileRef | None = None
    images: tuple[FileRef, ...] = ()
    options: OptionInput = OptionInput()


def prompts_text(prompts: str) -> str:
    """Discord's command fields are one line: ``a | b | c`` means three prompts."""
    if "\n" in prompts:
        return prompts
    return "\n".join(part.strip() for part in re.split(r"\s\|\s", prompts))


def cancel_id(job_id: str) -> str:
    return f"imagebot:batch-cancel:{job_id}"


def imagine_request(prompt: str, *, images: Sequence[AttachmentLike | None] = (),
                    aspect_ratio: str | None = None, resolution: str | None = None,
                    model: str | None = None, search: bool | None = None,
                    count: int | None = None) -> TurnRequest:
    """``/imagine``'s options as a request; unset options stay ``None``."""
    options = OptionInput(model=model, aspect_ratio=aspect_ratio, size=resolution, search=search,
                          count=count)
    files = tuple(FileRef.of(a) for a in images if a is not None)
    return TurnRequest(text=prompt.strip(), options=options, files=files)


def message_request(content: str, attachments: Iterable[AttachmentLike], *,
                    bot_id: int) -> TurnRequest:
    """A chat message as a request: the bot's mention is taken out of the text."""
    return TurnRequest(text=strip_mention(content, bot_id),
                       files=tuple(FileRef.of(a) for a in attachments))


def edit_request(prompt: str, files: Sequence[FileRef]) -> TurnRequest:
    """"Edit with Gemini": the modal's prompt with the target message's images."""
    return TurnRequest(text=prompt.strip(), files=tuple(files))


def image_files(attachments: Iterable[AttachmentLike]) -> tuple[FileRef, ...]:
    """The attachments that are images (a message can carry other files too)."""
    refs = (FileRef.of(a) for a in attachments)
    return tuple(ref for ref in refs if ref.looks_like_image)


def strip_mention(content: str, bot_id: int) -> str:
    """The text without ``<@bot>`` / ``<@!bot>`` mentions, whitespace tidied."""
    text = re.sub(rf"<@!?{bot_id}>", " ", content)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def mentions(content: str, bot_id: int) -> bool:
    return re.search(rf"<@!?{bot_id}>", content) is not None


def thread_key(guild_id: int, channel_id: int, thread_id: int) -> ThreadKey:
    """A session's key: the guild, the thread's parent channel and the thread itself."""
    return ThreadKey(PLATFORM, str(guild_id), str(channel_id), str(thread_id))


def thread_name(text: str) -> str:
    """A thread title from the prompt: flags removed, one line, within Discord's limit."""
    line = display_prompt(text)
    if len(line) > THREAD_NAME_LIMIT:
        line = line[:THREAD_NAME_LIMIT - 1].rstrip() + "…"
    return line or "imagebot"


def button_id(action: str, turn_id: str) -> str:
    if action not in BUTTON_ACTIONS:
        raise ValueError(f"unknown button action {action!r}")
    return f"imagebot:{action}:{turn_id}"


def edit_modal_id(interaction_id: int) -> str:
    """The prompt modal's id; unique per opening, so two open modals never collide."""
    return f"{EDIT_MODAL_PREFIX}{interaction_id}"


def event_id(kind: str, snowflake: int) -> str:
    """The dedupe key of a message or interaction (ids are unique across Discord)."""
    return f"{PLATFORM}:{kind}:{snowflake}"


def allowed_hosts(api_base: str) -> frozenset[str]:
    """Discord's CDN hosts, plus the configured API's host when it is not Discord's own
    (a local Discord serves its CDN on the same host)."""
    if api_base.rstrip("/") == DEFAULT_DISCORD_API_BASE.rstrip("/"):
        return CDN_HOSTS
    return CDN_HOSTS | hosts_of(api_base)
