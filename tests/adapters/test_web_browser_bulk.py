"""Variations and batches in the playground, in a real headless Chromium: ask for 4
candidates, continue from the third; submit a batch, see its results come in and download
them as a zip. ``serve`` runs against the stand-in, whose clock the test moves."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

from adapters.serve import running
from bot.options import FLASH
from offline_gemini import OfflineGemini
from tests.adapters.test_web_browser import (  # noqa: F401  (the browser harness's fixtures)
    artifacts,
    browser,
    chromium,
    expect,
    open_page,
)
from tests.wire import resolved


async def test_candidates_and_a_batch_in_chromium(browser, artifacts,  # noqa: F811
                                                  stand_in: OfflineGemini, make_settings,
                                                  tmp_path: Path) -> None:
    settings = make_settings(stand_in.base_url, batch_poll_seconds=0.05)
    problems: list[str] = []
    async with running(settings, host="127.0.0.1", port=0) as server:
        page = await open_page(browser, server.url + "/#/", problems)
        await page.select_option("#model", FLASH)
        await page.select_option("#count", "4")
        await page.fill("#prompt", "a teapot shaped like a whale")
        await page.press("#prompt", "Enter")
        turn = page.locator("#turns li.turn[data-turn]").first
        candidates = turn.locator(".candidate")
        await expect(candidates).to_have_count(4)
        await expect(turn.locator(".candidate.chosen")).to_have_count(1)
        await expect(turn.locator(".notices")).to_contain_text("finished first")
        third = candidates.nth(2)
        src = await third.locator("img").first.get_attribute("src")
        if await turn.locator(".candidate.chosen").get_attribute("data-candidate") == "U3":
            # U3 finished first: pick U1, so that picking U3 below is a real swap.
            await candidates.nth(0).locator(".use-btn").click()
            await expect(turn.locator(".candidate.chosen")).to_have_attribute(
                "data-candidate", "U1")
        await third.locator(".use-btn").click()
        await expect(turn.locator(".candidate.chosen")).to_have_attribute("data-candidate", "U3")

        await page.select_option("#count", "1")
        await page.fill("#prompt", "now in porcelain")
        await page.press("#prompt", "Enter")
        await expect(page.locator("#turns li.turn[data-turn]")).to_have_count(2)
        third_bytes = await (await page.request.get(server.url + (src or ""))).body()
        model = resolved(stand_in.generations[-1].body, stand_in)["contents"][1]
        sent = [base64.urlsafe_b64decode((p.get("inlineData") or p["inline_data"])["data"])
                for p in model["parts"] if "inlineData" in p or "inline_data" in p]
        assert sent == [third_bytes], "the conversation continued from U3"

        await page.check("#batch")
        await expect(page.locator("#send")).to_have_text("Submit batch")
        await page.fill("#prompt", "--ar 3:4\na red hat\na blue scarf")
        await page.click("#send")
        card = page.locator("#turns li.batch")
        await expect(card).to_contain_text("Waiting at Gemini")
        stand_in.clock.advance(minutes=11)
        await expect(card).to_contain_text("Finished", timeout=20_000)
        await expect(card.locator(".figure")).to_have_count(2)
        link = card.locator("a.zip-link")
        await expect(link).to_contain_text("Download 2 images (zip)")
        archive = await page.request.get(server.url + (await link.get_attribute("href") or ""))
        names = sorted(zipfile.ZipFile(io.BytesIO(await archive.body())).namelist())
        assert names == ["001-a-red-hat.png", "002-a-blue-scarf.png", "results.csv"]
        await page.set_viewport_size({"width": 1400, "height": 2000})
        await page.screenshot(path=str(artifacts / "web-candidates-and-batch.png"))
        await page.close()
    assert problems == []
