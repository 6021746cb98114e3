"""A local Discord server for end-to-end tests of a real discord.py bot.

One aiohttp server on 127.0.0.1 plays three Discord services:

* the REST API v10 under ``/api/v10`` (bot auth, messages, threads, reactions,
  application commands, interaction callbacks and interaction webhooks);
* the gateway websocket at ``/gateway`` (HELLO, heartbeats, IDENTIFY, READY,
  GUILD_CREATE, dispatches with sequence numbers, RECONNECT and RESUME with
  replay, zlib-stream compression when the client asks for it), one session per
  shard: a guild's events go only to the session of shard
  ``(guild_id >> 22) % shard_count`` (:meth:`DiscordEmulator.add_guild` adds guilds);
* the attachment CDN under ``/cdn`` and its media proxy under ``/media``, with
  signed, expiring URLs like Discord's (``?ex=..&is=..&hm=..&``).

Point discord.py at it (both are class attributes, so restore them afterwards)::

    discord.http.Route.BASE = emulator.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emulator.gateway_url)

Payloads are built from the documented examples in ``tests/fixtures/discord``.
Requests are validated as Discord does (token, payload limits, upload size per file
and per message (25 MiB, 10 files),
interaction tokens and deadlines, privileged intents) and errors come back in
Discord's JSON error format with Discord's error codes.  Every REST call is
recorded in :attr:`DiscordEmulator.requests`.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import io
import json
import math
import mimetypes
import re
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntFlag
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web
from PIL import Image

__all__ = [
    "ApiError",
    "CloudflareBan",
    "DiscordEmulator",
    "FormErrors",
    "Intent",
    "InteractionRecord",
    "Permission",
    "RateLimitedError",
    "RestCall",
    "fixture",
]

JSON = dict[str, Any]
Event = tuple[str, JSON]

API_PREFIX = "/api/v10"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "discord"
DISCORD_EPOCH_MS = 1_420_070_400_000
HEARTBEAT_INTERVAL_MS = 41_250
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
#: Per-file upload limit by the guild's boost tier (as Discord documents and discord.py's
#: ``Guild.filesize_limit`` computes it).
TIER_UPLOAD_LIMITS = {0: DEFAULT_UPLOAD_LIMIT, 1: DEFAULT_UPLOAD_LIMIT, 2: 50 * 1024 * 1024,
                      3: 100 * 1024 * 1024}
#: "The maximum request size when sending a message is 25 MiB" (Create Message); a boosted
#: guild's larger per-file limit raises it to that file limit.
MESSAGE_REQUEST_LIMIT = 25 * 1024 * 1024
#: Files (attachments) one message may carry.
MAX_ATTACHMENTS = 10
MAX_REQUEST_BYTES = 512 * 1024 * 1024
INTERACTION_ACK_SECONDS = 3.0
INTERACTION_TOKEN_SECONDS = 15 * 60
CDN_URL_LIFETIME = 24 * 3600
CALL_KEY = web.RequestKey("call", object)
GATEWAY_TRACE = ['["gateway-prd-emulator-0",{"micros":0}]']


class Permission(IntFlag):
    """Discord permission bits used by the emulator."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    USE_EXTERNAL_EMOJIS = 1 << 18
    CHANGE_NICKNAME = 1 << 26
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    SEND_MESSAGES_IN_THREADS = 1 << 38


ALL_PERMISSIONS = (1 << 51) - 1
DEFAULT_MEMBER_PERMISSIONS = int(
    Permission.CREATE_INSTANT_INVITE
    | Permission.ADD_REACTIONS
    | Permission.VIEW_CHANNEL
    | Permission.SEND_MESSAGES
    | Permission.EMBED_LINKS
    | Permission.ATTACH_FILES
    | Permission.READ_MESSAGE_HISTORY
    | Permission.USE_EXTERNAL_EMOJIS
    | Permission.CHANGE_NICKNAME
    | Permission.USE_APPLICATION_COMMANDS
    | Permission.CREATE_PUBLIC_THREADS
    | Permission.CREATE_PRIVATE_THREADS
    | Permission.SEND_MESSAGES_IN_THREADS
)
EVERYONE_PERMISSIONS = int(Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY)
DEFAULT_BOT_PERMISSIONS = DEFAULT_MEMBER_PERMISSIONS | int(
    Permission.MANAGE_MESSAGES | Permission.MANAGE_THREADS
)


class Intent(IntFlag):
    """Gateway intent bits."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    GUILD_MESSAGE_TYPING = 1 << 11
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15


KNOWN_INTENTS = (1 << 26) - 1
EVENT_INTENTS: dict[str, Intent] = {
    "GUILD_CREATE": Intent.GUILDS,
    "CHANNEL_UPDATE": Intent.GUILDS,
    "THREAD_CREATE": Intent.GUILDS,
    "THREAD_UPDATE": Intent.GUILDS,
    "THREAD_DELETE": Intent.GUILDS,
    "GUILD_MEMBER_ADD": Intent.GUILD_MEMBERS,
    "MESSAGE_CREATE": Intent.GUILD_MESSAGES,
    "MESSAGE_UPDATE": Intent.GUILD_MESSAGES,
    "MESSAGE_DELETE": Intent.GUILD_MESSAGES,
    "MESSAGE_REACTION_ADD": Intent.GUILD_MESSAGE_REACTIONS,
    "MESSAGE_REACTION_REMOVE": Intent.GUILD_MESSAGE_REACTIONS,
    "TYPING_START": Intent.GUILD_MESSAGE_TYPING,
}

# Message flags.
SUPPRESS_EMBEDS = 1 << 2
HAS_THREAD = 1 << 5
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_NOTIFICATIONS = 1 << 12
IS_VOICE_MESSAGE = 1 << 13
IS_COMPONENTS_V2 = 1 << 15
SENDABLE_FLAGS = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_VOICE_MESSAGE | IS_COMPONENTS_V2
INTERACTION_FLAGS = SENDABLE_FLAGS | EPHEMERAL

# Message types.
MSG_THREAD_CREATED, MSG_REPLY, MSG_CHAT_INPUT, MSG_CONTEXT_MENU = 18, 19, 20, 23
MSG_THREAD_STARTER = 21

THREAD_TYPES = (10, 11, 12)
ARCHIVE_DURATIONS = (60, 1440, 4320, 10080)
ALLOWED_CALLBACKS: dict[int, tuple[int, ...]] = {
    2: (4, 5, 9, 12),
    3: (4, 5, 6, 7, 9),
    4: (8,),
    5: (4, 5, 6, 7),
}
SELECT_TYPES = {3, 5, 6, 7, 8}
_UNKNOWN_CODES = {
    "Unknown Application": 10002,
    "Unknown Channel": 10003,
    "Unknown Guild": 10004,
    "Unknown Member": 10007,
    "Unknown Message": 10008,
    "Unknown User": 10013,
    "Unknown Emoji": 10014,
    "Unknown Webhook": 10015,
    "Unknown interaction": 10062,
}


# --------------------------------------------------------------------------- helpers


@cache
def _fixture_text(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text(encoding="utf-8")


def fixture(name: str) -> JSON:
    """A fresh copy of ``tests/fixtures/discord/<name>.json``."""
    data: JSON = json.loads(_fixture_text(name))
    return data


def now_iso() -> str:
    """The current time in Discord's ISO8601 format."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response whose Content-Type is exactly ``application/json``.

    discord.py only parses bodies whose header equals ``application/json``; aiohttp's
    ``json_response`` would append ``; charset=utf-8``.
    """
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=all_headers)


def _truthy_query(value: str | None) -> bool:
    return (value or "").lower() in {"1", "true"}


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            return width, height
    except (OSError, ValueError):
        return None


def _image_mime(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return Image.MIME.get(image.format or "")
    except (OSError, ValueError):
        return None


def guess_content_type(filename: str, data: bytes) -> str | None:
    """The content type Discord reports for an upload (it ignores the part header)."""
    guessed = mimetypes.guess_type(filename)[0] or _image_mime(data)
    if guessed and guessed.startswith("text/"):
        return f"{guessed}; charset=utf-8"
    return guessed


def sanitize_filename(name: str) -> str:
    """Discord replaces whitespace and path separators in uploaded file names."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"\s+", "_", base) or "unknown"


class Snowflakes:
    """Generates Discord snowflakes whose timestamps are the current time."""

    def __init__(self, worker: int = 1) -> None:
        self._worker = worker & 0x1F
        self._increment = 0
        self._last_ms = 0

    def next(self) -> str:
        ms = max(int(time.time() * 1000), self._last_ms)
        self._increment = (self._increment + 1) & 0xFFF
        if self._increment == 0:
            ms += 1
        self._last_ms = ms
        return str(((ms - DISCORD_EPOCH_MS) << 22) | (self._worker << 17) | self._increment)


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answered in Discord's JSON error format."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: JSON | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = dict(headers or {})

    def body(self) -> JSON:
        data: JSON = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        return data

    def response(self) -> web.Response:
        return json_response(self.body(), status=self.status, headers=self.headers)


class RateLimitedError(ApiError):
    """Discord's 429: ``{message, retry_after, global}`` (no ``code``)."""

    def __init__(self, retry_after: float, global_: bool, headers: Mapping[str, str]) -> None:
        super().__init__(429, 0, "You are being rate limited.", headers=headers)
        self.retry_after = retry_after
        self.global_ = global_

    def body(self) -> JSON:
        return {"message": self.message, "retry_after": self.retry_after, "global": self.global_}


class CloudflareBan(ApiError):
    """A 429 from Cloudflare: an HTML page and no ``Via`` header (discord.py raises)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(429, 0, "Error 1015: You are being rate limited.")
        self.headers = {"Retry-After": str(math.ceil(retry_after))}

    def response(self) -> web.Response:
        html = "<html><head><title>Error 1015</title></head><body>You are being rate limited.</body></html>"
        return web.Response(status=429, text=html, content_type="text/html", headers=self.headers)


def unknown(what: str) -> ApiError:
    """404 ``Unknown Channel``/``Unknown Message``/... with Discord's code."""
    return ApiError(404, _UNKNOWN_CODES[what], what)


def missing_permissions() -> ApiError:
    return ApiError(403, 50013, "Missing Permissions")


