"""The Files API as the SDK speaks it: resumable upload, get, list, delete, download,
fileData parts in requests, expiry on the server's clock, signatures on files."""

from __future__ import annotations

import base64
import hashlib
import io
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from google import genai
from google.genai import errors, types

from offline_gemini import OfflineGemini
from offline_gemini.clock import Clock
from tests.offline_gemini.support import (
    FLASH,
    KEY,
    PRO,
    final_images,
    first_turn,
    follow_up,
    make_client,
    pil,
    png_bytes,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


async def upload(client: genai.Client, data: bytes, mime: str = "image/png", **config: str) -> types.File:
    return await client.aio.files.upload(file=io.BytesIO(data), config={"mime_type": mime, **config})


def file_part(uri: str, mime: str = "image/png") -> types.Part:
    return types.Part.from_uri(file_uri=uri, mime_type=mime)


async def test_upload_answers_the_file_resource(client: genai.Client, server: OfflineGemini) -> None:
    data = png_bytes((300, 200))
    uploaded = await upload(client, data, display_name="green")
    assert uploaded.name and uploaded.name.startswith("files/")
    file_id = uploaded.name.removeprefix("files/")
    assert uploaded.uri == f"{server.base_url}/v1beta/files/{file_id}"
    assert (uploaded.mime_type, uploaded.size_bytes, uploaded.display_name) == ("image/png", len(data), "green")
    assert uploaded.state == types.FileState.ACTIVE and uploaded.source == types.FileSource.UPLOADED
    assert uploaded.create_time and uploaded.expiration_time and uploaded.update_time
    assert uploaded.expiration_time - uploaded.create_time == timedelta(hours=48)
    assert uploaded.sha256_hash == base64.b64encode(hashlib.sha256(data).hexdigest().encode()).decode()
    assert uploaded.download_uri is None
    start, chunk = server.requests
    assert start.path == chunk.path == "/upload/v1beta/files"
    assert start.body == {"file": {"display_name": "green", "mime_type": "image/png", "size_bytes": len(data)}}
    assert start.headers["x-goog-api-key"] == KEY and "x-goog-api-key" not in chunk.headers
    assert chunk.headers["x-goog-upload-command"] == "upload, finalize"
    assert len(chunk.query["upload_id"]) >= 32


async def test_large_upload_goes_in_chunks(client: genai.Client, server: OfflineGemini) -> None:
    data = hashlib.shake_256(b"big").digest(9 * 1024 * 1024)  # the SDK sends 8 MiB chunks
    uploaded = await upload(client, data, mime="application/octet-stream")
    assert uploaded.size_bytes == len(data)
    commands = [(r.headers.get("x-goog-upload-command"), r.headers.get("x-goog-upload-offset"))
                for r in server.requests[1:]]
    assert commands == [("upload", "0"), ("upload, finalize", str(8 * 1024 * 1024))]
    assert server.files.get(uploaded.name.removeprefix("files/")).data == data  # type: ignore[union-attr]


async def test_upload_url_is_its_own_credential(client: genai.Client, server: OfflineGemini) -> None:
    await upload(client, png_bytes())
    headers = {"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"}
    async with aiohttp.ClientSession() as http:
        url = f"{server.base_url}/upload/v1beta/files?upload_id=guessed&upload_protocol=resumable"
        async with http.post(url, data=b"x", headers=headers) as resp:
            assert resp.status == 404 and resp.headers["X-Goog-Upload-Status"] == "final"
        async with http.post(f"{server.base_url}/upload/v1beta/files", json={"file": {}},
                             headers={"X-Goog-Upload-Protocol": "resumable",
                                      "X-Goog-Upload-Command": "start"}) as resp:
            assert resp.status == 403, "starting an upload needs the API key"


async def test_get_list_delete(client: genai.Client, server: OfflineGemini) -> None:
    names = [(await upload(client, png_bytes(color=(i, 0, 0)))).name for i in range(3)]
    got = await client.aio.files.get(name=names[0] or "")
    assert got.name == names[0] and got.size_bytes == len(png_bytes(color=(0, 0, 0)))
    pager = await client.aio.files.list(config={"page_size": 2})
    assert len(pager.page) == 2
    listed = [f.name async for f in pager]
    assert sorted(listed) == sorted(names) and len(listed) == 3
    await client.aio.files.delete(name=names[1] or "")
    assert sorted([f.name async for f in await client.aio.files.list()]) == sorted([names[0], names[2]])
    for call in (client.aio.files.get, client.aio.files.delete):
        with pytest.raises(errors.ClientError) as caught:
            await call(name=names[1] or "")
        file_id = (names[1] or "").removeprefix("files/")
        assert (caught.value.code, caught.value.status) == (403, "PERMISSION_DENIED")
        assert caught.value.message == (
            f"You do not have permission to access the File {file_id} or it may not exist."
        )


async def test_only_generated_files_download(client: genai.Client, server: OfflineGemini) -> None:
    uploaded = await upload(client, png_bytes())
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.files.download(file=uploaded.name or "")
    assert caught.value.code == 400
    generated = server.files.add(b'{"key": "a"}\n', "application/jsonl", source="GENERATED")
    resource = await client.aio.files.get(name=generated.name)
    assert resource.source == types.FileSource.GENERATED and resource.download_uri
    assert await client.aio.files.download(file=resource) == b'{"key": "a"}\n'


async def test_file_data_renders_like_inline_images(client: genai.Client, server: OfflineGemini) -> None:
    uploaded = await upload(client, png_bytes((1600, 900)))
    response = await client.aio.models.generate_content(
        model=FLASH, contents=[file_part(uploaded.uri or ""), "Make it snow"]
    )
    assert pil(final_images(response)[0]).size == (1344, 768), "the ratio follows the file image"
    sent = server.requests[-1].body["contents"][0]["parts"][0]
    assert sent == {"fileData": {"file_uri": uploaded.uri, "mime_type": "image/png"}}
    live_form = f"https://generativelanguage.googleapis.com/v1beta/{uploaded.name}"
    again = await client.aio.models.generate_content(model=FLASH, contents=[file_part(live_form), "Snow"])
    assert final_images(again)


@pytest.mark.parametrize(
    ("uri", "code", "status", "message"),
    [
        ("files/abc", 400, "INVALID_ARGUMENT", "Invalid or unsupported file uri: files/abc"),
        ("https://example.com/v1beta/files/abc", 400, "INVALID_ARGUMENT", "Invalid or unsupported file uri"),
        ("https://generativelanguage.googleapis.com/v1beta/files/nosuchfile", 403, "PERMISSION_DENIED",
         "You do not have permission to access the File nosuchfile or it may not exist."),
    ],
)
async def test_bad_file_uris(client: genai.Client, uri: str, code: int, status: str, message: str) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=FLASH, contents=[file_part(uri), "Edit"])
    assert (caught.value.code, caught.value.status) == (code, status)
    assert message in (caught.value.message or "")


