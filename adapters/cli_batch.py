"""``imagebot batch``: submit a file of prompts as one Batch API job (half price), list
jobs, look at one, save its results, cancel it.

``serve`` polls submitted jobs and posts their results into the thread they belong to; these
commands also ask Gemini about a job directly, so they work without ``serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import io
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

from adapters import cli
from bot.batch import BatchJobView, BatchSubmission, submitted_text, summary_text
from bot.model import Author, ThreadKey
from bot.options import OptionInput
from bot.prices import dollars
from bot.runtime import Core

#: The thread a batch goes to when ``--thread`` is not given.
DEFAULT_THREAD = "batches"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``imagebot batch`` and its commands."""
    batch = sub.add_parser("batch", help="Batch API jobs: many prompts at half price")
    commands = batch.add_subparsers(dest="batch_command", required=True)
    submit = commands.add_parser("submit", help="submit a file of prompts as one job")
    submit.add_argument("file", help="prompts: .txt (one per line), .csv (a prompt column) or "
                        ".jsonl ({\"prompt\": …} lines); - reads standard input")
    submit.add_argument("--thread", help="the thread the results belong to (a name "
                        f"`imagebot threads` prints, or a new one; default {DEFAULT_THREAD})")
    submit.add_argument("--image", action="append", default=[], metavar="PATH",
                        help="reference image for every prompt (repeatable)")
    submit.add_argument("--model", "-m", help="flash or pro (one model per batch)")
    submit.add_argument("--aspect-ratio", "--ar", "--ratio", dest="aspect_ratio")
    submit.add_argument("--size", "--res", dest="size", help="1K, 2K or 4K (pro only)")
    submit.add_argument("--search", action="store_true", default=None)
    submit.add_argument("--no-search", dest="search", action="store_false")
    submit.add_argument("--image-only", action="store_true", default=None)
    listing = commands.add_parser("list", help="list batch jobs, newest first")
    listing.add_argument("--thread", help="only this thread's jobs")
    status = commands.add_parser("status", help="ask Gemini about a job and show it")
    status.add_argument("job", help="a job id (or its first characters) or batches/…")
    results = commands.add_parser("results", help="save a finished job's images")
    results.add_argument("job")
    results.add_argument("--out", default="out", help="directory (default: out)")
    cancel = commands.add_parser("cancel", help="cancel a job that has not finished")
    cancel.add_argument("job")


def needs_gemini(args: argparse.Namespace) -> bool:
    return args.batch_command != "list"


