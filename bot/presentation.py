"""Platform-neutral wording of replies: footers, notices and text splitting.

Adapters format for their platform (blocks, embeds, HTML) but take the words from here so
every surface says the same thing.
"""

from __future__ import annotations

from bot.model import Reply, StoredReply

OFFLINE_BADGE = "OFFLINE PREVIEW"


def footer(reply: Reply | StoredReply) -> str:
    """``Nano Banana Pro · 2K · 16:9 · 12.3s · 2,345 tokens`` (plus the offline badge);
    the same for a fresh reply and a stored one."""
    if isinstance(reply, StoredReply):
        summary = reply.settings
    else:
        summary = reply.options.summary() if reply.options else ""
    bits = [summary or reply.model, f"{reply.elapsed:.1f}s", f"{reply.usage.total_tokens:,} tokens"]
    if reply.offline:
        bits.insert(0, OFFLINE_BADGE)
    return " · ".join(bits)


def notices_text(reply: Reply | StoredReply) -> str:
    return "\n".join(f"⚠️ {n}" if "Offline" in n else f"ℹ️ {n}" for n in reply.notices)


def split_text(text: str, limit: int) -> list[str]:
    """Splits text into chunks of at most ``limit`` characters, preferring paragraph, line
    and word boundaries, never breaking inside a word unless a word is longer than a chunk.
    """
    text = text.strip()
    chunks: list[str] = []
    while len(text) > limit:
        cut = _best_cut(text, limit)
        chunks.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        chunks.append(text)
    return chunks


def _best_cut(text: str, limit: int) -> int:
    window = text[:limit]
    for sep in ("\n\n", "\n", ". ", " "):
        at = window.rfind(sep)
        if at > limit // 3:
            return at + len(sep)
    return limit


def format_size(count: float) -> str:
    """A byte count for people: ``800 bytes``, ``5 KB``, ``1.5 MB``, ``30 MB``, ``2 GB``.

    Units are binary (1 MB = 1024 KB), like the limits they describe; below 1 MB sizes are
    in KB, so a small limit never reads as "0 MB".
    """
    if count < 1024:
        return f"{count:.0f} bytes"
    for unit in ("KB", "MB", "GB"):
        count /= 1024
        if round(count, 1) < 1024 or unit == "GB":
            break
    text = f"{count:.1f}".removesuffix(".0") if count < 100 else f"{count:.0f}"
    return f"{text} {unit}"


def error_text(message: str) -> str:
    return f"⚠️ {message}"
