"""What slack-bolt and slack-sdk may log through the adapter's logger: no request bodies,
no tracebacks for a failed connection attempt, and not the start-up warning about a token
bolt reads from the environment. One line per record, bounded.
"""

from __future__ import annotations

import logging
import re

from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped

#: A log line is cut to this many characters (bodies are withheld before that).
LOG_LIMIT = 300
#: Where bolt puts a request body in a log message; everything after it is withheld.
_BODY = re.compile(r"(body: |Request body: |for the request \(|Unhandled request \().*",
                   re.DOTALL)
#: Bolt reads SLACK_BOT_TOKEN from the environment even when given a client, then warns
#: on every start that it ignores it. The adapter's client has the token; nothing is wrong.
_TOKEN_SKIPPED = warning_client_prioritized_and_token_skipped()
#: The Socket Mode client logs each failed connection attempt with a traceback.
_CONNECT_FAILED = "Failed to connect"


class BoltLogFilter(logging.Filter):
    """Rewrites the records of bolt's loggers, or drops the one pointless warning.

    Installed on the logger given to ``AsyncApp``; bolt copies a base logger's filters to
    the loggers of its middleware and listener runners, and the Socket Mode client logs
    through the app's logger.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message == _TOKEN_SKIPPED:
            return False
        if message.startswith(_CONNECT_FAILED):
            record.exc_info = None  # the message names the error; no traceback each retry
            record.exc_text = None
        message = _BODY.sub(r"\1[body withheld]", message, count=1)
        lines = message.splitlines() or [""]
        record.msg = lines[0][:LOG_LIMIT]
        record.args = None
        return True


def bolt_logger(name: str) -> logging.Logger:
    """The logger to give bolt, with :class:`BoltLogFilter` installed once."""
    bolt = logging.getLogger(name)
    if not any(isinstance(f, BoltLogFilter) for f in bolt.filters):
        bolt.addFilter(BoltLogFilter())
    return bolt
