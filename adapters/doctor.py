"""``imagebot doctor``: checks settings, token formats, the database and every configured
endpoint, and says how to fix what is wrong. Tokens are never printed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import aiohttp

from bot.config import DEFAULT_GEMINI_URL, Settings
from bot.runtime import database_state


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


TOKEN_FORMATS: dict[str, tuple[str, str]] = {
    "gemini_api_key": (r"AIza[0-9A-Za-z_\-]{35}", "GEMINI_API_KEY should look like AIza… (39 "
                       "characters); create one at https://aistudio.google.com/apikey"),
    "slack_bot_token": (r"xoxb-[0-9A-Za-z\-]+", "SLACK_BOT_TOKEN is the Bot User OAuth Token "
                        "(xoxb-…) from your Slack app's OAuth & Permissions page"),
    "slack_app_token": (r"xapp-[0-9A-Za-z\-]+", "SLACK_APP_TOKEN is an app-level token (xapp-…) "
                        "with connections:write, from Basic Information → App-Level Tokens"),
    "slack_signing_secret": (r"[0-9a-f]{32}", "SLACK_SIGNING_SECRET is the 32-hex-digit Signing "
                             "Secret from Basic Information → App Credentials"),
    "discord_token": (r"[\w-]{20,}\.[\w-]{4,}\.[\w-]{20,}", "DISCORD_TOKEN is the bot token from "
                      "the Developer Portal → Bot → Reset Token"),
}


def token_checks(settings: Settings) -> list[Check]:
    checks: list[Check | None] = []
    for field, (pattern, fix) in TOKEN_FORMATS.items():
        value = getattr(settings, field)
        if not value:
            continue
        ok = re.fullmatch(pattern, value) is not None
        checks.append(Check(f"{field} format", ok, "looks right" if ok else "unexpected format",
                            "" if ok else fix))
    checks.append(gemini_key_check(settings))
    if settings.slack_bot_token:
        checks.append(slack_mode_check(settings))
    return [c for c in checks if c is not None]


def gemini_key_check(settings: Settings) -> Check | None:
    """What ``imagebot serve`` does without a key (see ``adapters.serve.plan``): with Slack or
    Discord tokens it refuses to start; without, it serves the playground offline."""
    if settings.gemini_api_key:
        return None
    platforms = [name for name, token in (("Slack", settings.slack_bot_token),
                                          ("Discord", settings.discord_token)) if token]
    if platforms:
        return Check("gemini key", False,
                     f"not set, but {' and '.join(platforms)} "
                     f"{'is' if len(platforms) == 1 else 'are'} configured: `imagebot serve` "
                     "refuses to start (unless --offline: clearly marked offline previews)",
                     "set GEMINI_API_KEY (create one at https://aistudio.google.com/apikey)")
    return Check("gemini key", True,
                 "not set: `imagebot serve` runs only the web playground, on the offline "
                 "stand-in (previews, not Gemini)", "")


def slack_mode_check(settings: Settings) -> Check:
    """Slack needs SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode)."""
    if settings.slack_app_token:
        return Check("slack mode", True, "Socket Mode (SLACK_APP_TOKEN is set)")
    if settings.slack_signing_secret:
        return Check("slack mode", True,
                     "HTTP mode (SLACK_SIGNING_SECRET is set, SLACK_APP_TOKEN is not): Slack "
                     "must reach this server's /slack/events")
    return Check("slack mode", False,
                 "SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN nor SLACK_SIGNING_SECRET "
                 "is: `imagebot serve` refuses to start",
                 "set SLACK_APP_TOKEN (xapp-…, Basic Information → App-Level Tokens, with "
                 "connections:write) for Socket Mode, or SLACK_SIGNING_SECRET for HTTP mode")


async def database_check(settings: Settings) -> Check:
    try:
        state = await database_state(settings)
    except Exception as exc:  # doctor reports every failure instead of raising
        return Check("database", False, f"{settings.database_path}: {exc}",
                     "set DATABASE_URL=sqlite:///path to a writable location")
    return Check("database", state.writable and state.version == state.expected,
                 f"{state.path} schema {state.version}, "
                 + ("writable" if state.writable else "NOT writable"),
                 "" if state.writable else "check the file's permissions and free disk space")


async def _http(session: aiohttp.ClientSession, name: str, url: str, headers: dict[str, str],
                judge: Callable[[int, object], tuple[bool, str]], fix: str) -> Check:
    try:
        async with session.get(url, headers=headers) as resp:
            try:
                body: object = await resp.json(content_type=None)
            except Exception:  # a non-JSON answer still shows the endpoint answers
                body = None
            ok, detail = judge(resp.status, body)
            return Check(name, ok, detail, "" if ok else fix)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return Check(name, False, f"{url} did not answer ({type(exc).__name__})", fix)


async def endpoint_checks(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        if settings.gemini_api_key:
            base = (settings.gemini_base_url or DEFAULT_GEMINI_URL).rstrip("/")
            checks.append(await _http(
                session, "gemini endpoint", f"{base}/v1beta/models/gemini-3-pro-image-preview",
                {"x-goog-api-key": settings.gemini_api_key},
                lambda s, b: (s < 500 and s not in (401, 403),
                              f"{base} answered HTTP {s}"
                              + (" (key accepted)" if s == 200 else "")),
                "check GEMINI_API_KEY and GEMINI_BASE_URL"))
        if settings.slack_bot_token:
            url = settings.slack_api_url.rstrip("/") + "/auth.test"
            checks.append(await _http(
                session, "slack auth.test", url,
                {"Authorization": f"Bearer {settings.slack_bot_token}"},
                lambda s, b: (isinstance(b, dict) and bool(b.get("ok")),
                              f"team {b.get('team')} as {b.get('user')}"
                              if isinstance(b, dict) and b.get("ok")
                              else f"HTTP {s}: {b.get('error') if isinstance(b, dict) else b}"),
                "check SLACK_BOT_TOKEN (and SLACK_API_URL)"))
        if settings.discord_token:
            url = settings.discord_api_base.rstrip("/") + "/users/@me"
            checks.append(await _http(
                session, "discord login", url, {"Authorization": f"Bot {settings.discord_token}"},
                lambda s, b: (s == 200, f"logged in as {b.get('username')}"
                              if s == 200 and isinstance(b, dict) else f"HTTP {s}"),
                "check DISCORD_TOKEN (and DISCORD_API_BASE)"))
    return checks


async def doctor(settings: Settings, out: TextIO | None = None) -> int:
    """Prints one line per check; returns 0 when everything passed, else 1."""
    out = out or sys.stdout
    checks = token_checks(settings)
    checks.append(await database_check(settings))
    checks.extend(await endpoint_checks(settings))
    configured = [n for n, v in (("gemini", settings.gemini_api_key),
                                 ("slack", settings.slack_bot_token),
                                 ("discord", settings.discord_token)) if v]
    print(f"configured: {', '.join(configured) or 'nothing (offline playground only)'}", file=out)
    print(f"database: {settings.database_description()}", file=out)
    for check in checks:
        print(f"[{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}", file=out)
        if check.fix:
            print(f"       fix: {check.fix}", file=out)
    return 0 if all(c.ok for c in checks) else 1

