"""The web playground in a real headless Chromium (Debian's), driven by Playwright.

One run of ``imagebot serve`` in offline mode: make a thread, attach a reference, generate
with Nano Banana Pro at 16:9 2K, edit it, reload, restart the server, and find it all again.
A second run manages threads: nothing is kept before a first turn succeeds, switching shows
a loading state, rename and delete, and ``/`` reopens the last thread after a restart.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.serve import running
from bot.options import FLASH, PRO
from tests import corpus

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
TIMEOUT_MS = 15_000

try:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        Dialog,
        Locator,
        Page,
        Route,
        async_playwright,
        expect,
    )
    from playwright.async_api import TimeoutError as PlaywrightTimeout
except ImportError:  # pragma: no cover - reported by the fixture below
    async_playwright = None  # type: ignore[assignment]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}. Install Debian's chromium "
                    "(apt-get install chromium) and the playwright Python package.")
    pytest.skip(reason)


@pytest.fixture
def chromium() -> Path:
    if async_playwright is None:
        _unavailable("the playwright package is not installed")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing")
    return CHROMIUM


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def open_page(browser: Browser | BrowserContext, url: str, problems: list[str]) -> Page:
    page = await browser.new_page()
    await page.set_viewport_size({"width": 1360, "height": 940})
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}")
            if msg.type == "error" else None)
    await page.goto(url)
    await page.wait_for_selector("body[data-ready=true]")
    return page


async def natural_size(turn: Locator) -> tuple[int, int]:
    image = turn.locator(".parts img").first
    await image.scroll_into_view_if_needed()
    handle = await image.element_handle()
    await turn.page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=handle)
    width, height = await image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    return width, height


async def check_history(page: Page) -> None:
    turns = page.locator("#turns li.turn[data-turn]")
    await expect(turns).to_have_count(2)
    await expect(turns.nth(0).locator(".user-bubble")).to_have_text("a lighthouse in a storm")
    await expect(turns.nth(1).locator(".user-bubble")).to_have_text("now make it night")
    await expect(turns.nth(0).locator(".ref-thumb")).to_have_count(1)
    await expect(turns.nth(1).locator(".meta")).to_contain_text("Nano Banana Pro · 2K · 16:9")
    assert await natural_size(turns.nth(0)) == (2752, 1536)
    assert await natural_size(turns.nth(1)) == (2752, 1536)
    reference = turns.nth(0).locator(".ref-thumb img")
    await expect(reference).to_have_attribute("src", re.compile(r"^/api/images/[0-9a-f]{64}$"))
    await page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                                 arg=await reference.element_handle())
    assert await reference.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [320, 200]


class Gate:
    """Holds matching requests until the test has seen what it wanted, then lets them go."""

    def __init__(self) -> None:
        self.open = asyncio.Event()

    async def route(self, route: Route) -> None:
        await self.open.wait()
        await route.continue_()


async def click_for_popup(page: Page, target: Locator) -> Page:
    """Clicks ``target`` until the new tab it opens appears: on a loaded machine the
    search-suggestions frame may still be settling when the first click lands."""
    for _ in range(3):
        try:
            async with page.expect_popup(timeout=10_000) as popup_info:
                await target.click()
            return await popup_info.value
        except PlaywrightTimeout:
            continue
    raise AssertionError("clicking a search suggestion never opened a new tab")


async def first_turn(page: Page) -> None:
    await page.click("#new-thread")
    async with page.expect_file_chooser() as chooser_info:
        await page.click("#attach")
    chooser = await chooser_info.value
    await chooser.set_files(files=[{"name": "ref.png", "mimeType": "image/png",
                                    "buffer": corpus.png(320, 200)}])
    await expect(page.locator("#ref-tray .ref-item")).to_have_count(1)
    await page.select_option("#model", FLASH)
    await expect(page.locator("#size")).to_be_disabled()
    await expect(page.locator("#search")).to_be_disabled()
    await page.select_option("#model", PRO)
    await expect(page.locator("#size")).to_be_enabled()
    await page.select_option("#ratio", "16:9")
    await page.select_option("#size", "2K")
    await page.fill("#prompt", "a lighthouse in a storm")
    gate = Gate()  # the request waits until the live timer has been seen counting
    await page.route("**/turns", gate.route)
    await page.click("#send")
    await page.wait_for_url(re.compile(r"#/t/[0-9a-f]{32}$"))
    await expect_placeholder_ratio(page, "16:9")
    timer = page.locator(".pending-turn .timer")
    await expect(timer).to_have_text(re.compile(r"^(0\.[5-9]|[1-9]\d*\.\d)s$"))
    await expect(page.locator(".pending-turn")).to_contain_text("Nano Banana Pro · 2K · 16:9")
    gate.open.set()
    turns = page.locator("#turns li.turn[data-turn]")
    await expect(turns).to_have_count(1)
    await page.unroute("**/turns", gate.route)
    assert await natural_size(turns.nth(0)) == (2752, 1536)
    assert (await turns.nth(0).locator(".parts img").get_attribute("src")).startswith(
        "/api/images/")
    await expect(page.locator("#ref-tray .ref-item")).to_have_count(0)


async def expect_placeholder_ratio(page: Page, ratio: str) -> None:
    """The pending turn's placeholder has the shape of the image on its way."""
    shimmer = page.locator(".pending-turn .shimmer")
    await expect(shimmer).to_have_attribute("data-ratio", ratio)
    box = await shimmer.bounding_box()
    width, height = (int(n) for n in ratio.split(":"))
    assert box is not None and abs(box["width"] / box["height"] - width / height) < 0.02, box


