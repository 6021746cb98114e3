"""Replies, statuses and errors as Slack messages (Block Kit). Pure functions, no I/O.

A reply becomes a list of posts in the model's order: a head message (notices and the
opening text; it replaces the status message), then one upload per run of images and one
message per run of text, then a tail with sources, search links, the footer and buttons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from adapters.slack.events import ACTION_IDS, ButtonAction
from bot import messages
from bot.model import Reply, ReplyImage, ReplyPart
from bot.options import PRO
from bot.presentation import error_text, footer, notices_text, split_text

Block = dict[str, Any]

#: Section text must stay under 3,000 characters; keep a margin for the mrkdwn rewrite.
SECTION_LIMIT = 2900
#: Sections per message: well under Slack's 50 blocks and its message size.
SECTIONS_PER_MESSAGE = 10
#: Notification text of a message whose content is in its blocks.
FALLBACK_LIMIT = 300
#: A context element's text limit is 2,000 characters here on the safe side.
CONTEXT_LIMIT = 1900
ALT_TEXT_LIMIT = 1000
WORKING_REACTION = "hourglass_flowing_sand"
#: Marks a message as a failure report (readable by tools; Slack ignores it).
ERROR_BLOCK_ID = "imagebot_error"
USAGE = ("Usage: `/imagine PROMPT [--ar 16:9] [--size 1K|2K|4K] "
         "[--model flash|pro|imagen-4] [--search]`. For example: "
         "`/imagine a lighthouse at dusk --ar 16:9`")


@dataclass(frozen=True)
class TextPost:
    """One ``chat.postMessage`` (or ``chat.update``): notification text plus blocks."""

    text: str
    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True)
class ImagePost:
    """One ``files_upload_v2`` call: a run of consecutive images (or a turn's candidates,
    titled U1…U4)."""

    images: tuple[ReplyImage, ...]
    titles: tuple[str, ...] = ()


Post = TextPost | ImagePost


def escape(text: str) -> str:
    """Slack's three control characters; also keeps model text from pinging anyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(markdown: str) -> str:
    """Markdown as the model writes it, in Slack's mrkdwn dialect (the common cases)."""
    text = escape(markdown)
    text = re.sub(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)",
                  lambda m: f"<{m.group(2)}|{_link_label(m.group(1))}>", text)
    text = re.sub(r"\*\*(.+?)\*\*", r"*\1*", text)
    text = re.sub(r"~~(.+?)~~", r"~\1~", text)
    return re.sub(r"^#{1,6}[ \t]+(.+?)[ \t]*#*$", r"*\1*", text, flags=re.MULTILINE)


def _link_label(label: str) -> str:
    # A ``|`` in a label reads as the start of another label.
    return label.replace("|", "¦")


def _link_url(url: str) -> str:
    # ``<``, ``>`` and ``|`` would end the link early.
    return url.replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _fallback(text: str) -> str:
    """Notification text from plain text (user or model content): clipped, then escaped,
    so a file name or prompt like ``<!channel>`` cannot ping anyone from the notification."""
    return escape(_clipped(text))


