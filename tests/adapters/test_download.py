"""Attachment downloads: allowed hosts only, size caps, redirects checked per hop."""

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from adapters.download import download, host_allowed
from bot.errors import AttachmentError


@pytest.mark.parametrize(("url", "ok"), [
    ("https://files.slack.com/files-pri/T1-F1/a.png", True),
    ("http://files.slack.com/files-pri/T1-F1/a.png", False),
    ("https://evil.com/files.slack.com/a.png", False),
    ("https://files.slack.com.evil.com/a.png", False),
    ("https://cdn.discordapp.com/attachments/1/2/a.png", True),
    ("http://127.0.0.1:8000/files/a.png", True),
    ("file:///etc/passwd", False),
])
def test_host_allowed(url, ok):
    allowed = [".slack.com", "cdn.discordapp.com", "127.0.0.1"]
    assert host_allowed(url, allowed) is ok


@pytest.fixture
async def server():
    async def small(request):
        return web.Response(body=b"x" * 100, content_type="image/png")

    async def big(request):
        return web.Response(body=b"x" * 5000, content_type="image/png")

    async def bounce(request):
        raise web.HTTPFound("https://elsewhere.example/a.png")

    app = web.Application()
    app.router.add_get("/small", small)
    app.router.add_get("/big", big)
    app.router.add_get("/bounce", bounce)
    async with TestServer(app, host="127.0.0.1") as srv:
        yield srv


async def test_download_caps_and_hosts(server):
    base = str(server.make_url(""))
    async with ClientSession() as session:
        data, ctype = await download(session, f"{base}/small", name="a.png",
                                     allowed_hosts=["127.0.0.1"], max_bytes=1000)
        assert data == b"x" * 100 and ctype.startswith("image/png")
        with pytest.raises(AttachmentError, match="limit"):
            await download(session, f"{base}/big", name="b.png", allowed_hosts=["127.0.0.1"],
                           max_bytes=1000)
        with pytest.raises(AttachmentError, match="not hosted"):
            await download(session, f"{base}/small", name="c.png", allowed_hosts=["x.com"],
                           max_bytes=1000)
        with pytest.raises(AttachmentError, match="not hosted"):
            await download(session, f"{base}/bounce", name="d.png",
                           allowed_hosts=["127.0.0.1"], max_bytes=1000)
