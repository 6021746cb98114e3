"""The autouse guard in ``conftest.py``: nothing but loopback, and a swallowed attempt still
fails the test."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import NetworkRefused

pytest_plugins = ("pytester",)


def test_a_public_address_is_refused(network_guard):
    with pytest.raises(NetworkRefused):
        socket.create_connection(("192.0.2.1", 443), timeout=1)  # TEST-NET-1
    with pytest.raises(NetworkRefused):
        socket.socket(socket.AF_INET6).connect_ex(("2001:db8::1", 443, 0, 0))
    with pytest.raises(NetworkRefused):
        socket.getaddrinfo("example.com", 443)
    assert len(network_guard.attempts) == 3
    network_guard.attempts.clear()  # seen and expected: this test passes


async def test_asyncio_and_aiohttp_are_refused_even_when_the_error_is_caught(network_guard):
    with pytest.raises(NetworkRefused):
        await asyncio.open_connection("example.com", 443)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(NetworkRefused):
            await session.get("http://192.0.2.1/")
    try:  # code under test that swallows everything...
        await asyncio.open_connection("192.0.2.1", 80)
    except Exception:
        pass
    assert len(network_guard.attempts) == 3  # ...is still caught at teardown
    network_guard.attempts.clear()


async def test_loopback_and_unix_sockets_pass(tmp_path):
    async def hello(request):
        return web.Response(text="hi")

    app = web.Application()
    app.router.add_get("/", hello)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        for host in ("127.0.0.1", "localhost"):
            async with session.get(f"http://{host}:{server.port}/") as resp:
                assert await resp.text() == "hi"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "s"))
    listener.listen()
    with listener, socket.socket(socket.AF_UNIX) as client:
        client.connect(str(tmp_path / "s"))


def test_a_test_that_reaches_out_fails_even_if_it_swallows_the_error(pytester):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_leaky="""
        import socket

        def test_leaky():
            try:
                socket.create_connection(("192.0.2.1", 80), timeout=1)
            except Exception:
                pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*the test tried to reach the network: connect(('192.0.2.1', 80))*"])
