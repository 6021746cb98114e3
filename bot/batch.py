"""Batch jobs, the side-effect-free part: reading a submission's prompts (typed lines, or an
attached ``.txt``, ``.csv`` or ``.jsonl``), planning each line as a turn would be planned,
the Batch API requests they become, and the values and words people see of a job.

A batch runs one Gemini image model at half price; each line is one independent request
(the thread's settings apply, its history does not). Reference images attached to the
submission go to every line, through the Files API.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.errors import ImagebotError, OptionError, PromptError
from bot.model import Attachment, Author, ImageRef, ThreadKey, Usage
from bot.options import OptionInput, Options, parse_inline
from bot.planning import PlanLimits, check_attachments, plan_turn
from bot.prices import BATCH_DISCOUNT, cost, dollars

if TYPE_CHECKING:  # google.genai costs ~0.6 s to import; commands that only read never need it
    from google.genai import types

#: The most prompts one batch takes (results are posted one by one).
MAX_LINES = 500
#: The Batch API's limit on a create request with inline requests; above it, a JSONL file.
INLINE_LIMIT = 20_000_000
#: Local job states; the first two are "not yet known to Gemini" and "waiting there".
CREATING, PENDING, RUNNING = "creating", "pending", "running"
SUCCEEDED, FAILED, CANCELLED, EXPIRED = "succeeded", "failed", "cancelled", "expired"
ENDED = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED})
#: A line's outcome.
LINE_PENDING, LINE_DONE, LINE_FAILED, LINE_BLOCKED, LINE_NOT_RUN = (
    "pending", "done", "failed", "blocked", "not_run")
_REMOTE_STATES = {
    "JOB_STATE_QUEUED": PENDING, "JOB_STATE_PENDING": PENDING, "JOB_STATE_UNSPECIFIED": PENDING,
    "JOB_STATE_RUNNING": RUNNING, "JOB_STATE_CANCELLING": RUNNING,
    "JOB_STATE_PAUSED": RUNNING, "JOB_STATE_UPDATING": RUNNING,
    "JOB_STATE_SUCCEEDED": SUCCEEDED, "JOB_STATE_PARTIALLY_SUCCEEDED": SUCCEEDED,
    "JOB_STATE_FAILED": FAILED, "JOB_STATE_CANCELLED": CANCELLED,
    "JOB_STATE_EXPIRED": EXPIRED,
}
_TEXT_FILES = ("txt", "text", "md", "")
_OPTION_COLUMNS = {
    "model": "model", "m": "model", "aspect_ratio": "aspect_ratio", "ar": "aspect_ratio",
    "ratio": "aspect_ratio", "aspect": "aspect_ratio", "size": "size",
    "resolution": "size", "search": "search", "image_only": "image_only",
}


@dataclass(frozen=True)
class BatchSubmission:
    """What someone asked to run as one batch.

    Attributes:
        key: the thread the results are posted in.
        author: who asked.
        text: prompts typed in the message, one per line (a line of flags alone sets them
            for every prompt).
        files: attached prompt files as (name, bytes): ``.txt``, ``.csv`` or ``.jsonl``.
        attachments: reference images, sent with every line.
        options: the submission's own options (command flags, platform fields).
    """

    key: ThreadKey
    author: Author
    text: str = ""
    files: tuple[tuple[str, bytes], ...] = ()
    attachments: tuple[Attachment, ...] = ()
    options: OptionInput = field(default_factory=OptionInput)


@dataclass(frozen=True)
class SourceLine:
    """One prompt as read: where it came from, its text (flags and all) and its columns."""

    where: str
    text: str
    options: OptionInput = field(default_factory=OptionInput)


@dataclass(frozen=True)
class PlannedLine:
    number: int
    prompt: str
    options: Options


@dataclass(frozen=True)
class BatchPlan:
    """A submission checked: its lines, the one model they use, and what it may cost."""

    lines: tuple[PlannedLine, ...]
    options: Options
    attachments: tuple[Attachment, ...]

    @property
    def model(self) -> str:
        return self.options.model

    def estimate(self) -> float | None:
        """The most it costs at batch price, if every line makes one image."""
        total = 0.0
        for line in self.lines:
            price = cost(line.options.model, line.options.size, images=1, batch=True)
            if price is None:
                return None
            total += price
        return total


@dataclass(frozen=True)
class RemoteFile:
    """A file on the Files API: a reference image or an input file."""

    name: str
    uri: str
    mime_type: str


# --- reading prompts ---------------------------------------------------------------------


def read_prompts(text: str, files: Sequence[tuple[str, bytes]]) -> tuple[list[SourceLine],
                                                                         OptionInput]:
    """Every prompt of a submission, and the flags given on lines of their own (in typed
    text and text files: they apply to every prompt).

    Raises:
        PromptError: a file that cannot be read, with the line that failed.
    """
    lines, shared = _text_lines(text, "line")
    for name, data in files:
        found, flags = _read_file(name, data)
        lines.extend(found)
        shared = flags.over(shared)
    return lines, shared


def _text_lines(text: str, where: str) -> tuple[list[SourceLine], OptionInput]:
    lines: list[SourceLine] = []
    shared = OptionInput()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        prompt, flags = parse_inline(stripped)
        if not prompt:
            shared = flags.over(shared)
            continue
        lines.append(SourceLine(f"{where} {number}", stripped))
    return lines, shared


def _read_file(name: str, data: bytes) -> tuple[list[SourceLine], OptionInput]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PromptError(f"`{name}` is not UTF-8 text. Save it as UTF-8 and attach it "
                          "again.") from None
    lowered = name.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return _read_jsonl(name, text), OptionInput()
    if lowered.endswith((".csv", ".tsv")):
        return _read_csv(name, text, "\t" if lowered.endswith(".tsv") else ","), OptionInput()
    base = lowered.rsplit("/", 1)[-1]
    if (base.rsplit(".", 1)[-1] if "." in base else "") not in _TEXT_FILES:
        raise PromptError(f"`{name}` is not a prompt file. Attach a .txt (one prompt per "
                          "line), .csv (a `prompt` column) or .jsonl (`{\"prompt\": …}` lines).")
    return _text_lines(text, f"{name} line")


def _read_jsonl(name: str, text: str) -> list[SourceLine]:
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{name} line {number}"
        try:
            item = json.loads(raw)
        except ValueError:
            raise PromptError(f"{where} is not JSON. Each line must be "
                              "`{\"prompt\": \"…\"}` (optionally with model, aspect_ratio, "
                              "size, search).") from None
        if isinstance(item, str):
            item = {"prompt": item}
        if not isinstance(item, Mapping) or not isinstance(item.get("prompt"), str):
            raise PromptError(f"{where} has no `prompt` text.")
        lines.append(SourceLine(where, item["prompt"], _columns(item, where)))
    return lines


def _read_csv(name: str, text: str, delimiter: str) -> list[SourceLine]:
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if "prompt" not in header:
        return [SourceLine(f"{name} row {n}", row[0].strip())
                for n, row in enumerate(rows, start=1) if row and row[0].strip()]
    lines = []
    for number, row in enumerate(rows[1:], start=2):
        item = {header[i]: cell.strip() for i, cell in enumerate(row) if i < len(header)}
        if not item.get("prompt"):
            continue
        where = f"{name} row {number}"
        lines.append(SourceLine(where, item["prompt"], _columns(item, where)))
    return lines


def _columns(item: Mapping[str, Any], where: str) -> OptionInput:
    given: dict[str, Any] = {}
    for column, value in item.items():
        name = _OPTION_COLUMNS.get(str(column).strip().lower())
        if name is None or value in (None, ""):
            continue
        if name in ("search", "image_only") and not isinstance(value, bool):
            text = str(value).strip().lower()
            if text not in ("true", "false", "yes", "no", "1", "0"):
                raise OptionError(f"{where}: `{column}` must be true or false, got {value!r}.")
            value = text in ("true", "yes", "1")
        given[name] = value if isinstance(value, bool) else str(value)
    return OptionInput(**given)


# --- planning ------------------------------------------------------------------------------


def plan_batch(submission: BatchSubmission, *, sticky: OptionInput,
               limits: PlanLimits) -> BatchPlan:
    """Checks a whole submission as its turns would be checked, before anything is sent.

    Raises:
        ImagebotError: the first problem, naming the line it is on.
    """
    sources, shared = read_prompts(submission.text, submission.files)
    if not sources:
        raise PromptError("No prompts in this batch. Give one prompt per line, or attach a "
                          ".txt, .csv or .jsonl file of prompts.")
    if len(sources) > MAX_LINES:
        raise PromptError(f"This batch has {len(sources):,} prompts; imagebot takes at most "
                          f"{MAX_LINES} per batch. Split it into several batches.")
    base = shared.over(submission.options)
    lines = []
    for number, source in enumerate(sources, start=1):
        lines.append(_plan_line(number, source, base, sticky, limits))
    first = lines[0].options
    _check_one_model(lines)
    check_attachments(submission.attachments, first, limits.max_attachment_bytes)
    return BatchPlan(lines=tuple(lines), options=first, attachments=submission.attachments)


def _plan_line(number: int, source: SourceLine, base: OptionInput, sticky: OptionInput,
               limits: PlanLimits) -> PlannedLine:
    try:
        plan = plan_turn(source.text, (), ui=source.options.over(base), sticky=sticky,
                         limits=limits)
    except ImagebotError as exc:
        raise type(exc)(f"Prompt {number} ({source.where}): {exc.user_message}",
                        kind=exc.kind) from None
    options = plan.options
    if options.caps.one_shot:
        raise OptionError(f"{options.caps.label} has no Batch API. Batches run on "
                          "`--model flash` or `--model pro` (at half price).")
    if options.count > 1:
        raise OptionError(f"Prompt {number} ({source.where}): `--count` does not apply to "
                          "batches, where each line is one request. Repeat the line instead.")
    return PlannedLine(number=number, prompt=plan.prompt, options=options)


def _check_one_model(lines: Sequence[PlannedLine]) -> None:
    model = lines[0].options.model
    for line in lines:
        if line.options.model != model:
            raise OptionError(
                f"A batch runs on one model, but prompt {line.number} asks for "
                f"{line.options.caps.label} and prompt 1 for {lines[0].options.caps.label}. "
                "Put `--model` on a line of its own to set it for every prompt, or submit "
                "two batches.")


# --- requests --------------------------------------------------------------------------------


def rest_request(line: PlannedLine, refs: Sequence[RemoteFile]) -> dict[str, Any]:
    """One line as the REST ``GenerateContentRequest`` of a JSONL input file."""
    options = line.options
    parts: list[dict[str, Any]] = [{"text": line.prompt}]
    parts += [{"fileData": {"fileUri": r.uri, "mimeType": r.mime_type}} for r in refs]
    config: dict[str, Any] = {
        "responseModalities": ["IMAGE"] if options.image_only else ["TEXT", "IMAGE"]}
    image_config = {k: v for k, v in (("aspectRatio", options.aspect_ratio),
                                      ("imageSize", options.size)) if v}
    if image_config:
        config["imageConfig"] = image_config
    request: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}],
                               "generationConfig": config}
    if options.search:
        request["tools"] = [{"googleSearch": {}}]
    return request


def jsonl_input(lines: Sequence[PlannedLine], refs: Sequence[RemoteFile]) -> bytes:
    """The JSONL input file: ``{"key", "request"}`` per line; the key is the line number."""
    return "".join(json.dumps({"key": str(line.number), "request": rest_request(line, refs)})
                   + "\n" for line in lines).encode("utf-8")


def inline_requests(lines: Sequence[PlannedLine], refs: Sequence[RemoteFile]
                    ) -> list[types.InlinedRequest]:
    """The lines as the SDK's inline requests, with the line number as metadata."""
    from google.genai import types

    from bot.gemini import build_config

    requests = []
    for line in lines:
        parts = [types.Part(text=line.prompt)] + [
            types.Part(file_data=types.FileData(file_uri=r.uri, mime_type=r.mime_type))
            for r in refs]
        requests.append(types.InlinedRequest(
            contents=[types.Content(role="user", parts=parts)],
            config=build_config(line.options), metadata={"key": str(line.number)}))
    return requests


