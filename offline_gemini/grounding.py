"""Search grounding: the ``groundingMetadata`` Pro answers carry when Google Search is on."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from offline_gemini.request import ParsedRequest

_GROUNDING_SITES = ("example.com", "example.org", "example.net")
_CHIP_CSS = (
    ".container{align-items:center;border-radius:8px;display:flex;font-family:Google Sans,"
    "Roboto,sans-serif;font-size:14px;line-height:20px;padding:8px 12px;}"
    ".chip{display:inline-block;border:solid 1px;border-radius:16px;min-width:14px;"
    "padding:5px 16px;text-align:center;user-select:none;margin:0 8px;}"
    ".carousel{overflow:auto;scrollbar-width:none;white-space:nowrap;margin-right:-12px;}"
    ".headline{display:flex;margin-right:4px;}"
    "@media (prefers-color-scheme:light){.container{background-color:#fafafa;"
    "box-shadow:0 0 0 1px #0000000f;}.headline-label{color:#1f1f1f;}.chip{background-color:#fff;"
    "border-color:#d2d2d2;color:#5e5e5e;text-decoration:none;}}"
    "@media (prefers-color-scheme:dark){.container{background-color:#1f1f1f;"
    "box-shadow:0 0 0 1px #ffffff26;}.headline-label{color:#fff;}.chip{background-color:#2c2c2c;"
    "border-color:#3c4043;color:#fff;text-decoration:none;}}"
)


def _search_queries(prompt: str) -> list[str]:
    words = re.findall(r"[\w'-]+", prompt.lower())[:8] or ["offline", "preview"]
    base = " ".join(words)
    return [base, f"{' '.join(words[:4])} reference images"]


def _rendered_chips(queries: Sequence[str]) -> str:
    chips = "".join(
        f'<a class="chip" href="https://www.google.com/search?q={urllib.parse.quote_plus(q)}">'
        f"{html.escape(q)}</a>"
        for q in queries
    )
    return (
        f'<style>{_CHIP_CSS}</style><div class="container"><div class="headline">'
        '<span class="headline-label">Search suggestions (offline)</span></div>'
        f'<div class="carousel">{chips}</div></div>'
    )


def grounding_metadata(req: ParsedRequest, parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Grounding for an answer with these wire parts; the first answer text is supported."""
    queries = _search_queries(req.prompt)
    chunks = []
    for index, site in enumerate(_GROUNDING_SITES):
        token = base64.urlsafe_b64encode(hmac.new(req.seed, bytes([index]), hashlib.sha256).digest())
        uri = "https://vertexaisearch.cloud.google.com/grounding-api-redirect/" + token.decode().rstrip("=")
        chunks.append({"web": {"uri": uri, "title": site}})
    metadata: dict[str, Any] = {
        "searchEntryPoint": {"renderedContent": _rendered_chips(queries)},
        "groundingChunks": chunks,
        "webSearchQueries": queries,
    }
    supports = [
        {
            "segment": {"partIndex": index, "startIndex": 0,
                        "endIndex": len(part["text"].encode("utf-8")), "text": part["text"]},
            "groundingChunkIndices": [0, 1, 2],
        }
        for index, part in enumerate(parts)
        if "text" in part and not part.get("thought")
    ][:1]
    if supports:
        metadata["groundingSupports"] = supports
    return metadata

