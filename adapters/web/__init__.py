"""The web playground: a local single-page app and its JSON API, served by ``imagebot serve``.

Routes (all mounted on serve's aiohttp app):

* ``GET /`` the page, ``GET /static/{name}`` its script, styles and icon.
* ``GET /api/config`` models, ratios, sizes, defaults and the offline flag.
* ``GET|POST /api/threads`` list web threads, create one (it exists once it has settings).
* ``GET /api/threads/{id}`` a thread's turns as stored; ``GET|PUT .../settings`` its settings.
* ``POST /api/threads/{id}/turns`` run a turn (multipart: prompt, option fields, ``refs``).
* ``DELETE /api/turns/{id}`` remove a turn from its thread's history.
* ``GET /api/images/{sha256}`` an image from the blob table; ``.../download`` as attachment.
* ``/usage`` and ``/api/usage...``: usage, policy and audit (:mod:`adapters.web.usage`).

With ``IMAGEBOT_WEB_TOKEN`` set every route needs the token: ``/?token=...`` once sets an
HttpOnly, SameSite=Strict cookie; API clients may send ``Authorization: Bearer <token>``.
Writes need the ``X-Imagebot: 1`` header (and a same-host ``Origin`` when one is sent), which a
cross-site form or a simple cross-origin fetch cannot produce.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from adapters.turns import TurnRunner
from bot import images
from bot.errors import ErrorKind, ImagebotError, OptionError
from bot.model import Attachment, Author, IncomingMessage, Reply, ThreadKey, TurnView, ViewPart
from bot.options import ASPECT_RATIOS, IMAGE_SIZES, OptionInput
from bot.presentation import footer
from bot.runtime import Core
from bot.service import TurnStart

logger = logging.getLogger(__name__)

PLATFORM = "web"
AUTHOR = Author(id="web", name="You")
COOKIE = "imagebot_web"
CSRF_HEADER = "X-Imagebot"
STATIC_DIR = Path(__file__).parent / "static"
STATIC_TYPES = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
IMAGE_TYPES = {
    "png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif",
    "heic": "image/heic", "heif": "image/heif", "bmp": "image/bmp", "tiff": "image/tiff",
}
EXTENSIONS = {"image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif",
              "image/heic": "heic", "image/heif": "heif", "image/bmp": "bmp",
              "image/tiff": "tiff"}
#: The HTTP status of each kind of failure (4xx the user's to fix, 5xx ours or Gemini's).
STATUS_BY_KIND: dict[ErrorKind, int] = {
    ErrorKind.OPTION: 400, ErrorKind.ATTACHMENT: 400, ErrorKind.PROMPT: 400,
    ErrorKind.TOO_LARGE: 413, ErrorKind.NOT_FOUND: 404, ErrorKind.FORBIDDEN: 403,
    ErrorKind.POLICY: 403, ErrorKind.QUOTA: 429,
    ErrorKind.CANCELLED: 503, ErrorKind.CONFIG: 503, ErrorKind.STARTUP: 503,
    ErrorKind.BLOCKED: 422, ErrorKind.SAFETY: 422, ErrorKind.RECITATION: 422,
    ErrorKind.NO_IMAGE: 422, ErrorKind.EMPTY: 422, ErrorKind.GENERATION: 422,
    ErrorKind.RATE_LIMIT: 429, ErrorKind.TIMEOUT: 504, ErrorKind.SERVICE: 502,
    ErrorKind.OUTAGE: 502, ErrorKind.CONNECTION: 502, ErrorKind.AUTH: 502,
    ErrorKind.MODEL: 502, ErrorKind.BAD_REQUEST: 502,
}
CSP = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    # Google's search suggestions come with their own <style>; a srcdoc frame inherits this.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' blob: data:",
    "connect-src 'self'",
    "frame-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
IMMUTABLE = "private, max-age=31536000, immutable"
_THREAD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TRUE = ("1", "true", "on", "yes")
_FALSE = ("0", "false", "off", "no")
_LOCKED_PAGE = """<!doctype html><meta charset="utf-8"><title>imagebot playground</title>
<body style="font:16px system-ui;max-width:36em;margin:4em auto;padding:0 1em">
<h1>Access token needed</h1><p>This playground is protected by <code>IMAGEBOT_WEB_TOKEN</code>.
Open it once as <code>/?token=&lt;your token&gt;</code>; the browser then remembers it.</p>
"""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refusal(Exception):
    """A request the playground turns down before reaching the core (bad input, no access)."""

    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


class WebPlayground:
    """The playground adapter: pages and JSON API on the shared aiohttp app."""

    name = "web"

    def __init__(self, core: Core) -> None:
        self.core = core
        self.service = core.service
        self.runner = TurnRunner(core.service, name="web")
        self._token = core.settings.web_token or None
        # The cookie carries a value derived from the token, never the token itself.
        self._cookie = (hmac.new(self._token.encode(), b"imagebot web playground",
                                 hashlib.sha256).hexdigest() if self._token else "")
        self._static: dict[str, bytes] = {}

    # --- adapter protocol ----------------------------------------------------------------

    def mount(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/", self.index),
            ("GET", "/static/{name}", self.static),
            ("GET", "/api/config", self.config),
            ("GET", "/api/threads", self.list_threads),
            ("POST", "/api/threads", self.create_thread),
            ("GET", "/api/threads/{thread}", self.thread),
            ("GET", "/api/threads/{thread}/settings", self.get_settings),
            ("PUT", "/api/threads/{thread}/settings", self.put_settings),
            ("POST", "/api/threads/{thread}/turns", self.post_turn),
            ("DELETE", "/api/turns/{turn}", self.delete_turn),
            ("GET", "/api/images/{sha}", self.image),
            ("GET", "/api/images/{sha}/download", self.image),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._guarded(handler))
        from adapters.web.usage import UsagePages  # /usage: charts, policy, audit (admins)

        UsagePages(self.core).mount(app)

    async def start(self) -> None:
        """Nothing to start: the routes live on serve's HTTP server."""

    async def stop(self) -> None:
        """Turns in flight belong to their requests; the service's shutdown finishes them."""
        self.runner.stopping = True

    def status(self) -> dict[str, Any]:
        return {"ok": True}

    # --- access control and error handling -----------------------------------------------

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                self._authorize(request)
                if request.method not in ("GET", "HEAD"):
                    _check_csrf(request)
                response = await handler(request)
            except Refusal as exc:
                response = self._refusal(request, exc)
            except ImagebotError as exc:
                response = _error(exc.user_message, exc.kind, error_status(exc))
            except web.HTTPException as exc:
                response = _error(_http_message(exc), "request", exc.status)
            except Exception:
                logger.exception("web playground: %s %s failed", request.method, request.path)
                response = _error("Something went wrong inside imagebot; the details are in "
                                  "its log. Try again.", "internal", 500)
            response.headers.update(SECURITY_HEADERS)
            return response

        return guarded

    def _authorize(self, request: web.Request) -> None:
        if self._token is None:
            return
        bearer = request.headers.get("Authorization", "")
        if bearer.startswith("Bearer ") and _same(bearer[7:].strip(), self._token):
            return
        if _same(request.cookies.get(COOKIE, ""), self._cookie):
            return
        if request.path == "/" and _same(request.query.get("token", ""), self._token):
            return
        raise Refusal(401, "This playground needs its access token (IMAGEBOT_WEB_TOKEN).", "auth")

    def _refusal(self, request: web.Request, exc: Refusal) -> web.Response:
        if exc.status == 401 and not request.path.startswith("/api/"):
            return web.Response(status=401, text=_LOCKED_PAGE, content_type="text/html")
        response = _error(exc.message, exc.kind, exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="imagebot"'
        return response

    # --- pages ---------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        if self._token and "token" in request.query:
            response = web.Response(status=303, headers={"Location": "/"})
            response.set_cookie(COOKIE, self._cookie, httponly=True, samesite="Strict",
                                secure=request.secure, path="/", max_age=400 * 86400)
            return response
        body = await self._read_static("index.html")
        return web.Response(body=body, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_TYPES:
            raise Refusal(404, "No such file.", "not_found")
        body = await self._read_static(name)
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        headers = {"Cache-Control": "no-cache", "ETag": etag}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        charset = None if name.endswith(".svg") else "utf-8"
        return web.Response(body=body, content_type=STATIC_TYPES[name], charset=charset,
                            headers=headers)

    async def _read_static(self, name: str) -> bytes:
        if name not in self._static:
            self._static[name] = await asyncio.to_thread((STATIC_DIR / name).read_bytes)
        return self._static[name]

    # --- API: configuration and threads --------------------------------------------------

    async def config(self, request: web.Request) -> web.Response:
        models = [{"id": model_id, "label": caps.label, "sizes": list(caps.sizes),
                   "max_refs": caps.max_reference_images, "search": caps.search,
                   "thinking": caps.thinking}
                  for model_id, caps in self.core.settings.models.items()]
        return web.json_response({
            "models": models, "ratios": list(ASPECT_RATIOS), "sizes": list(IMAGE_SIZES),
            "defaults": self._effective(OptionInput()), "offline": self.core.offline,
            "max_attachment_bytes": self.core.settings.max_attachment_bytes,
        })

    async def list_threads(self, request: web.Request) -> web.Response:
        summaries = await self.service.threads(PLATFORM)
        return web.json_response({"threads": [
            {"id": s.key.thread, "title": s.title, "turns": s.turns, "updated_at": s.updated_at}
            for s in summaries if not s.key.workspace and not s.key.channel]})

    async def create_thread(self, request: web.Request) -> web.Response:
        body = await _json_body(request, allow_empty=True)
        key = _key(uuid.uuid4().hex)
        settings = await self.service.update_settings(key, _option_input(body))
        return web.json_response({"id": key.thread, "settings": self._effective(settings)},
                                 status=201)

    async def thread(self, request: web.Request) -> web.Response:
        key = _key(request.match_info["thread"])
        summary = await self.service.thread(key)
        if summary is None:
            raise _no_thread()
        turns = await self.service.history(key)
        settings = await self.service.settings_of(key)
        return web.json_response({"id": key.thread, "title": summary.title,
                                  "settings": self._effective(settings),
                                  "turns": [turn_json(t) for t in turns]})

    async def get_settings(self, request: web.Request) -> web.Response:
        key = await self._existing(request)
        settings = await self.service.settings_of(key)
        return web.json_response({"settings": self._effective(settings),
                                  "stored": settings.given()})

    async def put_settings(self, request: web.Request) -> web.Response:
        key = _key(request.match_info["thread"])
        updated = await self.service.update_settings(key, _option_input(await _json_body(request)))
        return web.json_response({"settings": self._effective(updated),
                                  "stored": updated.given()})

    async def _existing(self, request: web.Request) -> ThreadKey:
        key = _key(request.match_info["thread"])
        if not await self.service.is_session(key):
            raise _no_thread()
        return key

    def _effective(self, stored: OptionInput) -> dict[str, Any]:
        """What the selectors should show for a thread: its settings over the defaults."""
        try:
            options = self.service.effective(stored)
        except OptionError:
            options = self.service.effective(OptionInput())
        kept_size = stored.size if (stored.size or "").upper() in IMAGE_SIZES else None
        return {"model": options.model, "aspect_ratio": options.aspect_ratio or "auto",
                "size": options.size or (kept_size or "1K").upper(), "search": options.search,
                "summary": options.summary()}

    # --- API: turns ----------------------------------------------------------------------

    async def post_turn(self, request: web.Request) -> web.Response:
        key = _key(request.match_info["thread"])
        if request.content_type not in ("multipart/form-data",
                                        "application/x-www-form-urlencoded"):
            raise Refusal(400, "Send the turn as multipart/form-data.", "request")
        form = await request.post()
        message = IncomingMessage(author=AUTHOR, text=_field(form, "prompt"),
                                  attachments=await _attachments(form),
                                  options=_option_input(_form_options(form)))
        reporter = WebReporter()
        reply = await self.runner.run(
            key, reporter, lambda started: self.service.handle(key, message, on_start=started))
        if reply is None or reply.view is None:
            raise reporter.error or ImagebotError("The turn did not finish.")
        return web.json_response({"turn": turn_json(reply.view)}, status=201)

    async def delete_turn(self, request: web.Request) -> web.Response:
        turn_id = request.match_info["turn"]
        record = await self.service.turn(turn_id)
        if record is None or record.thread.platform != PLATFORM:
            raise Refusal(404, "That turn no longer exists.", "not_found")
        await self.service.delete(turn_id, by=AUTHOR)
        return web.json_response({"deleted": turn_id})

    # --- API: images ---------------------------------------------------------------------

    async def image(self, request: web.Request) -> web.StreamResponse:
        sha = request.match_info["sha"]
        if not _SHA256.fullmatch(sha):
            raise Refusal(404, "No such image.", "not_found")
        etag = f'"{sha}"'
        download = request.path.endswith("/download")
        headers = {"Cache-Control": IMMUTABLE, "ETag": etag}
        if request.headers.get("If-None-Match") == etag and not download:
            return web.Response(status=304, headers=headers)
        data = await self.service.image(sha)
        mime = IMAGE_TYPES.get(images.sniff(data), "application/octet-stream")
        if download:
            extension = EXTENSIONS.get(mime, "png")
            headers["Content-Disposition"] = (
                f'attachment; filename="imagebot-{sha[:12]}.{extension}"')
        return web.Response(body=data, content_type=mime, headers=headers)


# --- turn records as JSON ----------------------------------------------------------------


def image_urls(sha: str) -> dict[str, str]:
    return {"url": f"/api/images/{sha}", "download_url": f"/api/images/{sha}/download"}


def _part_json(part: ViewPart) -> dict[str, Any]:
    if part.image is None:
        return {"kind": "text", "text": part.text}
    image = part.image
    return {"kind": "image", **image_urls(image.sha256), "mime_type": image.mime_type,
            "width": image.width, "height": image.height}


def turn_json(view: TurnView) -> dict[str, Any]:
    """A stored turn as the page shows it: prompt, references, the reply in model order."""
    reply = view.reply
    return {
        "id": view.id,
        "prompt": view.prompt,
        "author": view.author.name or view.author.id,
        "created_at": view.created_at,
        "refs": [{"name": r.name, "mime_type": r.mime_type, **image_urls(r.sha256)}
                 for r in view.refs],
        "parts": [_part_json(p) for p in reply.parts],
        "thoughts": [_part_json(p) for p in reply.thoughts],
        "sources": [{"title": s.title, "url": s.url} for s in reply.sources],
        "search_queries": list(reply.search_queries),
        "search_entry_point": reply.search_entry_point,
        "notices": list(reply.notices),
        "settings": reply.settings,
        "usage": dict(reply.usage.__dict__),
        "elapsed": reply.elapsed,
        "model": reply.model,
        "offline": reply.offline,
        "footer": footer(reply),
    }


class WebReporter:
    """The web's side of a turn: the request waits for it, so it only keeps the outcome."""

    def __init__(self) -> None:
        self.error: ImagebotError | None = None

    async def working(self, *, queued: bool) -> None:
        """The page shows its own pending state."""

    async def started(self, start: TurnStart) -> None:
        """The page shows its own pending state."""

    async def finished(self, reply: Reply) -> dict[str, Any]:
        return {}

    async def failed(self, error: ImagebotError) -> None:
        self.error = error

    async def close(self) -> None:
        """Nothing to clean up."""


def _no_thread() -> Refusal:
    return Refusal(404, "That thread does not exist (it may have been made on another "
                        "imagebot database). Start a new thread.", "not_found")


# --- request parsing ---------------------------------------------------------------------


def _key(thread: str) -> ThreadKey:
    if not _THREAD_ID.fullmatch(thread):
        raise Refusal(404, "That is not a playground thread id.", "not_found")
    return ThreadKey(PLATFORM, "", "", thread)


async def _json_body(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    if allow_empty and not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise Refusal(400, "The request body must be a JSON object.", "request") from exc
    if not isinstance(body, dict):
        raise Refusal(400, "The request body must be a JSON object.", "request")
    return body


def _option_input(data: dict[str, Any]) -> OptionInput:
    """Selector values (``model``, ``aspect_ratio``, ``size``, ``search``) as an OptionInput."""
    given: dict[str, Any] = {}
    for name in ("model", "aspect_ratio", "size"):
        value = data.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise Refusal(400, f"`{name}` must be a string.", "option")
        given[name] = value
    search = data.get("search")
    if search is not None:
        if not isinstance(search, bool):
            raise Refusal(400, "`search` must be true or false.", "option")
        given["search"] = search
    return OptionInput(**given)


def _field(form: MultiDictProxy[Any], name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def _form_options(form: MultiDictProxy[Any]) -> dict[str, Any]:
    data: dict[str, Any] = {name: _field(form, name) for name in ("model", "aspect_ratio", "size")}
    search = _field(form, "search").strip().lower()
    if search in _TRUE:
        data["search"] = True
    elif search in _FALSE:
        data["search"] = False
    elif search:
        raise Refusal(400, "`search` must be true or false.", "option")
    return data


async def _attachments(form: MultiDictProxy[Any]) -> tuple[Attachment, ...]:
    files = [f for f in form.getall("refs", []) if isinstance(f, FileField)]
    datas = await asyncio.gather(*(asyncio.to_thread(f.file.read) for f in files))
    return tuple(Attachment.from_bytes(f.filename or "image", data, f.content_type or "")
                 for f, data in zip(files, datas, strict=True))


def _check_csrf(request: web.Request) -> None:
    if request.headers.get(CSRF_HEADER) != "1":
        raise Refusal(403, f"Missing the {CSRF_HEADER}: 1 header that writes need.", "csrf")
    origin = request.headers.get("Origin")
    if origin and (origin == "null" or urlsplit(origin).netloc != request.host):
        raise Refusal(403, "Cross-site requests are not accepted.", "csrf")


def error_status(exc: ImagebotError) -> int:
    """The HTTP status for a failure the user is told about (4xx theirs, 5xx ours or Gemini's)."""
    return STATUS_BY_KIND.get(exc.kind, 500)


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def _http_message(exc: web.HTTPException) -> str:
    if exc.status == 413:
        return "The upload is too large for one request. Attach fewer or smaller images."
    return exc.reason or "The request could not be handled."


def _error(message: str, kind: str, status: int) -> web.Response:
    return web.json_response({"error": message, "kind": kind}, status=status)
