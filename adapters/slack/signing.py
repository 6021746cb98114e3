"""The gate in front of ``POST /slack/events``: only a signed, fresh, bounded and parseable
request reaches slack-bolt.

Bolt verifies signatures too, but it logs the whole body of every refused request (a
forged log line, megabytes of log, the legacy verification token) and answers a body it
cannot parse with a 500 and a traceback. Here a refused request costs one short log line
and a 4xx (``library_logs`` keeps bodies out of bolt's own log lines).
"""

from __future__ import annotations

import logging

from aiohttp import web
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

logger = logging.getLogger(__name__)

#: Slack's event and interaction payloads are far smaller than this.
MAX_BODY = 2**20
#: Slack refuses signatures older than five minutes; so does this gate.
MAX_AGE = 5 * 60


class Refused(Exception):
    """A request that does not reach bolt: the HTTP status and a short, fixed reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def signed_request(request: web.Request, verifier: SignatureVerifier, *,
                         max_bytes: int = MAX_BODY) -> AsyncBoltRequest:
    """The request as bolt takes it, once its size, signature and body are checked.

    Raises:
        Refused: 413 over ``max_bytes``, 401 for a missing, bad or stale signature,
            400 for a body that is not UTF-8 (checked first: no signature can match it)
            or, once signed, not JSON or form data.
    """
    raw = await _bounded_body(request, max_bytes)
    try:
        # Slack sends UTF-8; the SDK's verifier cannot even check anything else.
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8") from None
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    if not timestamp or not signature:
        raise Refused(401, "missing signature")
    if not timestamp.isdigit():  # SignatureVerifier would raise on it
        raise Refused(401, "malformed timestamp")
    if not verifier.is_valid(body, timestamp, signature):
        stale = abs(verifier.clock.now() - int(timestamp)) > MAX_AGE
        raise Refused(401, "stale timestamp" if stale else "bad signature")
    try:
        bolt_request = AsyncBoltRequest(body=body, query=request.query_string,
                                        headers=dict(request.headers))
    except (ValueError, AttributeError, TypeError):
        # Not JSON, or JSON that is not an object.
        raise Refused(400, "unparseable body") from None
    if not isinstance(bolt_request.body, dict):
        raise Refused(400, "unparseable body")
    return bolt_request


async def _bounded_body(request: web.Request, max_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_bytes:
        raise Refused(413, "body too large")
    data = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        data.extend(chunk)
        if len(data) > max_bytes:
            raise Refused(413, "body too large")
    return bytes(data)


def refuse(request: web.Request, refused: Refused) -> web.Response:
    """One bounded log line (never the body or a header's value) and the error response."""
    logger.warning("refused a request to %s from %s: %s (HTTP %d)", request.path,
                   request.remote or "?", refused.reason, refused.status)
    return web.Response(status=refused.status, text=refused.reason)
