"""The command-line adapter: one turn of a local thread (with a live status line on a
terminal, drafts saved as they come, or one JSON result), and views of what is stored."""

from __future__ import annotations

import asyncio
import getpass
import json
import mimetypes
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from adapters.terminal import DraftSaver, StatusLine
from bot import messages
from bot.model import Attachment, Author, IncomingMessage, Reply, ReplyImage, ThreadKey
from bot.options import OptionInput
from bot.presentation import footer
from bot.progress import Progress
from bot.runtime import Core

PLATFORMS = ("cli", "web", "slack", "discord")


def thread_key(name: str) -> ThreadKey:
    return ThreadKey(platform="cli", workspace="", channel="", thread=name)


def file_attachment(path: Path) -> Attachment:
    async def fetch() -> bytes:
        return await asyncio.to_thread(path.read_bytes)

    size = path.stat().st_size if path.exists() else None
    return Attachment(name=path.name, mime_type=mimetypes.guess_type(path.name)[0] or "",
                      fetch=fetch, size=size)


async def chat(core: Core, *, thread: str, prompt: str, image_paths: Sequence[str],
               options: OptionInput, out_dir: str, out: TextIO | None = None,
               status: TextIO | None = None, thoughts_dir: str | None = None,
               as_json: bool = False) -> Reply:
    """Runs one turn and prints the text, the saved image paths, sources and usage.

    Args:
        status: a terminal to keep a live status line on while the turn runs.
        thoughts_dir: where to save the drafts as they arrive.
        as_json: print one JSON object (see :func:`result_json`) instead of lines.

    Raises:
        ImagebotError: on any failure (the caller prints it as one line and exits 1).
        FileNotFoundError: for a missing ``--image`` path.
    """
    out = out or sys.stdout
    paths = [Path(p) for p in image_paths]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"no such image file: {path}")
    message = IncomingMessage(
        author=Author(id=f"cli:{getpass.getuser()}", name=getpass.getuser()),
        text=prompt, attachments=tuple(file_attachment(p) for p in paths), options=options)
    line = StatusLine(status) if status is not None else None
    saver = DraftSaver(Path(thoughts_dir), thread) if thoughts_dir else None

    async def on_progress(event: Progress) -> None:
        for watcher in (line, saver):
            if watcher is not None:
                await watcher.progress(event)

    try:
        reply = await core.service.handle(thread_key(thread), message,
                                          on_start=line.started if line else None,
                                          on_progress=on_progress)
    finally:
        if line is not None:
            await line.close()
    saved = save_images(reply, Path(out_dir), thread)
    drafts = saver.saved if saver else []
    if as_json:
        print(json.dumps(result_json(reply, thread, saved, drafts), ensure_ascii=False), file=out)
    else:
        print_reply(reply, saved, out, drafts, thread)
    return reply


async def use(core: Core, *, thread: str, number: int, turn: str | None = None,
              out: TextIO | None = None) -> bool:
    """Continues a thread from candidate ``number`` of its latest turn with candidates (or
    of ``turn``).

    Returns:
        False when there is no such thread or turn.

    Raises:
        ImagebotError: no such candidate, or the thread has gone on since.
    """
    out = out or sys.stdout
    key = await find_thread(core, thread)
    if key is None:
        return False
    turns = await core.service.history(key)
    with_candidates = [t for t in turns if t.reply.candidates]
    chosen = ([t for t in turns if t.id.startswith(turn)] if turn
              else with_candidates[-1:] or turns[-1:])
    if len(chosen) != 1:
        return False
    record = await core.service.use_candidate(chosen[0].id, number)
    print(messages.chosen_text(number), file=out)
    for image in record.reply.images:
        print(f"    image: {image.width}×{image.height} {image.mime_type} "
              f"sha256:{image.sha256[:12]}", file=out)
    return True


def result_json(reply: Reply, thread: str, saved: list[Path],
                drafts: list[tuple[Path, ReplyImage]]) -> dict[str, Any]:
    """``chat --json``: one object for scripts: paths, sizes, sources, usage, turn id."""
    return {
        "turn_id": reply.turn_id, "thread": thread, "model": reply.model,
        "settings": reply.options.summary() if reply.options else "",
        "elapsed": round(reply.elapsed, 3), "offline": reply.offline,
        "images": [_image_json(path, image) for path, image in zip(saved, _made(reply),
                                                                  strict=True)],
        "chosen": reply.chosen,
        "drafts": [_image_json(path, image) for path, image in drafts],
        "texts": reply.texts,
        "sources": [{"title": s.title, "url": s.url} for s in reply.sources],
        "search_queries": list(reply.search_queries), "notices": list(reply.notices),
        "usage": dict(reply.usage.__dict__),
    }


def _made(reply: Reply) -> list[ReplyImage]:
    """The images saved for a reply, in order: every candidate's, else the reply's own."""
    if reply.candidates:
        return [image for c in reply.candidates for image in c.images]
    return reply.images


def _image_json(path: Path, image: ReplyImage) -> dict[str, Any]:
    return {"path": str(path), "width": image.width, "height": image.height,
            "mime_type": image.mime_type, "bytes": len(image.data), "sha256": image.sha256}