DROP_AND_PASTE = """png => {
    const bytes = Uint8Array.from(atob(png), c => c.charCodeAt(0));
    const carrying = name => {
        const data = new DataTransfer();
        data.items.add(new File([bytes], name, {type: 'image/png'}));
        return data;
    };
    document.getElementById('chat').dispatchEvent(new DragEvent('drop',
        {dataTransfer: carrying('dropped.png'), bubbles: true, cancelable: true}));
    document.getElementById('prompt').dispatchEvent(new ClipboardEvent('paste',
        {clipboardData: carrying('pasted.png'), bubbles: true, cancelable: true}));
}"""


async def drop_paste_and_remove(page: Page) -> None:
    """References also come by drag-and-drop and paste, and each can be taken off again."""
    await page.evaluate(DROP_AND_PASTE, base64.b64encode(corpus.png(40, 30)).decode())
    items = page.locator("#ref-tray .ref-item")
    await expect(items).to_have_count(2)
    await expect(items.nth(0)).to_have_attribute("title", "dropped.png")
    await expect(items.nth(1)).to_have_attribute("title", "pasted.png")
    await items.nth(1).locator(".remove").click()
    await items.nth(0).locator(".remove").click()
    await expect(items).to_have_count(0)
    await expect(page.locator("#ref-tray")).to_be_hidden()


async def follow_up(page: Page) -> None:
    await drop_paste_and_remove(page)
    await page.check("#search")
    await page.fill("#prompt", "now make it night")
    await page.press("#prompt", "Enter")
    last = page.locator("#turns li.turn[data-turn]").nth(1)
    await expect(last).to_be_visible()
    await expect(last.locator(".sources a").first).to_have_attribute("target", "_blank")
    frame = last.locator("iframe.search-frame")
    await expect(frame).to_have_attribute("sandbox", "allow-popups allow-popups-to-escape-sandbox")
    chips = page.frame_locator("#turns li.turn[data-turn] >> nth=1 >> iframe").locator("a.chip")
    await expect(chips.first).to_be_visible()
    await page.context.route("https://www.google.com/**", stand_in_google)
    popup = await click_for_popup(page, chips.first)
    assert popup.url.startswith("https://www.google.com/search?q="), "chips open in a new tab"
    await popup.close()
    await last.locator(".thinking summary").click()
    await expect(last.locator(".thinking .figure img").first).to_be_visible()


async def lightbox(page: Page) -> None:
    """A click shows the image full size, with a download link; Escape closes it."""
    opener = page.locator("#turns li.turn[data-turn] .parts .figure .open").first
    source = await opener.locator("img").get_attribute("src")
    await opener.click()
    await expect(page.locator("#lightbox")).to_be_visible()
    await expect(page.locator("#lightbox-img")).to_have_attribute("src", source or "")
    await expect(page.locator("#lightbox-download")).to_have_attribute("href", f"{source}/download")
    # Two results in view; the closed "Thinking" drafts and the reference are not counted.
    await expect(page.locator("#lightbox-caption")).to_contain_text("(1 / 2)")
    await page.locator("#lightbox-next").click()
    await expect(page.locator("#lightbox-caption")).to_contain_text("(2 / 2)")
    await page.keyboard.press("Escape")
    await expect(page.locator("#lightbox")).to_be_hidden()
    await page.locator("#turns .ref-thumb").first.click()
    await expect(page.locator("#lightbox-caption")).to_contain_text("Reference · ref.png  (1 / 1)")
    await page.keyboard.press("Escape")
    await expect(page.locator("#lightbox")).to_be_hidden()


