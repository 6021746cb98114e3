"""Attachment downloads: allowed origins only, size caps, redirects checked per hop, and
every failure (refused, reset, stalled, too slow, HTTP error) an AttachmentError."""

import asyncio
import socket

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from adapters.download import download, host_allowed, hosts_of
from bot.errors import AttachmentError

DISCORD_CDN = ["cdn.discordapp.com", "media.discordapp.net"]


@pytest.mark.parametrize(("url", "ok"), [
    ("https://files.slack.com/files-pri/T1-F1/a.png", True),
    ("https://files.slack.com:443/files-pri/T1-F1/a.png", True),
    ("http://files.slack.com/files-pri/T1-F1/a.png", False),
    ("https://files.slack.com:8443/files-pri/T1-F1/a.png", False),
    ("https://evil.com/files.slack.com/a.png", False),
    ("https://files.slack.com.evil.com/a.png", False),
    ("https://files.slack.com@evil.com/a.png", False),
    ("https://cdn.discordapp.com/attachments/1/2/a.png", True),
    ("http://cdn.discordapp.com/attachments/1/2/a.png", False),
    ("https://cdn.discordapp.com:444/attachments/1/2/a.png", False),
    ("http://127.0.0.1:8000/files/a.png", True),
    ("http://127.0.0.1:8001/files/a.png", False),
    ("https://127.0.0.1:8000/files/a.png", False),
    ("http://127.0.0.1/files/a.png", False),
    ("http://127.0.0.1:99999/files/a.png", False),
    ("file:///etc/passwd", False),
])
def test_host_allowed_matches_scheme_host_and_port(url, ok):
    allowed = [".slack.com", "cdn.discordapp.com", *hosts_of("http://127.0.0.1:8000/api/")]
    assert host_allowed(url, allowed) is ok


def test_default_ports_are_normalised():
    assert hosts_of("https://proxy.example/api/", "http://local:80/x") == {
        "https://proxy.example:443", "http://local:80"}
    assert host_allowed("https://proxy.example:443/f.png", hosts_of("https://proxy.example/"))
    assert host_allowed("http://local/f.png", hosts_of("http://local:80/"))
    assert not host_allowed("http://proxy.example/f.png", hosts_of("https://proxy.example/"))


def test_discord_cdn_only_over_https_unless_the_api_base_is_http():
    public = DISCORD_CDN + sorted(hosts_of("https://discord.com/api/v10"))
    assert host_allowed("https://cdn.discordapp.com/attachments/1/2/a.png", public)
    assert not host_allowed("http://cdn.discordapp.com/attachments/1/2/a.png", public)
    local = DISCORD_CDN + sorted(hosts_of("http://127.0.0.1:5555/api/v10"))
    assert host_allowed("http://127.0.0.1:5555/cdn/attachments/1/2/a.png", local)
    assert not host_allowed("http://127.0.0.1:5556/cdn/attachments/1/2/a.png", local)
    assert not host_allowed("http://media.discordapp.net/attachments/1/2/a.png", local)


@pytest.fixture
async def server():
    async def small(request):
        return web.Response(body=b"x" * 100, content_type="image/png")

    async def big(request):
        return web.Response(body=b"x" * 5000, content_type="image/png")

    async def bounce(request):
        raise web.HTTPFound("https://elsewhere.example/a.png")

    async def other_port(request):
        raise web.HTTPFound(f"http://127.0.0.1:{request.url.port + 1}/small")

    async def missing(request):
        return web.Response(status=404, text="gone")

    async def trickle(request):
        # One byte every 50 ms: never idle for long, but never done either.
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        await resp.prepare(request)
        for _ in range(1000):
            await resp.write(b"x")
            await asyncio.sleep(0.05)
        return resp

    async def stall(request):
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.content_length = 1000
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        await asyncio.sleep(30)
        return resp

    async def reset(request):
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.content_length = 1000
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        request.transport.close()
        return resp

    app = web.Application()
    for path, handler in (("/small", small), ("/big", big), ("/bounce", bounce),
                          ("/other-port", other_port), ("/missing", missing),
                          ("/trickle", trickle), ("/stall", stall), ("/reset", reset)):
        app.router.add_get(path, handler)
    async with TestServer(app, host="127.0.0.1") as srv:
        yield srv


async def fetch(server, path, **kw):
    base = str(server.make_url("")).rstrip("/")
    kw.setdefault("allowed_hosts", hosts_of(base))
    kw.setdefault("max_bytes", 1000)
    async with ClientSession() as session:
        return await download(session, f"{base}{path}", name="cat.png", **kw)


async def test_download_caps_and_hosts(server):
    data, ctype = await fetch(server, "/small")
    assert data == b"x" * 100 and ctype.startswith("image/png")
    with pytest.raises(AttachmentError, match="limit"):
        await fetch(server, "/big")
    with pytest.raises(AttachmentError, match="not hosted"):
        await fetch(server, "/small", allowed_hosts=["x.com"])
    with pytest.raises(AttachmentError, match="not hosted"):
        await fetch(server, "/small", allowed_hosts=["127.0.0.1"])  # a bare host is https
    with pytest.raises(AttachmentError, match="not hosted"):
        await fetch(server, "/bounce")
    with pytest.raises(AttachmentError, match="not hosted"):
        await fetch(server, "/other-port")


async def test_too_big_says_sizes_people_read(server):
    with pytest.raises(AttachmentError) as err:
        await fetch(server, "/big", max_bytes=3000)
    assert "over 2.9 KB (4.9 KB)" in err.value.user_message
    assert "0 MB" not in err.value.user_message


@pytest.mark.parametrize(("path", "kw", "why"), [
    ("/missing", {}, "the server answered HTTP 404"),
    ("/stall", {"idle_timeout": 0.3}, "the server sent nothing for 0.3 s"),
    ("/trickle", {"idle_timeout": 0.5, "total_timeout": 0.6}, "it took longer than 0.6 s"),
    ("/reset", {}, "the connection broke off before the file was complete"),
])
async def test_each_failure_names_the_file_and_why(server, path, kw, why):
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(AttachmentError) as err:
        await fetch(server, path, **kw)
    message = err.value.user_message
    assert message.startswith("Could not fetch `cat.png`: ") and why in message, message
    assert loop.time() - start < 10


async def test_a_refused_connection_is_an_attachment_error():
    with socket.socket() as sock:  # a port that was just free: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.png"
    async with ClientSession() as session:
        with pytest.raises(AttachmentError) as err:
            await download(session, url, name="cat.png", allowed_hosts=hosts_of(url),
                           max_bytes=1000)
    assert err.value.user_message.startswith(
        "Could not fetch `cat.png`: could not connect to 127.0.0.1")