def save_images(reply: Reply, out_dir: Path, thread: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", thread).strip("-") or "thread"
    saved = []
    if reply.candidates:  # every candidate, named by its number
        for candidate in reply.candidates:
            for n, image in enumerate(candidate.images, start=1):
                extra = f"-{n}" if len(candidate.images) > 1 else ""
                path = (out_dir / f"{stem}-{reply.turn_id[:8]}-U{candidate.number}{extra}."
                        f"{image.extension}")
                path.write_bytes(image.data)
                saved.append(path)
        return saved
    for n, image in enumerate(reply.images, start=1):
        path = out_dir / f"{stem}-{reply.turn_id[:8]}-{n}.{image.extension}"
        path.write_bytes(image.data)
        saved.append(path)
    return saved


def print_candidates(reply: Reply, saved: list[Path], thread: str, out: TextIO) -> None:
    """``U1: out/…-U1.png (1024×1024)`` per candidate, the failures, and how to pick."""
    paths = iter(saved)
    for candidate in reply.candidates:
        if candidate.error:
            print(f"U{candidate.number}: failed: {candidate.error}", file=out)
            continue
        for image in candidate.images:
            mark = "  (the conversation continues from this one)" if (
                candidate.number == reply.chosen) else ""
            print(f"U{candidate.number}: {next(paths)} ({image.width}×{image.height}, "
                  f"{image.mime_type}){mark}", file=out)
    print(f"choose another with: imagebot use --thread {thread} N", file=out)


def print_reply(reply: Reply, saved: list[Path], out: TextIO,
                drafts: Sequence[tuple[Path, ReplyImage]] = (), thread: str = "") -> None:
    for notice in reply.notices:
        print(f"note: {notice}", file=out)
    if reply.candidates:
        print_candidates(reply, saved, thread, out)
        saved = []
    paths = iter(saved)
    for part in reply.parts:
        if part.kind == "text":
            print(part.text.strip(), file=out)
        elif part.image is not None and saved:
            path = next(paths)
            print(f"image: {path} ({part.image.width}×{part.image.height}, "
                  f"{part.image.mime_type})", file=out)
    for path, image in drafts:
        print(f"draft: {path} ({image.width}×{image.height}, {image.mime_type})", file=out)
    for source in reply.sources:
        print(f"source: {source.title} <{source.url}>", file=out)
    for query in reply.search_queries:
        print(f"searched: {query}", file=out)
    u = reply.usage
    print(f"settings: {reply.options.summary() if reply.options else reply.model}", file=out)
    print(f"usage: {u.prompt_tokens} prompt + {u.output_tokens} output + {u.thought_tokens} "
          f"thinking = {u.total_tokens} tokens · {reply.elapsed:.1f}s · {reply.model}", file=out)


def thread_name(key: ThreadKey) -> str:
    """How ``imagebot threads`` names a thread: its bare name for CLI threads, else the whole
    key (``web///ea38…``, ``slack/T1/C1/1712.5``); ``history --thread`` takes either."""
    return key.thread if key.platform == "cli" else str(key)


def _key_candidates(name: str) -> list[ThreadKey]:
    parts = name.split("/")
    keys = [thread_key(name)]
    if len(parts) == 4 and parts[0] in PLATFORMS and parts[3]:
        keys.insert(0, ThreadKey(*parts))
    return keys


async def find_thread(core: Core, name: str) -> ThreadKey | None:
    """The stored thread ``name`` stands for (any name :func:`thread_name` gives)."""
    for key in _key_candidates(name):
        if await core.service.is_session(key):
            return key
    return None


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


async def list_threads(core: Core, out: TextIO | None = None) -> None:
    """Prints stored threads as an aligned table, newest first."""
    out = out or sys.stdout
    threads = await core.service.threads()
    if not threads:
        print("no threads yet", file=out)
        return
    rows = [("THREAD", "TURNS", "UPDATED", "SETTINGS", "TITLE")]
    for t in threads:
        settings = " ".join(f"{k}={v}" for k, v in sorted(t.settings.items())) or "defaults"
        rows.append((thread_name(t.key), str(t.turns),
                     datetime.fromtimestamp(t.updated_at).strftime("%Y-%m-%d %H:%M"),
                     settings, " ".join(t.title.split())))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2]),
                 row[3].ljust(widths[3]), row[4]]
        print("  ".join(cells).rstrip(), file=out)
    print(plural(len(threads), "thread"), file=out)


async def show_history(core: Core, thread: str, out: TextIO | None = None) -> bool:
    """Prints a thread's turns; ``thread`` is any name ``imagebot threads`` prints.

    Returns:
        False when there is no such thread.
    """
    out = out or sys.stdout
    key = await find_thread(core, thread)
    if key is None:  # a thread that has only batch jobs so far
        key = thread_key(thread)
        if not await core.service.batches.jobs(key):
            return False
    turns = await core.service.history(key)
    settings = (await core.service.settings_of(key)).given()
    print(f"thread {thread}: {plural(len(turns), 'turn')}; settings {settings or 'defaults'}",
          file=out)
    for n, turn in enumerate(turns, start=1):
        when = datetime.fromtimestamp(turn.created_at).strftime("%Y-%m-%d %H:%M:%S")
        print(f"[{n}] {when} {turn.author.name}: {turn.prompt}", file=out)
        for ref in turn.refs:
            print(f"    reference: {ref.name} ({ref.mime_type})", file=out)
        reply = turn.reply
        for text in reply.texts:
            print(f"    model: {text.strip()}", file=out)
        for image in reply.images:
            print(f"    image: {image.width}×{image.height} {image.mime_type} "
                  f"sha256:{image.sha256[:12]}", file=out)
        if reply.candidates:
            print(f"    candidates: {len(reply.candidates)}, continuing from U{reply.chosen}",
                  file=out)
        for source in reply.sources:
            print(f"    source: {source.title} <{source.url}>", file=out)
        print(f"    {footer(reply)}", file=out)
    for job in reversed(await core.service.batches.jobs(key)):
        print(f"[batch {job.short}] {job.total} prompts, {job.state}"
              + (f": {job.images} images" if job.results_at else ""), file=out)
    return True
