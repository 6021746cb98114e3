"""``imagebot serve``: one process, one HTTP server, every configured adapter.

The HTTP server carries ``/healthz``, ``/metrics``, Slack's ``/slack/events`` (HTTP mode)
and the web playground. Slack (Socket Mode) and Discord keep their own connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import ipaddress
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily

from adapters.batch_poller import BatchPoller
from adapters.composition import open_app
from adapters.resume import Resumable, Resumer
from adapters.web.headers import add_security_headers
from bot.config import Settings
from bot.errors import ImagebotError
from bot.metrics import CONTENT_TYPE, Metrics
from bot.runtime import Core

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE = 20.0
EVENT_RETENTION = 7 * 86400.0
#: How often records of expired Gemini files are forgotten (also once at start-up).
FILE_SWEEP_INTERVAL = 3 * 3600.0


class Adapter(Protocol):
    """What ``serve`` needs from an adapter: routes, a lifecycle and a health line."""

    name: str

    def mount(self, app: web.Application) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


class StartupError(Exception):
    """Configuration that cannot serve; the message says how to fix it."""


@dataclass
class Plan:
    """What ``serve`` will run, decided from the configuration alone."""

    offline: bool
    slack: bool
    discord: bool
    web: bool
    notes: list[str] = field(default_factory=list)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plan(settings: Settings, *, offline: bool = False) -> Plan:
    """Decides offline mode and which adapters run.

    Raises:
        StartupError: platform tokens without a Gemini key (and no ``--offline``).
    """
    slack = bool(settings.slack_bot_token) or settings.slack_oauth
    discord = bool(settings.discord_token)
    notes: list[str] = []
    if not settings.gemini_api_key and not offline:
        if slack or discord:
            raise StartupError(
                "Slack/Discord tokens are set but GEMINI_API_KEY is not. Set GEMINI_API_KEY, or "
                "pass --offline to post clearly marked offline previews instead.")
        offline = True
        notes.append("no GEMINI_API_KEY: the playground runs on the offline stand-in "
                     "(previews, not Gemini)")
    web_on = is_loopback(settings.host) or bool(settings.web_token)
    if not web_on:
        notes.append(f"web playground off: {settings.host} is not loopback and "
                     "IMAGEBOT_WEB_TOKEN is not set (/healthz, /metrics, /slack/events still on)")
    if slack and not settings.slack_app_token and not settings.slack_signing_secret:
        raise StartupError("SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN (Socket Mode) nor "
                           "SLACK_SIGNING_SECRET (HTTP mode) is. Set one of them.")
    if settings.slack_oauth and not settings.slack_signing_secret:
        raise StartupError("SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (multi-workspace install) "
                           "need SLACK_SIGNING_SECRET too (Basic Information > Signing Secret).")
    return Plan(offline=offline, slack=slack, discord=discord, web=web_on, notes=notes)


def build_adapters(core: Core, run: Plan) -> list[Adapter]:
    adapters: list[Adapter] = []
    if run.web:
        from adapters.web import WebPlayground

        adapters.append(WebPlayground(core))
    if run.slack:
        from adapters.slack import SlackAdapter

        adapters.append(SlackAdapter(core))
    if run.discord:
        from adapters.discord import DiscordAdapter

        adapters.append(DiscordAdapter(core))
    return adapters


def make_app(core: Core, adapters: list[Adapter], metrics: Metrics) -> web.Application:
    app = web.Application(client_max_size=64 * 2**20)
    # A signal, not a middleware, so aiohttp's own 404/405 answers get the headers too.
    app.on_response_prepare.append(add_security_headers)

    async def healthz(request: web.Request) -> web.Response:
        writable = await core.service.healthy()
        states = {a.name: a.status() for a in adapters}
        ok = writable and all(s.get("ok", True) for s in states.values())
        body = {"ok": ok, "database": "writable" if writable else "NOT writable",
                "offline": core.offline, "adapters": states,
                "queue_depth": core.service.queue_depth()}
        return web.json_response(body, status=200 if ok else 503)

    async def metrics_view(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    for adapter in adapters:
        adapter.mount(app)
    if not any(adapter.name == "web" for adapter in adapters):
        page = web_off_page(core.settings)

        async def web_off(request: web.Request) -> web.Response:
            return web.Response(text=page, content_type="text/html")

        app.router.add_get("/", web_off)
    return app


def web_off_page(settings: Settings) -> str:
    """What ``/`` says when the playground is off: why, and how to turn it on."""
    host = html.escape(settings.host)
    return f"""<!doctype html><meta charset="utf-8"><title>imagebot</title>
