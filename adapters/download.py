"""Attachment downloads from a platform's own file hosts only, with a size cap.

Both chat adapters use this: Slack's ``url_private`` (with the bot token) and Discord's CDN.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import aiohttp

from bot.errors import AttachmentError

logger = logging.getLogger(__name__)


def host_allowed(url: str, allowed: Iterable[str]) -> bool:
    """True when ``url``'s host is one of ``allowed`` or a subdomain of an entry starting
    with a dot (``.slack.com``). Only http(s) URLs pass; https is required for public hosts.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return False
    for entry in allowed:
        entry = entry.lower()
        if entry.startswith(".") and (host.endswith(entry) or host == entry[1:]):
            return parts.scheme == "https"
        if host == entry:
            return True
    return False


def hosts_of(*urls: str) -> set[str]:
    """The hostnames of configured URLs (a local API URL's host is then allowed too)."""
    return {urlsplit(u).hostname or "" for u in urls if u} - {""}


async def download(session: aiohttp.ClientSession, url: str, *, name: str,
                   allowed_hosts: Iterable[str], max_bytes: int,
                   headers: Mapping[str, str] | None = None) -> tuple[bytes, str]:
    """Fetches ``url`` if its host is allowed, refusing more than ``max_bytes``.

    Redirects are not followed to other hosts: each hop is checked the same way.

    Returns:
        The bytes and the response's Content-Type.

    Raises:
        AttachmentError: host not allowed, too large, or an HTTP error.
    """
    allowed = list(allowed_hosts)
    for _ in range(4):
        if not host_allowed(url, allowed):
            raise AttachmentError(
                f"`{name}` is not hosted on the platform's own file servers, so it was not "
                "downloaded.")
        async with session.get(url, headers=dict(headers or {}), allow_redirects=False) as resp:
            if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                url = str(resp.url.join(aiohttp.client.URL(resp.headers["Location"])))
                # Credentials never follow a redirect to a different host.
                headers = headers if host_allowed(url, [urlsplit(str(resp.url)).hostname or ""]) \
                    else None
                continue
            if resp.status != 200:
                raise AttachmentError(
                    f"Could not download `{name}` (HTTP {resp.status}). Attach it again.")
            declared = resp.content_length
            if declared is not None and declared > max_bytes:
                raise AttachmentError(_too_big(name, declared, max_bytes))
            data = bytearray()
            async for chunk in resp.content.iter_chunked(256 * 1024):
                data.extend(chunk)
                if len(data) > max_bytes:
                    raise AttachmentError(_too_big(name, len(data), max_bytes))
            return bytes(data), resp.headers.get("Content-Type", "")
    raise AttachmentError(f"Could not download `{name}`: too many redirects.")


def _too_big(name: str, size: int, limit: int) -> str:
    return (f"`{name}` is over {limit / 2**20:.0f} MB ({size / 2**20:.1f} MB), the limit for "
            "reference images. Compress or resize it and attach it again.")
