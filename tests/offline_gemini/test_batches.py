"""The Batch API with the SDK: inline and JSONL-file batches, states on the server's
clock, results inline or as a downloadable file, list, cancel, delete."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import aiohttp
import pytest
from google import genai
from google.genai import errors, types

from offline_gemini import OfflineGemini, thought_signature_for
from tests.offline_gemini.support import FLASH, KEY, PRO, make_client, pil

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)

CAT = {"contents": [{"role": "user", "parts": [{"text": "A cat"}]}], "metadata": {"key": "cat"}}
BAD_RATIO = {
    "contents": [{"role": "user", "parts": [{"text": "A dog"}]}],
    "config": {"image_config": {"aspect_ratio": "7:3"}},
    "metadata": {"key": "dog"},
}


async def test_inline_batch_moves_on_the_clock(client: genai.Client, server: OfflineGemini) -> None:
    job = await client.aio.batches.create(model=FLASH, src=[CAT, BAD_RATIO], config={"display_name": "pets"})
    assert job.name and job.name.startswith("batches/")
    assert (job.state, job.display_name, job.dest) == (types.JobState.JOB_STATE_PENDING, "pets", None)
    sent = server.requests[-1]
    assert sent.path == f"/v1beta/models/{FLASH}:batchGenerateContent"
    assert sent.body["batch"]["inputConfig"]["requests"]["requests"][0]["metadata"] == {"key": "cat"}
    server.clock.advance(minutes=2)
    assert (await client.aio.batches.get(name=job.name)).state == types.JobState.JOB_STATE_RUNNING
    server.clock.advance(minutes=9)
    done = await client.aio.batches.get(name=job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.end_time
    assert done.dest and done.dest.inlined_responses
    ok, failed = done.dest.inlined_responses
    assert ok.metadata == {"key": "cat"} and ok.response and ok.error is None
    assert ok.response.candidates and ok.response.candidates[0].content
    image = (ok.response.candidates[0].content.parts or [])[-1]
    assert image.inline_data and pil(image).size == (1024, 1024)
    assert image.thought_signature == thought_signature_for(image.inline_data.data or b"")
    assert failed.metadata == {"key": "dog"} and failed.response is None and failed.error
    assert failed.error.code == 3 and "Unsupported aspect ratio: 7:3" in (failed.error.message or "")
    raw = server.requests[-1]
    assert raw.path == f"/v1beta/{job.name}"


async def test_jsonl_batch_writes_a_downloadable_results_file(client: genai.Client, server: OfflineGemini) -> None:
    lines = [
        {"key": "fox", "request": {"contents": [{"role": "user", "parts": [{"text": "A fox"}]}]}},
        {"key": "bad", "request": {"contents": []}},
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    source = await client.aio.files.upload(file=io.BytesIO(data), config={"mime_type": "application/jsonl"})
    job = await client.aio.batches.create(model=PRO, src=source.name or "")
    server.clock.advance(minutes=10)
    done = await client.aio.batches.get(name=job.name or "")
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest and done.dest.file_name and done.dest.inlined_responses is None
    results = await client.aio.files.get(name=done.dest.file_name)
    assert results.source == types.FileSource.GENERATED and results.download_uri
    downloaded = await client.aio.files.download(file=done.dest.file_name)
    fox, bad = (json.loads(line) for line in downloaded.decode().splitlines())
    assert fox["key"] == "fox" and fox["response"]["candidates"][0]["finishReason"] == "STOP"
    assert bad["key"] == "bad" and bad["error"]["code"] == 3 and "response" not in bad
    async with aiohttp.ClientSession(headers={"x-goog-api-key": KEY}) as http:
        async with http.get(f"{server.base_url}/v1beta/{job.name}") as resp:
            operation = await resp.json()
    assert operation["done"] is True and operation["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert operation["metadata"]["batchStats"] == {
        "requestCount": "2", "successfulRequestCount": "1", "failedRequestCount": "1"}
    assert operation["response"]["responsesFile"] == done.dest.file_name


async def test_list_cancel_delete(client: genai.Client, server: OfflineGemini) -> None:
    first = await client.aio.batches.create(model=FLASH, src=[CAT])
    second = await client.aio.batches.create(model=FLASH, src=[CAT])
    listed = [job.name async for job in await client.aio.batches.list(config={"page_size": 1})]
    assert sorted(listed) == sorted([first.name, second.name])
    await client.aio.batches.cancel(name=first.name or "")
    server.clock.advance(hours=1)
    assert (await client.aio.batches.get(name=first.name or "")).state == types.JobState.JOB_STATE_CANCELLED
    assert (await client.aio.batches.get(name=second.name or "")).state == types.JobState.JOB_STATE_SUCCEEDED
    await client.aio.batches.delete(name=first.name or "")
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.batches.get(name=first.name or "")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")


async def test_batches_expire_after_48_hours() -> None:
    async with OfflineGemini(batch_turnaround=timedelta(hours=72)) as srv:
        client = make_client(srv.base_url)
        job = await client.aio.batches.create(model=FLASH, src=[CAT])
        srv.clock.advance(hours=47)
        assert (await client.aio.batches.get(name=job.name or "")).state == types.JobState.JOB_STATE_RUNNING
        srv.clock.advance(hours=2)
        expired = await client.aio.batches.get(name=job.name or "")
        await client.aio.aclose()
    assert expired.state == types.JobState.JOB_STATE_EXPIRED and expired.dest is None


async def test_batch_create_is_validated(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.batches.create(model="gemini-9-ultra", src=[CAT])
    assert caught.value.code == 404
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.batches.create(model=FLASH, src="files/nosuchfile")
    assert (caught.value.code, caught.value.status) == (403, "PERMISSION_DENIED")
    big = {"contents": [{"role": "user", "parts": [{"text": "x" * (21 * 1024 * 1024)}]}]}
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.batches.create(model=FLASH, src=[big])
    assert caught.value.message == "Request payload size exceeds the limit: 20971520 bytes."


async def test_batch_faults_by_key(client: genai.Client, server: OfflineGemini) -> None:
    from offline_gemini.faults import Fault

    requests = [{**CAT, "metadata": {"key": str(n)}} for n in (1, 2, 3)]
    server.batches.faults_by_key.update({
        "2": Fault("finish", reason="IMAGE_SAFETY"), "3": Fault("status", code=500)})
    job = await client.aio.batches.create(model=FLASH, src=requests)
    server.clock.advance(minutes=11)
    done = await client.aio.batches.get(name=job.name or "")
    assert done.dest and done.dest.inlined_responses
    ok, blocked, failed = done.dest.inlined_responses
    assert ok.response and ok.response.candidates and ok.response.candidates[0].content
    assert blocked.response and blocked.response.candidates
    assert blocked.response.candidates[0].finish_reason == types.FinishReason.IMAGE_SAFETY
    assert failed.error and failed.error.code == 13
    assert server.batches.faults_by_key == {}, "each fault is used once"
