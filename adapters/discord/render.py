"""Replies, statuses and errors as Discord messages. Pure functions, no I/O.

A reply becomes messages in the model's order: each message carries a text run (at most
2,000 characters) and then the run of images that follows it (at most 10 files, and files
of at most 25 MiB together, Discord's limit on one message's request), since Discord shows
a message's text above its files: a run that does not fit goes on in the next message. Notices open the first message; the embed
(sources, searches, footer) and the buttons close the last one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import quote, quote_plus, urlsplit

from adapters.discord.inbound import button_id
from bot.images import reencode_under
from bot.messages import DRAFTS_HEADING, NO_DRAFTS, draft_caption
from bot.model import Reply, ReplyImage, ReplyPart
from bot.options import PRO
from bot.presentation import error_text, footer, notices_text, split_text

MESSAGE_LIMIT = 2000
FILES_PER_MESSAGE = 10
#: "The maximum request size when sending a message is 25 MiB" (a boosted guild's larger
#: per-file limit lets one file of that size through).
REQUEST_LIMIT = 25 * 1024 * 1024
#: What a message's request carries besides its files: payload_json (text, embed, buttons,
#: attachment entries with alt text) and the multipart framing.
REQUEST_OVERHEAD = 64 * 1024
DESCRIPTION_LIMIT = 4096
FOOTER_LIMIT = 2048
ALT_TEXT_LIMIT = 1024
COLOR = 0x4285F4
OFFLINE_COLOR = 0xF4B400

NO_IMAGES = ("That message has no image attachments to edit. Use **Edit with Gemini** on a "
             "message with images, or `/imagine` with image1–image3.")
NOT_YOURS = ("Only the person who asked for this result, or someone with the Manage Messages "
             "permission, can delete it.")
DELETE_INCOMPLETE = ("Removed from the conversation history, but {count} message(s) could not "
                     "be deleted here ({reason}); delete them by hand.")

Style = Literal["primary", "secondary", "danger"]


@dataclass(frozen=True)
class Upload:
    """One file of a message."""

    filename: str
    data: bytes = field(repr=False)
    mime_type: str
    description: str = ""


@dataclass(frozen=True)
class Button:
    """One of a result's buttons; its custom id names the action and the turn."""

    action: str
    turn_id: str
    label: str
    style: Style = "secondary"
    emoji: str | None = None

    @property
    def custom_id(self) -> str:
        return button_id(self.action, self.turn_id)


@dataclass(frozen=True)
class MessagePayload:
    """One Discord message: text, files, an embed (as Discord's JSON) and buttons.

    ``keep_files`` edits a message without touching its files (a status keeps its draft).
    """

    content: str = ""
    uploads: tuple[Upload, ...] = ()
    embed: dict[str, Any] | None = None
    buttons: tuple[Button, ...] = ()
    keep_files: bool = False

    def without_uploads(self, note: str) -> tuple[MessagePayload, ...]:
        """The same message with a note in place of its files (after a refused upload).

        The note is never cut: when it does not fit beside the text it becomes a message
        of its own, which then carries the embed and the buttons (they close a reply).
        """
        note = _clip(note, MESSAGE_LIMIT)
        content = "\n\n".join(t for t in (self.content, note) if t)
        if len(content) <= MESSAGE_LIMIT:
            return (replace(self, uploads=(), content=content),)
        return (replace(self, uploads=(), embed=None, buttons=()),
                MessagePayload(content=note, embed=self.embed, buttons=self.buttons))


def reply_payloads(reply: Reply, *, upload_limit: int, alt: str = "") -> list[MessagePayload]:
    """Every message of a reply, in order (CPU work: run it in a worker thread).

    Args:
        reply: the turn's result.
        upload_limit: the channel's per-file upload limit in bytes; larger images are
            re-encoded as JPEG under it, and the reply says so.
        alt: alt text for the images (the prompt).
    """
    notes: list[str] = []
    if len(reply.candidates) > 1:
        messages = _gallery(reply, upload_limit, _clip(alt.strip(), ALT_TEXT_LIMIT), notes)
    else:
        uploads = _fit_all(reply, upload_limit, _clip(alt.strip(), ALT_TEXT_LIMIT), notes)
        messages = _body(reply, iter(uploads), upload_limit)
    lead = "\n".join(t for t in (notices_text(reply), *(f"ℹ️ {n}" for n in notes)) if t)
    messages = _with_lead(messages, lead)
    messages[-1] = replace(messages[-1], embed=reply_embed(reply), buttons=buttons(reply))
    return messages