async def stand_in_google(route: Route) -> None:
    await route.fulfill(body="search results", content_type="text/plain")


async def screenshot(page: Page, path: Path) -> None:
    """Both turns in one tall window, for a person to look at (``artifacts/`` is ignored)."""
    await page.set_viewport_size({"width": 1400, "height": 2000})
    await page.evaluate("document.getElementById('chat').scrollTo({top: 0, behavior: 'instant'})")
    await page.wait_for_function(
        "[...document.querySelectorAll('#turns img')].every(i => i.complete || !i.checkVisibility())")
    await page.screenshot(path=str(path))


async def test_playground_in_chromium(browser: Browser, artifacts: Path, make_settings) -> None:
    settings = make_settings(None, gemini_api_key=None)
    problems: list[str] = []
    async with running(settings, offline=True, host="127.0.0.1", port=0) as server:
        page = await open_page(browser, server.url + "/", problems)
        await expect(page.locator("#offline-banner")).to_be_visible()
        await expect(page.locator("#offline-banner")).to_contain_text(
            "Offline preview — images are made by imagebot's offline stand-in, not Gemini.")
        await first_turn(page)
        await follow_up(page)
        thread_url = page.url.split("#", 1)[1]

        await page.reload()
        await page.wait_for_selector("body[data-ready=true]")
        await check_history(page)
        await expect(page.locator(".thread-link.active")).to_contain_text("a lighthouse")
        await lightbox(page)
        await screenshot(page, artifacts / "web-playground.png")
        await page.close()

    async with running(settings, offline=True, host="127.0.0.1", port=0) as server:
        page = await open_page(browser, f"{server.url}/#{thread_url}", problems)
        await check_history(page)
        await expect(page.locator("#offline-banner")).to_be_visible()
        await page.close()
    assert problems == []


# --- managing threads ----------------------------------------------------------------------