<body style="font:16px system-ui;max-width:38em;margin:4em auto;padding:0 1em">
<h1>The web playground is off</h1>
<p>imagebot is running, but it listens on <code>{host}</code>, which is not a loopback
address, and <code>IMAGEBOT_WEB_TOKEN</code> is not set, so the playground is not served here
(anyone who can reach this address could otherwise use it).
<code>/healthz</code>, <code>/metrics</code> and <code>/slack/events</code> still work.</p>
<p>To turn it on, set <code>IMAGEBOT_WEB_TOKEN</code> to a long random secret, restart, and
open <code>/?token=&lt;your token&gt;</code> once; or serve on <code>127.0.0.1</code> and
open it from this machine.</p>
"""


@contextlib.asynccontextmanager
async def running(settings: Settings, *, offline: bool = False,
                  host: str | None = None, port: int | None = None) -> AsyncIterator[Server]:
    """Starts everything and yields the running server; stops it all on exit."""
    host = host or settings.host
    port = settings.port if port is None else port
    from dataclasses import replace

    settings = replace(settings, host=host, port=port)
    run = plan(settings, offline=offline)
    for note in run.notes:
        logger.info("%s", note)
    logger.info("database: %s", settings.database_description())
    async with open_app(settings, offline=run.offline) as core:
        # Redeliveries come within minutes; a week of seen event ids is plenty.
        await core.service.forget_events(older_than=EVENT_RETENTION)
        sweeper = asyncio.create_task(sweep_files(core, FILE_SWEEP_INTERVAL))
        metrics = Metrics(core.service)
        adapters = build_adapters(core, run)
        metrics.registry.register(ShardCollector(adapters))
        app = make_app(core, adapters, metrics)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        started: list[Adapter] = []
        poller = batch_poller(core, adapters)
        try:  # from here on, a failure or a cancelled start-up still cleans up
            await web.TCPSite(runner, host, port).start()
            bound = runner.addresses[0][1] if runner.addresses else port
            server = Server(core=core, adapters=adapters, url=f"http://{host}:{bound}",
                            plan=run, metrics=metrics, batch_poller=poller)
            for adapter in adapters:
                await adapter.start()
                started.append(adapter)
            poller.start()
            resumer(core, adapters).start()
            logger.info("imagebot serving on %s (%s)", server.url,
                        ", ".join(a.name for a in adapters) or "no adapters")
            yield server
        finally:
            sweeper.cancel()
            await poller.stop()
            await core.service.shutdown(SHUTDOWN_GRACE)
            for adapter in reversed(started):
                try:
                    await adapter.stop()
                except Exception as exc:  # the other adapters still get stopped
                    logger.warning("stopping the %s adapter failed (%s)", adapter.name,
                                   type(exc).__name__)
                    logger.debug("the %s adapter's stop failure", adapter.name, exc_info=True)
            await runner.cleanup()


class ShardCollector:
    """``/metrics`` per Discord shard, read from the adapters' status at each scrape."""

    def __init__(self, adapters: list[Adapter]) -> None:
        self.adapters = adapters

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("imagebot_discord_shard_up",
                               "1 while the Discord shard's gateway connection is open",
                               labels=["shard"])
        latency = GaugeMetricFamily("imagebot_discord_shard_latency_seconds",
                                    "Heartbeat latency of each Discord shard", labels=["shard"])
        for adapter in self.adapters:
            for shard, state in adapter.status().get("shards", {}).items():
                up.add_metric([shard], 1.0 if state["connected"] else 0.0)
                if state["latency"] is not None:
                    latency.add_metric([shard], state["latency"])
        yield up
        yield latency


async def sweep_files(core: Core, interval: float) -> None:
    """Forgets records of expired Gemini files now, then every ``interval`` seconds."""
    while True:
        try:
            await core.service.sweep_files()
        except Exception:  # a failed sweep is retried next time; serving goes on
            logger.exception("sweeping expired Gemini file records failed")
        await asyncio.sleep(interval)


@dataclass
class Server:
    core: Core
    adapters: list[Adapter]
    url: str
    plan: Plan
    metrics: Metrics
    batch_poller: BatchPoller | None = None


def resumer(core: Core, adapters: list[Adapter]) -> Resumer:
    """Takes over the turns of workers that died, for the platforms this worker serves."""
    resumable: dict[str, Resumable] = {a.name: a for a in adapters if isinstance(a, Resumable)}
    return Resumer(core.service, core.service.lines, resumable)


def batch_poller(core: Core, adapters: list[Adapter]) -> BatchPoller:
    """The poller of Batch API jobs, posting through the adapters that can post them."""
    posters = {a.name: poster for a in adapters
               if (poster := getattr(a, "batch_poster", None)) is not None}
    return BatchPoller(core.service, posters, interval=core.settings.batch_poll_seconds)


async def serve(settings: Settings, *, host: str | None = None, port: int | None = None,
                offline: bool = False) -> int:
    """Runs until SIGTERM or SIGINT; returns the process exit code.

    A signal during start-up (a platform slow to connect) cancels the start-up: whatever
    already started is stopped, and the process exits cleanly.
    """
    stop = asyncio.Event()
    serving = asyncio.Event()
    work = asyncio.create_task(_serve(settings, stop, serving, host=host, port=port,
                                      offline=offline))

    def on_signal() -> None:
        stop.set()
        if not serving.is_set() and not work.done():
            work.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            loop.add_signal_handler(sig, on_signal)
    try:
        return await work
    except asyncio.CancelledError:
        if not (stop.is_set() and work.cancelled()):
            raise  # cancelled from outside, not by a signal
        print("imagebot: stopped during start-up", flush=True)
        return 0
    except StartupError as exc:
        print(f"imagebot: {exc}", flush=True)
        return 2
    except ImagebotError as exc:
        print(f"imagebot: {exc.user_message}", flush=True)
        return 2
    except OSError as exc:
        print(f"imagebot: cannot listen on {host or settings.host}:{port or settings.port}: "
              f"{exc.strerror or exc}", flush=True)
        return 2
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)


async def _serve(settings: Settings, stop: asyncio.Event, serving: asyncio.Event, *,
                 host: str | None, port: int | None, offline: bool) -> int:
    async with running(settings, offline=offline, host=host, port=port) as server:
        serving.set()
        print(f"imagebot is running at {server.url}"
              + ("  (OFFLINE PREVIEW: no Gemini key)" if server.core.offline else ""),
              flush=True)
        await stop.wait()
        logger.info("shutting down: finishing turns in flight (up to %.0fs)", SHUTDOWN_GRACE)
    return 0