def input_size(lines: Sequence[PlannedLine], refs: Sequence[RemoteFile]) -> int:
    """About how big the create request is with every line inline."""
    return sum(len(json.dumps(rest_request(line, refs))) + 64 for line in lines) + 512


def local_state(remote: object) -> str:
    """A ``JobState`` (or its name) as a local state."""
    name = str(getattr(remote, "value", remote) or "")
    return _REMOTE_STATES.get(name, PENDING)


# --- what people see ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchLineView:
    """One line of a job and its result."""

    number: int
    prompt: str
    status: str
    images: tuple[ImageRef, ...] = ()
    texts: tuple[str, ...] = ()
    error: str = ""
    usage: Usage = field(default_factory=Usage)
    posted: bool = False


@dataclass(frozen=True)
class BatchJobView:
    """A batch job as stored."""

    id: str
    display_name: str
    name: str
    key: ThreadKey
    author: Author
    model: str
    options: Mapping[str, Any]
    state: str
    error: str
    total: int
    counts: Mapping[str, int]
    images: int
    cost: float | None
    created_at: float
    updated_at: float
    input: str = "inline"
    results_at: float | None = None
    delivered_at: float | None = None
    posts: Mapping[str, Any] = field(default_factory=dict)
    polls: int = 0

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def short(self) -> str:
        return self.id[:8]


