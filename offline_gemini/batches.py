"""Batch jobs: their inputs, their state on the server's clock, and their results."""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from offline_gemini.clock import rfc3339
from offline_gemini.files import FILE_LIFETIME

BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
MAX_INLINE_BATCH_BYTES = 20 * 1024 * 1024
DONE_STATES = frozenset({"BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED",
                         "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"})
_ID_ALPHABET = string.ascii_lowercase + string.digits
# google.rpc.Code for the HTTP statuses a request can fail with.
_RPC_CODES = {400: 3, 403: 7, 404: 5, 429: 8, 500: 13, 503: 14}


@dataclass
class BatchEntry:
    """One request of a batch: its key (JSONL) or metadata (inline), and its body."""

    request: Any
    key: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass
class BatchJob:
    """A batch: pending for a tenth of its turnaround, then running, then done."""

    batch_id: str
    model: str
    display_name: str | None
    entries: list[BatchEntry]
    input_file: str | None  # "files/ID" for a JSONL input
    created: datetime
    turnaround: timedelta
    cancelled: datetime | None = None
    results: list[dict[str, Any]] | None = None  # {"response": ...} or {"error": ...}
    output_file: str | None = None

    @property
    def name(self) -> str:
        return f"batches/{self.batch_id}"

    def state(self, now: datetime) -> str:
        """``BATCH_STATE_*`` at ``now``; a batch not done within 48 hours expires."""
        if self.cancelled is not None:
            return "BATCH_STATE_CANCELLED"
        if now >= self.created + min(self.turnaround, FILE_LIFETIME):
            return "BATCH_STATE_SUCCEEDED" if self.turnaround <= FILE_LIFETIME else "BATCH_STATE_EXPIRED"
        if now >= self.created + self.turnaround / 10:
            return "BATCH_STATE_RUNNING"
        return "BATCH_STATE_PENDING"

    def ended(self, now: datetime) -> datetime | None:
        """When the batch reached its final state, if it has."""
        if self.cancelled is not None:
            return self.cancelled
        if self.state(now) in DONE_STATES:
            return self.created + min(self.turnaround, FILE_LIFETIME)
        return None

    def operation(self, now: datetime) -> dict[str, Any]:
        """The batch as the API answers it: an Operation with GenerateContentBatch metadata."""
        state, ended = self.state(now), self.ended(now)
        metadata: dict[str, Any] = {"@type": BATCH_TYPE, "model": f"models/{self.model}"}
        if self.display_name:
            metadata["displayName"] = self.display_name
        if self.input_file:
            metadata["inputConfig"] = {"fileName": self.input_file}
        metadata |= {
            "createTime": rfc3339(self.created),
            "updateTime": rfc3339(ended or self.created),
            "batchStats": self._stats(state),
            "state": state,
            "name": self.name,
        }
        if ended is not None:
            metadata["endTime"] = rfc3339(ended)
        body: dict[str, Any] = {"name": self.name, "metadata": metadata}
        output = self._output()
        if output is not None:
            metadata["output"] = output
            body["response"] = {"@type": OUTPUT_TYPE, **output}
        body["done"] = ended is not None
        return body

    def _stats(self, state: str) -> dict[str, str]:
        count = len(self.entries)
        stats = {"requestCount": str(count)}
        if self.results is not None and state == "BATCH_STATE_SUCCEEDED":
            failed = sum("error" in r for r in self.results)
            stats |= {"successfulRequestCount": str(count - failed),
                      "failedRequestCount": str(failed)}
        elif state not in DONE_STATES:
            stats["pendingRequestCount"] = str(count)
        return stats

    def _output(self) -> dict[str, Any] | None:
        if self.results is None:
            return None
        if self.output_file is not None:
            return {"responsesFile": self.output_file}
        inlined = [{**result, **({"metadata": e.metadata} if e.metadata else {})}
                   for e, result in zip(self.entries, self.results, strict=True)]
        return {"inlinedResponses": {"inlinedResponses": inlined}}


def new_batch_id() -> str:
    """A fresh id, lowercase letters and digits like the live ones."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))


def error_result(code: int, message: str) -> dict[str, Any]:
    """A failed request's result: a google.rpc.Status."""
    return {"error": {"code": _RPC_CODES.get(code, 2), "message": message}}


def parse_jsonl(data: bytes) -> list[BatchEntry]:
    """Entries of a JSONL input file; a line that is not ``{"key", "request"}`` becomes
    an entry whose request is None (it fails on its own)."""
    entries: list[BatchEntry] = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if not isinstance(item, dict):
            entries.append(BatchEntry(None))
            continue
        key = item.get("key")
        entries.append(BatchEntry(item.get("request"), key=str(key) if key is not None else None))
    return entries


def results_jsonl(job: BatchJob) -> bytes:
    """The results file of a JSONL batch: one ``{"key", "response"|"error"}`` per line."""
    assert job.results is not None
    lines = [json.dumps({**({"key": e.key} if e.key is not None else {}), **result})
             for e, result in zip(job.entries, job.results, strict=True)]
    return ("\n".join(lines) + "\n").encode("utf-8")