def _clipped(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= FALLBACK_LIMIT else text[:FALLBACK_LIMIT - 1] + "…"


def status_post(status: str, *, cancel: str | None = None, thought: str = "") -> TextPost:
    """The status message while a turn is waiting or generating.

    Args:
        cancel: the running turn's ticket id, for a Cancel button.
        thought: the headline of what the model is thinking about now.
    """
    blocks = [context(f"⏳ {escape(status)}")]
    if thought:
        blocks.append(context(f"💭 {escape(thought)}"[:CONTEXT_LIMIT]))
    if cancel:
        blocks.append({"type": "actions", "elements": [_button("Cancel", "cancel", cancel)]})
    return TextPost(text=_fallback(f"⏳ {status}"), blocks=blocks)


def draft_upload(image: ReplyImage, number: int, *, alt: str) -> dict[str, Any]:
    """A draft image as a ``files_upload_v2`` item."""
    return {"content": image.data,
            "filename": f"imagebot-draft-{number}-{image.sha256[:6]}.{image.extension}",
            "title": f"Draft {number}", "alt_txt": (alt or "Draft image")[:ALT_TEXT_LIMIT]}


def drafts_post(file_ids: list[str]) -> TextPost:
    """The ephemeral answer to **Drafts**: each draft as an image block of its file."""
    blocks = [section(escape(messages.DRAFTS_HEADING))]
    for number, file_id in enumerate(file_ids, start=1):
        blocks.append({"type": "image", "slack_file": {"id": file_id},
                       "alt_text": f"Draft {number}",
                       "title": {"type": "plain_text", "text": f"Draft {number}"}})
    return TextPost(text=_fallback(messages.DRAFTS_HEADING), blocks=blocks)


def error_post(message: str, mentions: tuple[str, ...] = ()) -> TextPost:
    """A failure as the user sees it: what happened and what to try.

    Everything is escaped, except mentions of exactly the ``mentions`` ids, which the core
    put there itself (an admin to ask); a mention typed by a user stays plain text.
    """
    shown = error_text(message)
    block = section(_with_mentions(escape(shown), mentions)[:SECTION_LIMIT])
    block["block_id"] = ERROR_BLOCK_ID
    return TextPost(text=_fallback(shown), blocks=[block])


def _with_mentions(escaped: str, mentions: tuple[str, ...]) -> str:
    for user in mentions:
        escaped = escaped.replace(f"&lt;@{user}&gt;", f"<@{user}>")
    return escaped


def command_root_post(user: str, text: str) -> TextPost:
    """The channel message a ``/imagine`` starts its thread on."""
    quoted = "\n".join(f">{line}" for line in escape(text).splitlines() or [""])
    return TextPost(
        text=_fallback(f"/imagine {text}"),
        blocks=[section(f"<@{user}> asked for an image:\n{quoted}"[:SECTION_LIMIT]),
                context("Reply in this thread to keep working on it.")])


def text_posts(text: str, lead: list[Block] | None = None) -> list[TextPost]:
    """A text run as messages of at most ``SECTIONS_PER_MESSAGE`` sections each."""
    sections = [section(chunk) for chunk in split_text(mrkdwn(text), SECTION_LIMIT)]
    blocks = [*(lead or []), *sections]
    posts = []
    for start in range(0, len(blocks), SECTIONS_PER_MESSAGE):
        chunk = blocks[start:start + SECTIONS_PER_MESSAGE]
        # The blocks' text is mrkdwn, escaped already.
        posts.append(TextPost(text=_clipped(_plain(chunk)), blocks=chunk))
    return posts


def _plain(blocks: list[Block]) -> str:
    texts = [b["text"]["text"] for b in blocks if b.get("type") == "section"]
    texts += [e["text"] for b in blocks if b.get("type") == "context" for e in b["elements"]]
    return " ".join(texts) or "imagebot"


def _run_text(parts: list[ReplyPart]) -> str:
    return "\n\n".join(p.text.strip() for p in parts if p.text.strip())


def reply_posts(reply: Reply, *, requester: str) -> tuple[TextPost, list[Post]]:
    """Everything a reply posts, in order: the head (it replaces the status message), then
    the rest."""
    if len(reply.candidates) > 1:
        return candidate_posts(reply, requester=requester)
    runs = reply.runs()
    lead = [section(escape(notices_text(reply))[:SECTION_LIMIT])] if reply.notices else []
    opening = _run_text(runs.pop(0)[1]) if runs and runs[0][0] == "text" else ""
    if opening:
        head, *rest = text_posts(opening, lead)
    elif lead:
        head, rest = TextPost(text=_fallback(notices_text(reply)), blocks=lead), []
    else:
        head, rest = TextPost(text="Here you go.",
                              blocks=[section(f"Here you go, <@{requester}>:")]), []
    posts: list[Post] = list(rest)
    for kind, parts in runs:
        if kind == "image":
            posts.append(ImagePost(tuple(p.image for p in parts if p.image is not None)))
        elif _run_text(parts):
            posts.extend(text_posts(_run_text(parts)))
    posts.append(tail_post(reply))
    return head, posts


def candidate_posts(reply: Reply, *, requester: str) -> tuple[TextPost, list[Post]]:
    """A turn's candidates: one upload of them all (U1…U4), the failures, then the tail with
    a Use button for each."""
    lead = notices_text(reply) or f"Here are your candidates, <@{requester}>:"
    head = TextPost(text=_fallback(lead), blocks=[section(escape(lead)[:SECTION_LIMIT])])
    images, titles = [], []
    for candidate in reply.candidates:
        for image in candidate.images:
            images.append(image)
            titles.append(f"U{candidate.number}")
    posts: list[Post] = [ImagePost(tuple(images), tuple(titles))] if images else []
    failed = [f"U{c.number}: {escape(c.error)}" for c in reply.candidates if c.error]
    if failed:
        posts.append(error_post("\n".join(failed)))
    posts.append(tail_post(reply))
    return head, posts


def tail_post(reply: Reply) -> TextPost:
    """Sources, search links, the footer and the buttons, after the answer itself."""
    blocks = [b for b in (sources_block(reply), searches_block(reply)) if b]
    blocks.append(context(escape(footer(reply))))
    blocks.append(buttons(reply))
    return TextPost(text=_fallback(footer(reply)), blocks=blocks)


def sources_block(reply: Reply) -> Block | None:
    links = [f"<{_link_url(s.url)}|{_link_label(escape(s.title or s.url))}>"
             for s in reply.sources]
    return context(_joined("*Sources:* ", links)) if links else None


def searches_block(reply: Reply) -> Block | None:
    """Google Search suggestions: Slack cannot show Google's HTML, so each query links to
    its search page."""
    links = [f"<https://www.google.com/search?q={quote_plus(q)}|{_link_label(escape(q))}>"
             for q in reply.search_queries]
    return context(_joined("*Searched:* ", links)) if links else None


def _joined(label: str, links: list[str]) -> str:
    text = label
    for index, link in enumerate(links):
        piece = link if index == 0 else " · " + link
        if len(text) + len(piece) > CONTEXT_LIMIT:
            return text + f" (+{len(links) - index} more)"
        text += piece
    return text


def buttons(reply: Reply) -> Block:
    """U1…U4 (with candidates), Reroll, 4K, Delete and (when the model drew drafts) Drafts;
    each button's value is the turn id (stored in the database, so the buttons keep working
    after a restart)."""
    uses: list[ButtonAction] = ["use1", "use2", "use3", "use4"]
    elements = [_button(f"U{c.number}" + (" ✓" if c.number == reply.chosen else ""),
                        uses[c.number - 1], reply.turn_id)
                for c in reply.candidates if not c.error and c.number <= len(uses)]
    for element in elements:
        element["style"] = "primary"
    elements.append(_button("🔁 Reroll", "reroll", reply.turn_id))
    options = reply.options
    if not (options and options.model == PRO and options.size == "4K"):
        elements.append(_button("4K", "4k", reply.turn_id))
    delete = _button("Delete", "delete", reply.turn_id)
    delete["style"] = "danger"
    delete["confirm"] = {
        "title": {"type": "plain_text", "text": "Delete this result?"},
        "text": {"type": "mrkdwn",
                 "text": "The images and text are removed here and from the conversation "
                         "history, so later replies won't build on them."},
        "confirm": {"type": "plain_text", "text": "Delete"},
        "deny": {"type": "plain_text", "text": "Keep"},
        "style": "danger",
    }
    elements.append(delete)
    if any(p.image is not None for p in reply.thoughts):
        elements.append(_button("Drafts", "drafts", reply.turn_id))
    return {"type": "actions", "elements": elements}


def _button(label: str, action: ButtonAction, turn_id: str) -> Block:
    return {"type": "button", "action_id": ACTION_IDS[action],
            "text": {"type": "plain_text", "text": label, "emoji": True}, "value": turn_id}


def upload_items(post: ImagePost, *, turn_id: str, alt: str) -> list[dict[str, Any]]:
    """``file_uploads`` for ``files_upload_v2``, one per image of the run."""
    items = []
    for number, image in enumerate(post.images, start=1):
        title = (post.titles[number - 1] if post.titles
                 else f"Image {number}" if len(post.images) > 1 else "Image")
        items.append({"content": image.data,
                      "filename": f"imagebot-{turn_id[:8]}-{image.sha256[:6]}.{image.extension}",
                      "title": title,
                      "alt_txt": alt[:ALT_TEXT_LIMIT] or "Generated image"})
    return items


def upload_failed_post(count: int, error: str) -> TextPost:
    noun = "image" if count == 1 else f"{count} images"
    return error_post(
        f"Slack did not accept the upload of the {noun} ({error}). The result is still part "
        "of this conversation, so follow-ups build on it; Reroll makes a new one.")


def download_failed(name: str, exc: BaseException) -> str:
    return f"Could not download `{name}` from Slack ({type(exc).__name__}). Attach it again."


def not_in_channel_text() -> str:
    return ("I can't post in this channel. Invite me first (`/invite @imagebot`), "
            "then run the command again.")


def files_read_missing(name: str) -> str:
    return (f"Slack sent its sign-in page instead of `{name}`: the app is missing the "
            "`files:read` scope. Add `files:read` under OAuth & Permissions, reinstall the app, "
            "then attach the image again.")