def free_port() -> int:
    """A port to serve on twice, so the restarted page has the same origin (localStorage)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def listed_ids(page: Page) -> list[str]:
    origin = re.match(r"https?://[^/]+", page.url)
    assert origin is not None
    response = await page.request.get(origin.group(0) + "/api/threads")
    return [t["id"] for t in (await response.json())["threads"]]


async def only_a_successful_first_turn_makes_a_thread(page: Page) -> str:
    await expect(page.locator("#thread-title")).to_have_text("New thread")
    await page.click("#new-thread")
    await page.fill("#prompt", "a cat --ar 7:5")
    await page.press("#prompt", "Enter")
    await expect(page.locator(".turn.failed .error-text")).to_contain_text("not a supported")
    await page.select_option("#ratio", "4:3")
    await expect(page.locator(".threads-empty")).to_be_visible()
    assert await listed_ids(page) == [], "neither the failed turn nor the selector kept it"

    gate = Gate()
    await page.route("**/turns", gate.route)
    await page.fill("#prompt", "a red fox --ar 3:4")
    await page.click("#send")
    await expect_placeholder_ratio(page, "3:4")
    await expect(page.locator(".thread-link .busy-dot")).to_have_count(1)
    gate.open.set()
    await expect(page.locator("#turns li.turn[data-turn]")).to_have_count(1)
    await page.unroute("**/turns", gate.route)
    await expect(page.locator(".thread-link")).to_have_count(1)
    return await page.locator(".thread-link").first.get_attribute("data-thread") or ""


async def switching_shows_a_loading_state(page: Page, fox: str) -> None:
    gate = Gate()
    await page.route(f"**/api/threads/{fox}", gate.route)
    await page.click(f'.thread-link[data-thread="{fox}"]')
    await expect(page.locator(".thread-loading")).to_be_visible()
    await expect(page.locator("#turns li.turn[data-turn]")).to_have_count(0)
    await expect(page.locator("#thread-title")).to_have_text("a red fox")
    gate.open.set()
    await expect(page.locator("#turns .user-bubble")).to_have_text(["a red fox"])
    await expect(page.locator(".thread-loading")).to_have_count(0)
    await page.unroute(f"**/api/threads/{fox}", gate.route)


async def rename(page: Page, thread: str, title: str) -> None:
    await page.click("#rename-thread")
    await page.fill("#title-input", title)
    await page.press("#title-input", "Enter")
    await expect(page.locator("#thread-title")).to_have_text(title)
    await expect(page.locator(f'.thread-link[data-thread="{thread}"]')).to_contain_text(title)


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


async def test_threads_in_chromium(browser: Browser, make_settings) -> None:
    settings = make_settings(None, gemini_api_key=None)
    port = free_port()
    problems: list[str] = []
    context = await browser.new_context()
    async with running(settings, offline=True, host="127.0.0.1", port=port) as server:
        page = await open_page(context, server.url + "/", problems)
        fox = await only_a_successful_first_turn_makes_a_thread(page)
        await page.click("#new-thread")
        await page.wait_for_url(re.compile(r"#/$"))
        await expect(page.locator("#thread-title")).to_have_text("New thread")
        await page.fill("#prompt", "a blue whale")
        await page.press("#prompt", "Enter")
        await expect(page.locator("#turns li.turn[data-turn]")).to_have_count(1)
        await expect(page.locator(".thread-link")).to_have_count(2)
        await expect(page.locator(".thread-link .busy-dot")).to_have_count(0)
        whale = await page.locator(".thread-link").first.get_attribute("data-thread")
        assert await listed_ids(page) == [whale, fox]
        await switching_shows_a_loading_state(page, fox)
        await rename(page, fox, "Fox study")
        await page.close()

    async with running(settings, offline=True, host="127.0.0.1", port=port) as server:
        page = await open_page(context, server.url + "/", problems)
        await expect(page).to_have_url(re.compile(f"#/t/{fox}$"))
        await expect(page.locator("#thread-title")).to_have_text("Fox study")
        await expect(page.locator("#turns .user-bubble")).to_have_text(["a red fox"])

        stranger = await open_page(browser, server.url + "/", problems)
        await expect(stranger).to_have_url(re.compile(f"#/t/{whale}$"), timeout=TIMEOUT_MS)
        stranger.once("dialog", accept)
        await stranger.click("#delete-thread")
        await expect(stranger.locator(".thread-link")).to_have_count(1)
        await expect(stranger).to_have_url(re.compile(f"#/t/{fox}$"))
        await expect(stranger.locator("#thread-title")).to_have_text("Fox study")
        assert await listed_ids(stranger) == [fox]
        await stranger.close()
    await context.close()
    # The refused 7:5 turn is told in the turn's event stream, not as a failed request.
    assert problems == []


# --- live progress -------------------------------------------------------------------------


async def test_live_progress_in_chromium(browser: Browser, make_settings) -> None:
    """The offline stand-in streams Pro's thinking with gaps, as Gemini does: the page shows
    the thought and each draft as they come, then the result; Cancel stops a turn."""
    settings = make_settings(None, gemini_api_key=None, offline_stream_gap=0.8)
    problems: list[str] = []
    async with running(settings, offline=True, host="127.0.0.1", port=0) as server:
        page = await open_page(browser, server.url + "/", problems)
        await page.fill("#prompt", "a lighthouse in a storm")
        await page.press("#prompt", "Enter")
        live = page.locator(".pending-turn")
        await expect(live.locator(".live-thought")).to_contain_text(
            "Composing the offline preview")
        await expect(live.locator(".live-status")).to_contain_text("Thinking…")
        await expect(live.locator(".live-drafts img")).to_have_count(1)
        # The first draft is on the page while the turn still runs.
        await expect(live.locator(".live-status")).to_have_text(
            re.compile(r"^Drawing… · 1 draft · Nano Banana Pro"))
        assert await page.locator("#turns li.turn[data-turn]").count() == 0
        src = await live.locator(".live-drafts img").first.get_attribute("src")
        assert src is not None and src.startswith("data:image/")
        await expect(live.locator(".live-drafts img")).to_have_count(2)
        turns = page.locator("#turns li.turn[data-turn]")
        await expect(turns).to_have_count(1)
        await expect(page.locator(".pending-turn")).to_have_count(0)
        await expect(turns.first.locator(".thinking summary")).to_have_text(
            "Thinking · 2 draft images")
        thread = page.url.split("#/t/", 1)[1]

        await page.fill("#prompt", "now make it night")
        await page.press("#prompt", "Enter")
        await expect(live.locator(".live-drafts img")).to_have_count(1)
        await live.locator(".cancel-btn").click()
        failed = page.locator(".turn.failed")
        await expect(failed.locator(".error-text")).to_contain_text("Cancelled by you")
        await expect(failed.locator(".error-kind")).to_contain_text("Cancelled after")
        await expect(page.locator("#prompt")).to_have_value("now make it night")
        response = await page.request.get(f"{server.url}/api/threads/{thread}")
        assert [t["prompt"] for t in (await response.json())["turns"]] == [
            "a lighthouse in a storm"], "nothing stored"
        await page.close()
    assert problems == []
