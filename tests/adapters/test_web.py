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
from adapters.web.errors import for_selectors
from bot.metrics import Metrics
from bot.options import FLASH, PRO, OptionInput
from bot.runtime import Core
from tests import corpus
from tests.wire import resolved

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


async def listed(client: TestClient) -> list[dict[str, Any]]:
    response = await client.get("/api/threads")
    assert response.status == 200
    return (await response.json())["threads"]


async def test_create_thread_settings_stick_and_it_is_listed_once_it_has_a_turn(client):
    thread = await new_thread(client, model="flash", aspect_ratio="4:3")
    assert await listed(client) == [], "a thread of settings alone is not listed"

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

    status, _ = await post_turn(client, thread, turn_form("a fox"))
    assert status == 201
    threads = await listed(client)
    assert [t["id"] for t in threads] == [thread] and threads[0]["turns"] == 1


async def test_a_page_made_thread_exists_only_once_its_first_turn_succeeds(client, stand_in):
    thread = "0123456789abcdef0123456789abcdef"  # the page picks the id of a new thread
    stand_in.faults.queue_finish("IMAGE_SAFETY")
    status, _ = await post_turn(client, thread, turn_form("something unsafe"))
    assert status == 422
    assert await listed(client) == []
    assert (await client.get(f"/api/threads/{thread}")).status == 404
    status, _ = await post_turn(client, thread, turn_form("a calm lake"))
    assert status == 201
    assert [t["title"] for t in await listed(client)] == ["a calm lake"]


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
    sent = stand_in.generations[-1].body
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


async def test_rename_and_delete_a_thread(client):
    thread = await new_thread(client)
    await post_turn(client, thread, turn_form("a red kite"))
    rename = f"/api/threads/{thread}"
    response = await client.patch(rename, json={"title": "  Kites \n for the  fair "},
                                  headers=WRITE)
    assert response.status == 200 and (await response.json())["title"] == "Kites for the fair"
    await post_turn(client, thread, turn_form("make it night"))
    assert (await history(client, thread))["title"] == "Kites for the fair", "a turn keeps it"
    assert [t["title"] for t in await listed(client)] == ["Kites for the fair"]

    assert (await client.patch(rename, json={"title": "x"})).status == 403, "CSRF header"
    bad = await client.patch(rename, json={"title": "   "}, headers=WRITE)
    assert bad.status == 400 and "title" in (await bad.json())["error"]
    assert (await client.patch(rename, json={"title": 3}, headers=WRITE)).status == 400
    assert (await client.patch("/api/threads/nothere", json={"title": "x"},
                               headers=WRITE)).status == 404

    assert (await client.delete(rename)).status == 403, "CSRF header"
    response = await client.delete(rename, headers=WRITE)
    assert response.status == 200 and (await response.json())["deleted"] == thread
    assert (await client.get(rename)).status == 404
    assert await listed(client) == []
    assert (await client.delete(rename, headers=WRITE)).status == 404


# --- inline flags and selector wording ---------------------------------------------------


async def test_inline_flags_win_over_the_selectors(client, stand_in):
    thread = await new_thread(client)
    selected = {"model": "pro", "size": "4K", "aspect_ratio": "16:9", "search": "true"}
    status, body = await post_turn(client, thread, turn_form(
        "a dog --ar 1:1 --size 1K --no-search", **selected))
    assert status == 201, body
    turn = body["turn"]
    assert turn["prompt"] == "a dog"
    image = next(p for p in turn["parts"] if p["kind"] == "image")
    assert (image["width"], image["height"]) == (1024, 1024)
    assert await image_size(client, image["url"]) == (1024, 1024)
    assert turn["settings"] == "Nano Banana Pro · 1K · 1:1" and not turn["sources"]
    sent = stand_in.generations[-1].body
    assert sent["generationConfig"]["imageConfig"] == {"aspectRatio": "1:1", "imageSize": "1K"}
    assert not any("googleSearch" in tool for tool in sent.get("tools", []))

    before = len(stand_in.generations)
    status, body = await post_turn(client, thread, turn_form("a cat --ar 7:5", **selected))
    assert status == 400 and body["kind"] == "option"
    assert "7:5" in body["error"] and "1:1, 2:3, 3:2" in body["error"] and "21:9" in body["error"]
    assert len(stand_in.generations) == before, "nothing was sent to Gemini"


