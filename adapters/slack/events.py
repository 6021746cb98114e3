"""Slack payloads to neutral values: who wrote what in which thread, with which files.

Pure functions only, unit-tested against captured payloads. The adapter decides what to do
with the values; nothing here talks to Slack.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from adapters.download import hosts_of
from bot.model import ThreadKey

PLATFORM = "slack"
#: Slack serves ``url_private`` from files.slack.com; thumbnails and some CDNs from these.
SLACK_FILE_HOSTS = frozenset({".slack.com", ".slack-edge.com"})
#: Subtypes that are a person writing something new; edits, deletions, joins etc. are not.
_HUMAN_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")

Verdict = Literal["answer", "answer_if_session", "ignore"]
ButtonAction = Literal["reroll", "4k", "delete", "drafts", "cancel",
                       "use1", "use2", "use3", "use4"]
#: The action_id of each button; its value is the turn id (Cancel: the running turn's
#: ticket). ``useN`` picks candidate N.
ACTION_IDS: dict[ButtonAction, str] = {
    "reroll": "imagebot_reroll", "4k": "imagebot_4k", "delete": "imagebot_delete",
    "drafts": "imagebot_drafts", "cancel": "imagebot_cancel",
    "use1": "imagebot_use_1", "use2": "imagebot_use_2", "use3": "imagebot_use_3",
    "use4": "imagebot_use_4"}
_ACTIONS_BY_ID: dict[str, ButtonAction] = {v: k for k, v in ACTION_IDS.items()}


@dataclass(frozen=True)
class SlackFile:
    """A file on a message, as far as Slack described it.

    Attributes:
        url: ``url_private_download`` (else ``url_private``); ``None`` when the event left
            the details out and ``files.info`` must be asked.
    """

    id: str
    name: str
    mime_type: str
    size: int | None
    url: str | None

    @property
    def is_image(self) -> bool:
        return self.mime_type.startswith("image/")


@dataclass(frozen=True)
class SlackMessage:
    """A human's message from an ``app_mention`` or ``message`` event."""

    kind: Literal["app_mention", "message"]
    team: str
    channel: str
    channel_type: str
    user: str
    ts: str
    thread_ts: str | None
    text: str
    files: tuple[SlackFile, ...]

    @property
    def root_ts(self) -> str:
        return self.thread_ts or self.ts

    @property
    def in_thread(self) -> bool:
        """True for a reply inside a thread (not the thread's root message)."""
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def is_direct(self) -> bool:
        # app_mention events carry no channel_type; DM channel ids start with D.
        return self.channel_type == "im" or (not self.channel_type and self.channel.startswith("D"))

    @property
    def key(self) -> ThreadKey:
        return thread_key(self.team, self.channel, self.root_ts)

    @property
    def claim(self) -> str:
        """The dedupe id of this message: the same for a retry, a redelivery, and the
        ``app_mention``/``message`` pair Slack sends for one message."""
        return f"slack:{self.team}:{self.channel}:{self.ts}"


@dataclass(frozen=True)
class SlashCommand:
    team: str
    channel: str
    user: str
    user_name: str
    text: str
    trigger_id: str


@dataclass(frozen=True)
class ButtonClick:
    """A click on one of our buttons; ``turn_id`` comes from the button's value (for Cancel,
    the running turn's ticket id)."""

    action: ButtonAction
    turn_id: str
    user: str
    team: str
    channel: str
    trigger_id: str

    @property
    def candidate(self) -> int:
        """The candidate a Use button picks (0 for the other buttons)."""
        return int(self.action[3:]) if self.action.startswith("use") else 0


def thread_key(team: str, channel: str, root_ts: str) -> ThreadKey:
    return ThreadKey(PLATFORM, team, channel, root_ts)


def message_from_event(body: Mapping[str, Any], *, bot_user_id: str) -> SlackMessage | None:
    """The human message in an Events API envelope, or ``None`` for anything else: other
    event types, edits and deletions, and messages from bots (this one included)."""
    event = body.get("event") or {}
    kind = event.get("type")
    if kind not in ("app_mention", "message") or event.get("subtype") not in _HUMAN_SUBTYPES:
        return None
    user = event.get("user")
    if not user or user == bot_user_id or event.get("bot_id") or event.get("bot_profile"):
        return None
    return SlackMessage(
        kind=kind, team=str(body.get("team_id") or event.get("team") or ""),
        channel=str(event.get("channel") or ""), channel_type=str(event.get("channel_type") or ""),
        user=str(user), ts=str(event["ts"]), thread_ts=event.get("thread_ts"),
        text=str(event.get("text") or ""), files=files_of(event))


