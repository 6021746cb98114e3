"""Security headers for every response of serve's HTTP server (pages, API, errors, 404s)."""

from __future__ import annotations

from aiohttp import web

CSP = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    # Google's search suggestions come with their own <style>; a srcdoc frame inherits this.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' blob: data:",
    "connect-src 'self'",
    "frame-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """An ``on_response_prepare`` hook: it also sees aiohttp's own 404 and 405 answers."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