def fit_upload(image: ReplyImage, limit: int, *, number: int, stem: str,
               alt: str = "") -> tuple[Upload | None, str | None]:
    """The image as an upload under ``limit`` bytes, and a note when it had to change.

    Returns:
        (upload, note): the upload is ``None`` when even a re-encoded JPEG is too large.
    """
    size = len(image.data)
    if size <= limit:
        return Upload(f"{stem}.{image.extension}", image.data, image.mime_type, alt), None
    data, mime = reencode_under(image.data, limit)
    what = f"Image {number} is {_size(size)}, over this channel's {_size(limit)} upload limit"
    if len(data) > limit:
        return None, (f"{what}, and even re-encoded it does not fit, so it is not posted "
                      "here. It is still part of this conversation.")
    extension = "jpg" if mime == "image/jpeg" else mime.rsplit("/", 1)[-1]
    note = (f"{what}, so it is posted as a high-quality JPEG ({_size(len(data))}) instead of "
            "the original; the original stays in this conversation, so follow-ups build on "
            "the full image.")
    return Upload(f"{stem}.{extension}", data, mime, alt), note


def message_batches(uploads: list[Upload], upload_limit: int) -> list[tuple[Upload, ...]]:
    """Consecutive files grouped into messages, in order: at most 10 a message, and no more
    bytes than one message's request takes (each file is already under ``upload_limit``)."""
    budget = max(REQUEST_LIMIT, upload_limit) - REQUEST_OVERHEAD
    batches: list[tuple[Upload, ...]] = []
    current: list[Upload] = []
    size = 0
    for upload in uploads:
        grown = size + len(upload.data)
        if current and (len(current) == FILES_PER_MESSAGE or grown > budget):
            batches.append(tuple(current))
            current, grown = [], len(upload.data)
        current.append(upload)
        size = grown
    if current:
        batches.append(tuple(current))
    return batches


def reply_embed(reply: Reply) -> dict[str, Any]:
    """Sources, the searches run (as links to Google Search) and the footer."""
    lines: list[str] = []
    if reply.sources:
        lines.append("**Sources**")
        lines += [f"• [{_label(s.title or _host(s.url))}]({_link(s.url)})" for s in reply.sources]
    if reply.search_queries:
        links = [f"[{_label(q)}](https://www.google.com/search?q={quote_plus(q)})"
                 for q in reply.search_queries]
        lines.append("**Searched:** " + " · ".join(links))
    embed: dict[str, Any] = {
        "type": "rich",
        "color": OFFLINE_COLOR if reply.offline else COLOR,
        "footer": {"text": _clip(footer(reply), FOOTER_LIMIT)},
    }
    description = _fit_lines(lines, DESCRIPTION_LIMIT)
    if description:
        embed["description"] = description
    return embed


def buttons(reply: Reply) -> tuple[Button, ...]:
    """Use U1…U4 (with candidates), Reroll, 4K (unless this already was a 4K Pro image),
    Delete, and Drafts when the model drew drafts."""
    turn = reply.turn_id
    items = [Button(f"use{c.number}", turn, f"U{c.number}",
                    "primary" if c.number == reply.chosen else "secondary",
                    "✅" if c.number == reply.chosen else None)
             for c in reply.candidates if not c.error and c.number <= 4]
    items.append(Button("reroll", turn, "Reroll", "secondary", "🔁"))
    options = reply.options
    if not (options and options.model == PRO and options.size == "4K"):
        items.append(Button("4k", turn, "4K", "primary"))
    items.append(Button("delete", turn, "Delete", "danger"))
    if any(p.image is not None for p in reply.thoughts):
        items.append(Button("drafts", turn, "Drafts", "secondary", "🖼️"))
    return tuple(items)


def status_payload(status: str, *, ticket: str | None, thought: str = "",
                   draft: ReplyImage | None = None, number: int = 0,
                   upload_limit: int = 0) -> MessagePayload:
    """The live status: what runs and for how long, what the model thinks about, a Cancel
    button, and the latest draft (``draft``: attach it now, re-encoded under
    ``upload_limit`` if need be (CPU work then); none: keep what is attached)."""
    lines = [f"⏳ {status}"]
    if thought:
        lines.append(f"💭 {_clip(thought, 300)}")
    uploads: tuple[Upload, ...] = ()
    if draft is not None:
        lines.append(f"🖼️ {draft_caption(number)}")
        upload, _ = fit_upload(draft, upload_limit or len(draft.data), number=number,
                               stem=f"imagebot-draft-{number}", alt=f"Draft {number}")
        uploads = (upload,) if upload is not None else ()
    buttons = (Button("cancel", ticket, "Cancel", "secondary"),) if ticket else ()
    return MessagePayload(content=_clip("\n".join(lines), MESSAGE_LIMIT), uploads=uploads,
                          buttons=buttons, keep_files=draft is None)


def drafts_payload(images: list[ReplyImage], *, upload_limit: int) -> MessagePayload:
    """The ephemeral answer to **Drafts**: the drafts as files (re-encoded when too big)."""
    uploads = []
    for number, image in enumerate(images, start=1):
        upload, _ = fit_upload(image, upload_limit, number=number,
                               stem=f"imagebot-draft-{number}", alt=f"Draft {number}")
        if upload is not None:
            uploads.append(upload)
    text = DRAFTS_HEADING if uploads else NO_DRAFTS
    first = (message_batches(uploads, upload_limit) or [()])[0]  # one ephemeral message
    return MessagePayload(content=text, uploads=first)


