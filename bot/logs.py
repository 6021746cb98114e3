"""Logging setup: human-readable or JSON lines, with every configured secret redacted, control
characters escaped (one record is one line: no forged lines), long messages cut short, and
third-party loggers that dump payloads at DEBUG kept at WARNING.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable

# Token shapes redacted even when they are not configured here (a user pasting one).
_TOKEN_PATTERNS = re.compile(
    r"(xox[abposr]-[A-Za-z0-9-]{8,}|xapp-[A-Za-z0-9-]{8,}|AIza[0-9A-Za-z_\-]{30,}"
    r"|[MN][A-Za-z\d]{23,}\.[\w-]{6}\.[\w-]{27,})")

#: Longest message kept per record; the rest is replaced by "… (N more chars)".
MAX_MESSAGE_CHARS = 4000
#: Longest traceback kept per record.
MAX_EXCEPTION_CHARS = 20000

#: Libraries that log request bodies, SQL parameters (image blobs, thought signatures) or
#: websocket frames at DEBUG (and some chatter at INFO). They stay at WARNING whatever the
#: level, unless IMAGEBOT_DEBUG_THIRD_PARTY=1 asks for their debug output.
THIRD_PARTY_LOGGERS = (
    "aiosqlite",        # every query with its parameters
    "slack_bolt",       # request bodies
    "slack_sdk",        # API calls and socket-mode frames
    "discord",          # discord.http bodies, discord.gateway events
    "aiohttp",          # aiohttp.access lines carry query strings (?token=)
    "google_genai",     # "AFC is enabled" on every call, request details
    "httpx", "httpcore", "urllib3",
    "websockets",       # frames
    "asyncio",
    "PIL",              # chunk-by-chunk decoder traces
)

# C0 controls but tab, DEL, C1 controls, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# What json.dumps(ensure_ascii=False) leaves raw but some log viewers break lines on.
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def escape_controls(text: str) -> str:
    r"""``text`` on one line: newlines as ``\n``, CR as ``\r``, ESC as ``\x1b`` and so on."""
    return _CONTROL.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more chars)"


class RedactingFilter(logging.Filter):
    """Replaces known secrets and token-shaped strings in every record's message, then cuts
    the message and traceback to a bounded length."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return _TOKEN_PATTERNS.sub("[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = shorten(self.redact(record.getMessage()), MAX_MESSAGE_CHARS)
        record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = shorten(self.redact(record.exc_text), MAX_EXCEPTION_CHARS)
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message`` with the message on one line; a traceback follows on
    lines indented by four spaces, so no line of it can pass for a record of its own."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        details = record.exc_text or (
            self.formatException(record.exc_info) if record.exc_info else "")
        if record.stack_info:
            details = f"{details}\n{record.stack_info}".strip("\n")
        if details:
            line += "".join(f"\n    {escape_controls(part)}" for part in details.splitlines())
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # json.dumps escapes C0 controls (newlines included); escape the rest it leaves raw.
        return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}",
                             json.dumps(entry, ensure_ascii=False))


def setup_logging(fmt: str = "text", level: str = "INFO", *, secrets: Iterable[str] = (),
                  third_party_debug: bool = False) -> None:
    """Configures the root logger once; every handler redacts ``secrets``.

    Args:
        fmt: ``text`` or ``json``.
        level: the root level name (``DEBUG``, ``INFO``...).
        secrets: strings never to write.
        third_party_debug: let :data:`THIRD_PARTY_LOGGERS` log at ``level`` too (they may
            then write request bodies and SQL parameters: image bytes, signatures).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(secrets))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(
            logging.NOTSET if third_party_debug else max(logging.WARNING, root.level))
