"""What the server keeps of requests (a bounded window), its test-only admin endpoints,
and answers that depend on a file's bytes, not its URI."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types

from offline_gemini import OfflineGemini, RecordedRequest
from offline_gemini.recording import RequestLog, body_breakdown
from tests.offline_gemini.support import PRO, final_images, make_client, png_bytes

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


def record(size: int = 0) -> RecordedRequest:
    return RecordedRequest(path="/", model="", method="", headers={}, body=None, size=size)


def test_the_log_keeps_the_newest_requests_by_count_and_bytes() -> None:
    log = RequestLog(keep=3, keep_bytes=100)
    records = [record(10) for _ in range(5)]
    for r in records:
        log.append(r)
    assert log == records[2:] and log.total == 5
    log.append(record(80))
    log.append(bigger := record(90))  # over 100 bytes: the older ones go
    assert log == [bigger] and log[-1] is bigger and log.total == 7
    log.append(huge := record(500))
    assert log == [huge], "the newest stays whatever its size"
    log.clear()
    assert log == [] and log.total == 8


async def test_a_server_keeps_only_its_recent_requests() -> None:
    async with OfflineGemini(keep_requests=3) as server:
        sdk = make_client(server.base_url)
        for _ in range(5):
            await sdk.aio.models.list()
        await sdk.aio.aclose()
        assert len(server.requests) == 3 and server.requests.total == 5
        assert server.requests[1:] == list(server.requests)[1:], "still a list"


def test_a_body_breakdown_counts_signatures_inline_data_and_files() -> None:
    body = {"contents": [
        {"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"data": "QUJD"}}]},
        {"role": "model", "parts": [
            {"fileData": {"file_uri": "u"}, "thoughtSignature": "c2lnbmF0dXJl"},
            {"text": "x", "thought_signature": "YWJj"}]}]}
    assert body_breakdown(body) == {"signature_bytes": 16, "inline_data_bytes": 4,
                                    "file_parts": 1, "parts": 4}


async def _admin(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(
            method, f"{url}/_admin/{path}", json=body) as resp:
        return resp.status, await resp.json()


async def test_admin_endpoints_exist_only_when_asked_for() -> None:
    async with OfflineGemini() as server:
        status, body = await _admin(server.base_url, "GET", "stats")
        assert status == 404 and body["error"]["status"] == "NOT_FOUND"


async def test_admin_moves_the_clock_and_counts() -> None:
    async with OfflineGemini(admin=True) as server:
        sdk = make_client(server.base_url)
        uploaded = await sdk.aio.files.upload(file=io.BytesIO(png_bytes()),
                                              config={"mime_type": "image/png"})
        assert uploaded.uri
        part = types.Part.from_uri(file_uri=uploaded.uri, mime_type="image/png")
        await sdk.aio.models.generate_content(model=PRO, contents=["a fox", part])
        status, stats = await _admin(server.base_url, "GET", "stats")
        assert status == 200 and stats["uploads"] == 1 and stats["live_files"] == 1
        assert stats["last_generate"]["file_parts"] == 1
        assert stats["last_generate"]["bytes"] == server.generations[-1].size > 0
        status, _ = await _admin(server.base_url, "POST", "clock", {"advance_hours": 49})
        assert status == 200
        with pytest.raises(errors.ClientError) as refused:
            await sdk.aio.models.generate_content(model=PRO, contents=["a fox", part])
        assert refused.value.code == 403 and "may not exist" in (refused.value.message or "")
        assert (await _admin(server.base_url, "GET", "stats"))[1]["live_files"] == 0
        status, _ = await _admin(server.base_url, "POST", "clock", {"advance_hours": -1})
        assert status == 400
        await sdk.aio.aclose()


async def test_a_history_file_is_the_same_input_as_its_bytes_inline(
        server: OfflineGemini, client: genai.Client) -> None:
    data = png_bytes((120, 90))
    uploaded = await client.aio.files.upload(file=io.BytesIO(data),
                                             config={"mime_type": "image/png"})
    assert uploaded.uri
    user = types.Content(role="user", parts=[
        types.Part.from_text(text="a fox"), types.Part.from_bytes(data=data, mime_type="image/png")])
    first = await client.aio.models.generate_content(model=PRO, contents=[user])
    assert first.candidates and first.candidates[0].content
    model_turn = first.candidates[0].content
    as_file = user.model_copy(update={"parts": [
        user.parts[0], types.Part.from_uri(file_uri=uploaded.uri, mime_type="image/png")]})
    again = types.Content(role="user", parts=[types.Part.from_text(text="now in snow")])
    answers = [await client.aio.models.generate_content(model=PRO, contents=[u, model_turn, again])
               for u in (user, as_file)]
    inline, from_file = ([p.inline_data.data for p in final_images(a) if p.inline_data]
                         for a in answers)
    assert inline and inline == from_file, "the model saw the same bytes"
