"""The playground's live turns: server-sent events from the request that runs a turn, and
Cancel, over serve's app with the real SDK streaming from the stand-in."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from adapters.serve import make_app
from adapters.web import WebPlayground
from bot import messages
from bot.metrics import Metrics
from bot.runtime import Core

LIVE = {"X-Imagebot": "1", "Accept": "text/event-stream"}
Event = tuple[str, dict[str, Any]]


@pytest.fixture
async def client(core: Core) -> AsyncIterator[TestClient]:
    app = make_app(core, [WebPlayground(core)], Metrics(core.service))
    async with TestClient(TestServer(app)) as opened:
        yield opened


def form(prompt: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("prompt", prompt)
    return data


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    """The events of a server-sent event stream, as they come."""
    name, data = "message", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            data += line[len("data: "):]
        elif not line and data:
            yield name, json.loads(data)
            name, data = "message", ""


async def live_turn(client: TestClient, thread: str, prompt: str) -> list[Event]:
    response = await client.post(f"/api/threads/{thread}/turns", data=form(prompt),
                                 headers=LIVE)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    return [event async for event in events(response)]


async def turns(client: TestClient, thread: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/threads/{thread}")
    return (await response.json())["turns"] if response.status == 200 else []


async def test_a_turn_streams_its_thinking_then_the_stored_turn(client) -> None:
    seen = await live_turn(client, "a" * 32, "a lighthouse in a storm --ar 16:9")
    names = [name for name, _ in seen]
    assert names[:2] == ["accepted", "started"] and names[-1] == "result"
    accepted, started = seen[0][1], seen[1][1]
    assert len(accepted["ticket"]) == 32 and accepted["queued"] is False
    assert started["settings"] == "Nano Banana Pro · 1K · 16:9"
    progress = [data for name, data in seen if name == "progress"]
    assert [p["kind"] for p in progress] == ["thought_text", "thought_image", "thought_image",
                                             "text", "image", "usage"]
    assert [p["label"] for p in progress[:3]] == ["Thinking", "Drawing", "Drawing"]
    assert progress[0]["text"].startswith("**Composing the offline preview**")
    draft = progress[1]["image"]
    assert draft["number"] == 1 and draft["data_url"].startswith("data:image/png;base64,")
    data = base64.b64decode(draft["data_url"].split(",", 1)[1])
    assert Image.open(io.BytesIO(data)).size == (draft["width"], draft["height"])
    assert "data_url" not in progress[4]["image"], "final images come stored, with the result"
    assert re.match(r"Drawing… \d+ s · 1 draft · Nano Banana Pro · 1K · 16:9$",
                    progress[1]["status"])
    turn = seen[-1][1]["turn"]
    assert turn == (await turns(client, "a" * 32))[0]
    assert len([p for p in turn["thoughts"] if p["kind"] == "image"]) == 2


async def test_cancel_stops_the_turn_and_keeps_nothing(client, stand_in) -> None:
    thread = "b" * 32
    await live_turn(client, thread, "a windmill")
    stand_in.stream_gap = 0.5
    response = await client.post(f"/api/threads/{thread}/turns", data=form("make it red"),
                                 headers=LIVE)
    seen: list[Event] = []
    async for name, data in events(response):
        seen.append((name, data))
        if name == "progress" and data["kind"] == "thought_image":
            ticket = seen[0][1]["ticket"]
            cancel = await client.post(f"/api/live/{ticket}/cancel", headers={"X-Imagebot": "1"})
            assert cancel.status == 202
    name, error = seen[-1]
    assert name == "error" and error["kind"] == "cancelled"
    assert error["error"] == messages.cancelled("you")
    assert [t["prompt"] for t in await turns(client, thread)] == ["a windmill"]
    again = await client.post(f"/api/live/{ticket}/cancel", headers={"X-Imagebot": "1"})
    assert again.status == 409 and (await again.json())["error"] == messages.CANCEL_GONE
    refused = await client.post(f"/api/live/{ticket}/cancel")
    assert refused.status == 403, "a write needs the playground's header"


async def test_a_turn_behind_another_is_told_its_place(client, stand_in) -> None:
    thread = "c" * 32
    stand_in.faults.latency = 0.5
    first = asyncio.create_task(live_turn(client, thread, "first"))
    await asyncio.sleep(0.1)
    second = await live_turn(client, thread, "second")
    await first
    assert second[0] == ("accepted", {"ticket": second[0][1]["ticket"], "queued": True})
    queued = [d for n, d in second if n == "progress" and d["kind"] == "queued"]
    assert queued == [{"kind": "queued", "stage": "queued", "label": "Waiting",
                       "status": messages.QUEUED, "elapsed": 0.0, "drafts": 0,
                       "position": 1}]
    assert second[-1][0] == "result"


async def test_a_refusal_streams_in_the_selectors_words(client) -> None:
    seen = await live_turn(client, "d" * 32, "a cat --ar 7:5")
    name, error = seen[-1]
    assert name == "error" and error["kind"] == "option" and error["status"] == 400
    assert "not a supported aspect ratio" in error["error"]
    assert await turns(client, "d" * 32) == []
