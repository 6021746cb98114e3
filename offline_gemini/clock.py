"""A controllable clock: real time plus an offset tests can advance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """UTC time for expiry and timestamps; `advance` moves it forward.

    Args:
        start: a fixed instant to start from (time then stands still between
            advances); by default the clock follows real time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start
        self._offset = timedelta()

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        base = self._start if self._start is not None else datetime.now(UTC)
        return base + self._offset

    def advance(self, **delta: float) -> datetime:
        """Move forward by ``timedelta(**delta)`` (e.g. ``hours=49``); return the new now."""
        step = timedelta(**delta)
        if step < timedelta():
            raise ValueError("a clock only moves forward")
        self._offset += step
        return self.now()


def rfc3339(instant: datetime) -> str:
    """``2026-11-30T00:14:19.123456Z``, as Google's JSON writes timestamps."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