def submitted_text(job: BatchJobView, label: str, estimate: float | None) -> str:
    """What the submitter is told once the job exists at Gemini."""
    price = (f" It costs at most {dollars(estimate)} at batch price (half the usual)."
             if estimate is not None else "")
    where = f" as {job.name}" if job.name else ""
    return (f"Batch {job.short} submitted{where}: {job.total} "
            f"{'prompt' if job.total == 1 else 'prompts'} on {label}.{price} Results usually "
            "come within a few hours (at most 24 h) and are posted here as they finish.")


def summary_text(job: BatchJobView, label: str) -> str:
    """The line that closes a finished job: what was done, failed and blocked, and the
    cost at batch price."""
    done = job.counts.get(LINE_DONE, 0)
    failed = job.counts.get(LINE_FAILED, 0)
    blocked = job.counts.get(LINE_BLOCKED, 0)
    not_run = job.counts.get(LINE_NOT_RUN, 0)
    head = {SUCCEEDED: "finished", FAILED: "failed", CANCELLED: "was cancelled",
            EXPIRED: "expired after 48 hours"}.get(job.state, job.state)
    bits = [f"{done} done", f"{failed} failed", f"{blocked} blocked"]
    if not_run:
        bits.append(f"{not_run} not run")
    images = f"{job.images} {'image' if job.images == 1 else 'images'}"
    full = None if job.cost is None else job.cost / BATCH_DISCOUNT
    price = (f"{dollars(job.cost)} at batch price ({dollars(full)} at the usual price)"
             if job.cost is not None else "cost unknown for this model")
    reason = f" {job.error}" if job.error else ""
    return (f"Batch {job.short} {head}: {job.total} prompts on {label}: "
            f"{', '.join(bits)} · {images} · {price}.{reason}")
