"""The web usage page's routes and access, on serve's app, with the real SDK against the
stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.serve import make_app
from adapters.web import WebPlayground
from adapters.web.usage import COOKIE
from bot.errors import PolicyError
from bot.metrics import Metrics
from bot.model import Author, IncomingMessage, ThreadKey
from bot.runtime import Core

ADMIN_TOKEN = "admin-t0ken-123"
WEB_TOKEN = "web-t0ken-456"


def client_for(core: Core) -> TestClient:
    app = make_app(core, [WebPlayground(core)], Metrics(core.service))
    return TestClient(TestServer(app))


@pytest.fixture
async def local(core: Core) -> AsyncIterator[TestClient]:
    async with client_for(core) as client:
        yield client


async def some_turns(core: Core) -> None:
    service = core.service
    await service.handle(ThreadKey("slack", "T1", "C1", "a"), IncomingMessage(
        Author("U1", "alice"), "a cat"))
    await service.handle(ThreadKey("web", "", "", "b"), IncomingMessage(
        Author("web", "You"), "a dog --model flash"))


async def test_the_page_and_its_data_on_a_playground_of_ones_own(core: Core,
                                                                  local: TestClient) -> None:
    await some_turns(core)
    page = await local.get("/usage")
    assert page.status == 200 and "default-src 'none'" in page.headers[
        "Content-Security-Policy"]
    assert '<script src="/usage/usage.js" defer></script>' in await page.text()
    for asset, kind in (("usage.js", "text/javascript"), ("usage.css", "text/css"),
                        ("favicon.svg", "image/svg+xml")):
        response = await local.get(f"/usage/{asset}")
        assert response.status == 200 and response.content_type == kind
    assert (await local.get("/usage/nope.js")).status == 404

    data: dict[str, Any] = await (await local.get("/api/usage?since=7d")).json()
    assert data["totals"]["images"] == 2 and data["totals"]["turns"] == 2
    assert {m["label"] for m in data["models"]} == {"Nano Banana", "Nano Banana Pro"}
    assert [p["label"] for p in data["top_people"]] == ["alice", "You"]
    assert {c["label"] for c in data["top_channels"]} == {"slack/T1/C1", "web"}
    assert data["prices"]["source_date"] == "2026-11-29" and data["timezone"] == "UTC"
    bad = await local.get("/api/usage?since=yesterday-ish")
    assert bad.status == 400 and "30d" in (await bad.json())["error"]


async def test_policy_and_audit(core_factory) -> None:
    policy = {"channels": {"slack/T1/C1": {"deny_users": ["U2"]}}, "max_size": "2K"}
    async with core_factory(policy=policy) as core, client_for(core) as client:
        with pytest.raises(PolicyError):
            await core.service.handle(ThreadKey("slack", "T1", "C1", "x"),
                                      IncomingMessage(Author("U2", "bob"), "a cat"))
        await core.service.set_rules("slack/T1", {"daily_budget_usd": 5},
                                     by=Author("cli:ops", "ops"))
        scopes = (await (await client.get("/api/usage/policy")).json())["scopes"]
        assert [s["scope"] for s in scopes] == ["*", "slack/T1", "slack/T1/C1"]
        assert scopes[0]["rules"] == {"max_size": "2K"}
        assert scopes[1]["changed"] == {"daily_budget_usd": 5.0}
        assert scopes[1]["changed_by"] == "cli:ops"
        audit = await (await client.get("/api/usage/audit?action=refused.policy")).json()
        [entry] = audit["entries"]
        assert entry["actor"] == "slack:U2" and entry["where"] == "slack/T1/C1/x"
        assert "deny_users" in entry["detail"]["message"]
        everything = await (await client.get("/api/usage/audit")).json()
        assert {e["action"] for e in everything["entries"]} == {"refused.policy",
                                                                "policy.change"}
        assert (await client.get("/api/usage/audit?action=bogus")).status == 400


async def test_a_shared_playground_keeps_usage_for_admins(core_factory) -> None:
    async with core_factory(web_token=WEB_TOKEN, web_admin_token=ADMIN_TOKEN) as core, \
            client_for(core) as client:
        for path in ("/api/usage", "/api/usage/policy", "/api/usage/audit"):
            assert (await client.get(path)).status == 401
        as_user = await client.get("/api/usage",
                                   headers={"Authorization": f"Bearer {WEB_TOKEN}"})
        assert as_user.status == 401, "the playground's token is not the admin token"
        page = await client.get("/usage")
        assert page.status == 401 and "/usage?token=" in await page.text()
        ok = await client.get("/api/usage", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert ok.status == 200
        opened = await client.get(f"/usage?token={ADMIN_TOKEN}", allow_redirects=False)
        assert opened.status == 303 and COOKIE in opened.cookies
        assert "HttpOnly" in opened.headers["Set-Cookie"]
        assert (await client.get("/usage")).status == 200  # the cookie now
        assert (await client.get("/api/usage/audit")).status == 200


async def test_shared_without_an_admin_token_the_page_stays_shut(core_factory) -> None:
    async with core_factory(web_token=WEB_TOKEN) as core, client_for(core) as client:
        page = await client.get("/usage")
        assert page.status == 403 and "IMAGEBOT_WEB_ADMIN_TOKEN" in await page.text()
        api = await client.get("/api/usage", headers={"Authorization": f"Bearer {WEB_TOKEN}"})
        assert api.status == 403


async def test_the_playground_refuses_by_policy_and_quota(core_factory) -> None:
    from tests.adapters.test_web import new_thread, post_turn, turn_form

    async with core_factory(daily_images_per_user=1, policy={"max_size": "2K"}) as core, \
            client_for(core) as client:
        thread = await new_thread(client)
        status, body = await post_turn(client, thread, turn_form("a cat", size="4K"))
        assert status == 403 and body["kind"] == "policy" and "max_size" in body["error"]
        status, _ = await post_turn(client, thread, turn_form("a cat"))
        assert status == 201
        status, body = await post_turn(client, thread, turn_form("a dog"))
        assert status == 429 and body["kind"] == "quota" and "1 of 1" in body["error"]
