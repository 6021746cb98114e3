"""Shared setup for the scale-out benchmarks: a PostgreSQL schema, the stand-in in its own
process, and where the CPU went (per process, from ``/proc``).

PostgreSQL comes from ``IMAGEBOT_TEST_POSTGRES_URL`` (as in the tests) or a throwaway
server started from the local binaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import KEY
from tests import postgres

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A URL naming a fresh schema, dropped afterwards."""
    with postgres.server_url() as base:
        schema = postgres.new_schema()
        try:
            yield postgres.schema_url(base, schema)
        finally:
            await postgres.drop_schema(base, schema)


@dataclass(frozen=True)
class StandIn:
    url: str
    pid: int


@contextlib.asynccontextmanager
async def stand_in(latency: float, *, stock_frames: bool = True) -> AsyncIterator[StandIn]:
    """``python -m offline_gemini`` in a process of its own, at the lowest CPU priority;
    with ``stock_frames`` it reuses one drawn frame per size (``--stock-frames``), so what
    is measured is the bot and not the stand-in's drawing."""
    proc = await asyncio.create_subprocess_exec(
        "nice", "-n", "19", sys.executable, "-m", "offline_gemini", "--port", "0",
        "--api-key", KEY, "--latency", str(latency),
        *(["--stock-frames"] if stock_frames else []), stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        yield StandIn(line.decode().strip(), proc.pid)  # nice execs: the pid is Python's
    finally:
        proc.terminate()
        await proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (0 when it is gone)."""
    return cpu_seconds_of(Path(f"/proc/{pid}/stat"))


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """A process's CPU split into its main thread (the event loop) and the others
    (imagebot's Gemini SDK loop and the thread pool: Python does not name them in /proc)."""
    totals = {"main": 0.0, "other": 0.0}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            kind = "main" if task.name == str(pid) else "other"
            totals[kind] += cpu_seconds_of(task / "stat")
    return totals


def cpu_seconds_of(stat: Path) -> float:
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def postgres_cpu_seconds() -> float:
    """CPU of every local PostgreSQL server process (everyone's work on it, not only
    ours: other sessions on the same server count too)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                total += cpu_seconds(int(entry.name))
    return total


def own_cpu_seconds() -> float:
    """This process's CPU (the benchmark's HTTP client)."""
    times = os.times()
    return times.user + times.system