async def test_errors_about_selector_values_name_the_selector(client):
    thread = await new_thread(client)
    response = await client.put(f"/api/threads/{thread}/settings", headers=WRITE,
                                json={"model": "flash", "search": True})
    message = (await response.json())["error"]
    assert response.status == 400 and "Model selector" in message and "--" not in message

    pngs = [(f"{i}.png", corpus.png(20, 20), "image/png") for i in range(4)]
    status, body = await post_turn(client, thread, turn_form("merge these", *pngs,
                                                             model="flash"))
    assert status == 400 and body["kind"] == "attachment"
    assert "choose Nano Banana Pro in the Model selector" in body["error"]

    status, body = await post_turn(client, thread, turn_form("x", model="flash", size="2K"))
    assert status == 400 and "Model selector" in body["error"] and "--size" not in body["error"]


async def test_errors_about_typed_flags_keep_the_flags(client):
    thread = await new_thread(client)
    status, body = await post_turn(client, thread, turn_form("x --size 2K", model="flash"))
    assert status == 400 and "Drop `--size`" in body["error"]
    pngs = [(f"{i}.png", corpus.png(20, 20), "image/png") for i in range(4)]
    status, body = await post_turn(client, thread, turn_form("merge --model flash", *pngs))
    assert status == 400 and "Model selector" not in body["error"]


@pytest.mark.parametrize(("core_text", "web_text"), [
    ("Nano Banana cannot ground on Google Search. Use `--model pro` for search.",
     "Nano Banana cannot ground on Google Search. To use Google Search, choose Nano Banana "
     "Pro in the Model selector."),
    ("Nano Banana takes at most 3 reference images; `--model pro` takes up to 14.",
     "Nano Banana takes at most 3 reference images; Nano Banana Pro (in the Model selector) "
     "takes up to 14."),
    ("Gemini does not know this model (x). Use `--model flash` or `--model pro`.",
     "Gemini does not know this model (x). Choose Nano Banana or Nano Banana Pro in the "
     "Model selector."),
])
def test_selector_wording(core_text, web_text):
    assert for_selectors(core_text) == web_text
    assert for_selectors(core_text, OptionInput(model="flash")) == core_text


# --- malformed requests -----------------------------------------------------------------

