"""A local Slack server for end-to-end tests.

``SlackEmulator`` runs an aiohttp server that the real slack-sdk ``AsyncWebClient``,
slack-bolt ``AsyncApp`` and ``AsyncSocketModeHandler`` can talk to unmodified:

* the Web API at ``/api/<method>`` (GET or POST; parameters merged from the query
  string, a form body and a JSON body; bot/app token rules; ``ok:false`` errors with
  HTTP 200; injected 429s and 5xx);
* file hosting: ``url_private`` / ``url_private_download`` / thumbnails (bot token
  required, otherwise an HTML login page) and the external upload endpoint used by
  ``files_upload_v2``;
* ``response_url`` endpoints for slash commands and interactivity;
* Socket Mode at ``/socket`` (hello, envelopes, acks, server-side disconnects);
* a driver that delivers Events API, slash command and interactivity requests to an
  HTTP-mode app, signed like Slack signs them.

Payload shapes come from the templates in ``tests/fixtures/slack``, which follow the
examples in Slack's documentation. Builders fill every key of a template explicitly
(``_fill``), so a template and its builder cannot silently drift apart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import hmac
import io
import json
import mimetypes
import re
import secrets
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from PIL import Image

JsonDict = dict[str, Any]
#: Slack's limit on one uploaded file (1 GB).
SLACK_FILE_LIMIT = 1_000_000_000

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "slack"

#: Marks a template key that the produced payload must not contain.
OMIT: Any = object()

_APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
# Read methods whose documented content type is form-urlencoded only: Slack does not
# read a JSON body for them.
_FORM_ONLY_METHODS = frozenset(
    {"conversations.replies", "conversations.info", "users.info", "files.info",
     "files.getUploadURLExternal"}
)
_EVENT_ONLY_KEYS = ("channel", "event_ts", "channel_type")
_MAX_TEXT = 40_000
_BLOCKS_ONLY_TEXT = "This content can't be displayed."
_MENTION_RE = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_REACTION_RE = re.compile(r"^[a-z0-9_+'\-]+(::skin-tone-[2-6])?$")
_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_BLOCK_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789=+/"
_FILETYPES = {
    "image/png": ("png", "PNG"),
    "image/jpeg": ("jpg", "JPEG"),
    "image/gif": ("gif", "GIF"),
    "image/webp": ("webp", "WebP"),
    "image/heic": ("heic", "HEIC"),
    "image/heif": ("heif", "HEIF"),
    "application/pdf": ("pdf", "PDF"),
    "text/plain": ("text", "Plain Text"),
    "application/zip": ("zip", "Zip"),
    "video/mp4": ("mp4", "MPEG 4 Video"),
}
_SCOPES = (
    "app_mentions:read,channels:history,chat:write,commands,files:read,files:write,"
    "groups:history,im:history,reactions:write,users:read"
)
_LOGIN_PAGE = (
    "<!DOCTYPE html><html lang=\"en-US\"><head><meta charset=\"utf-8\">"
    "<title>Slack</title></head><body><h1>Sign in to {team}</h1>"
    "<form action=\"/signin\" method=\"post\"><input type=\"email\" name=\"email\">"
    "<button type=\"submit\">Sign in with email</button></form></body></html>"
)


# --------------------------------------------------------------------------- helpers


@cache
def _load_fixture(name: str) -> JsonDict:
    return json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))


def fixture(name: str) -> JsonDict:
    """Return a fresh copy of the payload template ``tests/fixtures/slack/<name>``."""
    return copy.deepcopy(_load_fixture(name))


def _fill(template: Mapping[str, Any], values: Mapping[str, Any], *, name: str) -> JsonDict:
    """Give every key of ``template`` its value from ``values``, keeping the key order.

    Every template key must be in ``values`` (``OMIT`` drops it); extra keys are
    appended. No example value of the template survives into the result.
    """
    missing = set(template) - set(values)
    if missing:
        raise KeyError(f"{name}: builder does not fill {sorted(missing)}")
    out = {key: values[key] for key in template if values[key] is not OMIT}
    out.update({k: v for k, v in values.items() if k not in template and v is not OMIT})
    return out


def _opt(value: Any) -> Any:
    """``None`` -> ``OMIT``, for optional keys."""
    return OMIT if value is None else value


def _random_block_id() -> str:
    return "".join(secrets.choice(_BLOCK_ID_ALPHABET) for _ in range(5))


def _rich_text_blocks(text: str) -> list[JsonDict]:
    """The ``rich_text`` block Slack clients attach to a typed message."""
    elements: list[JsonDict] = []
    pos = 0
    for match in _MENTION_RE.finditer(text):
        if match.start() > pos:
            elements.append({"type": "text", "text": text[pos : match.start()]})
        elements.append({"type": "user", "user_id": match.group(1)})
        pos = match.end()
    if pos < len(text):
        elements.append({"type": "text", "text": text[pos:]})
    section = {"type": "rich_text_section", "elements": elements}
    return [{"type": "rich_text", "block_id": _random_block_id(), "elements": [section]}]


def _filetype(name: str, mimetype: str) -> tuple[str, str]:
    if mimetype in _FILETYPES:
        return _FILETYPES[mimetype]
    ext = Path(name).suffix.lower().lstrip(".")
    return (ext, ext.upper()) if ext else ("binary", "Binary")


def _image_size(content: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(content)) as image:
            return image.size
    except Exception:  # noqa: BLE001 - not an image Pillow can read
        return None


def _url_name(name: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "_", name.lower()) or "file"


def _sign(secret: str, timestamp: int, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def _form_value(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------- params


class SlackError(Exception):
    """An ``ok:false`` answer: ``error`` plus extra top-level keys."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


def _invalid_arguments(message: str) -> SlackError:
    return SlackError("invalid_arguments", response_metadata={"messages": [f"[ERROR] {message}"]})