def status_text(status: str, elapsed: float | None) -> str:
    """The live status: what runs, and for how long so far (when it runs)."""
    return f"⏳ {status}" if elapsed is None else f"⏳ {status} {int(elapsed)} s"


def error_message(message: str) -> str:
    return _clip(error_text(message), MESSAGE_LIMIT)


def upload_failed(count: int, reason: str) -> str:
    noun = "image" if count == 1 else f"{count} images"
    return error_text(
        f"Discord did not accept the upload of the {noun} ({reason}). The result is still "
        "part of this conversation, so follow-ups build on it; Reroll makes a new one.")


def download_failed(name: str, exc: BaseException) -> str:
    return (f"Could not download `{name}` from Discord ({type(exc).__name__}). Attach it "
            "again.")


def thread_failed(reason: str) -> str:
    return error_text(
        f"I could not open a thread here ({reason}). Give me the Create Public Threads "
        "permission, or use `/imagine` inside a thread.")


def _gallery(reply: Reply, limit: int, alt: str, notes: list[str]) -> list[MessagePayload]:
    """A turn's candidates as one message of images (U1…U4), then the failures."""
    uploads = []
    for candidate in reply.candidates:
        for k, image in enumerate(candidate.images, start=1):
            suffix = f"-{k}" if len(candidate.images) > 1 else ""
            upload, note = fit_upload(image, limit, number=candidate.number, alt=alt,
                                      stem=f"imagebot-{reply.turn_id[:8]}-U{candidate.number}"
                                           f"{suffix}")
            if upload is not None:
                uploads.append(upload)
            if note:
                notes.append(note)
    labels = " · ".join(f"U{c.number}" for c in reply.candidates if c.images)
    messages = [MessagePayload(content=labels if not i else "", uploads=files)
                for i, files in enumerate(message_batches(uploads, limit))] or [MessagePayload()]
    failed = "\n".join(error_text(f"U{c.number}: {c.error}") for c in reply.candidates
                       if c.error)
    if failed:
        messages.append(MessagePayload(content=_clip(failed, MESSAGE_LIMIT)))
    return messages


def _fit_all(reply: Reply, limit: int, alt: str, notes: list[str]) -> list[Upload | None]:
    uploads = []
    for number, image in enumerate(reply.images, start=1):
        stem = f"imagebot-{reply.turn_id[:8]}-{number}"
        upload, note = fit_upload(image, limit, number=number, stem=stem, alt=alt)
        uploads.append(upload)
        if note:
            notes.append(note)
    return uploads


def _body(reply: Reply, uploads: Iterator[Upload | None], limit: int) -> list[MessagePayload]:
    messages: list[MessagePayload] = []
    pending = ""  # the latest text chunk waits for the images that follow it
    for kind, parts in reply.runs():
        if kind == "text":
            chunks = split_text(_run_text(parts), MESSAGE_LIMIT)
            if not chunks:
                continue
            if pending:
                messages.append(MessagePayload(content=pending))
            messages.extend(MessagePayload(content=chunk) for chunk in chunks[:-1])
            pending = chunks[-1]
            continue
        batch = [u for u in (next(uploads) for _ in parts) if u is not None]
        for files in message_batches(batch, limit):
            messages.append(MessagePayload(content=pending, uploads=files))
            pending = ""
    if pending or not messages:
        messages.append(MessagePayload(content=pending))
    return messages


def _with_lead(messages: list[MessagePayload], lead: str) -> list[MessagePayload]:
    """Puts the notices at the top of the first message, or before it when they don't fit."""
    if not lead:
        return messages
    first = messages[0]
    joined = f"{lead}\n\n{first.content}" if first.content else lead
    if len(joined) <= MESSAGE_LIMIT:
        return [replace(first, content=joined), *messages[1:]]
    return [MessagePayload(content=c) for c in split_text(lead, MESSAGE_LIMIT)] + messages


def _run_text(parts: list[ReplyPart]) -> str:
    return "\n\n".join(p.text.strip() for p in parts if p.text.strip())


def _fit_lines(lines: list[str], limit: int) -> str:
    text = ""
    for index, line in enumerate(lines):
        candidate = f"{text}\n{line}" if text else line
        if len(candidate) > limit - 20:
            return f"{text}\n(+{len(lines) - index} more)"
        text = candidate
    return text


def _label(text: str) -> str:
    # Brackets end a masked link early; newlines break it.
    label = " ".join(text.split()).replace("[", "(").replace("]", ")")
    return _clip(label, 200) or "link"


def _link(url: str) -> str:
    # A ")" or a space in the URL would end the markdown link early.
    return quote(url, safe=":/?#[]@!$&'*+,;=%~-._")


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def _size(count: int) -> str:
    if count >= 2**20:
        return f"{count / 2**20:.1f} MB"
    return f"{max(1, round(count / 1024))} KB"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