async def run(core: Core, args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Runs one ``imagebot batch`` command; returns the exit code.

    Raises:
        ImagebotError: a refusal or failure (one line, exit 1, printed by the caller).
        FileNotFoundError: a missing prompts file or image.
    """
    out = out or sys.stdout
    command = args.batch_command
    if command == "submit":
        return await submit(core, args, out)
    if command == "list":
        return await list_jobs(core, args.thread, out)
    if command == "status":
        job = await core.service.batches.refresh(args.job)
        show(core, job, out)
        return 0
    if command == "results":
        return await save_results(core, args.job, Path(args.out), out)
    job = await core.service.batches.cancel(args.job)
    print(f"batch {job.short}: {job.state}", file=out)
    return 0


async def submit(core: Core, args: argparse.Namespace, out: TextIO) -> int:
    files = [await asyncio.to_thread(_read_prompts, args.file)]
    images = [Path(p) for p in args.image]
    for path in images:
        if not path.is_file():
            raise FileNotFoundError(f"no such image file: {path}")
    key = await _thread(core, args.thread or DEFAULT_THREAD)
    user = getpass.getuser()
    options = OptionInput(model=args.model, aspect_ratio=args.aspect_ratio, size=args.size,
                          search=args.search, image_only=args.image_only)
    job, plan = await core.service.batches.submit(BatchSubmission(
        key=key, author=Author(f"cli:{user}", user), files=tuple(files),
        attachments=tuple(cli.file_attachment(p) for p in images), options=options))
    label = core.service.batches.label(job.model)
    print(submitted_text(job, label, plan.estimate()), file=out)
    print(f"batch {job.id}  thread {cli.thread_name(key)}  "
          f"(`imagebot batch status {job.short}`)", file=out)
    return 0


def _read_prompts(name: str) -> tuple[str, bytes]:
    if name == "-":
        return "stdin.txt", sys.stdin.buffer.read()
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no such prompts file: {path}")
    return path.name, path.read_bytes()


async def _thread(core: Core, name: str) -> ThreadKey:
    """A stored thread by any name `imagebot threads` prints; a Slack or Discord thread by
    its whole key (``slack/TEAM/CHANNEL/ROOT_TS``, ``discord/GUILD/CHANNEL/THREAD``), where
    ``serve`` posts the results; else a new CLI thread."""
    found = await cli.find_thread(core, name)
    if found is not None:
        return found
    parts = name.split("/")
    if len(parts) == 4 and parts[0] in ("slack", "discord") and all(parts):
        return ThreadKey(*parts)
    return cli.thread_key(name)


async def list_jobs(core: Core, thread: str | None, out: TextIO) -> int:
    key = await _thread(core, thread) if thread else None
    jobs = await core.service.batches.jobs(key)
    if not jobs:
        print("no batch jobs yet", file=out)
        return 0
    rows = [("JOB", "STATE", "PROMPTS", "DONE", "FAILED", "BLOCKED", "IMAGES", "COST",
             "CREATED", "THREAD")]
    for job in jobs:
        counts = job.counts
        rows.append((job.short, job.state, str(job.total), str(counts.get("done", 0)),
                     str(counts.get("failed", 0)), str(counts.get("blocked", 0)),
                     str(job.images), dollars(job.cost) if job.results_at else "-",
                     datetime.fromtimestamp(job.created_at).strftime("%Y-%m-%d %H:%M"),
                     cli.thread_name(job.key)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        print("  ".join(cells).rstrip(), file=out)
    print(cli.plural(len(jobs), "batch job"), file=out)
    return 0


def show(core: Core, job: BatchJobView, out: TextIO) -> None:
    label = core.service.batches.label(job.model)
    print(f"batch {job.id} ({job.name or 'not yet created at Gemini'})", file=out)
    print(f"  state: {job.state}; {job.total} prompts on {label}; input {job.input}; "
          f"thread {cli.thread_name(job.key)}", file=out)
    created = datetime.fromtimestamp(job.created_at).strftime("%Y-%m-%d %H:%M:%S")
    print(f"  submitted {created} by {job.author.name or job.author.id}", file=out)
    if job.results_at is not None:
        print(f"  {summary_text(job, label)}", file=out)
        delivered = "posted" if job.delivered_at else "not posted yet"
        print(f"  results: {delivered}; `imagebot batch results {job.short} --out DIR` "
              "saves them", file=out)


async def save_results(core: Core, ref: str, out_dir: Path, out: TextIO) -> int:
    """Writes every image of a finished job and an index (``results.csv``)."""
    batches = core.service.batches
    job = await batches.refresh(ref)
    if job.results_at is None:
        print(f"imagebot: batch {job.short} has not finished yet ({job.state}); try again "
              "later", file=sys.stderr)
        return 1
    lines = await batches.lines(job.id)
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    index = io.StringIO()
    writer = csv.writer(index)
    writer.writerow(["line", "status", "prompt", "file", "error"])
    saved = 0
    for line in lines:
        names = []
        for n, image in enumerate(line.images, start=1):
            ext = {"image/jpeg": "jpg", "image/webp": "webp"}.get(image.mime_type, "png")
            name = f"{job.short}-{line.number:03d}-{n}-{_slug(line.prompt)}.{ext}"
            data = await core.service.image(image.sha256)
            await asyncio.to_thread((out_dir / name).write_bytes, data)
            names.append(name)
            print(f"image: {out_dir / name}", file=out)
        writer.writerow([line.number, line.status, line.prompt, " ".join(names), line.error])
        if line.error:
            print(f"{line.status}: {line.number}. {line.prompt}: {line.error}", file=out)
        saved += len(names)
    index_path = out_dir / f"{job.short}-results.csv"
    await asyncio.to_thread(index_path.write_text, index.getvalue(), encoding="utf-8")
    print(summary_text(job, batches.label(job.model)), file=out)
    print(f"saved {cli.plural(saved, 'image')} and {index_path}", file=out)
    return 0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40].lower() or "image"
