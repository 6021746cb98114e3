"""The playground's batch routes: submit a batch from a thread, list and show jobs, cancel,
and download a finished job's images as one zip.

* ``POST /api/threads/{thread}/batches``: multipart with ``prompts`` (one per line) and/or a
  ``file`` (.txt, .csv, .jsonl), ``refs`` (reference images for every prompt) and the
  selector fields.
* ``GET /api/batches?thread=ID``: the jobs of the playground (of one thread).
* ``GET /api/batches/{job}``: a job with its lines; ``POST /api/batches/{job}/cancel``.
* ``GET /api/batches/{job}/results.zip``: every image, named by line and prompt, and
  ``results.csv`` (line, status, prompt, files, error).

Web jobs are not posted anywhere: ``serve``'s poller stores their results and the page
shows them (and the zip) once they are in.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import zipfile
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from adapters.web import parsing
from adapters.web.errors import Refusal
from adapters.web.parsing import PLATFORM, thread_key
from adapters.web.views import image_urls
from bot.batch import BatchJobView, BatchLineView, BatchSubmission, submitted_text, summary_text
from bot.errors import NotFoundError
from bot.model import Author
from bot.options import OptionInput
from bot.prices import dollars
from bot.service import ConversationService

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AUTHOR = Author(id="web", name="You")
#: The biggest prompt file the page may send.
MAX_PROMPT_FILE = 5 * 2**20


class WebBatches:
    """Batch routes of the playground, over the service's ``batches``."""

    def __init__(self, service: ConversationService) -> None:
        self.service = service
        self.batches = service.batches

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/api/threads/{thread}/batches", self.submit),
            ("GET", "/api/batches", self.list_jobs),
            ("GET", "/api/batches/{job}", self.show),
            ("POST", "/api/batches/{job}/cancel", self.cancel),
            ("GET", "/api/batches/{job}/results.zip", self.results_zip),
        ]

    async def submit(self, request: web.Request) -> web.Response:
        key = thread_key(request.match_info["thread"])
        form = await parsing.read_form(request)
        files = []
        for field in form.getall("file", []):
            if isinstance(field, FileField):
                data = await asyncio.to_thread(field.file.read, MAX_PROMPT_FILE + 1)
                if len(data) > MAX_PROMPT_FILE:
                    raise Refusal(413, "The prompt file is over 5 MB.", "too_large")
                files.append((field.filename or "prompts.txt", data))
        job, plan = await self.batches.submit(BatchSubmission(
            key=key, author=AUTHOR, text=parsing.form_field(form, "prompts"),
            files=tuple(files), attachments=await parsing.attachments(form),
            options=parsing.form_options(form)))
        if await self.service.thread(key) is None:
            # A thread started by a batch is listed like one started by a turn.
            await self.service.update_settings(key, OptionInput())
            await self.service.rename_thread(key, f"Batch: {plan.lines[0].prompt}"[:80])
        label = self.batches.label(job.model)
        return web.json_response({"batch": job_json(job, label),
                                  "message": submitted_text(job, label, plan.estimate())},
                                 status=201)

    async def list_jobs(self, request: web.Request) -> web.Response:
        thread = request.query.get("thread")
        if thread:
            jobs = await self.batches.jobs(thread_key(thread))
        else:
            jobs = await self.batches.jobs(platform=PLATFORM)
        return web.json_response({"batches": [job_json(j, self.batches.label(j.model))
                                              for j in jobs]})

    async def show(self, request: web.Request) -> web.Response:
        job = await self._job(request)
        lines = await self.batches.lines(job.id)
        return web.json_response({"batch": job_json(job, self.batches.label(job.model)),
                                  "lines": [line_json(line) for line in lines]})

    async def cancel(self, request: web.Request) -> web.Response:
        job = await self.batches.cancel((await self._job(request)).id)
        return web.json_response({"batch": job_json(job, self.batches.label(job.model))})

    async def results_zip(self, request: web.Request) -> web.StreamResponse:
        job = await self._job(request)
        if job.results_at is None:
            raise Refusal(409, f"Batch {job.short} has not finished yet ({job.state}).",
                          "not_ready")
        lines = await self.batches.lines(job.id)
        images = {i.sha256: await self.service.image(i.sha256)
                  for line in lines for i in line.images}
        data = await asyncio.to_thread(build_zip, job, lines, images)
        return web.Response(body=data, content_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="imagebot-batch-{job.short}.zip"'})

    async def _job(self, request: web.Request) -> BatchJobView:
        """A playground job (other surfaces' jobs are not shown here)."""
        try:
            job = await self.batches.job(request.match_info["job"])
        except NotFoundError as exc:
            raise Refusal(404, exc.user_message, "not_found") from exc
        if job.key.platform != PLATFORM:
            raise Refusal(404, "No such batch in the playground.", "not_found")
        return job


def job_json(job: BatchJobView, label: str) -> dict[str, Any]:
    ready = job.results_at is not None
    return {
        "id": job.id, "short": job.short, "name": job.name, "thread": job.key.thread,
        "model": job.model, "label": label, "state": job.state, "total": job.total,
        "counts": dict(job.counts), "images": job.images,
        "cost": job.cost if ready else None, "cost_text": dollars(job.cost) if ready else "",
        "created_at": job.created_at, "ended": job.ended,
        "summary": summary_text(job, label) if ready else "",
        "zip_url": f"/api/batches/{job.id}/results.zip" if ready else None,
    }


def line_json(line: BatchLineView) -> dict[str, Any]:
    return {"number": line.number, "prompt": line.prompt, "status": line.status,
            "error": line.error, "texts": list(line.texts),
            "images": [{**image_urls(i.sha256), "mime_type": i.mime_type, "width": i.width,
                        "height": i.height} for i in line.images]}


def build_zip(job: BatchJobView, lines: list[BatchLineView], images: dict[str, bytes]) -> bytes:
    """Every image (``001-a-red-fox.png``) and ``results.csv``, in one zip."""
    out = io.BytesIO()
    index = io.StringIO()
    writer = csv.writer(index)
    writer.writerow(["line", "status", "prompt", "files", "error"])
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for line in lines:
            names = []
            for n, image in enumerate(line.images, start=1):
                ext = {"image/jpeg": "jpg", "image/webp": "webp"}.get(image.mime_type, "png")
                suffix = f"-{n}" if len(line.images) > 1 else ""
                name = f"{line.number:03d}{suffix}-{_slug(line.prompt)}.{ext}"
                archive.writestr(name, images[image.sha256])
                names.append(name)
            writer.writerow([line.number, line.status, line.prompt, " ".join(names), line.error])
        archive.writestr("results.csv", index.getvalue())
    return out.getvalue()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40].lower() or "image"
