"""A worker at its capacity (IMAGEBOT_MAX_CONCURRENT_TURNS), seen from the playground:
a turn past it is told the bot is busy, /metrics counts it, Cancel takes it out of the
line, and the next one starts when a place frees."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.serve import make_app
from adapters.web import WebPlayground
from bot import messages
from bot.metrics import Metrics
from tests.adapters.test_web_events import LIVE, Event, events, form, turns


@pytest.fixture
async def client(core_factory) -> AsyncIterator[TestClient]:
    async with core_factory(max_concurrent_turns=1) as core:
        app = make_app(core, [WebPlayground(core)], Metrics(core.service))
        async with TestClient(TestServer(app)) as opened:
            yield opened


class LiveTurn:
    """One turn's event stream, read as far as a test needs."""

    def __init__(self, stream: AsyncIterator[Event]) -> None:
        self.stream = stream
        self.seen: list[Event] = []

    @classmethod
    async def start(cls, client: TestClient, thread: str, prompt: str) -> LiveTurn:
        response = await client.post(f"/api/threads/{thread}/turns", data=form(prompt),
                                     headers=LIVE)
        assert response.status == 200
        return cls(events(response))

    @property
    def ticket(self) -> str:
        return str(self.seen[0][1]["ticket"])

    async def until(self, wanted: Callable[[str, dict[str, Any]], bool]) -> dict[str, Any]:
        async for name, data in self.stream:
            self.seen.append((name, data))
            if wanted(name, data):
                return data
        raise AssertionError(f"the stream ended first: {[name for name, _ in self.seen]}")


def busy(name: str, data: dict[str, Any]) -> bool:
    return name == "progress" and data["kind"] == "queued"


async def waiting(client: TestClient) -> float:
    text = await (await client.get("/metrics")).text()
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith("imagebot_turns_waiting ")))


async def cancel(client: TestClient, turn: LiveTurn) -> dict[str, Any]:
    response = await client.post(f"/api/live/{turn.ticket}/cancel",
                                 headers={"X-Imagebot": "1"})
    assert response.status == 202
    return await turn.until(lambda name, _: name == "error")


async def test_a_turn_past_capacity_is_told_the_bot_is_busy_and_cancel_frees_its_place(
        client, stand_in) -> None:
    stand_in.faults.latency = 60  # the first turn holds the only place until cancelled
    first = await LiveTurn.start(client, "a" * 32, "first")
    await first.until(lambda name, _: name == "started")
    for _ in range(5000):  # its request is at the stand-in, with its latency fixed
        if any(r.body is not None for r in stand_in.generations):
            break
        await asyncio.sleep(0.002)
    stand_in.faults.latency = 0

    second = await LiveTurn.start(client, "b" * 32, "second")
    shown = await second.until(busy)
    assert shown["status"] == messages.busy(0)
    third = await LiveTurn.start(client, "c" * 32, "third")
    assert (await third.until(busy))["status"] == messages.busy(1)
    assert "started" not in [name for name, _ in second.seen + third.seen]
    assert await waiting(client) == 2

    assert (await cancel(client, second))["kind"] == "cancelled"
    assert await waiting(client) == 1
    assert (await cancel(client, first))["kind"] == "cancelled"
    await third.until(lambda name, _: name == "result")
    assert "started" in [name for name, _ in third.seen]
    assert [len(await turns(client, t * 32)) for t in "abc"] == [0, 0, 1]
    assert await waiting(client) == 0
