"""Attachment downloads from a platform's own file hosts only, with a size cap and timeouts.

Both chat adapters use this: Slack's ``url_private`` (with the bot token) and Discord's CDN.
Every way a download can fail ends in an :class:`AttachmentError` naming the file and why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import aiohttp

from bot.errors import AttachmentError
from bot.presentation import format_size

logger = logging.getLogger(__name__)

#: Seconds a whole download may take, redirects included.
TOTAL_TIMEOUT = 90.0
#: Seconds without a byte from the server (connecting, headers or body) before giving up.
IDLE_TIMEOUT = 20.0

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = (301, 302, 303, 307, 308)

Origin = tuple[str, str, int]


def origin(url: str) -> Origin | None:
    """``(scheme, host, port)`` of an http(s) URL, the port filled in; ``None`` otherwise."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        return None
    if parts.scheme not in _DEFAULT_PORTS or not host:
        return None
    return parts.scheme, host, port or _DEFAULT_PORTS[parts.scheme]


def host_allowed(url: str, allowed: Iterable[str]) -> bool:
    """True when ``url`` is served by one of ``allowed``.

    An entry is either an origin, ``scheme://host[:port]`` (as :func:`hosts_of` makes from a
    configured URL), which must match in scheme, host and port (443 and 80 are the
    defaults); or a bare public host name, https on port 443 only: ``cdn.discordapp.com``
    is that host, ``.slack.com`` that host and its subdomains.
    """
    found = origin(url)
    if found is None:
        return False
    scheme, host, port = found
    for entry in allowed:
        entry = entry.lower()
        if "://" in entry:
            if origin(entry) == found:
                return True
            continue
        if (scheme, port) != ("https", 443):
            continue
        if host == entry or (entry.startswith(".") and (host.endswith(entry)
                                                        or host == entry[1:])):
            return True
    return False


def hosts_of(*urls: str) -> set[str]:
    """The origins (``scheme://host:port``) of configured URLs, for :func:`host_allowed`:
    a local API URL's own server is then allowed, on its scheme and port only."""
    found = (origin(u) for u in urls if u)
    return {f"{scheme}://{host}:{port}" for scheme, host, port in filter(None, found)}


async def download(session: aiohttp.ClientSession, url: str, *, name: str,
                   allowed_hosts: Iterable[str], max_bytes: int,
                   headers: Mapping[str, str] | None = None,
                   total_timeout: float = TOTAL_TIMEOUT,
                   idle_timeout: float = IDLE_TIMEOUT) -> tuple[bytes, str]:
    """Fetches ``url`` if its host is allowed, refusing more than ``max_bytes``.

    Redirects are not followed to other hosts: each hop is checked the same way, and the
    ``headers`` (credentials) go only to the origin they were given for.

    Args:
        total_timeout: seconds for the whole download, redirects included.
        idle_timeout: seconds the server may stay silent (connecting, or between reads).

    Returns:
        The bytes and the response's Content-Type.

    Raises:
        AttachmentError: host not allowed, too large, an HTTP error status, a refused or
            reset connection, a stall, or too slow: the message names the file and says why.
    """
    try:
        async with asyncio.timeout(total_timeout):
            return await _fetch(session, url, name=name, allowed=list(allowed_hosts),
                                max_bytes=max_bytes, headers=headers, idle_timeout=idle_timeout)
    except TimeoutError as exc:  # the total deadline (idle stalls are caught in _fetch)
        raise _failed(name, f"it took longer than {total_timeout:g} s") from exc


async def _fetch(session: aiohttp.ClientSession, url: str, *, name: str, allowed: list[str],
                 max_bytes: int, headers: Mapping[str, str] | None,
                 idle_timeout: float) -> tuple[bytes, str]:
    per_read = aiohttp.ClientTimeout(total=None, sock_connect=idle_timeout,
                                     sock_read=idle_timeout)
    for _ in range(4):
        if not host_allowed(url, allowed):
            raise AttachmentError(
                f"`{name}` is not hosted on the platform's own file servers, so it was not "
                "downloaded.")
        try:
            async with session.get(url, headers=dict(headers or {}), allow_redirects=False,
                                   timeout=per_read) as resp:
                if resp.status in _REDIRECTS and resp.headers.get("Location"):
                    target = str(resp.url.join(aiohttp.client.URL(resp.headers["Location"])))
                    # Credentials never follow a redirect to a different origin.
                    if origin(target) != origin(str(resp.url)):
                        headers = None
                    url = target
                    continue
                if not 200 <= resp.status < 300:
                    raise _failed(name, f"the server answered HTTP {resp.status}")
                return await _read_body(resp, name, max_bytes), resp.headers.get(
                    "Content-Type", "")
        except (aiohttp.ServerTimeoutError, aiohttp.ConnectionTimeoutError) as exc:
            raise _failed(name, f"the server sent nothing for {idle_timeout:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise _failed(name, f"could not connect to {urlsplit(url).hostname} "
                                f"({_reason(exc)})") from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                aiohttp.ClientOSError) as exc:
            raise _failed(name, "the connection broke off before the file was complete "
                                f"({_reason(exc)})") from exc
        except aiohttp.ClientError as exc:
            raise _failed(name, _reason(exc)) from exc
    raise _failed(name, "too many redirects")


async def _read_body(resp: aiohttp.ClientResponse, name: str, max_bytes: int) -> bytes:
    declared = resp.content_length
    if declared is not None and declared > max_bytes:
        raise AttachmentError(_too_big(name, declared, max_bytes))
    data = bytearray()
    async for chunk in resp.content.iter_chunked(256 * 1024):
        data.extend(chunk)
        if len(data) > max_bytes:
            raise AttachmentError(_too_big(name, len(data), max_bytes))
    return bytes(data)


def _reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None) or exc
    return getattr(os_error, "strerror", None) or str(exc) or type(exc).__name__


def _failed(name: str, why: str) -> AttachmentError:
    logger.info("download of %r failed: %s", name, why)
    return AttachmentError(f"Could not fetch `{name}`: {why}. Attach it again.")


def _too_big(name: str, size: int, limit: int) -> str:
    return (f"`{name}` is over {format_size(limit)} ({format_size(size)}), the limit for "
            "reference images. Compress or resize it and attach it again.")