async def test_files_expire_after_48_hours_of_the_clock(client: genai.Client, server: OfflineGemini) -> None:
    uploaded = await upload(client, png_bytes())
    server.clock.advance(hours=47)
    assert (await client.aio.files.get(name=uploaded.name or "")).name == uploaded.name
    server.clock.advance(hours=2)
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.files.get(name=uploaded.name or "")
    assert caught.value.code == 403
    assert [f async for f in await client.aio.files.list()] == []
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=FLASH, contents=[file_part(uploaded.uri or ""), "Edit"])
    assert (caught.value.code, caught.value.status) == (403, "PERMISSION_DENIED")


async def history_with_file_image(client: genai.Client, data: bytes | None = None) -> tuple[
        types.Content, types.Content, types.Part]:
    """A Pro turn whose signed final image is moved to a file, keeping its signature."""
    user, model_turn = await first_turn(client)
    parts = list(model_turn.parts or [])
    image = parts[4]
    assert image.inline_data and image.inline_data.data and image.thought_signature
    uploaded = await upload(client, data or image.inline_data.data, "image/png")
    moved = file_part(uploaded.uri or "")
    moved.thought_signature = image.thought_signature
    return user, types.Content(role="model", parts=[*parts[:4], moved]), moved


async def test_signature_on_file_data_is_checked_against_the_file(client: genai.Client) -> None:
    user, model_turn, _ = await history_with_file_image(client)
    assert final_images(await client.aio.models.generate_content(model=PRO, contents=follow_up(user, model_turn)))
    user, wrong, _ = await history_with_file_image(client, png_bytes((32, 32)))
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=PRO, contents=follow_up(user, wrong))
    assert caught.value.message == "Corrupted thought signature in content position 2, part position 5."
    user, unsigned, moved = await history_with_file_image(client)
    moved.thought_signature = None
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model=PRO, contents=follow_up(user, unsigned))
    assert caught.value.message == "Image part is missing a thought_signature in content position 2, part position 5."


async def test_refuse_model_files_switch() -> None:
    async with OfflineGemini(refuse_model_files=True) as srv:
        client = make_client(srv.base_url)
        user, model_turn, _ = await history_with_file_image(client)
        with pytest.raises(errors.ClientError) as caught:
            await client.aio.models.generate_content(model=PRO, contents=follow_up(user, model_turn))
        assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
        assert "contents[1].parts[4].file_data" in (caught.value.message or "")
        in_user_turn = await upload(client, png_bytes())
        response = await client.aio.models.generate_content(
            model=PRO, contents=[file_part(in_user_turn.uri or ""), "Edit"])
        await client.aio.aclose()
    assert final_images(response)


def test_clock() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clock = Clock(start)
    assert clock.now() == start
    assert clock.advance(hours=49) == start + timedelta(hours=49)
    with pytest.raises(ValueError):
        clock.advance(minutes=-1)
    running = Clock()
    assert abs(running.now() - datetime.now(UTC)) < timedelta(seconds=5)
