"""The web playground's HTTP API, on serve's app, with the real SDK against the stand-in."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from adapters.serve import make_app
from adapters.web import COOKIE, WebPlayground
from bot.metrics import Metrics
from bot.options import FLASH, PRO
from bot.runtime import Core
from tests import corpus

WRITE = {"X-Imagebot": "1"}


@pytest.fixture
async def client(core: Core) -> AsyncIterator[TestClient]:
    async with _client(core) as opened:
        yield opened


def _client(core: Core) -> TestClient:
    app = make_app(core, [WebPlayground(core)], Metrics(core.service))
    return TestClient(TestServer(app))


async def new_thread(client: TestClient, **settings: Any) -> str:
    response = await client.post("/api/threads", json=settings, headers=WRITE)
    assert response.status == 201
    return (await response.json())["id"]


def turn_form(prompt: str, *refs: tuple[str, bytes, str], **options: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("prompt", prompt)
    for name, value in options.items():
        form.add_field(name, value)
    for filename, data, mime in refs:
        form.add_field("refs", data, filename=filename, content_type=mime)
    return form


async def post_turn(client: TestClient, thread: str, form: aiohttp.FormData
                    ) -> tuple[int, dict[str, Any]]:
    response = await client.post(f"/api/threads/{thread}/turns", data=form, headers=WRITE)
    return response.status, await response.json()


async def image_size(client: TestClient, url: str) -> tuple[int, int]:
    response = await client.get(url)
    assert response.status == 200
    with Image.open(io.BytesIO(await response.read())) as image:
        return image.size


async def history(client: TestClient, thread: str) -> dict[str, Any]:
    response = await client.get(f"/api/threads/{thread}")
    assert response.status == 200
    return await response.json()


async def test_config_lists_models_ratios_sizes_and_offline_flag(client):
    response = await client.get("/api/config")
    assert response.status == 200
    config = await response.json()
    models = {m["id"]: m for m in config["models"]}
    assert models[FLASH]["label"] == "Nano Banana" and models[FLASH]["sizes"] == []
    assert models[FLASH]["search"] is False and models[FLASH]["max_refs"] == 3
    assert models[PRO]["label"] == "Nano Banana Pro"
    assert models[PRO]["sizes"] == ["1K", "2K", "4K"] and models[PRO]["search"] is True
    assert models[PRO]["max_refs"] == 14
    assert len(config["ratios"]) == 10 and "21:9" in config["ratios"]
    assert config["sizes"] == ["1K", "2K", "4K"]
    assert config["offline"] is False
    assert config["defaults"]["model"] == PRO


async def test_page_and_static_files_carry_security_headers(client):
    page = await client.get("/")
    assert page.status == 200
    assert "/static/app.js" in await page.text()
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    script = await client.get("/static/app.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert (await client.get("/static/../__init__.py")).status == 404
    assert (await client.get("/static/secrets.txt")).status == 404


async def test_create_thread_lists_it_and_settings_stick(client):
    thread = await new_thread(client, model="flash", aspect_ratio="4:3")
    listed = (await (await client.get("/api/threads")).json())["threads"]
    assert [t["id"] for t in listed] == [thread] and listed[0]["turns"] == 0

    settings = (await (await client.get(f"/api/threads/{thread}/settings")).json())["settings"]
    assert settings["model"] == FLASH and settings["aspect_ratio"] == "4:3"

    response = await client.put(f"/api/threads/{thread}/settings", headers=WRITE,
                                json={"model": "pro", "aspect_ratio": "16:9", "size": "2k",
                                      "search": True})
    assert response.status == 200
    again = (await (await client.get(f"/api/threads/{thread}/settings")).json())
    assert again["settings"]["summary"] == "Nano Banana Pro · 2K · 16:9 · search"
    assert again["stored"] == {"model": PRO, "aspect_ratio": "16:9", "size": "2K", "search": True}

    bad = await client.put(f"/api/threads/{thread}/settings", headers=WRITE,
                           json={"aspect_ratio": "7:5"})
    assert bad.status == 400
    body = await bad.json()
    assert body["kind"] == "option" and "16:9" in body["error"]
    assert (await client.get("/api/threads/doesnotexist")).status == 404


async def test_turn_with_reference_returns_image_at_documented_size(client, stand_in):
    thread = await new_thread(client)
    status, body = await post_turn(client, thread, turn_form(
        "a lighthouse in a storm", ("ref.png", corpus.png(320, 200), "image/png"),
        model="pro", aspect_ratio="16:9", size="2K", search="false"))
    assert status == 201, body
    turn = body["turn"]
    images = [p for p in turn["parts"] if p["kind"] == "image"]
    assert [(p["width"], p["height"]) for p in images] == [(2752, 1536)]
    assert await image_size(client, images[0]["url"]) == (2752, 1536)
    assert turn["settings"] == "Nano Banana Pro · 2K · 16:9"
    assert turn["footer"].startswith("Nano Banana Pro · 2K · 16:9 · ")
    assert turn["footer"].endswith(" tokens")
    assert turn["refs"][0]["name"] == "ref.png"
    assert await image_size(client, turn["refs"][0]["url"]) == (320, 200)
    sent = stand_in.requests[-1].body
    assert sent["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}
    assert turn["thoughts"], "pro thinks; thoughts come apart from the parts"


async def test_history_after_two_turns_keeps_order_refs_and_parts(client):
    thread = await new_thread(client)
    first_status, first = await post_turn(client, thread, turn_form(
        "a red kite", ("kite.jpg", corpus.jpeg(), "image/jpeg"),
        model="pro", aspect_ratio="16:9", size="2K"))
    second_status, second = await post_turn(client, thread, turn_form("make it night"))
    assert (first_status, second_status) == (201, 201)

    stored = await history(client, thread)
    assert stored["title"] == "a red kite"
    turns = stored["turns"]
    assert [t["id"] for t in turns] == [first["turn"]["id"], second["turn"]["id"]]
    assert [t["prompt"] for t in turns] == ["a red kite", "make it night"]
    assert [len(t["refs"]) for t in turns] == [1, 0]
    assert turns[0]["refs"][0]["mime_type"] == "image/jpeg"
    assert turns[1]["settings"] == "Nano Banana Pro · 2K · 16:9", "settings stick"
    for turn in turns:
        assert [p["kind"] for p in turn["parts"]].count("image") == 1
        assert turn["usage"]["total_tokens"] > 0 and turn["elapsed"] >= 0
        assert turn["offline"] is False and turn["notices"] == []
    assert turns == [first["turn"], second["turn"]], "history shows what the turn returned"
    assert stored["settings"]["summary"] == "Nano Banana Pro · 2K · 16:9"


async def test_search_turn_carries_sources_queries_and_entry_point(client):
    thread = await new_thread(client)
    status, body = await post_turn(client, thread, turn_form(
        "the tallest building in Europe as a poster", model="pro", search="true"))
    assert status == 201, body
    turn = body["turn"]
    assert turn["sources"] and all(s["url"].startswith("https://") for s in turn["sources"])
    assert turn["search_queries"]
    assert "<style>" in turn["search_entry_point"]
    assert turn["settings"].endswith("· search")


async def test_errors_are_json_and_leave_history_unchanged(client, stand_in):
    thread = await new_thread(client)
    status, _ = await post_turn(client, thread, turn_form("a cat"))
    assert status == 201
    before = await history(client, thread)

    status, body = await post_turn(client, thread, turn_form(
        "use this", ("notes.png", corpus.PDF, "image/png")))
    assert status == 400
    assert body["kind"] == "attachment" and "PDF" in body["error"]

    stand_in.faults.queue_finish("IMAGE_SAFETY")
    status, body = await post_turn(client, thread, turn_form("something unsafe"))
    assert status == 422 and body["kind"] == "safety"
    assert body["error"] and "Traceback" not in body["error"]

    status, body = await post_turn(client, thread, turn_form("   ", model="pro"))
    assert status == 400 and body["kind"] == "prompt"

    status, body = await post_turn(client, thread, turn_form("x", model="flash", size="2K"))
    assert status == 400 and body["kind"] == "option"

    assert await history(client, thread) == before


async def test_writes_need_the_csrf_header_and_same_origin(client):
    response = await client.post("/api/threads", json={})
    assert response.status == 403 and (await response.json())["kind"] == "csrf"
    response = await client.post("/api/threads", json={},
                                 headers={**WRITE, "Origin": "https://evil.example"})
    assert response.status == 403
    thread = await new_thread(client)
    response = await client.post(f"/api/threads/{thread}/turns", data=turn_form("a cat"))
    assert response.status == 403
    response = await client.put(f"/api/threads/{thread}/settings", json={"model": "flash"})
    assert response.status == 403
    origin = f"http://{client.server.host}:{client.server.port}"
    response = await client.post("/api/threads", json={}, headers={**WRITE, "Origin": origin})
    assert response.status == 201


async def test_token_protects_every_playground_route(core_factory):
    async with core_factory(web_token="s3cret") as core, _client(core) as client:
        assert (await client.get("/healthz")).status == 200, "health stays open"
        page = await client.get("/")
        assert page.status == 401 and "token" in (await page.text())
        for path in ("/static/app.js", "/api/config", "/api/threads"):
            assert (await client.get(path)).status == 401, path
        refused = await client.get("/api/config")
        assert refused.content_type == "application/json"
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await client.get("/?token=wrong")).status == 401

        login = await client.get("/?token=s3cret", allow_redirects=False)
        assert login.status == 303 and login.headers["Location"] == "/"
        cookie = login.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "s3cret" not in cookie
        assert (await client.get("/api/config")).status == 200, "the cookie is enough now"
        assert (await client.get("/")).status == 200

        client.session.cookie_jar.clear()
        assert (await client.get("/api/config")).status == 401
        bearer = {"Authorization": "Bearer s3cret"}
        assert (await client.get("/api/config", headers=bearer)).status == 200
        assert (await client.get("/api/config",
                                 headers={"Authorization": "Bearer nope"})).status == 401
        client.session.cookie_jar.update_cookies({COOKIE: "forged"})
        assert (await client.get("/api/threads")).status == 401


async def test_image_download_and_cache_headers(client):
    thread = await new_thread(client)
    _, body = await post_turn(client, thread, turn_form("a pear", model="flash",
                                                        aspect_ratio="16:9"))
    image = next(p for p in body["turn"]["parts"] if p["kind"] == "image")
    assert (image["width"], image["height"]) == (1344, 768)
    shown = await client.get(image["url"])
    assert shown.content_type == "image/png"
    assert "immutable" in shown.headers["Cache-Control"]
    assert "Content-Disposition" not in shown.headers
    again = await client.get(image["url"], headers={"If-None-Match": shown.headers["ETag"]})
    assert again.status == 304

    download = await client.get(image["download_url"])
    assert download.status == 200 and download.content_type == "image/png"
    disposition = download.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and disposition.endswith('.png"')
    assert await download.read() == await shown.read()

    assert (await client.get("/api/images/" + "0" * 64)).status == 404
    assert (await client.get("/api/images/not-a-hash")).status == 404


async def test_delete_turn_removes_it_from_history(client):
    thread = await new_thread(client)
    _, first = await post_turn(client, thread, turn_form("one"))
    _, second = await post_turn(client, thread, turn_form("two"))
    response = await client.delete(f"/api/turns/{first['turn']['id']}", headers=WRITE)
    assert response.status == 200
    assert [t["id"] for t in (await history(client, thread))["turns"]] == [second["turn"]["id"]]
    again = await client.delete(f"/api/turns/{first['turn']['id']}", headers=WRITE)
    assert again.status == 404