def files_of(message: Mapping[str, Any]) -> tuple[SlackFile, ...]:
    """The files of a message, in order; removed and over-quota files are left out."""
    found = []
    for raw in message.get("files") or ():
        if raw.get("mode") in ("tombstone", "hidden_by_limit"):
            continue
        found.append(SlackFile(
            id=str(raw.get("id") or ""), name=str(raw.get("name") or raw.get("title") or "file"),
            mime_type=str(raw.get("mimetype") or ""), size=raw.get("size"),
            url=raw.get("url_private_download") or raw.get("url_private")))
    return tuple(found)


def verdict(message: SlackMessage, *, bot_user_id: str, require_mention: bool) -> Verdict:
    """Whether a message asks for a turn.

    A mention always does. Slack sends no ``app_mention`` in a DM, so every DM message does
    too. A channel message naming the bot is left to its ``app_mention`` twin. Other
    messages count only inside a thread that already is a session, unless mentions are
    required.
    """
    if message.kind == "app_mention" or message.is_direct:
        return "answer"
    if mentions(message.text, bot_user_id) or require_mention or not message.in_thread:
        return "ignore"
    return "answer_if_session"


def mentions(text: str, user_id: str) -> bool:
    return bool(user_id) and re.search(rf"<@{re.escape(user_id)}(\|[^>]*)?>", text) is not None


def prompt_text(text: str, bot_user_id: str) -> str:
    """Slack message text as a prompt: the bot's mention removed, links shown as their
    address, and Slack's ``&amp; &lt; &gt;`` escapes undone."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)
    text = _LINK.sub(lambda m: m.group(1).removeprefix("mailto:"), text)
    text = html.unescape(text)
    return re.sub(r"[ \t]+", " ", text).strip()


def earlier_thread_files(messages: Iterable[Mapping[str, Any]], *, before_ts: str,
                         bot_user_id: str) -> list[SlackFile]:
    """Images people posted in a thread before ``before_ts``, oldest first.

    This is what a mention in an existing thread brings along. The bot's own uploads are
    left out: whatever the bot posted is already in the session's history.
    """
    found: list[SlackFile] = []
    limit = float(before_ts)
    for message in messages:
        if float(message.get("ts") or 0) >= limit:
            continue
        if message.get("bot_id") or message.get("user") in (None, bot_user_id):
            continue
        found.extend(f for f in files_of(message) if f.is_image)
    return found


def command_from_payload(payload: Mapping[str, Any]) -> SlashCommand:
    return SlashCommand(
        team=str(payload.get("team_id") or ""), channel=str(payload.get("channel_id") or ""),
        user=str(payload.get("user_id") or ""), user_name=str(payload.get("user_name") or ""),
        text=str(payload.get("text") or ""), trigger_id=str(payload.get("trigger_id") or ""))


def click_from_payload(payload: Mapping[str, Any]) -> ButtonClick | None:
    """The first action of a ``block_actions`` payload, if it is one of our buttons."""
    actions: Sequence[Mapping[str, Any]] = payload.get("actions") or ()
    if not actions:
        return None
    action = _ACTIONS_BY_ID.get(str(actions[0].get("action_id") or ""))
    turn_id = str(actions[0].get("value") or "")
    if action is None or not turn_id:
        return None
    container = payload.get("container") or {}
    channel = container.get("channel_id") or (payload.get("channel") or {}).get("id") or ""
    return ButtonClick(
        action=action, turn_id=turn_id, user=str((payload.get("user") or {}).get("id") or ""),
        team=str((payload.get("team") or {}).get("id") or ""), channel=str(channel),
        trigger_id=str(payload.get("trigger_id") or ""))


def upload_message_ts(file: Mapping[str, Any], channel: str) -> str | None:
    """The ts of the message that shows an uploaded file in ``channel``, when Slack said."""
    shares = file.get("shares") or {}
    for scope in ("public", "private"):
        entries = (shares.get(scope) or {}).get(channel) or ()
        if entries:
            return str(entries[0].get("ts"))
    return None


def is_admin(user: Mapping[str, Any]) -> bool:
    """A workspace admin or owner, from a ``users.info`` user object."""
    return any(bool(user.get(flag)) for flag in ("is_admin", "is_owner", "is_primary_owner"))


def display_name(user: Mapping[str, Any]) -> str:
    profile = user.get("profile") or {}
    return str(profile.get("display_name") or profile.get("real_name") or user.get("real_name")
               or user.get("name") or "")


def file_hosts(api_url: str) -> set[str]:
    """Hosts ``url_private`` may be downloaded from with the bot token.

    Slack's own file hosts (https only), plus the host of a configured non-Slack API URL
    (a proxy or a local emulator) that serves its own files.
    """
    extra = {h for h in hosts_of(api_url) if h != "slack.com" and not h.endswith(".slack.com")}
    return set(SLACK_FILE_HOSTS) | extra


def looks_like_html(data: bytes, content_type: str) -> bool:
    """Slack answers a file request it does not authorize with its sign-in page."""
    head = data[:512].lstrip().lower()
    return "html" in content_type.lower() or head.startswith((b"<!doctype html", b"<html"))