class FormErrors:
    """Collects field errors and raises them as 400 / 50035 ``Invalid Form Body``."""

    def __init__(self) -> None:
        self.tree: JSON = {}

    def add(self, path: Sequence[str | int], code: str, message: str) -> None:
        node = self.tree
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def max_length(self, path: Sequence[str | int], value: Any, limit: int) -> None:
        if value is not None and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def length(self, path: Sequence[str | int], value: Any, low: int, high: int) -> None:
        if value is None or not isinstance(value, str | list):
            self.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        elif not low <= len(value) <= high:
            self.add(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")

    def raise_if_any(self) -> None:
        if self.tree:
            raise ApiError(400, 50035, "Invalid Form Body", self.tree)


# --------------------------------------------------------------------------- validation


def validate_message(body: JSON, errors: FormErrors) -> None:
    """Field limits of a message create/edit body (content, embeds, components, nonce)."""
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        errors.add(["content"], "BASE_TYPE_STRING", "Must be a string.")
    else:
        errors.max_length(["content"], content, 2000)
    nonce = body.get("nonce")
    if isinstance(nonce, str):
        errors.max_length(["nonce"], nonce, 25)
    flags = body.get("flags") or 0
    if flags & IS_COMPONENTS_V2 and (content or body.get("embeds")):
        errors.add(
            ["content"],
            "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
            "The 'content' and 'embeds' fields cannot be used when using MessageFlags.IS_COMPONENTS_V2",
        )
    validate_embeds(body.get("embeds"), errors)
    validate_components(body.get("components"), flags, errors)


def has_message_payload(body: JSON, has_files: bool) -> bool:
    keys = ("embeds", "sticker_ids", "components", "poll")
    return bool((body.get("content") or "").strip() or has_files or any(body.get(k) for k in keys))


def validate_embeds(embeds: Any, errors: FormErrors) -> None:
    if embeds is None:
        return
    if not isinstance(embeds, list):
        errors.add(["embeds"], "BASE_TYPE_ARRAY", "Must be an array.")
        return
    errors.max_length(["embeds"], embeds, 10)
    total = sum(_validate_embed(embed, ["embeds", i], errors) for i, embed in enumerate(embeds))
    if total > 6000:
        errors.add(["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")


def _validate_embed(embed: JSON, path: list[str | int], errors: FormErrors) -> int:
    size = 0
    for key, limit in (("title", 256), ("description", 4096)):
        text = embed.get(key) or ""
        errors.max_length([*path, key], text, limit)
        size += len(text)
    for key, sub, limit in (("footer", "text", 2048), ("author", "name", 256)):
        text = (embed.get(key) or {}).get(sub) or ""
        errors.max_length([*path, key, sub], text, limit)
        size += len(text)
    fields = embed.get("fields") or []
    errors.max_length([*path, "fields"], fields, 25)
    for j, fld in enumerate(fields):
        for key, limit in (("name", 256), ("value", 1024)):
            errors.length([*path, "fields", j, key], fld.get(key), 1, limit)
            size += len(fld.get(key) or "")
    for key in ("image", "thumbnail"):
        url = (embed.get(key) or {}).get("url")
        if url is not None and not re.match(r"^(https?|attachment)://", url):
            errors.add([*path, key, "url"], "URL_TYPE_INVALID_URL", "Not a well formed URL.")
    return size


def validate_components(components: Any, flags: int, errors: FormErrors) -> None:
    if components is None:
        return
    v2 = bool(flags & IS_COMPONENTS_V2)
    if not v2:
        errors.max_length(["components"], components, 5)
    seen: set[str] = set()
    for i, comp in enumerate(components):
        path: list[str | int] = ["components", i]
        if not v2 and comp.get("type") != 1:
            errors.add(
                [*path, "type"], "UNION_TYPE_CHOICES", 'Value of field "type" must be one of (1,).'
            )
            continue
        _validate_component(comp, path, errors, seen)


def _validate_component(
    comp: JSON, path: list[str | int], errors: FormErrors, seen: set[str]
) -> None:
    ctype = comp.get("type")
    if ctype == 1:
        _validate_action_row(comp, path, errors, seen)
    elif ctype == 2:
        _validate_button(comp, path, errors, seen)
    elif ctype in SELECT_TYPES:
        _validate_custom_id(comp, path, errors, seen)
        errors.max_length([*path, "placeholder"], comp.get("placeholder"), 150)
        if ctype == 3:
            errors.length([*path, "options"], comp.get("options"), 1, 25)
    elif ctype == 4:
        errors.add(
            [*path, "type"], "COMPONENT_TYPE_INVALID", "Text inputs are only valid in modals."
        )
    else:
        for j, child in enumerate(comp.get("components") or []):
            _validate_component(child, [*path, "components", j], errors, seen)
        if comp.get("accessory"):
            _validate_component(comp["accessory"], [*path, "accessory"], errors, seen)


def _validate_action_row(
    comp: JSON, path: list[str | int], errors: FormErrors, seen: set[str]
) -> None:
    children = comp.get("components") or []
    errors.length([*path, "components"], children, 1, 5)
    if any(c.get("type") in SELECT_TYPES for c in children) and len(children) > 1:
        errors.add(
            [*path, "components"],
            "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
            "The specified component exceeds the maximum width",
        )
    for j, child in enumerate(children):
        _validate_component(child, [*path, "components", j], errors, seen)


def _validate_button(comp: JSON, path: list[str | int], errors: FormErrors, seen: set[str]) -> None:
    style = comp.get("style")
    errors.max_length([*path, "label"], comp.get("label"), 80)
    if style not in (1, 2, 3, 4, 5, 6):
        errors.add(
            [*path, "style"], "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4, 5, 6}."
        )
    elif style == 5:
        if not comp.get("url") or comp.get("custom_id"):
            errors.add(
                [*path],
                "BUTTON_COMPONENT_URL_REQUIRED",
                "A url is required and custom_id is not allowed",
            )
    elif style != 6:
        _validate_custom_id(comp, path, errors, seen)


def _validate_custom_id(
    comp: JSON, path: list[str | int], errors: FormErrors, seen: set[str]
) -> None:
    custom_id = comp.get("custom_id")
    errors.length([*path, "custom_id"], custom_id, 1, 100)
    if isinstance(custom_id, str):
        if custom_id in seen:
            errors.add(
                [*path, "custom_id"],
                "COMPONENT_CUSTOM_ID_DUPLICATED",
                "Component custom id cannot be duplicated",
            )
        seen.add(custom_id)


def number_components(components: list[JSON]) -> list[JSON]:
    """Give every component a numeric ``id`` as Discord does (tree order, unused ids)."""
    result = copy.deepcopy(components)
    used = {c["id"] for c in iter_components(result) if isinstance(c.get("id"), int)}
    counter = 0
    for comp in iter_components(result):
        if not isinstance(comp.get("id"), int):
            counter += 1
            while counter in used:
                counter += 1
            comp["id"] = counter
    return result


def iter_components(components: Iterable[JSON]) -> Iterable[JSON]:
    """Every component in tree order (rows, containers, sections, labels)."""
    for comp in components:
        yield comp
        children = list(comp.get("components") or [])
        for key in ("accessory", "component"):
            if comp.get(key):
                children.append(comp[key])
        yield from iter_components(children)


def validate_modal(data: JSON, errors: FormErrors) -> None:
    errors.length(["data", "custom_id"], data.get("custom_id"), 1, 100)
    errors.length(["data", "title"], data.get("title"), 1, 45)
    components = data.get("components") or []
    errors.length(["data", "components"], components, 1, 5)
    for i, comp in enumerate(components):
        path: list[str | int] = ["data", "components", i]
        if comp.get("type") == 1:
            inputs = comp.get("components") or []
            errors.length([*path, "components"], inputs, 1, 1)
            for j, child in enumerate(inputs):
                _validate_text_input(child, [*path, "components", j], errors, labelled=False)
        elif comp.get("type") == 18:
            errors.length([*path, "label"], comp.get("label"), 1, 45)
            errors.max_length([*path, "description"], comp.get("description"), 100)
            child = comp.get("component") or {}
            if child.get("type") == 4:
                _validate_text_input(child, [*path, "component"], errors, labelled=True)
        elif comp.get("type") != 10:
            errors.add(
                [*path, "type"],
                "UNION_TYPE_CHOICES",
                'Value of field "type" must be one of (1, 10, 18).',
            )


def _validate_text_input(
    comp: JSON, path: list[str | int], errors: FormErrors, *, labelled: bool
) -> None:
    if comp.get("type") != 4:
        errors.add(
            [*path, "type"], "UNION_TYPE_CHOICES", 'Value of field "type" must be one of (4,).'
        )
        return
    errors.length([*path, "custom_id"], comp.get("custom_id"), 1, 100)
    if comp.get("style") not in (1, 2):
        errors.add([*path, "style"], "BASE_TYPE_CHOICES", "Value must be one of {1, 2}.")
    if not labelled:
        errors.length([*path, "label"], comp.get("label"), 1, 45)
    errors.max_length([*path, "value"], comp.get("value"), 4000)
    errors.max_length([*path, "placeholder"], comp.get("placeholder"), 100)


def validate_command(cmd: Any, path: list[str | int], errors: FormErrors) -> None:
    if not isinstance(cmd, dict):
        errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    ctype = cmd.get("type", 1)
    name = cmd.get("name")
    if ctype == 1:
        _validate_chat_name(name, [*path, "name"], errors)
        errors.length([*path, "description"], cmd.get("description"), 1, 100)
        _validate_options(cmd.get("options") or [], [*path, "options"], errors)
    elif ctype in (2, 3):
        errors.length([*path, "name"], name, 1, 32)
        if cmd.get("description"):
            errors.add(
                [*path, "description"],
                "APPLICATION_COMMAND_INVALID_DESCRIPTION",
                "Context menu commands cannot have a description",
            )
        if cmd.get("options"):
            errors.add(
                [*path, "options"],
                "APPLICATION_COMMAND_OPTIONS_NOT_ALLOWED",
                "Context menu commands cannot have options",
            )
    else:
        errors.add([*path, "type"], "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4}.")


def _validate_chat_name(name: Any, path: list[str | int], errors: FormErrors) -> None:
    valid = (
        isinstance(name, str)
        and 1 <= len(name) <= 32
        and name == name.lower()
        and all(ch.isalnum() or ch in "-_'" for ch in name)
    )
    if not valid:
        errors.add(path, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")


def _validate_options(options: list[JSON], path: list[str | int], errors: FormErrors) -> None:
    errors.max_length(path, options, 25)
    names: set[str] = set()
    optional_seen = False
    for i, opt in enumerate(options):
        opt_path: list[str | int] = [*path, i]
        _validate_chat_name(opt.get("name"), [*opt_path, "name"], errors)
        errors.length([*opt_path, "description"], opt.get("description"), 1, 100)
        if opt.get("name") in names:
            errors.add(
                [*opt_path, "name"],
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                "Option names must be unique",
            )
        names.add(opt.get("name", ""))
        if opt.get("type") in (1, 2):
            _validate_options(opt.get("options") or [], [*opt_path, "options"], errors)
            continue
        if opt.get("required"):
            if optional_seen:
                errors.add(
                    [*opt_path, "required"],
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
        errors.max_length([*opt_path, "choices"], opt.get("choices"), 25)


# --------------------------------------------------------------------------- records


@dataclass
class RestCall:
    """One request the bot made to the REST API (path is relative to ``/api/v10``)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    files: list[tuple[str, bytes, str]] = field(default_factory=list)
    file_fields: list[str] = field(default_factory=list)
    content_type: str = ""
    route: str = ""
    status: int | None = None
    at: float = field(default_factory=time.monotonic)
    #: bytes of the request body as sent (multipart boundaries and payload_json included)
    body_size: int = 0

    @property
    def multipart(self) -> bool:
        return self.content_type == "multipart/form-data"


@dataclass
class InteractionRecord:
    """An interaction the emulator dispatched, and everything the bot answered."""

    id: str
    token: str
    type: int
    payload: JSON
    channel_id: str
    user_id: str
    created: float = field(default_factory=time.monotonic)
    name: str | None = None
    command_type: int | None = None
    message_id: str | None = None
    callbacks: list[JSON] = field(default_factory=list)
    original: JSON | None = None
    original_deleted: bool = False
    followups: list[JSON] = field(default_factory=list)
    modal: JSON | None = None
    choices: list[JSON] | None = None

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def response_type(self) -> int | None:
        return self.callbacks[0]["type"] if self.callbacks else None

    @property
    def deferred(self) -> bool:
        return self.response_type in (5, 6)

    @property
    def ephemeral(self) -> bool:
        return bool(self.original and self.original.get("flags", 0) & EPHEMERAL)

    def messages(self) -> list[JSON]:
        head = [self.original] if self.original and not self.original_deleted else []
        return head + self.followups


@dataclass
class _Fault:
    method: str
    prefix: str
    times: int
    status: int = 429
    retry_after: float = 0.0
    global_: bool = False
    cloudflare: bool = False


@dataclass(eq=False)
class _Socket:
    """One gateway websocket connection."""

    ws: web.WebSocketResponse
    query: dict[str, str]
    compressor: Any = None
    authenticated: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, frame: JSON) -> None:
        text = json.dumps(frame, separators=(",", ":"))
        async with self.lock:
            if self.ws.closed:
                return
            try:
                if self.compressor is None:
                    await self.ws.send_str(text)
                else:
                    data = self.compressor.compress(text.encode()) + self.compressor.flush(
                        zlib.Z_SYNC_FLUSH
                    )
                    await self.ws.send_bytes(data)
            except (ConnectionResetError, RuntimeError):
                pass

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode())


@dataclass(eq=False)
class _Session:
    """One gateway session (one shard): its sequence, its replay log and its connection."""

    shard: list[int] | None  # [shard_id, shard_count]; None for an unsharded session
    session_id: str
    intents: int
    seq: int = 0
    log: list[JSON] = field(default_factory=list)
    socket: _Socket | None = None

    @property
    def shard_id(self) -> int:
        return self.shard[0] if self.shard else 0

    def owns(self, guild_id: str) -> bool:
        """Discord's routing: a guild's events go to shard ``(guild_id >> 22) % count``."""
        return self.shard is None or (int(guild_id) >> 22) % self.shard[1] == self.shard[0]


# --------------------------------------------------------------------------- emulator


class DiscordEmulator:
    """Discord REST + gateway + CDN on one local aiohttp server."""

    def __init__(
        self,
        *,
        token: str = "test-bot-token",
        app_id: str = "1100000000000000001",
        bot_user_id: str = "1100000000000000001",
        guild_id: str = "1200000000000000001",
        channel_id: str = "1300000000000000001",
        message_content_intent: bool = True,
        members_intent: bool = True,
        presence_intent: bool = True,
        bot_name: str = "imagebot",
        premium_tier: int = 0,
    ) -> None:
        self.token = token
        self.app_id = app_id
        self.bot_user_id = bot_user_id
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.message_content_intent = message_content_intent
        self.members_intent = members_intent
        self.presence_intent = presence_intent
        self._upload_limit: int | None = None
        self.interaction_ack_seconds = INTERACTION_ACK_SECONDS
        self.ids = Snowflakes()

        self.requests: list[RestCall] = []
        self.cdn_requests: list[RestCall] = []
        self.users: dict[str, JSON] = {}
        self.members: dict[str, JSON] = {}
        self.roles: dict[str, JSON] = {}
        self.channels: dict[str, JSON] = {}
        self.messages: dict[str, list[JSON]] = {}
        self.interactions: dict[str, InteractionRecord] = {}
        self.global_commands: list[JSON] = []
        self.guild_commands: dict[str, list[JSON]] = {}
        self.application = self._build_application(bot_name)
        self.guild = self._build_guild()
        self.guild["premium_tier"] = premium_tier
        #: every guild the bot is in, the first one (``guild``) included
        self.guilds: dict[str, JSON] = {guild_id: self.guild}

        self._message_index: dict[str, JSON] = {}
        self._ephemeral: dict[str, JSON] = {}
        self._by_token: dict[str, InteractionRecord] = {}
        self._blobs: dict[str, tuple[bytes, str | None]] = {}
        self._cdn_secret = secrets.token_bytes(32)
        self._faults: list[_Fault] = []
        self._windows: list[tuple[_Fault, float]] = []
        self.rate_limit_violations = 0

        # gateway
        self.identifies = 0
        self.resumes = 0
        self.heartbeats = 0
        self.identify_payloads: list[JSON] = []
        self.gateway_connections: list[dict[str, str]] = []
        self.presence: JSON | None = None
        #: live gateway sessions by shard id (0 for an unsharded session)
        self.sessions: dict[int, _Session] = {}
        #: the ``shards`` GET /gateway/bot recommends
        self.recommended_shards = 1
        #: refuse an IDENTIFY with fewer shards than recommended (close code 4011)
        self.sharding_required = False
        self._sockets: set[_Socket] = set()
        self._dispatch_lock = asyncio.Lock()
        self._identified = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self._setup_guild(bot_name)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(middlewares=[self._api_middleware], client_max_size=MAX_REQUEST_BYTES)
        app.add_routes(self._routes())
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}"

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sock in list(self._sockets):
            await sock.close(1001, "Emulator stopped")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_base(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/gateway"

    @property
    def cdn_base(self) -> str:
        return self.base_url + "/cdn"

    @property
    def media_base(self) -> str:
        return self.base_url + "/media"

    def _routes(self) -> list[web.RouteDef]:
        p = API_PREFIX
        ch = p + "/channels/{channel_id}"
        msg = ch + "/messages/{message_id}"
        hook = p + "/webhooks/{app_id}/{token}"
        return [
            web.get("/gateway", self._gateway_handler),
            web.get("/cdn/{path:.+}", self._cdn_handler),
            web.get("/media/{path:.+}", self._cdn_handler),
            web.get(p + "/gateway", self._get_gateway),
            web.get(p + "/gateway/bot", self._get_gateway_bot),
            web.get(p + "/users/@me", self._get_me),
            web.get(p + "/users/{user_id}", self._get_user),
            web.get(p + "/oauth2/applications/@me", self._get_application),
            web.get(p + "/applications/@me", self._get_application),
            web.get(p + "/applications/{app_id}/commands", self._list_commands),
            web.put(p + "/applications/{app_id}/commands", self._put_commands),
            web.get(p + "/applications/{app_id}/guilds/{guild_id}/commands", self._list_commands),
            web.put(p + "/applications/{app_id}/guilds/{guild_id}/commands", self._put_commands),
            web.get(p + "/guilds/{guild_id}", self._get_guild),
            web.get(p + "/guilds/{guild_id}/members/{user_id}", self._get_member),
            web.get(ch, self._get_channel),
            web.get(ch + "/messages", self._list_messages),
            web.post(ch + "/messages", self._create_message),
            web.get(msg, self._get_message),
            web.patch(msg, self._edit_message_route),
            web.delete(msg, self._delete_message),
            web.post(msg + "/threads", self._thread_from_message),
            web.post(ch + "/threads", self._thread_without_message),
            web.post(ch + "/typing", self._typing),
            web.put(msg + "/reactions/{emoji}/@me", self._add_reaction),
            web.delete(msg + "/reactions/{emoji}/@me", self._remove_reaction),
            web.post(
                p + "/interactions/{interaction_id}/{token}/callback", self._interaction_callback
            ),
            web.post(hook, self._create_followup),
            web.get(hook + "/messages/{message_id}", self._get_webhook_message),
            web.patch(hook + "/messages/{message_id}", self._edit_webhook_message),
            web.delete(hook + "/messages/{message_id}", self._delete_webhook_message),
        ]

    # ------------------------------------------------------------------ state building

    def _build_application(self, bot_name: str) -> JSON:
        app = fixture("application")
        app.update(id=self.app_id, name=bot_name, description=f"{bot_name} (emulated)")
        app["flags"] = self._application_flags()
        app["verify_key"] = hashlib.sha256(self.app_id.encode()).hexdigest()
        return app

    def _application_flags(self) -> int:
        """APPLICATION_COMMAND_BADGE plus the *_LIMITED gateway flags of a small bot."""
        flags = 1 << 23
        flags |= (1 << 13) if self.presence_intent else 0
        flags |= (1 << 15) if self.members_intent else 0
        flags |= (1 << 19) if self.message_content_intent else 0
        return flags

    @property
    def guild_upload_limit(self) -> int:
        """The per-file upload limit: the guild's boost tier's, unless a test set another
        (to play a Discord that refuses what the client was told it may upload)."""
        if self._upload_limit is not None:
            return self._upload_limit
        return TIER_UPLOAD_LIMITS[int(self.guild.get("premium_tier") or 0)]

    @guild_upload_limit.setter
    def guild_upload_limit(self, value: int) -> None:
        self._upload_limit = value

    def _build_guild(self) -> JSON:
        guild = fixture("guild")
        guild.update(id=self.guild_id, name="Emulated Guild", icon=None, description=None)
        return guild

    def _setup_guild(self, bot_name: str) -> None:
        everyone = self._role(self.guild_id, "@everyone", EVERYONE_PERMISSIONS, position=0)
        self.roles[everyone["id"]] = everyone
        member_role = self._role(self.ids.next(), "Members", DEFAULT_MEMBER_PERMISSIONS, position=1)
        self.roles[member_role["id"]] = member_role
        self._member_role_id = member_role["id"]
        bot_role = self._role(self.ids.next(), bot_name, DEFAULT_BOT_PERMISSIONS, position=2)
        bot_role.update(managed=True, tags={"bot_id": self.bot_user_id})
        self.roles[bot_role["id"]] = bot_role
        self._bot_role_id = bot_role["id"]
        bot_user = self._user(self.bot_user_id, bot_name, bot=True)
        self.users[self.bot_user_id] = bot_user
        self.members[self.bot_user_id] = self._member(bot_user, [bot_role["id"]])
        self.application["bot"] = copy.deepcopy(bot_user)
        channel = fixture("channel")
        channel.update(
            id=self.channel_id, guild_id=self.guild_id, name="general", position=0, topic=None
        )
        self.channels[self.channel_id] = channel
        self.messages[self.channel_id] = []

    def add_guild(self, name: str, *, shard: tuple[int, int] | None = None) -> JSON:
        """Another guild the bot is in, with a text channel ``general``; returns the channel.

        Roles and members are shared with the first guild. ``shard=(id, count)`` picks a
        guild id that Discord would route to that shard. Add guilds before the bot connects.
        """
        guild_id = self.ids.next()
        while shard is not None and self.guild_shard(guild_id, shard[1]) != shard[0]:
            guild_id = self.ids.next()
        guild = fixture("guild")
        guild.update(id=guild_id, name=name, icon=None, description=None, premium_tier=0)
        self.guilds[guild_id] = guild
        channel = fixture("channel")
        channel.update(id=self.ids.next(), guild_id=guild_id, name="general", position=0,
                       topic=None)
        self._add_channel(channel)
        return channel

    def _guild_of(self, channel_id: str) -> str:
        """The guild a channel or thread belongs to."""
        channel = self.channels.get(channel_id)
        return str((channel or {}).get("guild_id") or self.guild_id)

    def _role(self, role_id: str, name: str, permissions: int, *, position: int) -> JSON:
        role = fixture("role")
        role.update(id=role_id, name=name, permissions=str(permissions), position=position)
        role.update(
            color=0, colors={"primary_color": 0, "secondary_color": None, "tertiary_color": None}
        )
        role.update(hoist=False, managed=False)
        return role

    def _user(self, user_id: str, name: str, *, bot: bool) -> JSON:
        user = fixture("user")
        user.update(
            id=user_id, username=name.lower(), global_name=None if bot else name, avatar=None
        )
        if bot:
            user.update(bot=True, discriminator=f"{int(user_id) % 10000:04d}")
        else:
            user.pop("bot", None)
        return user

    def _member(self, user: JSON, roles: list[str]) -> JSON:
        member = fixture("member")
        member.update(user=copy.deepcopy(user), roles=roles, joined_at=now_iso())
        return member

    def add_member(
        self,
        user_id: str,
        name: str,
        *,
        permissions: int = DEFAULT_MEMBER_PERMISSIONS,
        bot: bool = False,
    ) -> JSON:
        """Add a user to the guild.

        Default permissions come from a shared "Members" role, other values from a
        role of the member's own (``@everyone`` only grants view + history).
        """
        user = self._user(user_id, name, bot=bot)
        self.users[user_id] = user
        if permissions == DEFAULT_MEMBER_PERMISSIONS:
            roles = [self._member_role_id]
        else:
            role = self._role(
                self.ids.next(), f"{name} role", permissions, position=len(self.roles)
            )
            self.roles[role["id"]] = role
            roles = [role["id"]]
        member = self._member(user, roles)
        self.members[user_id] = member
        if self.sessions:
            for guild_id in self.guilds:
                self._spawn(
                    self._emit("GUILD_MEMBER_ADD", {**copy.deepcopy(member), "guild_id": guild_id})
                )
        return member

    @property
    def bot_permissions(self) -> int:
        """Permissions of the bot's managed role (``@everyone`` adds view + history)."""
        return int(self.roles[self._bot_role_id]["permissions"])

    @bot_permissions.setter
    def bot_permissions(self, value: int) -> None:
        self.roles[self._bot_role_id]["permissions"] = str(value)

    @property
    def threads(self) -> dict[str, JSON]:
        return {cid: ch for cid, ch in self.channels.items() if ch["type"] in THREAD_TYPES}

    def permissions_of(self, user_id: str) -> int:
        member = self.members[user_id]
        value = int(self.roles[self.guild_id]["permissions"])
        for role_id in member["roles"]:
            value |= int(self.roles[role_id]["permissions"])
        return ALL_PERMISSIONS if value & Permission.ADMINISTRATOR else value

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ CDN

    def _signed_url(self, base: str, path: str) -> str:
        issued = int(time.time())
        expires = issued + CDN_URL_LIFETIME
        digest = self._cdn_digest(path, f"{expires:x}", f"{issued:x}")
        return f"{base}/{path}?ex={expires:x}&is={issued:x}&hm={digest}&"

    def _cdn_digest(self, path: str, expires: str, issued: str) -> str:
        return hmac.new(
            self._cdn_secret, f"{path}|{expires}|{issued}".encode(), hashlib.sha256
        ).hexdigest()

    def _cdn_signature_ok(self, path: str, query: Mapping[str, str]) -> bool:
        expires, issued, digest = query.get("ex", ""), query.get("is", ""), query.get("hm", "")
        if not (expires and issued and digest):
            return False
        good = hmac.compare_digest(digest, self._cdn_digest(path, expires, issued))
        try:
            return good and int(expires, 16) > time.time()
        except ValueError:
            return False

    def add_attachment(
        self,
        filename: str,
        content: bytes,
        content_type: str | None = None,
        *,
        channel_id: str | None = None,
        description: str | None = None,
    ) -> JSON:
        """Register bytes on the CDN and return a Discord attachment object for them."""
        return self._store_attachment(
            channel_id or self.channel_id, filename, content, content_type, description=description
        )

    def _store_attachment(
        self,
        channel_id: str,
        filename: str,
        content: bytes,
        content_type: str | None,
        *,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> JSON:
        attachment_id = self.ids.next()
        name = sanitize_filename(filename)
        path = f"attachments/{channel_id}/{attachment_id}/{name}"
        ctype = content_type or guess_content_type(name, content)
        self._blobs[path] = (bytes(content), ctype)
        att = fixture("attachment")
        att.update(id=attachment_id, filename=name, size=len(content))
        att.update(
            url=self._signed_url(self.cdn_base, path),
            proxy_url=self._signed_url(self.media_base, path),
        )
        for key in ("content_type", "width", "height", "placeholder", "placeholder_version"):
            att.pop(key, None)
        if ctype:
            att["content_type"] = ctype
        size = _image_size(content)
        if size:
            att["width"], att["height"] = size
        if description:
            att["description"] = description
        if ephemeral:
            att["ephemeral"] = True
        return att

    def cdn_bytes(self, url: str) -> bytes:
        """The bytes behind an attachment url (for assertions)."""
        path = url.split("?", 1)[0].split("/cdn/", 1)[-1].split("/media/", 1)[-1]
        return self._blobs[path][0]

    async def _cdn_handler(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.cdn_requests.append(
            RestCall(request.method, request.path, dict(request.query), dict(request.headers))
        )
        blob = self._blobs.get(path)
        if blob is None or not self._cdn_signature_ok(path, request.query):
            return web.Response(status=404, text="This content is no longer available.")
        data, ctype = blob
        headers = {
            "Content-Type": ctype or "application/octet-stream",
            "Cache-Control": "public, max-age=31536000",
        }
        return web.Response(body=data, headers=headers)

    # ------------------------------------------------------------------ messages (state)

    def messages_in(self, channel_id: str) -> list[JSON]:
        return self.messages.setdefault(channel_id, [])

    def find_message(self, message_id: str) -> JSON | None:
        return self._message_index.get(message_id) or self._ephemeral.get(message_id)

    def _message_template(
        self, channel_id: str, author_id: str, *, message_id: str | None = None
    ) -> JSON:
        msg = fixture("message")
        msg.update(
            id=message_id or self.ids.next(),
            channel_id=channel_id,
            author=copy.deepcopy(self.users[author_id]),
            content="",
            timestamp=now_iso(),
        )
        return msg

    def _store_message(self, msg: JSON) -> None:
        channel = self.channels[msg["channel_id"]]
        self.messages_in(msg["channel_id"]).append(msg)
        self._message_index[msg["id"]] = msg
        channel["last_message_id"] = msg["id"]
        if channel["type"] in THREAD_TYPES and msg["type"] not in (
            MSG_THREAD_CREATED,
            MSG_THREAD_STARTER,
        ):
            channel["message_count"] += 1
            channel["total_message_sent"] = channel.get("total_message_sent", 0) + 1

    def _unstore_message(self, msg: JSON) -> None:
        self._ephemeral.pop(msg["id"], None)
        if self._message_index.pop(msg["id"], None) is not None:
            self.messages_in(msg["channel_id"]).remove(msg)

    def _mentions(
        self, content: str, allowed: JSON | None = None, replied: JSON | None = None
    ) -> list[JSON]:
        ids = list(dict.fromkeys(re.findall(r"<@!?(\d+)>", content)))
        if allowed is not None:
            explicit = [str(u) for u in allowed.get("users") or []]
            parse_users = "users" in (allowed.get("parse") or [])
            ids = [i for i in ids if parse_users or i in explicit]
        if replied is not None and (allowed is None or allowed.get("replied_user")):
            ids.append(replied["author"]["id"])
        return [copy.deepcopy(self.users[i]) for i in dict.fromkeys(ids) if i in self.users]

    def _mentions_bot(self, msg: JSON) -> bool:
        return any(u["id"] == self.bot_user_id for u in msg.get("mentions", []))

    def _content_visible(self, msg: JSON, privileged: bool) -> bool:
        return privileged or msg["author"]["id"] == self.bot_user_id or self._mentions_bot(msg)

    def _redacted(self, msg: JSON, privileged: bool) -> JSON:
        """The message as an app without the MESSAGE_CONTENT intent sees it."""
        if self._content_visible(msg, privileged):
            return msg
        out = copy.deepcopy(msg)
        out.update(content="", embeds=[], attachments=[], components=[])
        out.pop("poll", None)
        return out

    def _rest_message(self, msg: JSON) -> JSON:
        return self._redacted(msg, self.message_content_intent)

    def _gateway_message(self, msg: JSON) -> JSON:
        out = copy.deepcopy(msg)
        out["guild_id"] = self._guild_of(msg["channel_id"])
        author_id = msg["author"]["id"]
        if author_id in self.members and "webhook_id" not in msg:
            out["member"] = self._partial_member(author_id)
        for mention in out["mentions"]:
            if mention["id"] in self.members:
                mention["member"] = self._partial_member(mention["id"])
        return out

    def _partial_member(self, user_id: str) -> JSON:
        member = copy.deepcopy(self.members[user_id])
        member.pop("user", None)
        return member

    def message_payload(
        self,
        channel_id: str,
        author_id: str,
        content: str,
        *,
        attachments: Sequence[JSON] = (),
        mentions_bot: bool = False,
        message_id: str | None = None,
        reply_to: str | None = None,
        embeds: Sequence[JSON] = (),
    ) -> JSON:
        """Build and store a user's message; returns it in gateway form (guild_id, member).

        ``mentions_bot`` puts ``<@bot>`` in front of the content unless it is already
        there or the message is a reply to the bot (a reply pings its author).
        """
        self._channel(channel_id)
        if author_id not in self.users:
            raise KeyError(f"unknown user {author_id}; call add_member() first")
        msg = self._message_template(channel_id, author_id, message_id=message_id)
        replied = self._reply_target(channel_id, reply_to) if reply_to else None
        mention = f"<@{self.bot_user_id}>"
        replying_to_bot = replied is not None and replied["author"]["id"] == self.bot_user_id
        if mentions_bot and mention not in content and not replying_to_bot:
            content = f"{mention} {content}"
        msg.update(
            content=content,
            attachments=[copy.deepcopy(a) for a in attachments],
            embeds=list(embeds),
        )
        msg["mentions"] = self._mentions(
            content, None, replied if mentions_bot or not replying_to_bot else None
        )
        if replied is not None:
            msg.update(
                type=MSG_REPLY,
                message_reference=self._reference(replied),
                referenced_message=copy.deepcopy(replied),
            )
        self._store_message(msg)
        return self._gateway_message(msg)

    def _reply_target(self, channel_id: str, message_id: str) -> JSON:
        target = self._message_index.get(message_id)
        if target is None or target["channel_id"] != channel_id:
            raise KeyError(f"unknown message {message_id} in channel {channel_id}")
        return target

    def _reference(self, target: JSON) -> JSON:
        return {
            "type": 0,
            "message_id": target["id"],
            "channel_id": target["channel_id"],
            "guild_id": self._guild_of(target["channel_id"]),
        }

    async def send_message(self, channel_id: str, author_id: str, content: str, **kw: Any) -> JSON:
        """A user posts a message: stored, then dispatched as MESSAGE_CREATE."""
        payload = self.message_payload(channel_id, author_id, content, **kw)
        await self._emit("MESSAGE_CREATE", copy.deepcopy(payload))
        return payload

    # ------------------------------------------------------------------ gateway

    async def _gateway_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, timeout=2.0)
        await ws.prepare(request)
        query = dict(request.query)
        self.gateway_connections.append(query)
        compressor = zlib.compressobj() if query.get("compress") == "zlib-stream" else None
        sock = _Socket(ws, query, compressor)
        self._sockets.add(sock)
        try:
            if query.get("encoding", "json") != "json":
                await sock.close(4002, "Error while decoding payload.")
                return ws
            await sock.send(
                {
                    "op": 10,
                    "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS, "_trace": GATEWAY_TRACE},
                    "s": None,
                    "t": None,
                }
            )
            async for frame in ws:
                if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                raw = (
                    frame.data
                    if frame.type is WSMsgType.TEXT
                    else frame.data.decode("utf-8", "replace")
                )
                await self._on_gateway_frame(sock, raw)
        finally:
            self._sockets.discard(sock)
            for session in self.sessions.values():
                if session.socket is sock:
                    session.socket = None
        return ws

    async def _on_gateway_frame(self, sock: _Socket, raw: str) -> None:
        try:
            frame = json.loads(raw)
            op, data = frame["op"], frame.get("d")
        except (ValueError, KeyError, TypeError):
            await sock.close(4002, "Error while decoding payload.")
            return
        handlers: dict[int, Callable[[_Socket, Any], Awaitable[None]]] = {
            1: self._op_heartbeat,
            2: self._op_identify,
            3: self._op_presence,
            4: self._op_ignored,
            6: self._op_resume,
            8: self._op_request_members,
        }
        handler = handlers.get(op)
        if handler is None:
            await sock.close(4001, "Unknown opcode.")
        elif op not in (1, 2, 6) and not sock.authenticated:
            await sock.close(4003, "Not authenticated.")
        else:
            await handler(sock, data)

    async def _op_heartbeat(self, sock: _Socket, _data: Any) -> None:
        self.heartbeats += 1
        await sock.send({"op": 11, "d": None, "s": None, "t": None})

    async def _op_ignored(self, sock: _Socket, _data: Any) -> None:
        return None

    async def _op_presence(self, sock: _Socket, data: Any) -> None:
        self.presence = data

    def _disallowed_intents(self) -> int:
        enabled = {
            Intent.MESSAGE_CONTENT: self.message_content_intent,
            Intent.GUILD_MEMBERS: self.members_intent,
            Intent.GUILD_PRESENCES: self.presence_intent,
        }
        return sum(int(bit) for bit, on in enabled.items() if not on)

    def _identify_error(self, data: Any) -> tuple[int, str] | None:
        if not isinstance(data, dict) or data.get("token") != self.token:
            return 4004, "Authentication failed."
        if not isinstance(data.get("properties"), dict):
            return 4002, "Error while decoding payload."
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0 or intents & ~KNOWN_INTENTS:
            return 4013, "Invalid intent(s)."
        if intents & self._disallowed_intents():
            return 4014, "Disallowed intent(s)."
        shard = data.get("shard")
        if shard is not None and not (
            isinstance(shard, list) and len(shard) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in shard)
            and 0 <= shard[0] < shard[1]
        ):
            return 4010, "Invalid shard."
        if self.sharding_required and (shard is None or shard[1] < self.recommended_shards):
            return 4011, "Sharding required."
        return None

    async def _op_identify(self, sock: _Socket, data: Any) -> None:
        if sock.authenticated:
            await sock.close(4005, "Already authenticated.")
            return
        error = self._identify_error(data)
        if error is not None:
            await sock.close(*error)
            return
        self.identify_payloads.append(data)
        shard = data.get("shard")
        session = _Session(shard=list(shard) if shard else None,
                           session_id=secrets.token_hex(16), intents=data["intents"])
        async with self._dispatch_lock:
            previous = self.sessions.get(session.shard_id)
            if previous is not None and previous.socket not in (None, sock):
                # The same shard identified again: Discord ends the older session.
                self._spawn(previous.socket.close(4009, "Session timed out."))
            self.sessions[session.shard_id] = session
            sock.authenticated = True
            session.socket = sock
            self.identifies += 1
        await self.dispatch("READY", self._ready_payload(session), session=session)
        for guild_id in self.guilds:
            if session.owns(guild_id):
                await self._emit("GUILD_CREATE", self._guild_create_payload(guild_id, session))
        self._identified.set()

    def guild_shard(self, guild_id: str, shard_count: int) -> int:
        """The shard that carries a guild: ``(guild_id >> 22) % shard_count``."""
        return (int(guild_id) >> 22) % shard_count

    async def _op_resume(self, sock: _Socket, data: Any) -> None:
        if not isinstance(data, dict) or data.get("token") != self.token:
            await sock.close(4004, "Authentication failed.")
            return
        seq = data.get("seq")
        session = next((s for s in self.sessions.values()
                        if s.session_id == data.get("session_id")), None)
        if session is None or not isinstance(seq, int) or seq > session.seq:
            await sock.send({"op": 9, "d": False, "s": None, "t": None})
            return
        async with self._dispatch_lock:
            sock.authenticated = True
            session.socket = sock
            self.resumes += 1
            for frame in session.log:
                if frame["s"] > seq:
                    await sock.send(frame)
        await self.dispatch("RESUMED", {"_trace": GATEWAY_TRACE}, session=session)

    async def _op_request_members(self, sock: _Socket, data: Any) -> None:
        if not isinstance(data, dict) or str(data.get("guild_id")) not in self.guilds:
            return
        wanted = [str(u) for u in data.get("user_ids") or []]
        query = (data.get("query") or "").lower()

        def selected(user_id: str, member: JSON) -> bool:
            return user_id in wanted if wanted else member["user"]["username"].startswith(query)

        members = [copy.deepcopy(m) for uid, m in self.members.items() if selected(uid, m)]
        limit = data.get("limit") or 0
        chunk: JSON = {
            "guild_id": str(data["guild_id"]),
            "members": members[:limit] if limit else members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [u for u in wanted if u not in self.members],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        session = next((s for s in self.sessions.values() if s.socket is sock), None)
        await self.dispatch("GUILD_MEMBERS_CHUNK", chunk, session=session)

    def _ready_payload(self, session: _Session) -> JSON:
        ready = fixture("ready")
        me = copy.deepcopy(self.users[self.bot_user_id])
        me.update(verified=True, mfa_enabled=False, email=None, flags=0)
        ready.update(
            user=me,
            guilds=[{"id": g, "unavailable": True} for g in self.guilds if session.owns(g)],
            session_id=session.session_id,
            resume_gateway_url=self.gateway_url,
            application={"id": self.app_id, "flags": self.application["flags"]},
        )
        if session.shard is not None:
            ready["shard"] = session.shard
        return ready

    def _guild_roles(self, guild_id: str) -> list[JSON]:
        """The roles every emulated guild shares; ``@everyone`` has the guild's own id."""
        roles = copy.deepcopy(list(self.roles.values()))
        for role in roles:
            if role["id"] == self.guild_id:
                role["id"] = guild_id
        return roles

    def _guild_create_payload(self, guild_id: str, session: _Session) -> JSON:
        guild = copy.deepcopy(self.guilds[guild_id])
        with_members = bool(session.intents & Intent.GUILD_MEMBERS)
        members = list(self.members.values()) if with_members else [self.members[self.bot_user_id]]
        channels = []
        for channel in self.channels.values():
            if channel["type"] not in THREAD_TYPES and channel.get("guild_id") == guild_id:
                channels.append({k: v for k, v in channel.items() if k != "guild_id"})
        threads = [
            copy.deepcopy(t) for t in self.threads.values()
            if not t["thread_metadata"]["archived"] and t.get("guild_id") == guild_id
        ]
        guild.update(
            joined_at=self.members[self.bot_user_id]["joined_at"],
            large=False,
            unavailable=False,
            lazy=True,
            member_count=len(self.members),
            members=copy.deepcopy(members),
            channels=copy.deepcopy(channels),
            threads=threads,
            roles=self._guild_roles(guild_id),
            voice_states=[],
            presences=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
        )
        return guild

    async def wait_identified(self, timeout: float = 10) -> None:  # noqa: ASYNC109 - public API
        """Wait until a bot identified and got READY + GUILD_CREATE."""
        await asyncio.wait_for(self._identified.wait(), timeout)

    # --- sessions: one per shard; guild events go to the session that owns the guild

    def _primary(self) -> _Session | None:
        """The session that carries the first guild (else any): what single-session tests
        and helpers mean by "the" gateway session."""
        owner = self._owner(self.guild_id)
        return owner or next(iter(self.sessions.values()), None)

    def _owner(self, guild_id: str | None) -> _Session | None:
        """The session a guild's events go to; events without a guild go to shard 0."""
        if guild_id is None:
            return self.sessions.get(0) or self._primary_any()
        return next((s for s in self.sessions.values() if s.owns(guild_id)), None)

    def _primary_any(self) -> _Session | None:
        return next(iter(self.sessions.values()), None)

    @property
    def session_id(self) -> str | None:
        session = self._primary()
        return session.session_id if session else None

    @property
    def seq(self) -> int:
        session = self._primary()
        return session.seq if session else 0

    @property
    def intents(self) -> int:
        session = self._primary()
        return session.intents if session else 0

    def session_of_shard(self, shard_id: int) -> _Session | None:
        return self.sessions.get(shard_id)

    @staticmethod
    def _event_guild(event: str, data: JSON) -> str | None:
        if data.get("guild_id") is not None:
            return str(data["guild_id"])
        if event in ("GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"):
            return str(data["id"])
        return None

    async def dispatch(self, event: str, data: JSON, *, session: _Session | None = None) -> None:
        """Send an op 0 dispatch with the session's next sequence number (kept for RESUME
        replay); without ``session``, to the session that owns the event's guild (an event
        for a guild no connected shard carries goes nowhere, as on Discord)."""
        if not self.sessions:
            raise RuntimeError("no gateway session: the bot has not identified yet")
        target = session or self._owner(self._event_guild(event, data))
        if target is None:
            return
        async with self._dispatch_lock:
            target.seq += 1
            frame = {"op": 0, "t": event, "s": target.seq, "d": data}
            target.log.append(frame)
            if target.socket is not None:
                await target.socket.send(frame)

    async def _emit(self, event: str, data: JSON) -> None:
        """Dispatch an event Discord would send, if the owning session's intents want it.

        Messages lose content, embeds, attachments and components without the
        MESSAGE_CONTENT intent unless the bot wrote them or is mentioned.
        """
        session = self._owner(self._event_guild(event, data))
        needed = EVENT_INTENTS.get(event)
        if session is None or (needed is not None and not session.intents & needed):
            return
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
            privileged = self.message_content_intent and bool(
                session.intents & Intent.MESSAGE_CONTENT)
            data = self._redacted(data, privileged)
        await self.dispatch(event, data, session=session)

    async def _emit_all(self, events: Iterable[Event]) -> None:
        for event, data in events:
            await self._emit(event, data)

    async def send_reconnect(self, shard: int | None = None) -> None:
        """Send op 7; later dispatches wait in the log until the client RESUMEs."""
        session, sock = self._require_socket(shard)
        async with self._dispatch_lock:
            session.socket = None
        await sock.send({"op": 7, "d": None, "s": None, "t": None})

    async def send_invalid_session(self, resumable: bool = False,
                                   shard: int | None = None) -> None:
        session, sock = self._require_socket(shard)
        async with self._dispatch_lock:
            session.socket = None
            if not resumable:
                self.sessions.pop(session.shard_id, None)
        await sock.send({"op": 9, "d": resumable, "s": None, "t": None})

    async def close_gateway(self, code: int = 4000, reason: str = "Unknown error.",
                            shard: int | None = None) -> None:
        """Drop a connection with a close code (4000 lets the client resume)."""
        session, sock = self._require_socket(shard)
        async with self._dispatch_lock:
            session.socket = None
        await sock.close(code, reason)

    def _require_socket(self, shard: int | None = None) -> tuple[_Session, _Socket]:
        session = self._primary() if shard is None else self.sessions.get(shard)
        if session is None or session.socket is None:
            raise RuntimeError("no live gateway connection")
        return session, session.socket

    # ------------------------------------------------------------------ REST plumbing

    @web.middleware
    async def _api_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        call = RestCall(
            request.method,
            request.path[len(API_PREFIX) :],
            dict(request.query),
            dict(request.headers),
        )
        call.content_type = request.content_type
        resource = request.match_info.route.resource
        call.route = f"{request.method} {resource.canonical if resource else call.path}"
        self.requests.append(call)
        request[CALL_KEY] = call
        try:
            await self._read_body(request, call)
            self._check_auth(call)
            self._apply_faults(call)
            response = await handler(request)
        except CloudflareBan as exc:
            call.status = 429
            return exc.response()
        except ApiError as exc:
            response = exc.response()
        except web.HTTPException as exc:
            response = json_response(
                {"message": f"{exc.status}: {exc.reason}", "code": 0}, status=exc.status
            )
        call.status = response.status
        response.headers.setdefault("Via", "1.1 google")
        if response.status != 429:
            response.headers.update(self._ratelimit_headers(call))
        return response

    async def _read_body(self, request: web.Request, call: RestCall) -> None:
        call.body_size = request.content_length or 0
        if call.content_type == "multipart/form-data":
            await self._read_multipart(request, call)
            if not call.body_size:  # chunked: count what came
                call.body_size = sum(len(data) for _n, data, _ct in call.files) + len(
                    json.dumps(call.json or {}))
            return
        raw = await request.read()
        call.body_size = call.body_size or len(raw)
        if raw and call.content_type == "application/json":
            try:
                call.json = json.loads(raw)
            except ValueError:
                raise ApiError(400, 50109, "The request body contains invalid JSON.") from None

    async def _read_multipart(self, request: web.Request, call: RestCall) -> None:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            data = bytes(await part.read())
            if part.filename is None and part.name == "payload_json":
                try:
                    call.json = json.loads(data)
                except ValueError:
                    raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
            elif part.filename is not None:
                ctype = part.headers.get("Content-Type", "application/octet-stream")
                call.files.append((part.filename, data, ctype))
                call.file_fields.append(part.name or "")

    def _check_auth(self, call: RestCall) -> None:
        public = (
            call.path == "/gateway"
            or call.path.startswith("/interactions/")
            or re.match(r"^/webhooks/\d+/[^/]+", call.path) is not None
        )
        if not public and call.headers.get("Authorization") != f"Bot {self.token}":
            raise ApiError(401, 0, "401: Unauthorized")

    @staticmethod
    def _bucket(call: RestCall) -> str:
        return hashlib.md5(call.route.encode()).hexdigest()

    def _ratelimit_headers(self, call: RestCall) -> dict[str, str]:
        """A generous bucket (never exhausted) for the request's route."""
        return {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
            "X-RateLimit-Reset-After": "1.000",
            "X-RateLimit-Bucket": self._bucket(call),
        }

    # ------------------------------------------------------------------ faults (429 / 5xx)

    def queue_rate_limit(
        self,
        method: str,
        path_prefix: str,
        *,
        retry_after: float = 0.5,
        times: int = 1,
        global_: bool = False,
        cloudflare: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with 429.

        Until ``retry_after`` has passed, further matching requests (any request for a
        global limit) also get 429 and count in :attr:`rate_limit_violations`.
        ``cloudflare=True`` answers like a Cloudflare ban: HTML, no ``Via`` header.
        """
        fault = _Fault(
            method.upper(),
            self._relative(path_prefix),
            times,
            429,
            retry_after,
            global_,
            cloudflare,
        )
        self._faults.append(fault)

    def queue_error(
        self, method: str, path_prefix: str, *, status: int = 500, times: int = 1
    ) -> None:
        """Answer the next ``times`` matching requests with ``status``."""
        self._faults.append(_Fault(method.upper(), self._relative(path_prefix), times, status))

    @staticmethod
    def _relative(path: str) -> str:
        return path[len(API_PREFIX) :] if path.startswith(API_PREFIX) else path

    @staticmethod
    def _fault_matches(fault: _Fault, call: RestCall) -> bool:
        return fault.method in (call.method, "*") and call.path.startswith(fault.prefix)

    def _apply_faults(self, call: RestCall) -> None:
        now = time.monotonic()
        self._windows = [(f, until) for f, until in self._windows if until > now]
        for fault, until in self._windows:
            exempt = call.path.startswith(("/interactions/", "/webhooks/"))
            if (fault.global_ and not exempt) or self._fault_matches(fault, call):
                self.rate_limit_violations += 1
                raise self._rate_limited(fault, until - now, call)
        for fault in self._faults:
            if fault.times > 0 and self._fault_matches(fault, call):
                fault.times -= 1
                if fault.status != 429:
                    reason = HTTPStatus(fault.status).phrase
                    raise ApiError(fault.status, 0, f"{fault.status}: {reason}")
                self._windows.append((fault, now + fault.retry_after))
                raise self._rate_limited(fault, fault.retry_after, call)

    def _rate_limited(self, fault: _Fault, retry_after: float, call: RestCall) -> ApiError:
        retry_after = round(max(retry_after, 0.001), 3)
        if fault.cloudflare:
            return CloudflareBan(retry_after)
        headers = {"Via": "1.1 google", "Retry-After": str(math.ceil(retry_after))}
        if fault.global_:
            headers.update({"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"})
        else:
            headers.update(
                {
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                    "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                    "X-RateLimit-Bucket": self._bucket(call),
                    "X-RateLimit-Scope": "user",
                }
            )
        return RateLimitedError(retry_after, fault.global_, headers)

    def rest_calls(self, method: str, path_prefix: str) -> list[RestCall]:
        prefix = self._relative(path_prefix)
        return [
            c for c in self.requests if c.method == method.upper() and c.path.startswith(prefix)
        ]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109 - public API
        """Poll ``predicate`` until it is true; raise ``TimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ REST: lookups

    @staticmethod
    def _call(request: web.Request) -> RestCall:
        call = request[CALL_KEY]
        assert isinstance(call, RestCall)
        return call

    def _body(self, request: web.Request) -> JSON:
        body = self._call(request).json
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "_errors": [
                        {
                            "code": "DICT_TYPE_CONVERT",
                            "message": "Only dictionaries may be used in a DictType",
                        }
                    ]
                },
            )
        return body

    def _channel(self, channel_id: str) -> JSON:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise unknown("Unknown Channel")
        return channel

    def _message(self, channel_id: str, message_id: str) -> JSON:
        self._channel(channel_id)
        msg = self._message_index.get(message_id)
        if msg is None or msg["channel_id"] != channel_id:
            raise unknown("Unknown Message")
        return msg

    def _require(self, channel: JSON, needed: int) -> None:
        granted = self.permissions_of(self.bot_user_id)
        if not granted & Permission.VIEW_CHANNEL:
            raise ApiError(403, 50001, "Missing Access")
        if needed & ~granted:
            raise missing_permissions()

    @property
    def message_request_limit(self) -> int:
        """The largest request body that creates or edits a message with files."""
        return max(MESSAGE_REQUEST_LIMIT, self.guild_upload_limit)

    def _check_upload(self, call: RestCall) -> None:
        """Discord's upload limits: each file under the guild's per-file limit and the whole
        request under 25 MiB (both answered 413 / 40005), at most 10 files a message."""
        if len(call.files) > MAX_ATTACHMENTS:
            errors = FormErrors()
            errors.max_length(["attachments"], call.files, MAX_ATTACHMENTS)
            errors.raise_if_any()
        too_big = any(len(data) > self.guild_upload_limit for _name, data, _ct in call.files)
        if too_big or (call.files and call.body_size > self.message_request_limit):
            raise ApiError(413, 40005, "Request entity too large")

    # ------------------------------------------------------------------ REST: simple routes

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        limit = {
            "total": 1000,
            "remaining": 1000 - self.identifies,
            "reset_after": 86_400_000,
            "max_concurrency": 1,
        }
        return json_response({"url": self.gateway_url, "shards": self.recommended_shards,
                              "session_start_limit": limit})

    async def _get_me(self, request: web.Request) -> web.Response:
        me = copy.deepcopy(self.users[self.bot_user_id])
        me.update(
            verified=True, mfa_enabled=False, email=None, locale="en-US", flags=0, premium_type=0
        )
        return json_response(me)

    async def _get_user(self, request: web.Request) -> web.Response:
        user = self.users.get(request.match_info["user_id"])
        if user is None:
            raise unknown("Unknown User")
        return json_response(user)

    async def _get_application(self, request: web.Request) -> web.Response:
        return json_response(self.application)

    async def _get_guild(self, request: web.Request) -> web.Response:
        guild_id = request.match_info["guild_id"]
        if guild_id not in self.guilds:
            raise unknown("Unknown Guild")
        guild = copy.deepcopy(self.guilds[guild_id])
        guild["roles"] = self._guild_roles(guild_id)
        return json_response(guild)

    async def _get_member(self, request: web.Request) -> web.Response:
        if request.match_info["guild_id"] not in self.guilds:
            raise unknown("Unknown Guild")
        member = self.members.get(request.match_info["user_id"])
        if member is None:
            raise unknown("Unknown Member")
        return json_response(member)

    async def _get_channel(self, request: web.Request) -> web.Response:
        return json_response(self._channel(request.match_info["channel_id"]))

    async def _typing(self, request: web.Request) -> web.Response:
        channel = self._channel(request.match_info["channel_id"])
        self._require(channel, Permission.VIEW_CHANNEL)
        return web.Response(status=204)

    # ------------------------------------------------------------------ REST: commands

    def _command_scope(self, request: web.Request) -> list[JSON]:
        if request.match_info["app_id"] != self.app_id:
            raise ApiError(403, 50001, "Missing Access")
        guild_id = request.match_info.get("guild_id")
        if guild_id is None:
            return self.global_commands
        if guild_id not in self.guilds:
            raise ApiError(403, 50001, "Missing Access")
        return self.guild_commands.setdefault(guild_id, [])

    async def _list_commands(self, request: web.Request) -> web.Response:
        return json_response(self._command_scope(request))

    async def _put_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        body = self._call(request).json
        errors = FormErrors()
        if not isinstance(body, list):
            errors.add([], "BASE_TYPE_ARRAY", "Must be an array.")
            errors.raise_if_any()
        errors.max_length([], body, 110)
        seen: set[tuple[int, str]] = set()
        for i, cmd in enumerate(body):
            validate_command(cmd, [i], errors)
            key = (cmd.get("type", 1), cmd.get("name", "")) if isinstance(cmd, dict) else (0, "")
            if key in seen:
                errors.add(
                    [i, "name"],
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    f"Application command names must be unique ({key[1]})",
                )
            seen.add(key)
        errors.raise_if_any()
        guild_id = request.match_info.get("guild_id")
        scope[:] = [self._registered_command(cmd, scope, guild_id) for cmd in body]
        return json_response(scope)

    def _registered_command(self, cmd: JSON, previous: list[JSON], guild_id: str | None) -> JSON:
        ctype = cmd.get("type", 1)
        old = next((c for c in previous if c["name"] == cmd["name"] and c["type"] == ctype), None)
        out = fixture("application_command")
        out.update(
            {k: v for k, v in cmd.items() if v is not None or k == "default_member_permissions"}
        )
        perms = cmd.get("default_member_permissions")
        out.update(
            id=old["id"] if old else self.ids.next(),
            application_id=self.app_id,
            version=self.ids.next(),
            type=ctype,
            description=cmd.get("description") or "",
            default_member_permissions=None if perms is None else str(perms),
        )
        if ctype != 1:
            out.pop("options", None)
        if guild_id is not None:
            out["guild_id"] = guild_id
            for key in ("dm_permission", "contexts", "integration_types"):
                out.pop(key, None)
        return out

    def find_command(self, name: str, command_type: int = 1) -> tuple[JSON, str | None]:
        """The synced command for ``name`` (guild commands win), with its guild id."""
        for guild_id, commands in self.guild_commands.items():
            for cmd in commands:
                if cmd["name"] == name and cmd["type"] == command_type:
                    return cmd, guild_id
        for cmd in self.global_commands:
            if cmd["name"] == name and cmd["type"] == command_type:
                return cmd, None
        synced = [c["name"] for c in self.global_commands] + [
            c["name"] for cs in self.guild_commands.values() for c in cs
        ]
        raise LookupError(
            f"command {name!r} (type {command_type}) was never synced; synced: {synced}"
        )

    # ------------------------------------------------------------------ REST: messages

    async def _list_messages(self, request: web.Request) -> web.Response:
        channel = self._channel(request.match_info["channel_id"])
        self._require(channel, Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY)
        query = request.query
        limit = int(query.get("limit", "50"))
        if not 1 <= limit <= 100:
            errors = FormErrors()
            errors.add(["limit"], "NUMBER_TYPE_MAX", "int value should be <= 100 and >= 1.")
            errors.raise_if_any()
        msgs = sorted(self.messages_in(channel["id"]), key=lambda m: int(m["id"]), reverse=True)
        if "before" in query:
            msgs = [m for m in msgs if int(m["id"]) < int(query["before"])]
        if "after" in query:
            msgs = [m for m in msgs if int(m["id"]) > int(query["after"])][::-1][:limit][::-1]
        return json_response([self._rest_message(m) for m in msgs[:limit]])

    async def _get_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request.match_info["channel_id"])
        self._require(channel, Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY)
        return json_response(
            self._rest_message(self._message(channel["id"], request.match_info["message_id"]))
        )

    async def _create_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request.match_info["channel_id"])
        call = self._call(request)
        body = self._body(request)
        self._require(channel, self._send_permissions(channel, body, call))
        self._unarchive_for_send(channel)
        msg = self._compose(channel["id"], body, call, allowed_flags=SENDABLE_FLAGS)
        self._store_message(msg)
        await self._emit("MESSAGE_CREATE", self._gateway_message(msg))
        return json_response(msg)

    def _send_permissions(self, channel: JSON, body: JSON, call: RestCall) -> int:
        in_thread = channel["type"] in THREAD_TYPES
        needed = Permission.VIEW_CHANNEL | (
            Permission.SEND_MESSAGES_IN_THREADS if in_thread else Permission.SEND_MESSAGES
        )
        if call.files:
            needed |= Permission.ATTACH_FILES
        if body.get("message_reference"):
            needed |= Permission.READ_MESSAGE_HISTORY
        return int(needed)

    def _unarchive_for_send(self, channel: JSON) -> None:
        meta = channel.get("thread_metadata")
        if meta and meta["archived"]:
            if meta["locked"]:
                raise ApiError(400, 50083, "Thread is archived")
            meta.update(archived=False, archive_timestamp=now_iso())

    def _compose(
        self,
        channel_id: str,
        body: JSON,
        call: RestCall,
        *,
        allowed_flags: int,
        extra: JSON | None = None,
        ephemeral: bool = False,
    ) -> JSON:
        """Validate a create-message body and build the bot's message (not stored)."""
        errors = FormErrors()
        validate_message(body, errors)
        replied = self._resolve_reference(channel_id, body.get("message_reference"), errors)
        errors.raise_if_any()
        if not has_message_payload(body, bool(call.files)):
            raise ApiError(400, 50006, "Cannot send an empty message")
        self._check_upload(call)
        msg = self._message_template(channel_id, self.bot_user_id)
        msg.update(
            content=body.get("content") or "",
            tts=bool(body.get("tts")),
            embeds=self._normalize_embeds(body.get("embeds") or []),
            components=number_components(body.get("components") or []),
            flags=(body.get("flags") or 0) & allowed_flags,
        )
        msg["attachments"] = self._uploads(
            channel_id, body.get("attachments"), call, [], ephemeral=ephemeral
        )
        self._embed_attachment_urls(msg)
        msg["mentions"] = self._mentions(msg["content"], body.get("allowed_mentions"), replied)
        if body.get("nonce") is not None:
            msg["nonce"] = body["nonce"]
        if replied is not None:
            msg.update(
                type=MSG_REPLY,
                message_reference=self._reference(replied),
                referenced_message=copy.deepcopy(replied),
            )
        msg.update(extra or {})
        return msg

    def _resolve_reference(
        self, channel_id: str, ref: JSON | None, errors: FormErrors
    ) -> JSON | None:
        if not ref:
            return None
        target = self._message_index.get(str(ref.get("message_id")))
        ref_channel = str(ref.get("channel_id") or channel_id)
        if target is None or target["channel_id"] != ref_channel:
            if ref.get("fail_if_not_exists", True):
                errors.add(
                    ["message_reference"], "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
            return None
        return target

    @staticmethod
    def _normalize_embeds(embeds: list[JSON]) -> list[JSON]:
        out = copy.deepcopy(embeds)
        for embed in out:
            embed.setdefault("type", "rich")
        return out

    def _uploads(
        self,
        channel_id: str,
        entries: list[JSON] | None,
        call: RestCall,
        existing: list[JSON],
        *,
        ephemeral: bool = False,
    ) -> list[JSON]:
        """Attachments after an upload: ``attachments`` entries pick kept ones and name files."""
        uploads: dict[int, tuple[str, bytes]] = {}
        for position, (fieldname, (filename, data, _ct)) in enumerate(
            zip(call.file_fields, call.files, strict=True)
        ):
            match = re.fullmatch(r"files\[(\d+)\]", fieldname)
            uploads[int(match.group(1)) if match else position] = (filename, data)
        kept = {a["id"]: a for a in existing}
        if entries is None:
            entries = [{"id": a["id"]} for a in existing] + [{"id": index} for index in uploads]
        result: list[JSON] = []
        used: set[int] = set()
        errors = FormErrors()
        for i, entry in enumerate(entries):
            key = str(entry.get("id"))
            if key in kept:
                result.append(kept[key])
            elif key.isdigit() and int(key) in uploads:
                filename, data = uploads[int(key)]
                name = entry.get("filename") or filename
                result.append(
                    self._store_attachment(
                        channel_id,
                        name,
                        data,
                        None,
                        description=entry.get("description"),
                        ephemeral=ephemeral,
                    )
                )
                used.add(int(key))
            else:
                errors.add(["attachments", i, "id"], "ATTACHMENT_NOT_FOUND", "Unknown attachment")
        errors.raise_if_any()
        for index, (filename, data) in uploads.items():
            if index not in used:
                result.append(
                    self._store_attachment(channel_id, filename, data, None, ephemeral=ephemeral)
                )
        errors.max_length(["attachments"], result, MAX_ATTACHMENTS)
        errors.raise_if_any()
        return result

    def _embed_attachment_urls(self, msg: JSON) -> None:
        """``attachment://name`` in an embed takes the upload out of ``attachments``."""
        by_name = {a["filename"]: a for a in msg["attachments"]}
        embedded: set[str] = set()
        for embed in msg["embeds"]:
            for key in ("image", "thumbnail"):
                media = embed.get(key)
                url = (media or {}).get("url", "")
                if url.startswith("attachment://") and url[len("attachment://") :] in by_name:
                    att = by_name[url[len("attachment://") :]]
                    media.update(url=att["url"], proxy_url=att["proxy_url"])
                    media.update(
                        {k: att[k] for k in ("width", "height", "content_type") if k in att}
                    )
                    embedded.add(att["id"])
        msg["attachments"] = [a for a in msg["attachments"] if a["id"] not in embedded]

    def _apply_edit(self, msg: JSON, body: JSON, call: RestCall, *, allowed_flags: int) -> None:
        """Edit ``msg`` in place (PATCH semantics: absent fields stay)."""
        errors = FormErrors()
        validate_message(body, errors)
        errors.raise_if_any()
        self._check_upload(call)
        edited = copy.deepcopy(msg)
        if "content" in body:
            edited["content"] = body["content"] or ""
        if "embeds" in body:
            edited["embeds"] = self._normalize_embeds(body["embeds"] or [])
        if "components" in body:
            edited["components"] = number_components(body["components"] or [])
        if body.get("flags") is not None:
            keep = edited["flags"] & ~allowed_flags & ~LOADING
            edited["flags"] = keep | (body["flags"] & allowed_flags & ~EPHEMERAL)
        if "attachments" in body or call.files:
            ephemeral = bool(edited["flags"] & EPHEMERAL)
            edited["attachments"] = self._uploads(
                msg["channel_id"],
                body.get("attachments"),
                call,
                msg["attachments"],
                ephemeral=ephemeral,
            )
            self._embed_attachment_urls(edited)
        if not has_message_payload(edited, bool(edited["attachments"])):
            raise ApiError(400, 50006, "Cannot send an empty message")
        edited["mentions"] = self._edited_mentions(
            msg, edited["content"], body.get("allowed_mentions")
        )
        if not msg["flags"] & LOADING:
            edited["edited_timestamp"] = now_iso()
        edited["flags"] &= ~LOADING
        msg.clear()
        msg.update(edited)

    def _edited_mentions(self, before: JSON, content: str, allowed: JSON | None) -> list[JSON]:
        """Mentions after an edit; a reply keeps pinging its author if it did."""
        mentions = self._mentions(content, allowed)
        replied = before.get("referenced_message")
        old_ids = {u["id"] for u in before.get("mentions", [])}
        if (
            replied
            and replied["author"]["id"] in old_ids
            and replied["author"]["id"] not in {u["id"] for u in mentions}
        ):
            mentions.append(copy.deepcopy(self.users[replied["author"]["id"]]))
        return mentions

    async def _edit_message_route(self, request: web.Request) -> web.Response:
        channel = self._channel(request.match_info["channel_id"])
        msg = self._message(channel["id"], request.match_info["message_id"])
        if msg["author"]["id"] != self.bot_user_id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        self._apply_edit(
            msg, self._body(request), self._call(request), allowed_flags=SENDABLE_FLAGS
        )
        await self._emit("MESSAGE_UPDATE", self._gateway_message(msg))
        return json_response(msg)

    async def _delete_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request.match_info["channel_id"])
        msg = self._message(channel["id"], request.match_info["message_id"])
        if msg["author"]["id"] != self.bot_user_id:
            self._require(channel, Permission.MANAGE_MESSAGES)
        self._unstore_message(msg)
        await self._emit(
            "MESSAGE_DELETE",
            {"id": msg["id"], "channel_id": msg["channel_id"],
             "guild_id": self._guild_of(msg["channel_id"])},
        )
        return web.Response(status=204)

    # ------------------------------------------------------------------ REST: reactions

    def _check_emoji(self, emoji: str) -> JSON:
        custom = re.fullmatch(r"(\w+):(\d+)", emoji)
        if custom:
            known = {e["id"] for e in self.guild.get("emojis", [])}
            if custom.group(2) not in known:
                raise ApiError(400, 10014, "Unknown Emoji")
            return {"id": custom.group(2), "name": custom.group(1)}
        if not emoji or emoji.isascii():
            raise ApiError(400, 10014, "Unknown Emoji")
        return {"id": None, "name": emoji}

    async def _add_reaction(self, request: web.Request) -> web.Response:
        channel = self._channel(request.match_info["channel_id"])
        msg = self._message(channel["id"], request.match_info["message_id"])
        emoji = self._check_emoji(request.match_info["emoji"])
        self._require(channel, Permission.READ_MESSAGE_HISTORY | Permission.ADD_REACTIONS)
        reactions = msg.setdefault("reactions", [])
        entry = next((r for r in reactions if r["emoji"] == emoji), None)
        if entry is None:
            entry = {
                "count": 0,
                "count_details": {"burst": 0, "normal": 0},
                "me": False,
                "me_burst": False,
                "burst_colors": [],
                "emoji": emoji,
            }
            reactions.append(entry)
        if not entry["me"]:
            entry.update(me=True, count=entry["count"] + 1)
            entry["count_details"]["normal"] += 1
            await self._emit("MESSAGE_REACTION_ADD", self._reaction_event(msg, emoji))
        return web.Response(status=204)

    async def _remove_reaction(self, request: web.Request) -> web.Response:
        channel = self._channel(request.match_info["channel_id"])
        msg = self._message(channel["id"], request.match_info["message_id"])
        emoji = self._check_emoji(request.match_info["emoji"])
        for entry in msg.get("reactions", []):
            if entry["emoji"] == emoji and entry["me"]:
                entry.update(me=False, count=entry["count"] - 1)
                entry["count_details"]["normal"] -= 1
                event = self._reaction_event(msg, emoji)
                event.pop("member")
                await self._emit("MESSAGE_REACTION_REMOVE", event)
        msg["reactions"] = [r for r in msg.get("reactions", []) if r["count"] > 0]
        return web.Response(status=204)

    def _reaction_event(self, msg: JSON, emoji: JSON) -> JSON:
        return {
            "user_id": self.bot_user_id,
            "channel_id": msg["channel_id"],
            "message_id": msg["id"],
            "guild_id": self._guild_of(msg["channel_id"]),
            "member": copy.deepcopy(self.members[self.bot_user_id]),
            "emoji": emoji,
            "message_author_id": msg["author"]["id"],
            "burst": False,
            "type": 0,
        }

    # ------------------------------------------------------------------ REST: threads

    def _thread(
        self, parent: JSON, thread_id: str, name: str, thread_type: int, body: JSON
    ) -> JSON:
        thread = fixture("thread")
        stamp = now_iso()
        thread.update(
            id=thread_id,
            type=thread_type,
            guild_id=self._guild_of(parent["id"]),
            parent_id=parent["id"],
            owner_id=self.bot_user_id,
            name=name,
            rate_limit_per_user=body.get("rate_limit_per_user") or 0,
        )
        duration = body.get("auto_archive_duration") or parent.get(
            "default_auto_archive_duration", 1440
        )
        thread["thread_metadata"].update(
            auto_archive_duration=duration, archive_timestamp=stamp, create_timestamp=stamp
        )
        if thread_type == 12:
            thread["thread_metadata"]["invitable"] = body.get("invitable", True)
        return thread

    def _validate_thread_body(self, parent: JSON, body: JSON) -> None:
        errors = FormErrors()
        errors.length(["name"], body.get("name"), 1, 100)
        duration = body.get("auto_archive_duration")
        if duration is not None and duration not in ARCHIVE_DURATIONS:
            errors.add(
                ["auto_archive_duration"],
                "BASE_TYPE_CHOICES",
                "Value must be one of {60, 1440, 4320, 10080}.",
            )
        errors.raise_if_any()
        if parent["type"] not in (0, 5):
            raise ApiError(400, 50024, "Cannot execute action on this channel type")

    async def _thread_from_message(self, request: web.Request) -> web.Response:
        parent = self._channel(request.match_info["channel_id"])
        msg = self._message(parent["id"], request.match_info["message_id"])
        body = self._body(request)
        self._validate_thread_body(parent, body)
        self._require(parent, Permission.CREATE_PUBLIC_THREADS | Permission.READ_MESSAGE_HISTORY)
        if msg["id"] in self.channels:
            raise ApiError(400, 160004, "A thread has already been created for this message")
        thread = self._thread(parent, msg["id"], body["name"], 11, body)
        self._add_channel(thread)
        msg["flags"] |= HAS_THREAD
        msg["thread"] = copy.deepcopy(thread)
        await self._emit("THREAD_CREATE", {**copy.deepcopy(thread), "newly_created": True})
        await self._emit("MESSAGE_UPDATE", self._gateway_message(msg))
        return json_response(thread)

    async def _thread_without_message(self, request: web.Request) -> web.Response:
        parent = self._channel(request.match_info["channel_id"])
        body = self._body(request)
        self._validate_thread_body(parent, body)
        thread_type = body.get("type", 12)
        if thread_type not in (11, 12):
            errors = FormErrors()
            errors.add(["type"], "BASE_TYPE_CHOICES", "Value must be one of {11, 12}.")
            errors.raise_if_any()
        perm = (
            Permission.CREATE_PUBLIC_THREADS
            if thread_type == 11
            else Permission.CREATE_PRIVATE_THREADS
        )
        self._require(parent, perm)
        thread = self._thread(parent, self.ids.next(), body["name"], thread_type, body)
        self._add_channel(thread)
        await self._emit("THREAD_CREATE", {**copy.deepcopy(thread), "newly_created": True})
        if thread_type == 11:
            notice = self._message_template(parent["id"], self.bot_user_id)
            notice.update(type=MSG_THREAD_CREATED, content=thread["name"])
            notice["message_reference"] = {
                "type": 0,
                "channel_id": thread["id"],
                "guild_id": self._guild_of(parent["id"]),
            }
            self._store_message(notice)
            await self._emit("MESSAGE_CREATE", self._gateway_message(notice))
        return json_response(thread)

    def _add_channel(self, channel: JSON) -> None:
        self.channels[channel["id"]] = channel
        self.messages.setdefault(channel["id"], [])

    # ------------------------------------------------------------------ interactions: creating

    def _interaction(
        self,
        itype: int,
        fixture_name: str,
        data: JSON,
        *,
        user_id: str,
        channel_id: str,
        size_limit: int | None = None,
        message: JSON | None = None,
    ) -> InteractionRecord:
        if not self.sessions:
            raise RuntimeError("the bot is not connected to the gateway")
        if user_id not in self.members:
            raise KeyError(f"user {user_id} is not a guild member; call add_member() first")
        self._channel(channel_id)
        guild = self.guilds[self._guild_of(channel_id)]
        interaction_id = self.ids.next()
        raw = f"interaction:{interaction_id}:{secrets.token_urlsafe(96)}"
        token = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        payload = fixture(fixture_name)
        payload.update(
            id=interaction_id,
            application_id=self.app_id,
            type=itype,
            token=token,
            data=data,
            guild_id=guild["id"],
            guild={
                "id": guild["id"],
                "locale": guild["preferred_locale"],
                "features": guild["features"],
            },
            channel_id=channel_id,
            channel=self._partial_channel(channel_id, user_id),
            member={
                **copy.deepcopy(self.members[user_id]),
                "permissions": str(self.permissions_of(user_id)),
            },
            app_permissions=str(self.permissions_of(self.bot_user_id)),
            authorizing_integration_owners={"0": guild["id"]},
            attachment_size_limit=self.guild_upload_limit if size_limit is None else size_limit,
        )
        payload.pop("message", None)
        if message is not None:
            payload["message"] = message
        record = InteractionRecord(interaction_id, token, itype, payload, channel_id, user_id)
        record.message_id = message["id"] if message else None
        self.interactions[interaction_id] = record
        self._by_token[token] = record
        return record

    def _partial_channel(self, channel_id: str, user_id: str) -> JSON:
        channel = self.channels[channel_id]
        keys = (
            "id",
            "name",
            "type",
            "last_message_id",
            "last_pin_timestamp",
            "nsfw",
            "parent_id",
            "guild_id",
            "flags",
            "rate_limit_per_user",
            "topic",
            "position",
            "thread_metadata",
        )
        out = {k: copy.deepcopy(channel[k]) for k in keys if k in channel}
        out["permissions"] = str(self.permissions_of(user_id))
        return out

    async def _deliver(self, record: InteractionRecord) -> InteractionRecord:
        record.created = time.monotonic()
        await self.dispatch("INTERACTION_CREATE", record.payload)
        return record

    async def slash_command(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user_id: str,
        channel_id: str,
        attachments: Mapping[str, JSON] | None = None,
        attachment_size_limit: int = DEFAULT_UPLOAD_LIMIT,
    ) -> InteractionRecord:
        """A user runs ``/name`` (``"group sub"`` for subcommands) with these options.

        Option types come from the synced command; attachments (from
        :meth:`add_attachment`) go in ``resolved.attachments`` keyed by id.
        """
        top, *path = name.split()
        command, guild_id = self.find_command(top, 1)
        resolved: JSON = {}
        given = {**(options or {}), **(attachments or {})}
        for att in (attachments or {}).values():
            if att["size"] > attachment_size_limit:
                raise ValueError(f"{att['filename']} is over the attachment size limit")
        built = self._command_options(command.get("options") or [], path, given, resolved)
        data: JSON = {"id": command["id"], "name": command["name"], "type": 1}
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        if guild_id:
            data["guild_id"] = guild_id
        record = self._interaction(
            2,
            "interaction_slash_command",
            data,
            user_id=user_id,
            channel_id=channel_id,
            size_limit=attachment_size_limit,
        )
        record.name, record.command_type = name, 1
        return await self._deliver(record)

    def _command_options(
        self, specs: list[JSON], path: list[str], given: Mapping[str, Any], resolved: JSON
    ) -> list[JSON]:
        if path:
            spec = next((s for s in specs if s["name"] == path[0] and s["type"] in (1, 2)), None)
            if spec is None:
                raise LookupError(f"no subcommand {path[0]!r}")
            inner = self._command_options(spec.get("options") or [], path[1:], given, resolved)
            return [{"name": spec["name"], "type": spec["type"], "options": inner}]
        unknown_names = set(given) - {s["name"] for s in specs}
        if unknown_names:
            raise ValueError(f"unknown options {sorted(unknown_names)}")
        out = []
        for spec in specs:
            if spec["name"] not in given:
                if spec.get("required"):
                    raise ValueError(f"missing required option {spec['name']!r}")
                continue
            value = self._option_value(spec, given[spec["name"]], resolved)
            out.append({"name": spec["name"], "type": spec["type"], "value": value})
        return out

    def _option_value(self, spec: JSON, value: Any, resolved: JSON) -> Any:
        otype = spec["type"]
        if otype == 11:
            resolved.setdefault("attachments", {})[value["id"]] = copy.deepcopy(value)
            return value["id"]
        if otype in (6, 9) and str(value) in self.users:
            uid = str(value)
            resolved.setdefault("users", {})[uid] = copy.deepcopy(self.users[uid])
            if uid in self.members:
                member = self._partial_member(uid)
                member.pop("deaf", None)
                member.pop("mute", None)
                member["permissions"] = str(self.permissions_of(uid))
                resolved.setdefault("members", {})[uid] = member
            return uid
        if otype in (8, 9) and str(value) in self.roles:
            resolved.setdefault("roles", {})[str(value)] = copy.deepcopy(self.roles[str(value)])
            return str(value)
        if otype == 7:
            resolved.setdefault("channels", {})[str(value)] = self._partial_channel(
                str(value), self.bot_user_id
            )
            return str(value)
        self._check_scalar(spec, value)
        return value

    @staticmethod
    def _check_scalar(spec: JSON, value: Any) -> None:
        kinds: dict[int, tuple[type, ...]] = {3: (str,), 4: (int,), 5: (bool,), 10: (int, float)}
        otype = spec["type"]
        if (
            otype not in kinds
            or not isinstance(value, kinds[otype])
            or (otype in (4, 10) and isinstance(value, bool))
        ):
            raise ValueError(f"option {spec['name']!r} (type {otype}) cannot take {value!r}")
        choices = spec.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise ValueError(f"{value!r} is not a choice of {spec['name']!r}")
        if otype == 3 and not spec.get("min_length", 0) <= len(value) <= spec.get(
            "max_length", 6000
        ):
            raise ValueError(f"option {spec['name']!r} length out of range")
        if otype in (4, 10) and not spec.get("min_value", -math.inf) <= value <= spec.get(
            "max_value", math.inf
        ):
            raise ValueError(f"option {spec['name']!r} out of range")

    async def message_command(
        self, name: str, target_message: JSON, *, user_id: str, channel_id: str
    ) -> InteractionRecord:
        """A user picks the message context menu command ``name`` on ``target_message``."""
        command, guild_id = self.find_command(name, 3)
        target = self._message_index.get(target_message["id"], target_message)
        resolved_msg = {
            k: v for k, v in copy.deepcopy(target).items() if k not in ("guild_id", "member")
        }
        data: JSON = {
            "id": command["id"],
            "name": command["name"],
            "type": 3,
            "target_id": target["id"],
            "resolved": {"messages": {target["id"]: resolved_msg}},
        }
        if guild_id:
            data["guild_id"] = guild_id
        record = self._interaction(
            2, "interaction_message_command", data, user_id=user_id, channel_id=channel_id
        )
        record.name, record.command_type = name, 3
        return await self._deliver(record)

    async def click_button(
        self,
        message: JSON,
        custom_id: str,
        *,
        user_id: str,
        channel_id: str,
        values: Sequence[str] | None = None,
    ) -> InteractionRecord:
        """A user clicks the component ``custom_id`` (or picks ``values`` in a select)."""
        current = self.find_message(message["id"]) or message
        component = next(
            (
                c
                for c in iter_components(current.get("components", []))
                if c.get("custom_id") == custom_id
            ),
            None,
        )
        if component is None:
            raise LookupError(f"message {message['id']} has no component {custom_id!r}")
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        data: JSON = {"custom_id": custom_id, "component_type": component["type"]}
        if "id" in component:
            data["id"] = component["id"]
        if component["type"] in SELECT_TYPES:
            data["values"] = list(values or [])
        rest_form = {
            k: v for k, v in copy.deepcopy(current).items() if k not in ("guild_id", "member")
        }
        record = self._interaction(
            3, "interaction_button", data, user_id=user_id, channel_id=channel_id, message=rest_form
        )
        return await self._deliver(record)

    async def submit_modal(
        self, custom_id: str, values: Mapping[str, str], *, user_id: str, channel_id: str
    ) -> InteractionRecord:
        """The user submits the modal ``custom_id`` the bot opened (callback type 9)."""
        opener = next(
            (
                r
                for r in reversed(list(self.interactions.values()))
                if r.modal and r.modal.get("custom_id") == custom_id
            ),
            None,
        )
        if opener is None or opener.modal is None:
            raise LookupError(f"the bot never opened a modal {custom_id!r}")
        components = self._modal_components(opener.modal["components"], values)
        data: JSON = {"custom_id": custom_id, "components": components}
        message = self.find_message(opener.message_id) if opener.message_id else None
        rest_form = (
            None
            if message is None
            else {
                k: v for k, v in copy.deepcopy(message).items() if k not in ("guild_id", "member")
            }
        )
        record = self._interaction(
            5,
            "interaction_modal_submit",
            data,
            user_id=user_id,
            channel_id=channel_id,
            message=rest_form,
        )
        return await self._deliver(record)

    @staticmethod
    def _modal_components(layout: list[JSON], values: Mapping[str, str]) -> list[JSON]:
        inputs = {c["custom_id"]: c for c in iter_components(layout) if c.get("type") == 4}
        extra = set(values) - set(inputs)
        if extra:
            raise ValueError(f"the modal has no text inputs {sorted(extra)}")
        for cid, spec in inputs.items():
            value = values.get(cid, "")
            if spec.get("required", True) and not value:
                raise ValueError(f"text input {cid!r} is required")
            if value and not spec.get("min_length", 0) <= len(value) <= spec.get(
                "max_length", 4000
            ):
                raise ValueError(f"text input {cid!r} length out of range")

        def submitted(comp: JSON) -> JSON:
            return {
                "type": 4,
                "id": comp.get("id", 0),
                "custom_id": comp["custom_id"],
                "value": values.get(comp["custom_id"], ""),
            }

        out: list[JSON] = []
        for comp in layout:
            if comp["type"] == 1:
                out.append(
                    {
                        "type": 1,
                        "id": comp.get("id", 0),
                        "components": [submitted(c) for c in comp["components"]],
                    }
                )
            elif comp["type"] == 18 and comp["component"].get("type") == 4:
                out.append(
                    {"type": 18, "id": comp.get("id", 0), "component": submitted(comp["component"])}
                )
            elif comp["type"] == 10:
                out.append({"type": 10, "id": comp.get("id", 0)})
        return out

    # ------------------------------------------------------------------ interactions: callback

    def _record_for_callback(self, interaction_id: str, token: str) -> InteractionRecord:
        record = self.interactions.get(interaction_id)
        if record is None or record.token != token:
            raise unknown("Unknown interaction")
        if record.acknowledged:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - record.created > self.interaction_ack_seconds:
            raise unknown("Unknown interaction")
        return record

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        record = self._record_for_callback(
            request.match_info["interaction_id"], request.match_info["token"]
        )
        call = self._call(request)
        body = self._body(request)
        rtype = body.get("type")
        allowed = ALLOWED_CALLBACKS[record.type]
        if rtype in (6, 7) and record.message_id is None:
            allowed = tuple(t for t in allowed if t not in (6, 7))
        if rtype not in allowed:
            errors = FormErrors()
            errors.add(
                ["type"],
                "BASE_TYPE_CHOICES",
                f"Value must be one of {{{', '.join(map(str, allowed))}}}.",
            )
            errors.raise_if_any()
        handlers: dict[int, Callable[[InteractionRecord, JSON, RestCall], list[Event]]] = {
            4: self._cb_message,
            5: self._cb_defer,
            6: self._cb_defer_update,
            7: self._cb_update,
            8: self._cb_autocomplete,
            9: self._cb_modal,
            12: self._cb_launch,
        }
        events = handlers[rtype](record, body.get("data") or {}, call)
        record.callbacks.append(body)
        await self._emit_all(events)
        if _truthy_query(call.query.get("with_response")):
            return json_response(self._callback_response(record, rtype))
        return web.Response(status=204)

    def _callback_response(self, record: InteractionRecord, rtype: int) -> JSON:
        interaction: JSON = {"id": record.id, "type": record.type, "activity_instance_id": None}
        msg = record.original
        if rtype in (4, 5, 6, 7) and msg is not None:
            interaction.update(
                response_message_id=msg["id"],
                response_message_loading=rtype == 5,
                response_message_ephemeral=bool(msg["flags"] & EPHEMERAL),
            )
        resource: JSON = {"type": rtype}
        if rtype in (4, 7) and msg is not None:
            resource["message"] = msg
        return {"interaction": interaction, "resource": resource}

    def _interaction_fields(self, record: InteractionRecord, *, followup: bool = False) -> JSON:
        user = copy.deepcopy(self.users[record.user_id])
        meta: JSON = {
            "id": record.id,
            "type": record.type,
            "user": user,
            "authorizing_integration_owners": {"0": self._guild_of(record.channel_id)},
        }
        fields: JSON = {
            "webhook_id": self.app_id,
            "application_id": self.app_id,
            "interaction_metadata": meta,
        }
        if record.type == 2:
            meta.update(name=record.name, command_type=record.command_type)
            if followup and record.original is not None:
                meta["original_response_message_id"] = record.original["id"]
            fields["type"] = MSG_CHAT_INPUT if record.command_type == 1 else MSG_CONTEXT_MENU
            fields["interaction"] = {"id": record.id, "type": 2, "name": record.name, "user": user}
        elif record.message_id is not None:
            meta["interacted_message_id"] = record.message_id
            fields["type"] = MSG_REPLY
            target = self.find_message(record.message_id)
            if target is not None:
                fields["message_reference"] = self._reference(target)
        return fields

    def _publish_interaction_message(self, msg: JSON) -> list[Event]:
        if msg["flags"] & EPHEMERAL:
            self._ephemeral[msg["id"]] = msg
            return []
        self._store_message(msg)
        return [("MESSAGE_CREATE", self._gateway_message(msg))]

    def _cb_message(self, record: InteractionRecord, data: JSON, call: RestCall) -> list[Event]:
        ephemeral = bool((data.get("flags") or 0) & EPHEMERAL)
        msg = self._compose(
            record.channel_id,
            data,
            call,
            allowed_flags=INTERACTION_FLAGS,
            extra=self._interaction_fields(record),
            ephemeral=ephemeral,
        )
        record.original = msg
        return self._publish_interaction_message(msg)

    def _cb_defer(self, record: InteractionRecord, data: JSON, call: RestCall) -> list[Event]:
        msg = self._message_template(record.channel_id, self.bot_user_id)
        msg.update(self._interaction_fields(record))
        msg["flags"] = LOADING | ((data.get("flags") or 0) & EPHEMERAL)
        record.original = msg
        return self._publish_interaction_message(msg)

    def _component_message(self, record: InteractionRecord) -> JSON:
        msg = self.find_message(record.message_id or "")
        if msg is None:
            raise unknown("Unknown Message")
        return msg

    def _cb_defer_update(
        self, record: InteractionRecord, data: JSON, call: RestCall
    ) -> list[Event]:
        record.original = self._component_message(record)
        return []

    def _cb_update(self, record: InteractionRecord, data: JSON, call: RestCall) -> list[Event]:
        msg = self._component_message(record)
        self._apply_edit(msg, data, call, allowed_flags=SENDABLE_FLAGS)
        record.original = msg
        return [] if msg["flags"] & EPHEMERAL else [("MESSAGE_UPDATE", self._gateway_message(msg))]

    def _cb_autocomplete(
        self, record: InteractionRecord, data: JSON, call: RestCall
    ) -> list[Event]:
        errors = FormErrors()
        errors.max_length(["data", "choices"], data.get("choices") or [], 25)
        errors.raise_if_any()
        record.choices = list(data.get("choices") or [])
        return []

    def _cb_modal(self, record: InteractionRecord, data: JSON, call: RestCall) -> list[Event]:
        errors = FormErrors()
        validate_modal(data, errors)
        errors.raise_if_any()
        record.modal = {**copy.deepcopy(data), "components": number_components(data["components"])}
        return []

    def _cb_launch(self, record: InteractionRecord, data: JSON, call: RestCall) -> list[Event]:
        raise ApiError(
            400,
            50035,
            "Invalid Form Body",
            {
                "type": {
                    "_errors": [
                        {
                            "code": "APPLICATION_NOT_EMBEDDED",
                            "message": "This application has no Activity.",
                        }
                    ]
                }
            },
        )

    # ------------------------------------------------------------------ interactions: webhooks

    def _record_for_webhook(self, request: web.Request) -> InteractionRecord:
        record = self._by_token.get(request.match_info["token"])
        if record is None or request.match_info["app_id"] != self.app_id:
            raise unknown("Unknown Webhook")
        if time.monotonic() - record.created > INTERACTION_TOKEN_SECONDS:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if not record.acknowledged:
            raise unknown("Unknown Webhook")
        return record

    def _webhook_target(self, record: InteractionRecord, message_id: str) -> JSON:
        if message_id == "@original":
            target = None if record.original_deleted else record.original
        else:
            target = next((m for m in record.messages() if m["id"] == message_id), None)
        if target is None:
            raise unknown("Unknown Message")
        return target

    async def _create_followup(self, request: web.Request) -> web.Response:
        record = self._record_for_webhook(request)
        call = self._call(request)
        body = self._body(request)
        original = record.original
        if record.response_type == 5 and original is not None and original["flags"] & LOADING:
            # Documented compatibility: the first follow-up after a deferral edits the original.
            return await self._edit_interaction_message(original, body, call)
        ephemeral = bool((body.get("flags") or 0) & EPHEMERAL)
        fields = self._interaction_fields(record, followup=True)
        msg = self._compose(
            record.channel_id,
            body,
            call,
            allowed_flags=INTERACTION_FLAGS,
            extra=fields,
            ephemeral=ephemeral,
        )
        record.followups.append(msg)
        await self._emit_all(self._publish_interaction_message(msg))
        return json_response(msg)

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        record = self._record_for_webhook(request)
        return json_response(self._webhook_target(record, request.match_info["message_id"]))

    async def _edit_webhook_message(self, request: web.Request) -> web.Response:
        record = self._record_for_webhook(request)
        target = self._webhook_target(record, request.match_info["message_id"])
        return await self._edit_interaction_message(
            target, self._body(request), self._call(request)
        )

    async def _edit_interaction_message(
        self, msg: JSON, body: JSON, call: RestCall
    ) -> web.Response:
        self._apply_edit(msg, body, call, allowed_flags=SENDABLE_FLAGS)
        if not msg["flags"] & EPHEMERAL:
            await self._emit("MESSAGE_UPDATE", self._gateway_message(msg))
        return json_response(msg)

    async def _delete_webhook_message(self, request: web.Request) -> web.Response:
        record = self._record_for_webhook(request)
        msg = self._webhook_target(record, request.match_info["message_id"])
        self._unstore_message(msg)
        if msg is record.original:
            record.original_deleted = True
        else:
            record.followups.remove(msg)
        if not msg["flags"] & EPHEMERAL:
            await self._emit(
                "MESSAGE_DELETE",
                {"id": msg["id"], "channel_id": msg["channel_id"],
             "guild_id": self._guild_of(msg["channel_id"])},
            )
        return web.Response(status=204)