def _str(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    return None if value is None or value == "" else str(value)


def _required(params: Mapping[str, Any], name: str, error: str | None = None) -> str:
    value = _str(params, name)
    if value is None:
        raise SlackError(error) if error else _invalid_arguments(f"missing required field: {name}")
    return value


def _bool(params: Mapping[str, Any], name: str) -> bool:
    return params.get(name) in (True, 1, "1", "true", "True")


def _json_param(params: Mapping[str, Any], name: str, error: str) -> Any:
    value = params.get(name)
    if isinstance(value, str) and value:
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise SlackError(error) from exc
    return value or None


# --------------------------------------------------------------------------- blocks


_BLOCK_TYPES = frozenset(
    {"actions", "call", "context", "divider", "file", "header", "image", "input",
     "markdown", "rich_text", "section", "table", "video"}
)


def _text_problems(obj: Any, ptr: str, max_len: int, *, plain_only: bool = False) -> Iterator[str]:
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if not isinstance(obj, dict) or obj.get("type") not in allowed:
        yield f"[ERROR] must be a valid text object of type {'/'.join(allowed)} [json-pointer:{ptr}]"
        return
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        yield f"[ERROR] must be more than 0 characters [json-pointer:{ptr}/text]"
    elif len(text) > max_len:
        yield f"[ERROR] must be less than {max_len + 1} characters [json-pointer:{ptr}/text]"


def _element_problems(elements: Any, ptr: str, max_count: int) -> Iterator[str]:
    if not isinstance(elements, list) or not 0 < len(elements) <= max_count:
        yield f"[ERROR] must provide 1 to {max_count} items [json-pointer:{ptr}]"
        return
    for i, element in enumerate(elements):
        if isinstance(element, dict) and element.get("type") == "button":
            yield from _text_problems(element.get("text"), f"{ptr}/{i}/text", 75, plain_only=True)
            if len(str(element.get("value", ""))) > 2000:
                yield f"[ERROR] must be less than 2001 characters [json-pointer:{ptr}/{i}/value]"
            if len(str(element.get("action_id", ""))) > 255:
                yield f"[ERROR] must be less than 256 characters [json-pointer:{ptr}/{i}/action_id]"


def _section_problems(block: JsonDict, ptr: str) -> Iterator[str]:
    if "text" not in block and "fields" not in block:
        yield f"[ERROR] must provide either text or fields [json-pointer:{ptr}]"
    if "text" in block:
        yield from _text_problems(block["text"], f"{ptr}/text", 3000)
    fields = block.get("fields", [])
    if len(fields) > 10:
        yield f"[ERROR] must provide at most 10 items [json-pointer:{ptr}/fields]"
    for i, item in enumerate(fields):
        yield from _text_problems(item, f"{ptr}/fields/{i}", 2000)


def _block_problems(index: int, block: Any) -> Iterator[str]:
    ptr = f"/blocks/{index}"
    if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
        yield f"[ERROR] unsupported type [json-pointer:{ptr}/type]"
        return
    if len(str(block.get("block_id", ""))) > 255:
        yield f"[ERROR] must be less than 256 characters [json-pointer:{ptr}/block_id]"
    kind = block["type"]
    if kind == "section":
        yield from _section_problems(block, ptr)
    elif kind == "header":
        yield from _text_problems(block.get("text"), f"{ptr}/text", 150, plain_only=True)
    elif kind == "context":
        yield from _element_problems(block.get("elements"), f"{ptr}/elements", 10)
    elif kind == "actions":
        yield from _element_problems(block.get("elements"), f"{ptr}/elements", 25)
    elif kind == "image":
        if not block.get("image_url") and not block.get("slack_file"):
            yield f"[ERROR] missing required field: image_url [json-pointer:{ptr}]"
        alt = block.get("alt_text")
        if not isinstance(alt, str) or not 0 < len(alt) <= 2000:
            yield f"[ERROR] must be 1 to 2000 characters [json-pointer:{ptr}/alt_text]"


def validate_blocks(blocks: Any) -> list[JsonDict]:
    """Check ``blocks`` the way chat.postMessage does; raise ``SlackError`` if invalid."""
    if not isinstance(blocks, list):
        raise SlackError("invalid_blocks_format")
    problems = [] if len(blocks) <= 50 else ["[ERROR] no more than 50 items allowed [json-pointer:/blocks]"]
    for i, block in enumerate(blocks):
        problems.extend(_block_problems(i, block))
    ids = [b["block_id"] for b in blocks if isinstance(b, dict) and "block_id" in b]
    if len(ids) != len(set(ids)):
        problems.append("[ERROR] duplicate block_id [json-pointer:/blocks]")
    if problems:
        raise SlackError("invalid_blocks", response_metadata={"messages": problems})
    return blocks


def _with_block_ids(blocks: list[JsonDict]) -> list[JsonDict]:
    """Slack gives every stored block a ``block_id``."""
    return [{**block, "block_id": block.get("block_id") or _random_block_id()} for block in blocks]


def _content_blocks(text: str, blocks: list[JsonDict] | None) -> Any:
    """Stored blocks: the given ones, else the ``rich_text`` Slack derives from ``text``."""
    if blocks:
        return _with_block_ids(blocks)
    return _rich_text_blocks(text) if text else OMIT


def _set_content(message: JsonDict, text: str | None, blocks: list[JsonDict] | None) -> None:
    """Edit a stored message like chat.update: ``None`` keeps a field, ``[]`` drops blocks.

    Blocks that Slack derived from the text (one ``rich_text`` block) follow the text.
    """
    if text is not None:
        message["text"] = text
    current = message.get("blocks", [])
    derived = not current or (len(current) == 1 and current[0].get("type") == "rich_text")
    if blocks is not None or derived:
        message.pop("blocks", None)
        new_blocks = _content_blocks(message["text"], blocks)
        if new_blocks is not OMIT:
            message["blocks"] = new_blocks


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ApiCall:
    """One Web API request as the emulator received it."""

    method: str
    params: JsonDict
    headers: dict[str, str]
    time: float
    http_verb: str = "POST"
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    status: int
    retry_after: int | None = None


@dataclass
class _PendingUpload:
    file_id: str
    filename: str
    length: int
    alt_txt: str | None
    content: bytes | None = None


@dataclass
class _Hook:
    """The context a ``response_url`` acts on."""

    secret: str
    channel: str
    user: str
    message_ts: str | None
    thread_ts: str | None


# --------------------------------------------------------------------------- emulator


class SlackEmulator:
    """A Slack workspace with one app installed, served over HTTP and websockets."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test-token",
        app_token: str = "xapp-1-test",
        signing_secret: str = "test-signing-secret",
        team_id: str = "T0001",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = "A0APP",
        team_name: str = "Test Team",
        team_domain: str = "testteam",
        bot_name: str = "imagebot",
        verification_token: str = "test-verification-token",
        client_id: str = "1111111111.2222222222",
        client_secret: str = "test-client-secret",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.team_name = team_name
        self.team_domain = team_domain
        self.bot_name = bot_name
        self.verification_token = verification_token
        self.client_id = client_id
        self.client_secret = client_secret
        #: OAuth installs: bot token -> workspace (team id, name), as oauth.v2.access issued.
        self.installs: dict[str, tuple[str, str]] = {}
        #: The app's configured Redirect URL (used when the authorize link names none).
        self.oauth_redirect_url: str | None = None
        self._oauth_codes: dict[str, JsonDict] = {}

        self.calls: list[ApiCall] = []
        self.users: dict[str, JsonDict] = {}
        self.channels: dict[str, JsonDict] = {}
        self.history: dict[str, list[JsonDict]] = {}
        self.files: dict[str, JsonDict] = {}
        self.uploads: list[dict[str, Any]] = []
        self.deleted_files: list[str] = []
        self.ephemerals: list[JsonDict] = []
        self.downloads: list[JsonDict] = []
        self.response_url_posts: list[JsonDict] = []
        self.socket_envelopes: list[JsonDict] = []
        self.socket_acks: list[JsonDict] = []
        self.socket_connection_count = 0
        #: The largest file files.getUploadURLExternal takes: Slack's 1 GB, or less when a
        #: team restricts uploads of large files (then ``file_upload_size_restricted``).
        self.upload_size_limit = SLACK_FILE_LIMIT

        self._file_contents: dict[str, bytes] = {}
        self._html_login_files: set[str] = set()
        self._pending_uploads: dict[str, _PendingUpload] = {}
        self._uploads_by_file: dict[str, _PendingUpload] = {}
        self._faults: defaultdict[str, deque[_Fault]] = defaultdict(deque)
        self._hooks: dict[str, _Hook] = {}
        self._tickets: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._pending_acks: dict[str, asyncio.Future[JsonDict]] = {}
        self._seq = 0
        self._last_ts_micro = 0
        self._base_url: str | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._api: dict[str, Callable[[JsonDict], JsonDict]] = self._api_methods()

        self.add_user(bot_user_id, bot_name, is_bot=True)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on ``host:port`` (0 picks a free port)."""
        self._runner = web.AppRunner(self._build_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self._base_url = f"http://{bound_host}:{bound_port}"

    async def stop(self) -> None:
        """Close websockets, the driver's HTTP session and the server."""
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        for future in self._pending_acks.values():
            future.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("SlackEmulator is not started")
        return self._base_url

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/"

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        router = app.router
        router.add_route("*", "/api/{method}", self._handle_api)
        router.add_post("/upload/v1/{upload_id}", self._handle_upload)
        router.add_get("/files-pri/{key}/{name}", self._handle_file)
        router.add_get("/files-pri/{key}/download/{name}", self._handle_file)
        router.add_get("/files-tmb/{key}/{name}", self._handle_file)
        router.add_get("/files/{user}/{file_id}/{name}", self._handle_permalink)
        router.add_post("/{kind:commands|actions}/{team}/{hook_id}/{secret}", self._handle_hook)
        router.add_get("/socket", self._handle_socket)
        router.add_get("/oauth/v2/authorize", self._handle_authorize)
        return app

    # ------------------------------------------------------------------ state

    def calls_to(self, method: str) -> list[ApiCall]:
        return [call for call in self.calls if call.method == method]

    def add_user(
        self, user_id: str, name: str, *, is_admin: bool = False, is_bot: bool = False,
        is_owner: bool = False,
    ) -> None:
        template = fixture("user.json")
        real_name = name.replace(".", " ").replace("_", " ").title()
        profile = self._user_profile(template["profile"], user_id, name, real_name, is_bot)
        self.users[user_id] = _fill(template, {
            "id": user_id, "team_id": self.team_id, "name": name, "deleted": False,
            "color": hashlib.md5(user_id.encode()).hexdigest()[:6], "real_name": real_name,
            "tz": "Europe/London", "tz_label": "Greenwich Mean Time", "tz_offset": 0,
            "profile": profile, "is_admin": is_admin, "is_owner": is_owner,
            "is_primary_owner": is_owner, "is_restricted": False, "is_ultra_restricted": False,
            "is_bot": is_bot, "is_app_user": False, "updated": int(time.time()), "has_2fa": False,
        }, name="user.json")

    def _user_profile(
        self, template: JsonDict, user_id: str, name: str, real_name: str, is_bot: bool
    ) -> JsonDict:
        avatar = hashlib.md5(user_id.encode()).hexdigest()[:12]
        images = {
            f"image_{size}": f"https://secure.gravatar.com/avatar/{avatar}.jpg?s={size}"
            for size in (24, 32, 48, 72, 192, 512)
        }
        bot_fields = {"bot_id": self.bot_id, "api_app_id": self.app_id, "always_active": True}
        return _fill(template, {
            "title": "", "phone": "", "skype": "", "avatar_hash": avatar, "status_text": "",
            "status_emoji": "", "real_name": real_name, "display_name": name,
            "real_name_normalized": real_name, "display_name_normalized": name,
            "email": OMIT if is_bot else f"{name}@{self.team_domain}.example.com",
            **images, "team": self.team_id, **(bot_fields if is_bot else {}),
        }, name="user.json#profile")

    def add_channel(
        self, channel_id: str, name: str, *, is_im: bool = False, user: str | None = None,
        is_private: bool = False, is_member: bool = True,
    ) -> None:
        """Add a conversation. For an IM, ``user`` is the other party (default: ``name``)."""
        if is_im:
            self.channels[channel_id] = self._im_object(channel_id, user or name)
        else:
            self.channels[channel_id] = self._channel_object(channel_id, name, is_private, is_member)
        self.history.setdefault(channel_id, [])

    def _channel_object(self, channel_id: str, name: str, private: bool, member: bool) -> JsonDict:
        blank = {"value": "", "creator": "", "last_set": 0}
        return _fill(fixture("channel.json"), {
            "id": channel_id, "name": name, "is_channel": not private, "is_group": private,
            "is_im": False, "is_mpim": False, "is_private": private, "created": int(time.time()),
            "is_archived": False, "is_general": name == "general", "unlinked": 0,
            "name_normalized": name, "is_shared": False, "is_org_shared": False,
            "is_pending_ext_shared": False, "pending_shared": [], "context_team_id": self.team_id,
            "updated": int(time.time() * 1000), "parent_conversation": None,
            "creator": self.bot_user_id, "is_ext_shared": False, "shared_team_ids": [self.team_id],
            "pending_connected_team_ids": [], "is_member": member, "last_read": "0000000000.000000",
            "topic": dict(blank), "purpose": dict(blank), "previous_names": [], "locale": "en-US",
        }, name="channel.json")

    def _im_object(self, channel_id: str, user: str) -> JsonDict:
        return _fill(fixture("im.json"), {
            "id": channel_id, "created": int(time.time()), "is_channel": False, "is_group": False,
            "is_im": True, "is_mpim": False, "is_private": True, "is_archived": False,
            "is_org_shared": False, "context_team_id": self.team_id,
            "updated": int(time.time() * 1000), "user": user, "is_user_deleted": False,
            "priority": 0, "last_read": "0000000000.000000", "locale": "en-US",
        }, name="im.json")

    def add_file(
        self, *, name: str, mimetype: str, content: bytes, user: str,
        serve_html_login: bool = False, title: str | None = None,
    ) -> JsonDict:
        """Store a file (not yet shared anywhere) and return its Slack file object."""
        file_id = self._new_id("F")
        self.files[file_id] = self._file_object(file_id, name, title or name, mimetype, content, user)
        self._file_contents[file_id] = content
        if serve_html_login:
            self._html_login_files.add(file_id)
        return copy.deepcopy(self.files[file_id])

    def _file_object(
        self, file_id: str, name: str, title: str, mimetype: str, content: bytes, user: str
    ) -> JsonDict:
        filetype, pretty = _filetype(name, mimetype)
        key = f"{self.team_id}-{file_id}"
        url_name = _url_name(name)
        now = int(time.time())
        return _fill(fixture("file.json"), {
            "id": file_id, "created": now, "timestamp": now, "name": name, "title": title,
            "mimetype": mimetype, "filetype": filetype, "pretty_type": pretty, "user": user,
            "user_team": self.team_id, "editable": False, "size": len(content), "mode": "hosted",
            "is_external": False, "external_type": "", "is_public": False,
            "public_url_shared": False, "display_as_bot": False, "username": "",
            "url_private": f"{self.base_url}/files-pri/{key}/{url_name}",
            "url_private_download": f"{self.base_url}/files-pri/{key}/download/{url_name}",
            "media_display_type": "unknown",
            **self._thumbnails(key, url_name, mimetype, content),
            "permalink": f"{self.base_url}/files/{user}/{file_id}/{url_name}",
            "permalink_public": f"{self.base_url}/public/{key}-{secrets.token_hex(5)}",
            "has_rich_preview": False, "file_access": "visible", "comments_count": 0,
            "shares": {}, "channels": [], "groups": [], "ims": [],
        }, name="file.json")

    def _thumbnails(self, key: str, url_name: str, mimetype: str, content: bytes) -> JsonDict:
        """Thumbnail keys of an image (served as the original bytes); OMIT otherwise."""
        size = _image_size(content) if mimetype.startswith("image/") else None
        names = ("thumb_64", "thumb_80", "thumb_160", "thumb_360", "thumb_360_w", "thumb_360_h",
                 "original_w", "original_h")
        if size is None:
            return dict.fromkeys(names, OMIT)
        width, height = size
        scale = min(1.0, 360 / max(width, height))
        stem = Path(url_name).stem
        base = f"{self.base_url}/files-tmb/{key}-{secrets.token_hex(5)}/{stem}"
        urls = {f"thumb_{px}": f"{base}_{px}.png" for px in (64, 80, 160, 360)}
        return {**urls, "thumb_360_w": round(width * scale), "thumb_360_h": round(height * scale),
                "original_w": width, "original_h": height}

    def post_user_message(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None,
        files: Iterable[JsonDict | str] = (), ts: str | None = None,
    ) -> JsonDict:
        """Store a human's message in ``channel`` (no event is delivered) and return it."""
        return copy.deepcopy(self._store_user_message(channel, user, text, ts, thread_ts, files))

    def messages(self, channel: str, thread_ts: str | None = None) -> list[JsonDict]:
        """Stored messages, oldest first: the whole channel, or one thread (root + replies)."""
        history = self.history.get(channel, [])
        if thread_ts is not None:
            history = [m for m in history if thread_ts in (m["ts"], m.get("thread_ts"))]
        return copy.deepcopy(history)

    def queue_rate_limit(self, method: str, *, retry_after: int = 1, times: int = 1) -> None:
        """The next ``times`` calls to ``method`` answer 429 ``ratelimited``."""
        self._faults[method].extend(_Fault(429, retry_after) for _ in range(times))

    def queue_server_error(self, method: str, *, status: int = 500, times: int = 1) -> None:
        """The next ``times`` calls to ``method`` answer ``status``."""
        self._faults[method].extend(_Fault(status) for _ in range(times))

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 10.0  # noqa: ASYNC109
    ) -> None:
        """Poll ``predicate`` until it is true; ``TimeoutError`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ ids, storage

    def _new_id(self, prefix: str) -> str:
        self._seq += 1
        n, digits = self._seq, ""
        while n:
            n, rem = divmod(n, 36)
            digits = _ID_ALPHABET[rem] + digits
        return prefix + digits.rjust(10, "0")

    def _next_ts(self) -> str:
        micro = max(int(time.time() * 1_000_000), self._last_ts_micro + 1)
        self._last_ts_micro = micro
        return f"{micro // 1_000_000}.{micro % 1_000_000:06d}"

    def _trigger_id(self) -> str:
        return f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"

    def _channel(self, channel_id: str) -> JsonDict:
        if channel_id not in self.channels:
            raise KeyError(f"unknown channel {channel_id!r}; call add_channel() first")
        return self.channels[channel_id]

    def _channel_name(self, channel_id: str) -> str:
        channel = self._channel(channel_id)
        return "directmessage" if channel["is_im"] else channel["name"]

    def _user_name(self, user_id: str) -> str:
        if user_id not in self.users:
            self.add_user(user_id, user_id.lower())
        return self.users[user_id]["name"]

    def _find(self, channel: str, ts: str) -> JsonDict | None:
        return next((m for m in self.history.get(channel, []) if m["ts"] == ts), None)

    def _store(self, channel: str, message: JsonDict) -> JsonDict:
        history = self.history.setdefault(channel, [])
        if any(m["ts"] == message["ts"] for m in history):
            raise ValueError(f"a message with ts {message['ts']} already exists in {channel}")
        history.append(message)
        history.sort(key=lambda m: float(m["ts"]))
        thread_ts = message.get("thread_ts")
        if thread_ts and thread_ts != message["ts"]:
            self._refresh_thread(channel, thread_ts)
        return message

    def _remove(self, channel: str, message: JsonDict) -> None:
        history = self.history[channel]
        has_replies = message.get("reply_count", 0) > 0
        if has_replies:
            tombstone = {"type": "message", "subtype": "tombstone", "text": "This message was deleted.",
                         "user": "USLACKBOT", "hidden": True, "ts": message["ts"]}
            history[history.index(message)] = tombstone
            self._refresh_thread(channel, message["ts"])
            return
        history.remove(message)
        thread_ts = message.get("thread_ts")
        if thread_ts and thread_ts != message["ts"]:
            self._refresh_thread(channel, thread_ts)

    def _refresh_thread(self, channel: str, root_ts: str) -> None:
        """Recompute a thread root's reply metadata, as conversations.replies shows it."""
        root = self._find(channel, root_ts)
        if root is None:
            return
        replies = [m for m in self.history[channel] if m.get("thread_ts") == root_ts and m is not root]
        thread_keys = ("thread_ts", "reply_count", "reply_users_count", "latest_reply",
                       "reply_users", "is_locked", "subscribed")
        if not replies:
            for key in thread_keys:
                root.pop(key, None)
            if root.get("subtype") == "tombstone":
                self.history[channel].remove(root)
            return
        users = list(dict.fromkeys(m.get("user") or m.get("bot_id") for m in replies))
        root.update({
            "thread_ts": root_ts, "reply_count": len(replies), "reply_users_count": len(users),
            "latest_reply": replies[-1]["ts"], "reply_users": users[:5], "is_locked": False,
            "subscribed": False,
        })

    def _parent_user(self, channel: str, thread_ts: str | None) -> Any:
        root = self._find(channel, thread_ts) if thread_ts else None
        return OMIT if root is None or "user" not in root else root["user"]

    def _resolve_files(self, files: Iterable[JsonDict | str]) -> list[JsonDict]:
        ids = [f if isinstance(f, str) else f["id"] for f in files]
        unknown = [file_id for file_id in ids if file_id not in self.files]
        if unknown:
            raise KeyError(f"unknown files {unknown}; call add_file() first")
        return [self.files[file_id] for file_id in ids]

    def _share(self, file_obj: JsonDict, channel: str, ts: str, thread_ts: str | None, user: str) -> None:
        """Record that ``file_obj`` was shared in a message, like Slack's ``shares``."""
        conversation = self.channels[channel]
        private = conversation["is_private"] or conversation["is_im"]
        entry = {"reply_users": [], "reply_users_count": 0, "reply_count": 0, "ts": ts,
                 "channel_name": self._channel_name(channel), "team_id": self.team_id,
                 "share_user_id": user, "source": "UNKNOWN"}
        if thread_ts:
            entry["thread_ts"] = thread_ts
        kind = "private" if private else "public"
        file_obj["shares"].setdefault(kind, {}).setdefault(channel, []).append(entry)
        listing = "ims" if conversation["is_im"] else ("groups" if private else "channels")
        if channel not in file_obj[listing]:
            file_obj[listing].append(channel)
        file_obj["is_public"] = file_obj["is_public"] or not private

    def _store_user_message(
        self, channel: str, user: str, text: str, ts: str | None, thread_ts: str | None,
        files: Iterable[JsonDict | str],
    ) -> JsonDict:
        self._channel(channel)
        self._user_name(user)
        file_objs = self._resolve_files(files)
        ts = ts or self._next_ts()
        if self._find(channel, ts) is not None:
            raise ValueError(f"a message with ts {ts} already exists in {channel}")
        template = "message_file_share.json" if file_objs else "message.json"
        for file_obj in file_objs:
            self._share(file_obj, channel, ts, thread_ts, user)
        values = {
            "client_msg_id": str(uuid.uuid4()), "type": "message", "subtype": OMIT, "text": text,
            "user": user, "ts": ts, "blocks": _rich_text_blocks(text) if text else OMIT,
            "team": self.team_id, "thread_ts": _opt(thread_ts),
            "parent_user_id": self._parent_user(channel, thread_ts),
            "files": copy.deepcopy(file_objs) if file_objs else OMIT,
            "upload": False if file_objs else OMIT, "display_as_bot": False if file_objs else OMIT,
            **dict.fromkeys(_EVENT_ONLY_KEYS, OMIT),
        }
        return self._store(channel, _fill(fixture(template), values, name=template))

    def _bot_profile(self) -> JsonDict:
        template = fixture("bot_posted_message.json")["bot_profile"]
        icons = {key: f"https://a.slack-edge.com/80588/img/plugins/app/bot_{key[6:]}.png"
                 for key in template["icons"]}
        return _fill(template, {
            "id": self.bot_id, "app_id": self.app_id, "name": self.bot_name, "icons": icons,
            "deleted": False, "updated": int(time.time()), "team_id": self.team_id,
        }, name="bot_posted_message.json#bot_profile")

    def _store_bot_message(
        self, channel: str, text: str, *, blocks: list[JsonDict] | None = None,
        thread_ts: str | None = None, extra: Mapping[str, Any] | None = None,
    ) -> JsonDict:
        """Store a message posted with the bot token (chat.postMessage, uploads, response_url)."""
        values = {
            "user": self.bot_user_id, "type": "message", "ts": self._next_ts(),
            "bot_id": self.bot_id, "app_id": self.app_id, "text": text, "team": self.team_id,
            "bot_profile": self._bot_profile(), "blocks": _content_blocks(text, blocks),
            "thread_ts": _opt(thread_ts), "parent_user_id": self._parent_user(channel, thread_ts),
            **(extra or {}),
        }
        message = _fill(fixture("bot_posted_message.json"), values, name="bot_posted_message.json")
        return self._store(channel, message)

    # ------------------------------------------------------------------ event builders

    def event_envelope(self, event: JsonDict, *, event_id: str | None = None) -> JsonDict:
        """Wrap ``event`` in the ``event_callback`` envelope Slack delivers."""
        template = fixture("event_callback.json")
        authorization = _fill(template["authorizations"][0], {
            "enterprise_id": None, "team_id": self.team_id, "user_id": self.bot_user_id,
            "is_bot": True, "is_enterprise_install": False,
        }, name="event_callback.json#authorizations")
        return _fill(template, {
            "token": self.verification_token, "team_id": self.team_id,
            "context_team_id": self.team_id, "context_enterprise_id": None,
            "api_app_id": self.app_id, "event": event, "type": "event_callback",
            "event_id": event_id or "Ev" + self._new_id("")[1:],
            "event_time": int(time.time()), "authorizations": [authorization],
            "is_ext_shared_channel": False, "event_context": self._event_context(event),
        }, name="event_callback.json")

    def _event_context(self, event: JsonDict) -> str:
        context = {"et": event.get("type"), "tid": self.team_id, "aid": self.app_id,
                   "cid": event.get("channel")}
        encoded = base64.urlsafe_b64encode(json.dumps(context, separators=(",", ":")).encode())
        return "4-" + encoded.decode().rstrip("=")

    def _channel_type(self, channel: str) -> str:
        conversation = self._channel(channel)
        if conversation["is_im"]:
            return "im"
        return "group" if conversation["is_private"] else "channel"

    def _message_event(self, template: str, message: JsonDict, **event_keys: Any) -> JsonDict:
        """An event whose fields are a stored message plus event-only keys."""
        values = {key: OMIT for key in fixture(template)}
        values.update(copy.deepcopy(message))
        values.update(event_keys)
        return _fill(fixture(template), values, name=template)

    def app_mention_event(
        self, channel: str, user: str, text: str, *, ts: str | None = None,
        thread_ts: str | None = None, files: Iterable[JsonDict | str] = (),
    ) -> JsonDict:
        """Store a message mentioning the bot and return its ``app_mention`` event.

        ``<@bot_user_id>`` is prepended to ``text`` when it does not mention the bot.
        """
        mention = f"<@{self.bot_user_id}>"
        if mention not in text:
            text = f"{mention} {text}"
        message = self._store_user_message(channel, user, text, ts, thread_ts, files)
        return self._message_event("app_mention.json", message, type="app_mention",
                                   channel=channel, event_ts=message["ts"])

    def message_event(
        self, channel: str, user: str, text: str, *, ts: str | None = None,
        thread_ts: str | None = None, files: Iterable[JsonDict | str] = (),
        subtype: str | None = None, channel_type: str | None = None,
    ) -> JsonDict:
        """Store a human's message and return its ``message`` event.

        With files the subtype is ``file_share``; ``channel_type`` defaults to the
        conversation's kind (``channel``, ``group`` or ``im``).
        """
        files = list(files)
        message = self._store_user_message(channel, user, text, ts, thread_ts, files)
        subtype = subtype or ("file_share" if files else None)
        template = "message_file_share.json" if files else "message.json"
        return self._message_event(
            template, message, type="message", subtype=_opt(subtype), channel=channel,
            event_ts=message["ts"], channel_type=channel_type or self._channel_type(channel),
        )

    def bot_message_event(
        self, channel: str, text: str, *, bot_id: str | None = None, username: str = "github",
        thread_ts: str | None = None,
    ) -> JsonDict:
        """Store a classic ``bot_message`` (an integration's post) and return its event."""
        message = _fill(fixture("bot_message.json"), {
            "type": "message", "subtype": "bot_message", "text": text, "ts": self._next_ts(),
            "username": username, "icons": {}, "bot_id": bot_id or self._new_id("B"),
            "thread_ts": _opt(thread_ts), **dict.fromkeys(_EVENT_ONLY_KEYS, OMIT),
        }, name="bot_message.json")
        self._store(channel, message)
        return self._message_event("bot_message.json", message, channel=channel,
                                   event_ts=message["ts"], channel_type=self._channel_type(channel))

    def message_changed_event(
        self, channel: str, ts: str, text: str, *, user: str | None = None
    ) -> JsonDict:
        """Edit a stored message and return the ``message_changed`` event."""
        message = self._find(channel, ts)
        if message is None:
            raise KeyError(f"no message {ts} in {channel}")
        previous = copy.deepcopy(message)
        event_ts = self._next_ts()
        editor = user or message.get("user", self.bot_user_id)
        _set_content(message, text, None)
        message["edited"] = {"user": editor, "ts": event_ts}
        return _fill(fixture("message_changed.json"), {
            "type": "message", "subtype": "message_changed", "hidden": True,
            "message": copy.deepcopy(message), "channel": channel, "previous_message": previous,
            "event_ts": event_ts, "ts": event_ts, "channel_type": self._channel_type(channel),
        }, name="message_changed.json")

    def message_deleted_event(self, channel: str, ts: str) -> JsonDict:
        """Delete a stored message and return the ``message_deleted`` event."""
        message = self._find(channel, ts)
        if message is None:
            raise KeyError(f"no message {ts} in {channel}")
        previous = copy.deepcopy(message)
        self._remove(channel, message)
        event_ts = self._next_ts()
        return _fill(fixture("message_deleted.json"), {
            "type": "message", "subtype": "message_deleted", "hidden": True, "deleted_ts": ts,
            "channel": channel, "previous_message": previous, "event_ts": event_ts,
            "ts": event_ts, "channel_type": self._channel_type(channel),
        }, name="message_deleted.json")

    def slash_command_payload(self, command: str, text: str, *, user: str, channel: str) -> JsonDict:
        """The form fields of a slash command invocation (all strings)."""
        hook_url = self._new_hook("commands", channel=channel, user=user)
        return _fill(fixture("slash_command.json"), {
            "token": self.verification_token, "team_id": self.team_id,
            "team_domain": self.team_domain, "channel_id": channel,
            "channel_name": self._channel_name(channel), "user_id": user,
            "user_name": self._user_name(user), "command": command, "text": text,
            "api_app_id": self.app_id, "is_enterprise_install": "false",
            "response_url": hook_url, "trigger_id": self._trigger_id(),
        }, name="slash_command.json")

    def block_actions_payload(
        self, *, user: str, channel: str, message_ts: str, action_id: str, value: str,
        thread_ts: str | None = None,
    ) -> JsonDict:
        """A ``block_actions`` payload for a click on ``action_id`` in a stored message."""
        message = self._find(channel, message_ts)
        if message is None:
            raise KeyError(f"no message {message_ts} in {channel}")
        thread_ts = thread_ts or message.get("thread_ts")
        template = fixture("block_actions.json")
        hook_url = self._new_hook("actions", channel=channel, user=user,
                                  message_ts=message_ts, thread_ts=thread_ts)
        name = self._user_name(user)
        return _fill(template, {
            "type": "block_actions",
            "user": _fill(template["user"], {"id": user, "username": name, "name": name,
                                             "team_id": self.team_id}, name="block_actions#user"),
            "api_app_id": self.app_id, "token": self.verification_token,
            "container": _fill(template["container"], {
                "type": "message", "message_ts": message_ts, "channel_id": channel,
                "is_ephemeral": False, "thread_ts": _opt(thread_ts),
            }, name="block_actions#container"),
            "trigger_id": self._trigger_id(),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None, "is_enterprise_install": False,
            "channel": {"id": channel, "name": self._channel_name(channel)},
            "message": copy.deepcopy(message), "state": {"values": {}}, "response_url": hook_url,
            "actions": [self._action(template["actions"][0], message, action_id, value)],
        }, name="block_actions.json")

    def _action(self, template: JsonDict, message: JsonDict, action_id: str, value: str) -> JsonDict:
        block_id, element = _locate_element(message.get("blocks", []), action_id)
        text = element.get("text") or {"type": "plain_text", "text": value, "emoji": True}
        return _fill(template, {
            "action_id": action_id, "block_id": block_id, "text": text, "value": value,
            "type": element.get("type", "button"), "action_ts": f"{time.time():.6f}",
        }, name="block_actions#actions")

    def _new_hook(
        self, kind: str, *, channel: str, user: str, message_ts: str | None = None,
        thread_ts: str | None = None,
    ) -> str:
        hook_id = str(secrets.randbelow(10**12)).rjust(12, "1")
        secret = secrets.token_hex(12)
        self._hooks[hook_id] = _Hook(secret, channel, user, message_ts, thread_ts)
        return f"{self.base_url}/{kind}/{self.team_id}/{hook_id}/{secret}"

    # ------------------------------------------------------------------ HTTP-mode driver

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def send_http_event(
        self, url: str, body: JsonDict, *, retry_num: int | None = None,
        retry_reason: str | None = None, timestamp: int | None = None,
        bad_signature: bool = False, ack_timeout: float = 3.0,
    ) -> tuple[int, str]:
        """POST an Events API body as JSON, signed like Slack; return (status, text).

        ``ack_timeout`` is Slack's 3 s acknowledgement window (``TimeoutError`` past it).
        """
        return await self._deliver(url, json.dumps(body), "application/json", retry_num,
                                   retry_reason, timestamp, bad_signature, ack_timeout)

    async def send_http_form(
        self, url: str, form: Mapping[str, Any], *, retry_num: int | None = None,
        retry_reason: str | None = None, timestamp: int | None = None,
        bad_signature: bool = False, ack_timeout: float = 3.0,
    ) -> tuple[int, str]:
        """POST form fields, signed like Slack. Dict/list values are JSON-encoded, so an
        interactivity payload is sent as ``{"payload": block_actions_payload(...)}``."""
        body = urlencode({k: _form_value(v) for k, v in form.items()})
        return await self._deliver(url, body, "application/x-www-form-urlencoded", retry_num,
                                   retry_reason, timestamp, bad_signature, ack_timeout)

    async def _deliver(
        self, url: str, body: str, content_type: str, retry_num: int | None,
        retry_reason: str | None, timestamp: int | None, bad_signature: bool, ack_timeout: float,
    ) -> tuple[int, str]:
        ts = int(time.time()) if timestamp is None else timestamp
        secret = self.signing_secret + ("-wrong" if bad_signature else "")
        headers = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": _sign(secret, ts, body),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        client_timeout = aiohttp.ClientTimeout(total=ack_timeout)
        async with self._client().post(url, data=body.encode(), headers=headers,
                                       timeout=client_timeout) as response:
            return response.status, await response.text()

    # ------------------------------------------------------------------ Socket Mode

    async def wait_socket_connected(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until a Socket Mode client is connected and has been sent ``hello``."""
        await self.wait_for(lambda: bool(self._sockets), timeout)

    async def socket_send(
        self, type: str, payload: JsonDict, *, accepts_response_payload: bool = False,
        retry_attempt: int = 0, retry_reason: str = "", ack_timeout: float = 5.0,
    ) -> JsonDict:
        """Send an envelope to the newest connection and return the client's ack."""
        if not self._sockets:
            raise RuntimeError("no Socket Mode client is connected")
        envelope: JsonDict = {"envelope_id": str(uuid.uuid4()), "payload": payload, "type": type,
                              "accepts_response_payload": accepts_response_payload}
        if type == "events_api":
            envelope.update(retry_attempt=retry_attempt, retry_reason=retry_reason)
        future: asyncio.Future[JsonDict] = asyncio.get_running_loop().create_future()
        self._pending_acks[envelope["envelope_id"]] = future
        self.socket_envelopes.append(envelope)
        try:
            await self._sockets[-1].send_json(envelope)
            return await asyncio.wait_for(future, ack_timeout)
        finally:
            self._pending_acks.pop(envelope["envelope_id"], None)

    async def socket_disconnect(self, *, reason: str | None = None, grace: float = 1.0) -> None:
        """Close every Socket Mode connection from the server side.

        With ``reason`` (e.g. ``"refresh_requested"``) a ``disconnect`` message is sent
        first, as Slack does before it rotates a connection, and the client gets
        ``grace`` seconds to close the connection itself after reconnecting.
        """
        for ws in list(self._sockets):
            if reason is not None:
                await ws.send_json({"type": "disconnect", "reason": reason,
                                    "debug_info": {"host": "applink-emulator"}})
                with contextlib.suppress(TimeoutError):
                    await self.wait_for(lambda ws=ws: ws.closed, grace)
            await ws.close(code=WSCloseCode.OK)
            if ws in self._sockets:
                self._sockets.remove(ws)

    def _hello(self) -> JsonDict:
        template = fixture("hello.json")
        return _fill(template, {
            "type": "hello", "num_connections": len(self._sockets) + 1,
            "debug_info": _fill(template["debug_info"], {
                "host": "applink-emulator", "build_number": 1,
                "approximate_connection_time": 18060,
            }, name="hello.json#debug_info"),
            "connection_info": {"app_id": self.app_id},
        }, name="hello.json")

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("ticket") not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_json(self._hello())
        self._sockets.append(ws)
        self.socket_connection_count += 1
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._on_socket_text(message.data)
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
        return ws

    def _on_socket_text(self, data: str) -> None:
        ack = json.loads(data)
        if not isinstance(ack, dict) or "envelope_id" not in ack:
            return
        self.socket_acks.append(ack)
        future = self._pending_acks.get(ack["envelope_id"])
        if future is not None and not future.done():
            future.set_result(ack)

    # ------------------------------------------------------------------ Web API plumbing

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: JsonDict = {}
        try:
            params, token, warnings = await self._read_api_request(request, method)
        except SlackError as exc:
            self._record(request, method, params)
            return self._json({"ok": False, "error": exc.error, **exc.extra})
        self._record(request, method, params)
        fault = self._faults[method].popleft() if self._faults[method] else None
        if fault is not None:
            return self._fault_response(fault)
        try:
            body = {"ok": True, **self._dispatch(method, token, params)}
        except SlackError as exc:
            body = {"ok": False, "error": exc.error, **exc.extra}
        if warnings:
            body["warning"] = ",".join(warnings)
            metadata = body.setdefault("response_metadata", {})
            metadata["warnings"] = metadata.get("warnings", []) + warnings
        return self._json(body)

    def _record(self, request: web.Request, method: str, params: JsonDict) -> None:
        self.calls.append(ApiCall(method, params, dict(request.headers), time.time(),
                                  request.method, dict(request.query)))

    def _dispatch(self, method: str, token: str | None, params: JsonDict) -> JsonDict:
        handler = self._api.get(method)
        if handler is None:
            raise SlackError("unknown_method", req_method=method)
        if method == "oauth.v2.access":  # authenticated by the client id and secret
            return handler(params)
        if token in self.installs and method == "auth.test":
            return self._auth_test_installed(token)
        if token in self.installs and method not in _APP_TOKEN_METHODS:
            return handler(params)
        if token is None:
            raise SlackError("not_authed")
        if token not in (self.bot_token, self.app_token):
            raise SlackError("invalid_auth")
        if (token == self.app_token) != (method in _APP_TOKEN_METHODS):
            raise SlackError("not_allowed_token_type")
        return handler(params)

    async def _read_api_request(
        self, request: web.Request, method: str
    ) -> tuple[JsonDict, str | None, list[str]]:
        """Merge query, form and JSON parameters; find the token (never in a JSON body)."""
        params: JsonDict = dict(request.query)
        warnings: list[str] = []
        if request.method == "POST" and request.content_type == "application/json":
            body = await self._read_json_body(request)
            if "charset" not in request.headers.get("Content-Type", "").lower():
                warnings.append("missing_charset")
            if method not in _FORM_ONLY_METHODS:
                params.update({k: v for k, v in body.items() if k != "token"})
        elif request.method == "POST" and request.content_type in (
            "application/x-www-form-urlencoded", "multipart/form-data"
        ):
            form = await request.post()
            params.update({k: v if isinstance(v, str) else v.file.read() for k, v in form.items()})
        token = params.get("token") if isinstance(params.get("token"), str) else None
        auth = request.headers.get("Authorization")
        if auth is not None and auth.startswith("Basic "):
            # oauth.v2.access: the app's client id and secret as HTTP Basic credentials.
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            params.setdefault("client_id", user)
            params.setdefault("client_secret", password)
        elif auth is not None:
            token = auth[7:].strip() if auth.startswith("Bearer ") else ""
        return params, token, warnings

    @staticmethod
    async def _read_json_body(request: web.Request) -> JsonDict:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            raise SlackError("invalid_json") from exc
        if not isinstance(body, dict):
            raise SlackError("invalid_json")
        return body

    @staticmethod
    def _json(data: JsonDict, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
        base = {"X-Slack-Req-Id": secrets.token_hex(16), "X-OAuth-Scopes": _SCOPES}
        return web.json_response(data, status=status, headers={**base, **(headers or {})})

    def _fault_response(self, fault: _Fault) -> web.Response:
        if fault.status == 429:
            return self._json({"ok": False, "error": "ratelimited"}, 429,
                              {"Retry-After": str(fault.retry_after)})
        error = "service_unavailable" if fault.status == 503 else "internal_error"
        return self._json({"ok": False, "error": error}, fault.status)

    def _api_methods(self) -> dict[str, Callable[[JsonDict], JsonDict]]:
        return {
            "auth.test": self._auth_test,
            "oauth.v2.access": self._oauth_v2_access,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "conversations.replies": self._conversations_replies,
            "conversations.info": self._conversations_info,
            "users.info": self._users_info,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "files.info": self._files_info,
            "files.delete": self._files_delete,
        }

    # ------------------------------------------------------------------ Web API methods

    def _auth_test(self, params: JsonDict) -> JsonDict:
        result = _fill(fixture("auth_test.json"), {
            "ok": True, "url": f"https://{self.team_domain}.slack.com/", "team": self.team_name,
            "user": self.bot_name, "team_id": self.team_id, "user_id": self.bot_user_id,
            "bot_id": self.bot_id, "is_enterprise_install": False,
        }, name="auth_test.json")
        result.pop("ok")
        return result

    def _auth_test_installed(self, token: str) -> JsonDict:
        team_id, team_name = self.installs[token]
        return {"url": f"https://{team_id.lower()}.slack.com/", "team": team_name,
                "user": self.bot_name, "team_id": team_id, "user_id": self.bot_user_id,
                "bot_id": self.bot_id, "is_enterprise_install": False}

    async def _handle_authorize(self, request: web.Request) -> web.Response:
        """The consent page, approved at once: back to the app with a code and the state."""
        query = request.query
        if query.get("client_id") != self.client_id:
            return web.Response(status=400, text="invalid_client_id", content_type="text/html")
        redirect = query.get("redirect_uri") or self.oauth_redirect_url
        if not redirect:
            return web.Response(status=400, text="no redirect_uri configured",
                                content_type="text/html")
        code = f"{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        self._oauth_codes[code] = {
            "team_id": query.get("team", self.team_id),
            "team_name": query.get("team_name", self.team_name),
            "user": query.get("user", "U0INSTALL"), "scope": query.get("scope", ""),
            "redirect_uri": query.get("redirect_uri"), "expires": time.time() + 600}
        target = f"{redirect}{'&' if '?' in redirect else '?'}" + urlencode(
            {"code": code, "state": query.get("state", "")})
        raise web.HTTPFound(target)

    def _oauth_v2_access(self, params: JsonDict) -> JsonDict:
        if params.get("client_id") != self.client_id:
            raise SlackError("invalid_client_id")
        if params.get("client_secret") != self.client_secret:
            raise SlackError("bad_client_secret")
        grant = self._oauth_codes.pop(str(params.get("code") or ""), None)
        if grant is None or grant["expires"] < time.time():
            raise SlackError("invalid_code")
        if grant["redirect_uri"] and params.get("redirect_uri") != grant["redirect_uri"]:
            raise SlackError("bad_redirect_uri")
        token = f"xoxb-{grant['team_id']}-{secrets.token_hex(12)}"
        self.installs[token] = (grant["team_id"], grant["team_name"])
        return {"app_id": self.app_id, "authed_user": {"id": grant["user"]},
                "scope": grant["scope"], "token_type": "bot", "access_token": token,
                "bot_user_id": self.bot_user_id,
                "team": {"id": grant["team_id"], "name": grant["team_name"]},
                "enterprise": None, "is_enterprise_install": False}

    def _apps_connections_open(self, params: JsonDict) -> JsonDict:
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        ws_base = "ws" + self.base_url[len("http"):]
        return {"url": f"{ws_base}/socket?ticket={ticket}&app_id={secrets.token_hex(32)}"}

    def _existing_channel(self, params: JsonDict, name: str = "channel") -> str:
        channel = _required(params, name, "channel_not_found")
        if channel not in self.channels:
            raise SlackError("channel_not_found")
        return channel

    def _postable_channel(self, value: str) -> str:
        """chat.postMessage accepts a channel id, a channel name or a user id (opens a DM)."""
        if value in self.channels:
            channel = value
        elif value.lstrip("#") in (names := {c.get("name"): k for k, c in self.channels.items()}):
            channel = names[value.lstrip("#")]
        elif value in self.users:
            channel = self._im_with(value)
        else:
            raise SlackError("channel_not_found")
        if not self.channels[channel].get("is_member", True):
            raise SlackError("not_in_channel")
        return channel

    def _im_with(self, user: str) -> str:
        for channel_id, channel in self.channels.items():
            if channel["is_im"] and channel["user"] == user:
                return channel_id
        channel_id = self._new_id("D")
        self.add_channel(channel_id, user, is_im=True, user=user)
        return channel_id

    def _message_content(self, params: JsonDict) -> tuple[str | None, list[JsonDict] | None, Any]:
        blocks = _json_param(params, "blocks", "invalid_blocks_format")
        if blocks is not None:
            validate_blocks(blocks)
        attachments = _json_param(params, "attachments", "invalid_attachments")
        text = _str(params, "text")
        return (text[:_MAX_TEXT] if text else text), blocks, attachments

    def _chat_post_message(self, params: JsonDict) -> JsonDict:
        channel = self._postable_channel(_required(params, "channel", "channel_not_found"))
        text, blocks, attachments = self._message_content(params)
        if not (text or blocks or attachments):
            raise SlackError("no_text")
        thread_ts = _str(params, "thread_ts")
        metadata = _json_param(params, "metadata", "invalid_metadata_format")
        broadcast = bool(thread_ts) and _bool(params, "reply_broadcast")
        extra = {
            "subtype": "thread_broadcast" if broadcast else OMIT,
            "attachments": [{"id": i + 1, **a} for i, a in enumerate(attachments)] if attachments else OMIT,
            "metadata": _opt(metadata),
        }
        text = text if text is not None else (_BLOCKS_ONLY_TEXT if blocks else "")
        message = self._store_bot_message(channel, text, blocks=blocks, thread_ts=thread_ts, extra=extra)
        return {"channel": channel, "ts": message["ts"], "message": copy.deepcopy(message)}

    def _own_message(self, params: JsonDict, error: str) -> tuple[str, JsonDict]:
        channel = self._existing_channel(params)
        message = self._find(channel, _required(params, "ts", "message_not_found"))
        if message is None:
            raise SlackError("message_not_found")
        if message.get("user") != self.bot_user_id and message.get("bot_id") != self.bot_id:
            raise SlackError(error)
        return channel, message

    def _chat_update(self, params: JsonDict) -> JsonDict:
        channel, message = self._own_message(params, "cant_update_message")
        text, blocks, attachments = self._message_content(params)
        if text is None and blocks is None and attachments is None:
            raise SlackError("no_text")
        _set_content(message, text, blocks)
        if attachments is not None:
            message["attachments"] = attachments
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"channel": channel, "ts": message["ts"], "text": message["text"],
                "message": copy.deepcopy(message)}

    def _chat_delete(self, params: JsonDict) -> JsonDict:
        channel, message = self._own_message(params, "cant_delete_message")
        self._remove(channel, message)
        return {"channel": channel, "ts": message["ts"]}

    def _chat_post_ephemeral(self, params: JsonDict) -> JsonDict:
        channel = self._postable_channel(_required(params, "channel", "channel_not_found"))
        user = _required(params, "user", "user_not_in_channel")
        if user not in self.users:
            raise SlackError("user_not_in_channel")
        text, blocks, attachments = self._message_content(params)
        if not (text or blocks or attachments):
            raise SlackError("no_text")
        ts = self._next_ts()
        self.ephemerals.append({"channel": channel, "user": user, "text": text or "",
                                "blocks": blocks, "thread_ts": _str(params, "thread_ts"),
                                "message_ts": ts, "source": "chat.postEphemeral"})
        return {"message_ts": ts}

    def _reaction_target(self, params: JsonDict) -> tuple[JsonDict, str]:
        name = _required(params, "name", "invalid_name")
        if not _REACTION_RE.match(name):
            raise SlackError("invalid_name")
        if _str(params, "timestamp") is None:
            raise SlackError("no_item_specified")
        channel = self._existing_channel(params)
        message = self._find(channel, str(params["timestamp"]))
        if message is None:
            raise SlackError("message_not_found")
        return message, name

    def _reactions_add(self, params: JsonDict) -> JsonDict:
        message, name = self._reaction_target(params)
        reactions = message.setdefault("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if reaction is None:
            reaction = {"name": name, "users": [], "count": 0}
            reactions.append(reaction)
        if self.bot_user_id in reaction["users"]:
            raise SlackError("already_reacted")
        reaction["users"].append(self.bot_user_id)
        reaction["count"] += 1
        return {}

    def _reactions_remove(self, params: JsonDict) -> JsonDict:
        message, name = self._reaction_target(params)
        reactions = message.get("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if reaction is None or self.bot_user_id not in reaction["users"]:
            raise SlackError("no_reaction")
        reaction["users"].remove(self.bot_user_id)
        reaction["count"] -= 1
        if not reaction["users"]:
            reactions.remove(reaction)
        if not reactions:
            message.pop("reactions", None)
        return {}

    def _conversations_replies(self, params: JsonDict) -> JsonDict:
        channel = self._existing_channel(params)
        found = self._find(channel, _required(params, "ts"))
        if found is None:
            raise SlackError("thread_not_found")
        root_ts = found.get("thread_ts") or found["ts"]
        thread = self.messages(channel, root_ts)
        try:
            limit = min(max(int(params.get("limit") or 1000), 1), 1000)
        except ValueError as exc:
            raise SlackError("invalid_limit") from exc
        start = _cursor_start(thread, _str(params, "cursor"))
        page, rest = thread[start : start + limit], thread[start + limit :]
        next_cursor = _encode_cursor(rest[0]["ts"]) if rest else ""
        return {"messages": page, "has_more": bool(rest),
                "response_metadata": {"next_cursor": next_cursor}}

    def _conversations_info(self, params: JsonDict) -> JsonDict:
        channel = copy.deepcopy(self.channels[self._existing_channel(params)])
        if _bool(params, "include_num_members") and not channel["is_im"]:
            channel["num_members"] = len(self.users)
        return {"channel": channel}

    def _users_info(self, params: JsonDict) -> JsonDict:
        user = self.users.get(_required(params, "user", "user_not_found"))
        if user is None:
            raise SlackError("user_not_found")
        user = copy.deepcopy(user)
        if _bool(params, "include_locale"):
            user["locale"] = "en-US"
        return {"user": user}

    def _files_info(self, params: JsonDict) -> JsonDict:
        file_obj = self.files.get(_required(params, "file", "file_not_found"))
        if file_obj is None:
            raise SlackError("file_not_found")
        return {"file": copy.deepcopy(file_obj), "comments": [],
                "response_metadata": {"next_cursor": ""}}

    def _files_delete(self, params: JsonDict) -> JsonDict:
        """Deletes one of the bot's files; it disappears from the messages that shared it,
        and a share message left with no text and no files goes too."""
        file_id = _required(params, "file", "file_not_found")
        file_obj = self.files.get(file_id)
        if file_obj is None:
            raise SlackError("file_not_found")
        if file_obj.get("user") != self.bot_user_id:
            raise SlackError("cant_delete_file")
        del self.files[file_id]
        self._file_contents.pop(file_id, None)
        self.deleted_files.append(file_id)
        for channel, history in self.history.items():
            for message in list(history):
                files = message.get("files") or []
                if not any(f.get("id") == file_id for f in files):
                    continue
                message["files"] = [f for f in files if f.get("id") != file_id]
                if not message["files"]:
                    del message["files"]
                    if not message.get("text"):
                        self._remove(channel, message)
        return {}

    def _files_get_upload_url_external(self, params: JsonDict) -> JsonDict:
        filename = _required(params, "filename")
        try:
            length = int(_required(params, "length"))
        except ValueError as exc:
            raise _invalid_arguments("must be an integer [json-pointer:/length]") from exc
        if length <= 0:
            raise SlackError("missing_argument")
        if length > self.upload_size_limit:
            raise SlackError("file_upload_size_restricted")
        alt_txt = _str(params, "alt_txt")
        if alt_txt is not None and len(alt_txt) > 1000:
            raise SlackError("alt_txt_too_large")
        upload_id = base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("=")
        pending = _PendingUpload(self._new_id("F"), filename, length, alt_txt)
        self._pending_uploads[upload_id] = pending
        self._uploads_by_file[pending.file_id] = pending
        return {"upload_url": f"{self.base_url}/upload/v1/{upload_id}", "file_id": pending.file_id}

    def _files_complete_upload_external(self, params: JsonDict) -> JsonDict:
        entries = _json_param(params, "files", "invalid_arguments")
        if not isinstance(entries, list) or not entries or not all(
            isinstance(e, dict) and "id" in e for e in entries
        ):
            raise _invalid_arguments("missing required field: files")
        channels = _str(params, "channels")
        channel = _str(params, "channel_id") or (channels.split(",")[0] if channels else None)
        thread_ts = _str(params, "thread_ts")
        if thread_ts and not channel:
            raise _invalid_arguments("thread_ts requires channel_id")
        if channel is not None:
            channel = self._postable_channel(channel)
        pendings = [self._uploads_by_file.get(str(e["id"])) for e in entries]
        if any(p is None or p.content is None for p in pendings):
            raise SlackError("file_not_found")
        file_objs = [self._complete_file(p, e) for p, e in zip(pendings, entries, strict=True)
                     if p is not None]
        comment = _str(params, "initial_comment")
        if channel is not None:
            self._share_upload(channel, file_objs, thread_ts, comment)
        return {"files": copy.deepcopy(file_objs)}

    def _complete_file(self, pending: _PendingUpload, entry: JsonDict) -> JsonDict:
        content = pending.content or b""
        mimetype = mimetypes.guess_type(pending.filename)[0] or "application/octet-stream"
        title = str(entry.get("title") or pending.filename)
        file_obj = self._file_object(pending.file_id, pending.filename, title, mimetype,
                                     content, self.bot_user_id)
        if pending.alt_txt:
            file_obj["alt_txt"] = pending.alt_txt
        self.files[pending.file_id] = file_obj
        self._file_contents[pending.file_id] = content
        del self._uploads_by_file[pending.file_id]
        return file_obj

    def _share_upload(
        self, channel: str, file_objs: list[JsonDict], thread_ts: str | None, comment: str | None
    ) -> None:
        """Post the bot's upload message and record each completed upload."""
        extra = {"files": OMIT, "upload": True, "display_as_bot": False}
        message = self._store_bot_message(channel, comment or "", thread_ts=thread_ts, extra=extra)
        for file_obj in file_objs:
            self._share(file_obj, channel, message["ts"], thread_ts, self.bot_user_id)
            self.uploads.append({
                "file_id": file_obj["id"], "filename": file_obj["name"],
                "title": file_obj["title"], "bytes": self._file_contents[file_obj["id"]],
                "channel": channel, "thread_ts": thread_ts, "initial_comment": comment,
                "message_ts": message["ts"],
            })
        message["files"] = copy.deepcopy(file_objs)

    # ------------------------------------------------------------------ uploads, files, hooks

    async def _handle_upload(self, request: web.Request) -> web.Response:
        pending = self._pending_uploads.get(request.match_info["upload_id"])
        if pending is None:
            return web.Response(status=404, text="Not Found")
        pending.content = await _read_upload_body(request)
        return web.Response(text=f"OK - {len(pending.content)}", content_type="text/plain")

    async def _handle_file(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        file_id = key.split("-")[1] if key.count("-") >= 1 else ""
        file_obj = self.files.get(file_id)
        if file_obj is None:
            return web.Response(status=404, text="<html><body>Not found</body></html>",
                                content_type="text/html")
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        authorized = bearer == self.bot_token or bearer in self.installs
        self.downloads.append({"path": request.path, "file_id": file_id, "authorized": authorized})
        if not authorized or file_id in self._html_login_files:
            return self._login_page()
        headers = {}
        if "/download/" in request.path:
            headers["Content-Disposition"] = f'attachment; filename="{file_obj["name"]}"'
        return web.Response(body=self._file_contents[file_id], headers=headers,
                            content_type=file_obj["mimetype"])

    async def _handle_permalink(self, request: web.Request) -> web.Response:
        return self._login_page()

    def _login_page(self) -> web.Response:
        return web.Response(text=_LOGIN_PAGE.format(team=self.team_name), content_type="text/html")

    async def _handle_hook(self, request: web.Request) -> web.Response:
        hook = self._hooks.get(request.match_info["hook_id"])
        if hook is None or hook.secret != request.match_info["secret"]:
            return web.Response(status=404, text="no_service")
        try:
            body = await self._read_json_body(request)
        except SlackError:
            return web.Response(status=400, text="invalid_payload")
        self.response_url_posts.append(body)
        try:
            self._apply_hook(hook, body)
        except SlackError as exc:
            return web.Response(status=400, text=exc.error)
        return self._json({"ok": True})

    def _apply_hook(self, hook: _Hook, body: JsonDict) -> None:
        """What a response_url post does: delete, replace, post in channel or ephemerally."""
        original = self._find(hook.channel, hook.message_ts) if hook.message_ts else None
        if _bool(body, "delete_original"):
            if original is None:
                raise SlackError("message_not_found")
            self._remove(hook.channel, original)
            return
        text, blocks, _ = self._message_content(body)
        if not (text or blocks):
            raise SlackError("no_text")
        text = text if text is not None else _BLOCKS_ONLY_TEXT
        if _bool(body, "replace_original") and original is not None:
            _set_content(original, text, blocks or [])
        elif body.get("response_type") == "in_channel":
            thread_ts = _str(body, "thread_ts") or hook.thread_ts
            self._store_bot_message(hook.channel, text, blocks=blocks, thread_ts=thread_ts)
        else:
            self.ephemerals.append({"channel": hook.channel, "user": hook.user, "text": text,
                                    "blocks": blocks, "thread_ts": hook.thread_ts,
                                    "message_ts": self._next_ts(), "source": "response_url"})


# --------------------------------------------------------------------------- module helpers


def _locate_element(blocks: list[JsonDict], action_id: str) -> tuple[str, JsonDict]:
    """The block_id and element with ``action_id`` (a made-up button when absent)."""
    for block in blocks:
        candidates = list(block.get("elements", []))
        if "accessory" in block:
            candidates.append(block["accessory"])
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return str(block.get("block_id") or _random_block_id()), element
    return _random_block_id(), {}


def _encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _cursor_start(thread: list[JsonDict], cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        ts = base64.b64decode(cursor).decode().removeprefix("next_ts:")
        return next(i for i, m in enumerate(thread) if float(m["ts"]) >= float(ts))
    except (ValueError, StopIteration) as exc:
        raise SlackError("invalid_cursor") from exc


async def _read_upload_body(request: web.Request) -> bytes:
    """The uploaded bytes: a raw body, or the first file part of a multipart body."""
    if request.content_type != "multipart/form-data":
        return await request.read()
    reader = await request.multipart()
    async for part in reader:
        if isinstance(part, aiohttp.BodyPartReader) and (part.filename or part.name in ("file", "filename")):
            return bytes(await part.read())
    return b""