BOUNDARY = "imagebotTestBoundary"
MULTIPART = {**WRITE, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def multipart_field(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n").encode() + value


@pytest.mark.parametrize(("body", "words"), [
    (multipart_field("prompt", b"\xff\xfe a cat") + f"\r\n--{BOUNDARY}--\r\n".encode(),
     "UTF-8"),
    (multipart_field("prompt", b"a cat") + b"\r\n"
     + multipart_field("refs", corpus.png(30, 30)[:40], filename="ref.png"), "cut off"),
    (b"not multipart at all", "malformed"),
])
async def test_malformed_multipart_is_a_400_with_a_clear_message(client, stand_in, body, words):
    thread = await new_thread(client)
    response = await client.post(f"/api/threads/{thread}/turns", data=body, headers=MULTIPART)
    assert response.status == 400
    answer = await response.json()
    assert answer["kind"] == "request" and words in answer["error"]
    assert stand_in.generations == []


# --- who may call the playground ---------------------------------------------------------


async def test_foreign_host_is_refused_before_any_route_runs(client, stand_in):
    """DNS rebinding: a page on attacker.example re-pointed at 127.0.0.1 sends its own Host."""
    port = client.server.port
    thread = await new_thread(client)
    evil = f"attacker.example:{port}"
    for path in ("/api/threads", "/api/config", f"/api/threads/{thread}", "/"):
        response = await client.get(path, headers={"Host": evil})
        assert response.status == 421, path
    refused = await client.get("/api/threads", headers={"Host": evil})
    assert (await refused.json())["kind"] == "host"
    page = await client.get("/", headers={"Host": evil})
    assert "IMAGEBOT_WEB_TOKEN" in await page.text()

    form = turn_form("a cat")
    response = await client.post(f"/api/threads/{thread}/turns", data=form, headers={
        **WRITE, "Host": evil, "Origin": f"http://{evil}"})
    assert response.status == 421 and stand_in.generations == []
    for host in (f"localhost.evil.example:{port}", "localhost:1", f"127.0.0.1.nip.io:{port}",
                 f"[::2]:{port}", f"0.0.0.0:{port}", "", f"localhost:{port}x"):
        assert (await client.get("/api/threads", headers={"Host": host})).status == 421, host

    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"127.5.6.7:{port}",
                 f"[::1]:{port}", "localhost", "LOCALHOST", "[::1]"):
        assert (await client.get("/api/threads", headers={"Host": host})).status == 200, host
    local = f"localhost:{port}"
    response = await client.post("/api/threads", json={}, headers={
        **WRITE, "Host": local, "Origin": f"http://{local}"})
    assert response.status == 201
    assert (await client.get("/healthz", headers={"Host": evil})).status == 200, "not the web's"


async def test_with_a_token_any_host_may_use_it(core_factory):
    async with core_factory(web_token="s3cret") as core, _client(core) as client:
        bearer = {"Authorization": "Bearer s3cret", "Host": "imagebot.example.org"}
        assert (await client.get("/api/threads", headers=bearer)).status == 200
        response = await client.post("/api/threads", json={}, headers={
            **bearer, **WRITE, "Origin": "https://imagebot.example.org"})
        assert response.status == 201
        response = await client.post("/api/threads", json={}, headers={
            **bearer, **WRITE, "Origin": "https://attacker.example"})
        assert response.status == 403


async def test_every_response_carries_security_headers(client):
    answers = [
        await client.get("/nope"), await client.post("/healthz"), await client.get("/healthz"),
        await client.get("/metrics"), await client.put("/api/config", headers=WRITE),
        await client.get("/api/threads/nothere"), await client.get("/"),
        await client.get("/api/threads", headers={"Host": "attacker.example"}),
    ]
    assert [a.status for a in answers] == [404, 405, 200, 200, 405, 404, 200, 421]
    for answer in answers:
        assert answer.headers["X-Content-Type-Options"] == "nosniff", answer.url
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


async def test_web_off_page_says_why_and_how_to_turn_it_on(core_factory):
    async with core_factory(host="0.0.0.0") as core:
        app = make_app(core, [], Metrics(core.service))
        async with TestClient(TestServer(app)) as client:
            page = await client.get("/")
            assert page.status == 200 and page.content_type == "text/html"
            text = await page.text()
            assert "playground is off" in text and "0.0.0.0" in text
            assert "IMAGEBOT_WEB_TOKEN" in text and "/?token=" in text
            assert page.headers["X-Frame-Options"] == "DENY"
            assert (await client.get("/api/threads")).status == 404


async def test_an_imagen_turn_then_a_gemini_edit(client, stand_in):
    thread = await new_thread(client)
    status, body = await post_turn(client, thread, turn_form(
        "a lighthouse at dusk", model="imagen-4.0-generate-001", aspect_ratio="16:9"))
    assert status == 201, body
    imagen = body["turn"]
    assert imagen["settings"] == "Imagen 4 · 1K · 16:9"
    assert [(p["width"], p["height"]) for p in imagen["parts"] if p["kind"] == "image"] == [
        (1408, 768)]
    assert any("does not see this conversation" in n for n in imagen["notices"])
    status, body = await post_turn(client, thread, turn_form("add a boat", model="pro",
                                                             aspect_ratio="auto"))
    assert status == 201, body
    assert any("Imagen 4 image" in n for n in body["turn"]["notices"])
    assert body["turn"]["refs"][0]["url"] == next(
        p["url"] for p in imagen["parts"] if p["kind"] == "image")
    config = await (await client.get("/api/config")).json()
    models = {m["id"]: m for m in config["models"]}
    assert models["imagen-4.0-generate-001"]["kind"] == "imagen"
    assert models["imagen-4.0-generate-001"]["ratios"] == ["1:1", "3:4", "4:3", "9:16", "16:9"]
    assert models["imagen-4.0-ultra-generate-001"]["max_count"] == 1


async def test_a_batch_from_the_playground_and_its_zip(client, core, stand_in):
    import csv as csv_module
    import zipfile

    thread = "campaign1"
    form = aiohttp.FormData()
    form.add_field("prompts", "--ar 3:4\na red hat\na blue scarf")
    form.add_field("model", "flash")
    form.add_field("file", b"prompt\na green coat\n", filename="more.csv",
                   content_type="text/csv")
    form.add_field("refs", corpus.png(40, 30), filename="style.png", content_type="image/png")
    response = await client.post(f"/api/threads/{thread}/batches", data=form, headers=WRITE)
    assert response.status == 201, await response.text()
    body = await response.json()
    job = body["batch"]
    assert job["total"] == 3 and job["label"] == "Nano Banana" and job["state"] == "pending"
    assert "3 prompts on Nano Banana" in body["message"] and job["zip_url"] is None
    listed = await (await client.get("/api/threads")).json()
    assert [t["id"] for t in listed["threads"]] == [thread], "a batch-only thread is listed"
    opened = await history(client, thread)
    assert opened["title"] == "Batch: a red hat" and opened["batches"][0]["id"] == job["id"]
    early = await client.get(f"/api/batches/{job['id']}/results.zip")
    assert early.status == 409

    stand_in.clock.advance(minutes=11)
    await core.service.batches.refresh(job["id"])
    shown = await (await client.get(f"/api/batches/{job['id']}")).json()
    assert shown["batch"]["summary"].startswith(f"Batch {job['short']} finished: 3 prompts")
    assert [line["prompt"] for line in shown["lines"]] == ["a red hat", "a blue scarf",
                                                           "a green coat"]
    assert shown["lines"][0]["images"][0]["url"].startswith("/api/images/")
    download = await client.get(shown["batch"]["zip_url"])
    assert download.status == 200 and download.content_type == "application/zip"
    assert "attachment" in download.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(await download.read()))
    names = sorted(archive.namelist())
    assert names == ["001-a-red-hat.png", "002-a-blue-scarf.png", "003-a-green-coat.png",
                     "results.csv"]
    assert Image.open(io.BytesIO(archive.read("001-a-red-hat.png"))).size == (864, 1184)
    rows = list(csv_module.reader(io.StringIO(archive.read("results.csv").decode())))
    assert rows[0] == ["line", "status", "prompt", "files", "error"] and len(rows) == 4

    form = aiohttp.FormData()
    form.add_field("prompts", "one\ntwo")
    form.add_field("model", "flash")
    second = await (await client.post(f"/api/threads/{thread}/batches", data=form,
                                      headers=WRITE)).json()
    cancelled = await client.post(f"/api/batches/{second['batch']['id']}/cancel", headers=WRITE)
    assert (await cancelled.json())["batch"]["state"] == "cancelled"
    listing = await (await client.get(f"/api/batches?thread={thread}")).json()
    assert [b["state"] for b in listing["batches"]] == ["cancelled", "succeeded"]

    form = aiohttp.FormData()
    form.add_field("prompts", "x --model imagen-4")
    refused = await client.post(f"/api/threads/{thread}/batches", data=form, headers=WRITE)
    assert refused.status == 400 and "has no Batch API" in (await refused.json())["error"]


