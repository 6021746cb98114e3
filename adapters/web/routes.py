"""The playground's routes: the page and its files, and the JSON API over the service."""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters.turns import Reporter, Ticket, TurnCall, TurnDescription, TurnHooks, TurnRunner
from adapters.web import parsing
from adapters.web.access import LOCKED_PAGE, Access
from adapters.web.batch import WebBatches, job_json
from adapters.web.errors import (
    INTERNAL,
    Refusal,
    error_response,
    error_status,
    for_selectors,
    http_message,
    no_thread,
)
from adapters.web.events import EventStream, WebReporter, wants_events
from adapters.web.parsing import PLATFORM, thread_key
from adapters.web.views import settings_json, thread_json, turn_json
from bot import images, messages
from bot.errors import ImagebotError
from bot.model import Author, IncomingMessage, Reply, ThreadKey
from bot.options import ASPECT_RATIOS, IMAGE_SIZES, OptionInput
from bot.runtime import Core

logger = logging.getLogger(__name__)

AUTHOR = Author(id="web", name="You")
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
IMMUTABLE = "private, max-age=31536000, immutable"
_SHA256_CHARS = frozenset("0123456789abcdef")
_REFUSED_PAGE = """<!doctype html><meta charset="utf-8"><title>imagebot playground</title>
<body style="font:16px system-ui;max-width:36em;margin:4em auto;padding:0 1em">
<h1>Not available here</h1><p>{message}</p>
"""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebPlayground:
    """The playground adapter: pages and JSON API on the shared aiohttp app."""

    name = "web"

    def __init__(self, core: Core) -> None:
        self.core = core
        self.service = core.service
        self.runner = TurnRunner(core.service, name="web")
        self.access = Access(core.settings.web_token)
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
            ("PATCH", "/api/threads/{thread}", self.rename_thread),
            ("DELETE", "/api/threads/{thread}", self.delete_thread),
            ("GET", "/api/threads/{thread}/settings", self.get_settings),
            ("PUT", "/api/threads/{thread}/settings", self.put_settings),
            ("POST", "/api/threads/{thread}/turns", self.post_turn),
            ("DELETE", "/api/turns/{turn}", self.delete_turn),
            ("POST", "/api/live/{ticket}/cancel", self.cancel_turn),
            ("POST", "/api/turns/{turn}/use", self.use_candidate),
            ("GET", "/api/images/{sha}", self.image),
            ("GET", "/api/images/{sha}/download", self.image),
        ]
        routes += WebBatches(self.service).routes()
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

    # --- one error hook for every route --------------------------------------------------

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                self.access.check(request)
                return await handler(request)
            except Refusal as exc:
                return _refusal(request, exc)
            except ImagebotError as exc:
                return error_response(for_selectors(exc.user_message), exc.kind,
                                      error_status(exc))
            except web.HTTPException as exc:
                return error_response(http_message(exc), "request", exc.status)
            except Exception:
                logger.exception("web playground: %s %s failed", request.method, request.path)
                return error_response(INTERNAL, "internal", 500)

        return guarded

    # --- pages ---------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        login = self.access.login(request)
        if login is not None:
            return login
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
                   "thinking": caps.thinking, "kind": caps.kind,
                   "ratios": list(caps.ratios or ASPECT_RATIOS), "max_count": caps.max_count}
                  for model_id, caps in self.core.settings.models.items()]
        return web.json_response({
            "models": models, "ratios": list(ASPECT_RATIOS), "sizes": list(IMAGE_SIZES),
            "defaults": settings_json(self.service, OptionInput()),
            "offline": self.core.offline,
            "max_attachment_bytes": self.core.settings.max_attachment_bytes,
        })

    async def list_threads(self, request: web.Request) -> web.Response:
        """Threads with at least one turn: one made only of settings is not worth a line."""
        summaries = await self.service.threads(PLATFORM)
        batched = {job.key.thread for job in await self.service.batches.jobs(platform=PLATFORM)}
        return web.json_response({"threads": [
            thread_json(s) for s in summaries
            if (s.turns or s.key.thread in batched) and not s.key.workspace
            and not s.key.channel]})

    async def create_thread(self, request: web.Request) -> web.Response:
        body = await parsing.json_body(request, allow_empty=True)
        key = thread_key(uuid.uuid4().hex)
        settings = await self.service.update_settings(key, parsing.option_input(body))
        return web.json_response({"id": key.thread,
                                  "settings": settings_json(self.service, settings)},
                                 status=201)

    async def thread(self, request: web.Request) -> web.Response:
        key = thread_key(request.match_info["thread"])
        summary = await self.service.thread(key)
        if summary is None:
            raise no_thread()
        turns = await self.service.history(key)
        settings = await self.service.settings_of(key)
        batches = await self.service.batches.jobs(key)
        return web.json_response({"id": key.thread, "title": summary.title,
                                  "settings": settings_json(self.service, settings),
                                  "turns": [turn_json(t) for t in turns],
                                  "batches": [job_json(j, self.service.batches.label(j.model))
                                              for j in reversed(batches)]})

    async def rename_thread(self, request: web.Request) -> web.Response:
        key = thread_key(request.match_info["thread"])
        title = parsing.title_of(await parsing.json_body(request))
        if not await self.service.rename_thread(key, title):
            raise no_thread()
        return web.json_response({"id": key.thread, "title": title})

    async def delete_thread(self, request: web.Request) -> web.Response:
        key = thread_key(request.match_info["thread"])
        if not await self.service.delete_thread(key, by=AUTHOR):
            raise no_thread()
        return web.json_response({"deleted": key.thread})

    async def get_settings(self, request: web.Request) -> web.Response:
        key = await self._existing(request)
        settings = await self.service.settings_of(key)
        return web.json_response({"settings": settings_json(self.service, settings),
                                  "stored": settings.given()})

    async def put_settings(self, request: web.Request) -> web.Response:
        key = thread_key(request.match_info["thread"])
        given = parsing.option_input(await parsing.json_body(request))
        updated = await self.service.update_settings(key, given)
        return web.json_response({"settings": settings_json(self.service, updated),
                                  "stored": updated.given()})

    async def _existing(self, request: web.Request) -> ThreadKey:
        key = thread_key(request.match_info["thread"])
        if not await self.service.is_session(key):
            raise no_thread()
        return key

    # --- API: turns ----------------------------------------------------------------------

    async def post_turn(self, request: web.Request) -> web.StreamResponse:
        """Runs a turn. With ``Accept: text/event-stream`` the answer is a stream of its
        progress, then the stored turn (see :mod:`adapters.web.events`); otherwise JSON
        once it is done."""
        key = thread_key(request.match_info["thread"])
        form = await parsing.read_form(request)
        prompt = parsing.form_field(form, "prompt")
        message = IncomingMessage(author=AUTHOR, text=prompt,
                                  attachments=await parsing.attachments(form),
                                  options=parsing.form_options(form))
        typed = parsing.typed_options(prompt)
        ticket = Ticket.new(AUTHOR.id)

        def call(hooks: TurnHooks) -> Awaitable[Reply]:
            return self.service.handle(key, message, on_start=hooks.on_start,
                                       on_progress=hooks.on_progress)

        # Resumable by another worker if this one dies (uploads are bytes: those are not).
        resumable = None if message.attachments else TurnDescription(
            platform=PLATFORM, kind="message", requester=AUTHOR.id, text=prompt,
            options=message.options.given())
        if wants_events(request):
            stream = await EventStream.start(request)
            reporter = WebReporter(stream, ticket=ticket.id,
                                   reword=lambda text: for_selectors(text, typed))
            await self.runner.run(key, reporter, call, ticket=ticket, request=resumable)
            await stream.end()
            return stream.response
        reporter = WebReporter()
        reply = await self.runner.run(key, reporter, call, ticket=ticket, request=resumable)
        if reply is None or reply.view is None:
            error = reporter.error or ImagebotError("The turn did not finish.")
            message_text = for_selectors(error.user_message, typed)
            return error_response(message_text, error.kind, error_status(error))
        return web.json_response({"turn": turn_json(reply.view)}, status=201)

    def resumed(self, key: ThreadKey, request: TurnDescription,
                ticket: Ticket) -> tuple[Reporter, TurnCall] | None:
        """A turn taken over from a worker that died: it runs and shows in the thread."""
        message = IncomingMessage(author=AUTHOR, text=request.text,
                                  options=OptionInput.from_dict(request.options))

        def call(hooks: TurnHooks) -> Awaitable[Reply]:
            return self.service.handle(key, message, on_start=hooks.on_start,
                                       on_progress=hooks.on_progress)

        return WebReporter(), call

    async def cancel_turn(self, request: web.Request) -> web.Response:
        """The page's Cancel: stops a turn that waits or runs; nothing is stored."""
        outcome = self.runner.cancel(request.match_info["ticket"], by=AUTHOR.id, by_name="you")
        if outcome == "cancelled":
            return web.json_response({"cancelled": True}, status=202)
        if outcome == "not_allowed":
            raise Refusal(403, messages.CANCEL_NOT_YOURS, "forbidden")
        raise Refusal(409, messages.CANCEL_GONE, "gone")

    async def delete_turn(self, request: web.Request) -> web.Response:
        turn_id = request.match_info["turn"]
        record = await self.service.turn(turn_id)
        if record is None or record.thread.platform != PLATFORM:
            raise Refusal(404, "That turn no longer exists.", "not_found")
        await self.service.delete(turn_id, by=AUTHOR)
        return web.json_response({"deleted": turn_id})

    async def use_candidate(self, request: web.Request) -> web.Response:
        """``{"number": 3}``: the thread continues from candidate U3 of this turn."""
        turn_id = request.match_info["turn"]
        record = await self.service.turn(turn_id)
        if record is None or record.thread.platform != PLATFORM:
            raise Refusal(404, "That turn no longer exists.", "not_found")
        number = (await parsing.json_body(request)).get("number")
        if isinstance(number, bool) or not isinstance(number, int):
            raise Refusal(400, "Say which candidate: {\"number\": 1} to 4.", "request")
        return web.json_response({"turn": turn_json(await self.service.use_candidate(turn_id, number))})

    # --- API: images ---------------------------------------------------------------------

    async def image(self, request: web.Request) -> web.StreamResponse:
        sha = request.match_info["sha"]
        if len(sha) != 64 or not _SHA256_CHARS.issuperset(sha):
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


def _refusal(request: web.Request, exc: Refusal) -> web.Response:
    """A refusal as JSON for the API, as a short page for a browser's page request."""
    if not request.path.startswith("/api/"):
        page = (LOCKED_PAGE if exc.status == 401
                else _REFUSED_PAGE.format(message=html.escape(exc.message)))
        if exc.status in (401, 421):
            return web.Response(status=exc.status, text=page, content_type="text/html")
    response = error_response(exc.message, exc.kind, exc.status)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="imagebot"'
    return response
