"""Prometheus metrics fed by the conversation service's events."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.model import Usage
from bot.service import ConversationService

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """One registry per process (or per test), observing one service."""

    def __init__(self, service: ConversationService) -> None:
        self.registry = CollectorRegistry()
        self.turns = Counter("imagebot_turns", "Successful turns", ["model", "platform"],
                             registry=self.registry)
        self.latency = Histogram(
            "imagebot_turn_seconds", "Gemini time per successful turn", ["model"],
            buckets=(1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300), registry=self.registry)
        self.first_progress = Histogram(
            "imagebot_first_progress_seconds",
            "Time from a streamed request to its first chunk (thought text or a draft)",
            ["model"], buckets=(0.5, 1, 2, 3, 5, 8, 12, 20, 30, 60, 120),
            registry=self.registry)
        self.result = Histogram(
            "imagebot_result_seconds",
            "Time from a turn's arrival (waiting in its thread included) to its stored result",
            ["model"], buckets=(1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600),
            registry=self.registry)
        self.errors = Counter("imagebot_errors", "Failed turns by kind", ["kind"],
                              registry=self.registry)
        self.tokens = Counter("imagebot_tokens", "Tokens used", ["model", "type"],
                              registry=self.registry)
        self.images = Counter("imagebot_images", "Images generated", ["model"],
                              registry=self.registry)
        self.cost = Counter("imagebot_cost_usd", "Cost of successful turns in US dollars, "
                            "from the configured price table", ["model", "platform"],
                            registry=self.registry)
        self.queue = Gauge("imagebot_queue_depth", "Turns running or waiting",
                           registry=self.registry)
        self.queue.set_function(service.queue_depth)
        capacity = service.capacity
        for name, text, read in (
                ("imagebot_turns_in_flight", "Turns at Gemini now (holding a place)",
                 lambda: capacity.in_flight),
                ("imagebot_turns_waiting", "Turns waiting for a free place at Gemini",
                 lambda: capacity.waiting),
                ("imagebot_turns_capacity", "Most turns at Gemini at once in this worker "
                 "(IMAGEBOT_MAX_CONCURRENT_TURNS)", lambda: capacity.limit)):
            Gauge(name, text, registry=self.registry).set_function(read)
        service.observers.append(self.observe)

    def observe(self, event: str, data: dict[str, Any]) -> None:
        if event == "error":
            self.errors.labels(kind=data.get("kind", "internal")).inc()
            return
        if event == "first_progress":
            self.first_progress.labels(model=data["model"]).observe(data["seconds"])
            return
        if event != "turn":
            return
        model = data["model"]
        key = data.get("key")
        self.turns.labels(model=model, platform=getattr(key, "platform", "")).inc()
        self.latency.labels(model=model).observe(data["elapsed"])
        self.result.labels(model=model).observe(data.get("total", data["elapsed"]))
        self.images.labels(model=model).inc(data["images"])
        self.cost.labels(model=model, platform=getattr(key, "platform", "")).inc(
            data.get("cost", 0.0))
        usage: Usage = data["usage"]
        for kind, value in (("prompt", usage.prompt_tokens), ("output", usage.output_tokens),
                            ("thinking", usage.thought_tokens)):
            self.tokens.labels(model=model, type=kind).inc(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
