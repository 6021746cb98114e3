"""Who may use the playground: the access token and its cookie, the CSRF check on writes,
and, without a token, the ``Host`` check that stops DNS rebinding.

Without ``IMAGEBOT_WEB_TOKEN`` the playground only listens on loopback, and only requests
that name a loopback host get through: a page on ``attacker.example`` whose name was
re-pointed at 127.0.0.1 still sends ``Host: attacker.example``, and is refused. With a token
every route needs it: ``/?token=...`` once sets an HttpOnly, SameSite=Strict cookie (a value
derived from the token, never the token); API clients may send ``Authorization: Bearer``.
Writes need the ``X-Imagebot: 1`` header (and a same-host ``Origin`` when one is sent),
which a cross-site form or a simple cross-origin fetch cannot produce.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

from adapters.web.errors import Refusal

COOKIE = "imagebot_web"
CSRF_HEADER = "X-Imagebot"
COOKIE_AGE = 400 * 86400
LOCKED_PAGE = """<!doctype html><meta charset="utf-8"><title>imagebot playground</title>
<body style="font:16px system-ui;max-width:36em;margin:4em auto;padding:0 1em">
<h1>Access token needed</h1><p>This playground is protected by <code>IMAGEBOT_WEB_TOKEN</code>.
Open it once as <code>/?token=&lt;your token&gt;</code>; the browser then remembers it.</p>
"""
WRONG_HOST = ("This playground answers only at a loopback address (http://127.0.0.1 or "
              "http://localhost), since it has no IMAGEBOT_WEB_TOKEN. To use it under another "
              "name, set IMAGEBOT_WEB_TOKEN.")


class Access:
    """The checks every playground request passes before its handler runs."""

    def __init__(self, token: str | None) -> None:
        self.token = token or None
        self.cookie = (hmac.new(self.token.encode(), b"imagebot web playground",
                                hashlib.sha256).hexdigest() if self.token else "")

    def check(self, request: web.Request) -> None:
        """Refuses a request from the wrong host, without the token, or a cross-site write.

        Raises:
            Refusal: 421 for a foreign ``Host``, 401 without the token, 403 for CSRF.
        """
        if self.token is None:
            check_host(request)
        else:
            self._authorize(request)
        if request.method not in ("GET", "HEAD"):
            check_csrf(request)

    def _authorize(self, request: web.Request) -> None:
        assert self.token is not None
        bearer = request.headers.get("Authorization", "")
        if bearer.startswith("Bearer ") and _same(bearer[7:].strip(), self.token):
            return
        if _same(request.cookies.get(COOKIE, ""), self.cookie):
            return
        if request.path == "/" and _same(request.query.get("token", ""), self.token):
            return
        raise Refusal(401, "This playground needs its access token (IMAGEBOT_WEB_TOKEN).", "auth")

    def login(self, request: web.Request) -> web.Response | None:
        """After ``/?token=...`` (already checked): a redirect that sets the cookie."""
        if self.token is None or "token" not in request.query:
            return None
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(COOKIE, self.cookie, httponly=True, samesite="Strict",
                            secure=request.secure, path="/", max_age=COOKIE_AGE)
        return response


def check_host(request: web.Request) -> None:
    """Accepts a loopback ``Host`` (``localhost``, 127.x, ``[::1]``) on the bound port or none.

    Raises:
        Refusal: 421 Misdirected Request for any other host.
    """
    parsed = split_host(request.headers.get("Host", ""))
    if parsed is None or not is_loopback_name(parsed[0]):
        raise Refusal(421, WRONG_HOST, "host")
    port, bound = parsed[1], _bound_port(request)
    if port is not None and bound is not None and port != bound:
        raise Refusal(421, WRONG_HOST, "host")


def split_host(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` or ``[v6]:port`` as (name, port); ``None`` when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
    else:
        name = value.partition(":")[0]
        rest = value[len(name):]
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    return name.rstrip("."), int(rest[1:]) if rest else None


def is_loopback_name(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _bound_port(request: web.Request) -> int | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None


def check_csrf(request: web.Request) -> None:
    """A write needs ``X-Imagebot: 1``, and an ``Origin``, if sent, naming this host."""
    if request.headers.get(CSRF_HEADER) != "1":
        raise Refusal(403, f"Missing the {CSRF_HEADER}: 1 header that writes need.", "csrf")
    origin = request.headers.get("Origin")
    if origin and (origin == "null"
                   or urlsplit(origin).netloc.lower() != request.headers.get("Host", "").lower()):
        raise Refusal(403, "Cross-site requests are not accepted.", "csrf")


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())
