"""A PostgreSQL server for the tests: ``IMAGEBOT_TEST_POSTGRES_URL`` when set (CI sets it),
else a throwaway server started from the local PostgreSQL binaries (as a non-root user),
else none, and the tests that need one are skipped saying why.

Each test gets a schema of its own (``?search_path=`` in the URL), dropped afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

ENV = "IMAGEBOT_TEST_POSTGRES_URL"


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user(argv: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else argv


@contextlib.contextmanager
def throwaway_server() -> Iterator[str]:
    """Starts a private server on a free loopback port; yields its URL.

    Raises:
        RuntimeError: saying why no server could be started.
    """
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError(f"{ENV} is not set and no PostgreSQL binaries (initdb, pg_ctl) "
                           "are installed")
    user = None
    if os.geteuid() == 0:  # the server refuses to run as root
        if not shutil.which("runuser"):
            raise RuntimeError(f"{ENV} is not set and, as root, runuser is needed to start "
                               "a throwaway PostgreSQL as another user")
        user = "nobody"
    root = tempfile.mkdtemp(prefix="imagebot-pg-")
    data = os.path.join(root, "data")
    if user:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    subprocess.run(_as_user([initdb, "-D", data, "-U", "postgres", "-A", "trust"], user),
                   check=True, capture_output=True)
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -k {root} -c fsync=off"
    subprocess.run(_as_user([pg_ctl, "-D", data, "-o", options, "-w", "-l",
                             os.path.join(root, "log"), "start"], user),
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_user([pg_ctl, "-D", data, "-m", "immediate", "stop"], user),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def server_url() -> Iterator[str]:
    """The configured server's URL, or a throwaway server's."""
    configured = os.environ.get(ENV)
    if configured:
        yield configured
        return
    with throwaway_server() as url:
        yield url


def schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}search_path={schema}"


def new_schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}_{int(time.time()) % 100000}"


async def drop_schema(base: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
