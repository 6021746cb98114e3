"""Logging setup: human-readable or JSON lines, with every configured secret redacted."""

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


class RedactingFilter(logging.Filter):
    """Replaces known secrets and token-shaped strings in every record's message."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return _TOKEN_PATTERNS.sub("[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = self.redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
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
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(fmt: str = "text", level: str = "INFO", *, secrets: Iterable[str] = ()) -> None:
    """Configures the root logger once; every handler redacts ``secrets``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(secrets))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library loggers that would log request bodies (image bytes) at DEBUG stay quieter.
    for name in ("httpx", "aiohttp.access", "slack_sdk", "discord.http"):
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
    # google_genai logs "AFC is enabled" at INFO on every call.
    logging.getLogger("google_genai").setLevel(max(logging.WARNING, root.level))