async def test_four_candidates_then_continue_from_the_third(client, stand_in):
    import base64

    thread = await new_thread(client)
    status, body = await post_turn(client, thread, turn_form("a teapot whale", model="flash",
                                                             count="4"))
    assert status == 201, body
    turn = body["turn"]
    assert [c["number"] for c in turn["candidates"]] == [1, 2, 3, 4]
    assert sum(c["chosen"] for c in turn["candidates"]) == 1
    third = next(p["url"] for p in turn["candidates"][2]["parts"] if p["kind"] == "image")
    third_bytes = await (await client.get(third)).read()
    refused = await client.post(f"/api/turns/{turn['id']}/use", json={"number": 7},
                                headers=WRITE)
    assert refused.status == 400 and "There is no U7" in (await refused.json())["error"]
    used = await client.post(f"/api/turns/{turn['id']}/use", json={"number": 3}, headers=WRITE)
    assert used.status == 200
    chosen = (await used.json())["turn"]
    assert chosen["chosen"] == 3 and chosen["candidates"][2]["chosen"]
    assert [p["url"] for p in chosen["parts"] if p["kind"] == "image"] == [third]
    status, _ = await post_turn(client, thread, turn_form("now porcelain"))
    assert status == 201
    model = resolved(stand_in.generations[-1].body, stand_in)["contents"][1]
    images = [base64.urlsafe_b64decode((p.get("inlineData") or p["inline_data"])["data"])
              for p in model["parts"] if "inlineData" in p or "inline_data" in p]
    assert images == [third_bytes]
    stored = await history(client, thread)
    assert stored["turns"][0]["chosen"] == 3
    bad = await post_turn(client, thread, turn_form("x", count="9"))
    assert bad[0] == 400 and "1 to 4" in bad[1]["error"]
