"""The web usage page: daily cost by model, images per day, top people and channels (charts
the page draws itself as inline SVG), the policy of every scope, and the audit log.

Routes (on serve's aiohttp app, mounted by the playground):

* ``GET /usage`` the page, ``GET /usage/{usage.js,usage.css,favicon.svg}`` its assets.
* ``GET /api/usage?since=30d`` the chart data; ``GET /api/usage/policy`` the policies;
  ``GET /api/usage/audit?since=30d&action=…`` the audit log.

On a playground of one's own (no ``IMAGEBOT_WEB_TOKEN``) the page is open like the rest.
When the playground is shared it is for admins only: ``IMAGEBOT_WEB_ADMIN_TOKEN`` as a
bearer token, or ``/usage?token=…`` once, which sets an HttpOnly cookie.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from adapters.web.access import check_host
from adapters.web.errors import Refusal
from adapters.web.headers import SECURITY_HEADERS
from bot.audit import ACTIONS
from bot.errors import ImagebotError
from bot.runtime import Core

STATIC_DIR = Path(__file__).parent / "static"
ASSETS = {"usage.js": "text/javascript", "usage.css": "text/css",
          "favicon.svg": "image/svg+xml"}
COOKIE = "imagebot_admin"
DEFAULT_SINCE = "30d"
_LOCKED = """<!doctype html><meta charset="utf-8"><title>imagebot usage</title>
<body style="font:16px system-ui;max-width:36em;margin:4em auto;padding:0 1em">
<h1>For imagebot admins</h1><p>{reason}</p>
"""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class UsagePages:
    """The usage page and its JSON, for the playground's HTTP server."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.service = core.service
        settings = core.settings
        self.shared = bool(settings.web_token)
        self._token = settings.web_admin_token or None
        self._cookie = (hmac.new(self._token.encode(), b"imagebot usage page",
                                 hashlib.sha256).hexdigest() if self._token else "")
        self._assets: dict[str, bytes] = {}

    def mount(self, app: web.Application) -> None:
        routes: list[tuple[str, Handler]] = [
            ("/usage", self.page), ("/usage/{name}", self.asset), ("/api/usage", self.charts),
            ("/api/usage/policy", self.policy), ("/api/usage/audit", self.audit)]
        for path, handler in routes:
            app.router.add_get(path, self._guarded(handler))

    # --- access ----------------------------------------------------------------------------

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            refusal = self._refusal(request)
            try:
                response = refusal or await handler(request)
            except ValueError as exc:
                response = web.json_response({"error": str(exc), "kind": "request"}, status=400)
            except ImagebotError as exc:
                response = web.json_response({"error": exc.user_message, "kind": exc.kind},
                                             status=400)
            response.headers.update(SECURITY_HEADERS)
            response.headers["Cache-Control"] = "no-store"
            return response

        return guarded

    def _refusal(self, request: web.Request) -> web.StreamResponse | None:
        """``None`` when the request may see usage; otherwise the answer that says why not."""
        if not self.shared:
            try:  # unshared means loopback only: the same Host check as the playground's
                check_host(request)
            except Refusal as exc:
                return web.json_response({"error": exc.message, "kind": exc.kind},
                                         status=exc.status)
            return None
        if self._token is None:
            return _locked(request, 403, "The playground is shared, so its usage page needs "
                                         "IMAGEBOT_WEB_ADMIN_TOKEN, which is not set.")
        bearer = request.headers.get("Authorization", "")
        if bearer.startswith("Bearer ") and _same(bearer[7:].strip(), self._token):
            return None
        if _same(request.cookies.get(COOKIE, ""), self._cookie):
            return None
        if request.path == "/usage" and _same(request.query.get("token", ""), self._token):
            response = web.Response(status=303, headers={"Location": "/usage"})
            response.set_cookie(COOKIE, self._cookie, httponly=True, samesite="Strict",
                                secure=request.secure, path="/", max_age=30 * 86400)
            return response
        return _locked(request, 401, "This page is for imagebot admins. Open it once as "
                                     "<code>/usage?token=&lt;IMAGEBOT_WEB_ADMIN_TOKEN&gt;</code>.")

    # --- the page --------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=await self._read("usage.html"), content_type="text/html",
                            charset="utf-8")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound()
        return web.Response(body=await self._read(name), content_type=ASSETS[name],
                            charset=None if name.endswith(".svg") else "utf-8")

    async def _read(self, name: str) -> bytes:
        if name not in self._assets:
            self._assets[name] = await asyncio.to_thread((STATIC_DIR / name).read_bytes)
        return self._assets[name]

    # --- the data --------------------------------------------------------------------------

    def _since(self, request: web.Request) -> float:
        from bot.reports import since_of

        return since_of(request.query.get("since") or DEFAULT_SINCE, time.time(),
                        self.core.settings.policy.timezone)

    async def charts(self, request: web.Request) -> web.StreamResponse:
        charts = await self.service.usage_charts(since=self._since(request),
                                                 scope=request.query.get("scope") or None)
        prices = self.service.prices
        return web.json_response({
            **charts.as_json(self.service.model_labels()),
            "timezone": self.core.settings.policy.timezone, "offline": self.core.offline,
            "prices": {"source_date": prices.source_date, "source_url": prices.source_url}})

    async def policy(self, request: web.Request) -> web.StreamResponse:
        scopes = []
        for scope, rules, stored in await self.service.policy_overview():
            scopes.append({
                "scope": scope.id, "kind": scope.kind, "rules": rules.given(),
                "changed": dict(stored.rules) if stored else {},
                "changed_by": stored.updated_by if stored else None,
                "changed_at": stored.updated_at if stored else None})
        return web.json_response({"scopes": scopes,
                                  "timezone": self.core.settings.policy.timezone})

    async def audit(self, request: web.Request) -> web.StreamResponse:
        action = request.query.get("action") or ""
        if action and action not in ACTIONS:
            raise ValueError(f"`{action}` is not an audit action: {', '.join(ACTIONS)}")
        entries = await self.service.audit_log(since=self._since(request),
                                               actions=[action] if action else (), limit=500)
        return web.json_response({"actions": list(ACTIONS), "entries": [
            {"at": e.at, "action": e.action, "actor": e.actor, "actor_name": e.actor_name,
             "where": "/".join(p for p in (e.where.platform, e.where.workspace,
                                           e.where.channel, e.where.thread) if p),
             "summary": e.summary, "detail": dict(e.detail)} for e in entries]})


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def _locked(request: web.Request, status: int, reason: str) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": reason.replace("<code>", "`").replace(
            "</code>", "`").replace("&lt;", "<").replace("&gt;", ">"), "kind": "auth"},
            status=status)
    return web.Response(status=status, text=_LOCKED.format(reason=reason),
                        content_type="text/html")

