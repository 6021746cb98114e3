"""Shared fixtures: the offline Gemini stand-in over real HTTP, settings, a running core,
and a guard that fails any test reaching past loopback."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, load_settings
from bot.runtime import Core, open_core
from offline_gemini import OfflineGemini

TEST_KEY = "test-gemini-key"

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class NetworkRefused(RuntimeError):
    """A test tried to reach the network (not an OSError, so no retry loop swallows it)."""


def is_local(host: object) -> bool:
    """Loopback (127.0.0.0/8, ::1), the unspecified address (which means this machine), or
    a local name."""
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _is_numeric(host: object) -> bool:
    try:
        ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False
    return True


class NetworkGuard:
    """Refuses connections and name lookups beyond this machine, and remembers each try,
    so a test fails even when the code under test catches the error."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def refuse(self, what: str) -> NetworkRefused:
        self.attempts.append(what)
        return NetworkRefused(f"tests must not use the network: {what}")

    def check_address(self, sock: socket.socket, address: Any, call: str) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return  # unix sockets and the like stay on this machine
        host = address[0] if isinstance(address, tuple) else address
        if not is_local(host):
            raise self.refuse(f"{call}({address!r})")

    def check_lookup(self, host: object) -> None:
        # Numeric addresses need no lookup; connecting to them is checked on connect.
        if host is not None and not is_local(host) and not _is_numeric(host):
            raise self.refuse(f"getaddrinfo({host!r})")


@pytest.fixture(autouse=True)
def network_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetworkGuard]:
    """Every test: no connection outside loopback, no DNS lookup of a public name.

    Patches ``socket.socket.connect``/``connect_ex``/``sendto`` (asyncio's event loop and
    every client library connect through them) and ``socket.getaddrinfo`` (which asyncio's
    ``loop.getaddrinfo`` and aiohttp's resolver call). Subprocesses are not covered.
    """
    guard = NetworkGuard()
    connect, connect_ex, sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
    getaddrinfo = socket.getaddrinfo

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        guard.check_address(sock, address, "connect")
        return connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        guard.check_address(sock, address, "connect_ex")
        return connect_ex(sock, address)

    def guarded_sendto(sock: socket.socket, data: Any, *args: Any) -> int:
        guard.check_address(sock, args[-1], "sendto")
        return sendto(sock, data, *args)  # type: ignore[arg-type]

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        guard.check_lookup(host)
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket.socket, "sendto", guarded_sendto)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield guard
    if guard.attempts:
        pytest.fail("the test tried to reach the network: " + "; ".join(guard.attempts),
                    pytrace=False)


@pytest.fixture
async def stand_in() -> AsyncIterator[OfflineGemini]:
    # Tests read back every request they caused (uploads make several per turn).
    server = OfflineGemini(api_key=TEST_KEY, strict_signatures=True, keep_requests=1000)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(gemini_url: str | None = None, **overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "gemini_api_key": TEST_KEY,
            "gemini_base_url": gemini_url,
            "database_url": f"sqlite:///{tmp_path / 'imagebot.sqlite3'}",
            "gemini_retry_attempts": 3,
            "gemini_retry_initial_delay": 0.01,
            "gemini_retry_max_delay": 0.05,
            "gemini_timeout": 20.0,
            "offline_stream_gap": 0.0,  # tests that want gaps ask for them
        }
        base.update(overrides)
        return load_settings(env={}, **base)

    return make


@pytest.fixture
def core_factory(stand_in: OfflineGemini, make_settings: Callable[..., Settings]):
    """Opens a core (store + real SDK client) against the stand-in; several may be opened."""

    @contextlib.asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Core]:
        async with open_core(make_settings(stand_in.base_url, **overrides), offline=False) as core:
            yield core

    return factory


@pytest.fixture
async def core(core_factory) -> AsyncIterator[Core]:
    async with core_factory() as opened:
        yield opened


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The PostgreSQL server's URL for this test session (see :mod:`tests.postgres`)."""
    from tests import postgres

    try:
        context = postgres.server_url()
        url = context.__enter__()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        if os.environ.get("IMAGEBOT_REQUIRE_POSTGRES"):
            pytest.fail(f"IMAGEBOT_REQUIRE_POSTGRES is set but there is no server: {exc}")
        pytest.skip(f"no PostgreSQL server for this test: {exc}")
    try:
        yield url
    finally:
        context.__exit__(None, None, None)


@pytest.fixture
async def postgres_url(postgres_server: str) -> AsyncIterator[str]:
    """A URL whose ``search_path`` is a fresh schema, dropped after the test."""
    from tests import postgres

    schema = postgres.new_schema()
    yield postgres.schema_url(postgres_server, schema)
    await postgres.drop_schema(postgres_server, schema)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database imagebot supports, in turn: an SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'imagebot.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))
