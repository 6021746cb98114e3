"""``imagebot serve`` worker processes for end-to-end tests and benchmarks: each a real
process with its own event loop, sharing one ``DATABASE_URL`` with the others."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_RUNNING = re.compile(rb"imagebot is running at (http://\S+)")
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Worker:
    """One running ``imagebot serve``."""

    name: str
    process: asyncio.subprocess.Process
    url: str
    log: Path

    @property
    def events_url(self) -> str:
        return self.url + "/slack/events"

    def kill(self) -> None:
        """SIGKILL: the process dies mid-whatever, as on an OOM kill or a lost host."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


async def start_worker(name: str, env: Mapping[str, str], folder: Path, *,
                       timeout: float = 30.0) -> Worker:  # noqa: ASYNC109
    """Starts ``imagebot serve --port 0`` with ``env`` and waits until it serves."""
    log = folder / f"{name}.log"
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder),
            "PYTHONUNBUFFERED": "1", "IMAGEBOT_LOG_LEVEL": "INFO"}
    stderr = log.open("wb")  # noqa: ASYNC230 - a local file, opened once
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "adapters", "serve", "--host", "127.0.0.1", "--port", "0",
            env={**base, **env}, stdout=asyncio.subprocess.PIPE, stderr=stderr, cwd=str(ROOT))
    finally:
        stderr.close()
    assert process.stdout is not None
    try:
        async with asyncio.timeout(timeout):
            while True:
                line = await process.stdout.readline()
                if not line:
                    raise RuntimeError(f"worker {name} exited: {log.read_text()[-2000:]}")
                match = _RUNNING.search(line)
                if match:
                    return Worker(name, process, match.group(1).decode(), log)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise


async def stop_worker(worker: Worker, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    if worker.process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            worker.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(worker.process.wait(), timeout)
        except TimeoutError:
            worker.kill()
            await worker.process.wait()


@contextlib.asynccontextmanager
async def workers(count: int, env: Mapping[str, str], folder: Path
                  ) -> AsyncIterator[list[Worker]]:
    """``count`` workers started together, stopped (SIGTERM) at the end."""
    started = await asyncio.gather(*(start_worker(f"worker{n + 1}", env, folder)
                                     for n in range(count)))
    try:
        yield list(started)
    finally:
        await asyncio.gather(*(stop_worker(w) for w in started))


class SlackDelivery:
    """Delivers Events API bodies like Slack, each one then its retry, to alternating
    workers; the next delivery waits until the bot marked the previous message as seen
    (which it does once the turn has its place in the thread's line)."""

    def __init__(self, slack: Any, pool: list[Worker]) -> None:
        self.slack = slack
        self.pool = pool
        self.sent = 0

    async def deliver(self, event: dict[str, Any], *, retry: bool = True) -> None:
        envelope = self.slack.event_envelope(event)
        first = self.pool[self.sent % len(self.pool)]
        self.sent += 1
        status, _ = await self.slack.send_http_event(first.events_url, envelope)
        assert status == 200, status
        await self.slack.wait_for(lambda: self.seen(event["ts"]), timeout=60)
        if retry:
            other = self.pool[self.sent % len(self.pool)]
            status, _ = await self.slack.send_http_event(
                other.events_url, envelope, retry_num=1, retry_reason="http_timeout")
            assert status == 200, status

    def seen(self, ts: str) -> bool:
        return any(c.params.get("timestamp") == ts
                   for c in self.slack.calls_to("reactions.add"))
