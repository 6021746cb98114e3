"""A worker's capacity (IMAGEBOT_MAX_CONCURRENT_TURNS): turns beyond it wait in arrival
order, start when a place frees, and a cancelled waiting turn gives its place up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bot.capacity import Capacity
from bot.config import load_settings
from bot.errors import CancelledTurn, ConfigError
from bot.metrics import Metrics
from bot.model import Author, IncomingMessage, ThreadKey
from bot.progress import Progress
from bot.service import TurnStart


async def until(condition: Callable[[], bool]) -> None:
    """Lets the loop run until ``condition`` holds (a bound on steps, not a time check)."""
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition never held")


async def test_the_next_holder_waits_and_goes_in_when_one_leaves() -> None:
    capacity = Capacity(2)
    order: list[str] = []
    leave = {name: asyncio.Event() for name in "abcd"}
    told: dict[str, int] = {}

    async def holder(name: str) -> None:
        async def on_wait(ahead: int) -> None:
            told[name] = ahead

        async with capacity.hold(on_wait):
            order.append(name)
            await leave[name].wait()

    tasks = {}
    for name in "abcd":
        tasks[name] = asyncio.create_task(holder(name))
        await asyncio.sleep(0)
    await until(lambda: capacity.waiting == 2)
    assert order == ["a", "b"] and capacity.in_flight == 2
    assert told == {"c": 0, "d": 1}
    leave["b"].set()
    await until(lambda: "c" in order)
    assert order == ["a", "b", "c"] and capacity.waiting == 1  # d still waits, in order
    leave["a"].set()
    await until(lambda: "d" in order)
    leave["c"].set()
    leave["d"].set()
    await asyncio.gather(*tasks.values())
    assert capacity.in_flight == 0 and capacity.waiting == 0


async def test_a_cancelled_waiting_holder_gives_its_place_up() -> None:
    capacity = Capacity(1)
    first_may_leave = asyncio.Event()
    entered: list[str] = []

    async def holder(name: str, leave: asyncio.Event | None = None) -> None:
        async with capacity.hold():
            entered.append(name)
            if leave:
                await leave.wait()

    first = asyncio.create_task(holder("first", first_may_leave))
    await until(lambda: entered == ["first"])
    cancelled = asyncio.create_task(holder("cancelled"))
    last = asyncio.create_task(holder("last"))
    await until(lambda: capacity.waiting == 2)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert capacity.waiting == 1
    first_may_leave.set()
    await asyncio.gather(first, last)
    assert entered == ["first", "last"]
    assert capacity.in_flight == 0 and capacity.waiting == 0


def test_the_setting_is_read_and_checked() -> None:
    env = {"IMAGEBOT_MAX_CONCURRENT_TURNS": "8"}
    assert load_settings(env=env).max_concurrent_turns == 8
    assert load_settings(env={}).max_concurrent_turns == 32
    with pytest.raises(ConfigError, match="IMAGEBOT_MAX_CONCURRENT_TURNS must be more than 0"):
        load_settings(env={"IMAGEBOT_MAX_CONCURRENT_TURNS": "0"})


def message(text: str) -> IncomingMessage:
    return IncomingMessage(author=Author("U1", "alice"), text=text)


def gauge(metrics: Metrics, name: str) -> float:
    for line in metrics.render().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


async def test_a_turn_past_the_capacity_waits_shows_it_and_runs_when_one_ends(
        core_factory, stand_in) -> None:
    async with core_factory(max_concurrent_turns=1) as core:
        service = core.service
        metrics = Metrics(service)
        first_goes_on = asyncio.Event()
        started: list[str] = []
        shown: dict[str, list[Progress]] = {"second": [], "third": []}

        def turn(name: str, hold: asyncio.Event | None = None) -> asyncio.Task:
            async def on_start(_: TurnStart) -> None:
                started.append(name)
                if hold:
                    await hold.wait()

            async def on_progress(event: Progress) -> None:
                shown.setdefault(name, []).append(event)

            return asyncio.create_task(service.handle(
                ThreadKey("test", "w", "c", name), message(f"{name} poster"),
                on_start=on_start, on_progress=on_progress))

        first = turn("first", first_goes_on)
        await until(lambda: started == ["first"])
        second = turn("second")
        await until(lambda: service.capacity.waiting == 1)
        third = turn("third")
        await until(lambda: service.capacity.waiting == 2)
        assert started == ["first"] and not stand_in.generations
        assert gauge(metrics, "imagebot_turns_in_flight") == 1
        assert gauge(metrics, "imagebot_turns_waiting") == 2
        assert gauge(metrics, "imagebot_turns_capacity") == 1
        assert [e.status() for e in shown["second"]] == [
            "Waiting for a free slot: this bot is busy with other requests."]
        assert shown["third"][0].status().endswith("(1 other request first).")

        third.cancel()
        with pytest.raises(CancelledTurn):
            await third
        assert service.capacity.waiting == 1
        first_goes_on.set()
        await asyncio.gather(first, second)
        assert started == ["first", "second"]
        assert len(stand_in.generations) == 2
        assert not await service.history(ThreadKey("test", "w", "c", "third"))
        assert gauge(metrics, "imagebot_turns_in_flight") == 0
        assert gauge(metrics, "imagebot_turns_waiting") == 0
