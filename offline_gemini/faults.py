"""Fault injection: a FIFO of HTTP errors, disconnects and odd answers, plus latency."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from offline_gemini.wire import STATUS_MESSAGES, ApiError


@dataclass(frozen=True)
class Fault:
    """One queued fault."""

    kind: Literal["status", "disconnect", "block", "finish", "text"]
    code: int = 0
    reason: str = ""
    text: str = ""
    retry_delay: str = "1s"
    with_text: bool = False

    @property
    def early(self) -> bool:
        """Transport faults apply before validation; answer faults after it."""
        return self.kind in ("status", "disconnect")


class Faults:
    """FIFO fault injection shared by all generate requests."""

    def __init__(self) -> None:
        self.latency: float = 0.0
        self._queue: deque[Fault] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def queue_status(self, *codes: int, retry_delay: str = "1s") -> None:
        """Answer the next requests with these HTTP error statuses, in order."""
        for code in codes:
            if not 400 <= code <= 599:
                raise ValueError(f"not an HTTP error status: {code}")
            self._queue.append(Fault("status", code=code, retry_delay=retry_delay))

    def queue_finish(self, reason: str, *, with_text: bool = False) -> None:
        """Answer a candidate with this finishReason and no content (or only a text).

        ``"STOP"`` with no content gives the "empty turn" a chat drops from its history.
        """
        if reason in ("CONTINUATION", ""):
            raise ValueError(f"unsupported finish reason: {reason!r}")
        self._queue.append(Fault("finish", reason=reason, with_text=with_text))

    def queue_block(self, reason: str = "SAFETY") -> None:
        """Answer no candidates and ``promptFeedback.blockReason=reason``."""
        self._queue.append(Fault("block", reason=reason))

    def queue_text_only(self, text: str = "I can only describe this image in words.") -> None:
        """Answer STOP with a single (signed) text part and no image."""
        self._queue.append(Fault("text", text=text))

    def queue_disconnect(self) -> None:
        """Close the connection without answering."""
        self._queue.append(Fault("disconnect"))

    def clear(self) -> None:
        """Drop queued faults and reset latency."""
        self._queue.clear()
        self.latency = 0.0

    def take(self, *, early: bool) -> Fault | None:
        """Pop the head fault if it is of the requested phase."""
        if self._queue and self._queue[0].early == early:
            return self._queue.popleft()
        return None


def status_error(fault: Fault) -> ApiError:
    """The error a status fault answers; a 429 carries RetryInfo."""
    details = None
    if fault.code == 429:
        details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": fault.retry_delay}]
    return ApiError(fault.code, STATUS_MESSAGES.get(fault.code, "Offline fault."), details)


