"""The usage page in a real headless Chromium (Debian's), driven by Playwright: its charts
are drawn, and its policy and audit tables filled, under the page's strict CSP."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.serve import running
from bot.errors import QuotaError
from bot.model import Author, IncomingMessage, ThreadKey
from tests.adapters.test_web_browser import open_page

try:
    from playwright.async_api import Browser, expect
except ImportError:  # pragma: no cover - the browser fixture skips or fails first
    Browser = expect = None  # type: ignore[assignment,misc]


async def test_the_usage_page_shows_charts(browser: Browser, artifacts: Path,
                                           make_settings) -> None:
    settings = make_settings(None, gemini_api_key=None, daily_images_per_user=2)
    problems: list[str] = []
    async with running(settings, offline=True, host="127.0.0.1", port=0) as server:
        service = server.core.service
        for n, (who, where, text) in enumerate((
                ("U1", "C1", "a cat"), ("U1", "C1", "a dog --model flash"),
                ("U2", "C2", "a fox --size 4K"))):
            await service.handle(ThreadKey("slack", "T1", where, str(n)),
                                 IncomingMessage(Author(who, who.lower()), text))
        with pytest.raises(QuotaError):
            await service.handle(ThreadKey("slack", "T1", "C1", "9"),
                                 IncomingMessage(Author("U1", "u1"), "one more"))
        page = await open_page(browser, server.url + "/usage", problems)
        bars = page.locator("#chart-cost svg rect.bar")
        await expect(bars.first).to_be_visible()
        assert await bars.count() == 2, "one day, two models stacked"
        await expect(page.locator("#chart-images svg rect.bar")).to_have_count(1)
        await expect(page.locator("#chart-people svg rect.bar")).to_have_count(2)
        await expect(page.locator("#chart-channels svg rect.bar")).to_have_count(2)
        await expect(page.locator("#legend li")).to_have_text(["Nano Banana",
                                                              "Nano Banana Pro"])
        await expect(page.locator("#total-images")).to_have_text("3")
        _, totals = await service.usage_report(since=0)
        await expect(page.locator("#total-cost")).to_have_text(f"${totals.cost:,.2f}")
        await expect(page.locator("#offline")).to_be_visible()
        await expect(page.locator("#policy tbody tr").first).to_contain_text(
            "daily_images_per_user = 2")
        await expect(page.locator("#audit tbody tr")).to_have_count(1)
        await expect(page.locator("#audit tbody tr").first).to_contain_text("refused.quota")
        await page.click("#range button[data-since='7d']")
        await expect(page.locator("#range button[data-since='7d']")).to_have_attribute(
            "aria-pressed", "true")
        await page.set_viewport_size({"width": 1280, "height": 1500})
        await page.screenshot(path=str(artifacts / "web-usage.png"), full_page=True)
        await page.close()
    assert problems == []

