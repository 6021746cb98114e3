"""The Batch API and the Files API through the google-genai SDK, on the Gemini session's
worker loop, with its retries, deadline and error wording.

Creating a batch is not idempotent; :meth:`BatchRemote.find` looks a job up by the display
name it was created with, so a create whose answer was lost is never repeated blindly.
"""

from __future__ import annotations

import io
import json
import logging
from typing import TYPE_CHECKING, Any

from bot.batch import RemoteFile
from bot.errors import ErrorKind, ImagebotError

if TYPE_CHECKING:  # google.genai costs ~0.6 s to import; commands that only read never need it
    from google import genai
    from google.genai import types

    from bot.gemini import GeminiSession

logger = logging.getLogger(__name__)

#: Pages of ``batches.list`` read when looking a job up by its display name.
FIND_PAGES = 20
#: Failures after which a create may still have happened at Gemini.
UNCERTAIN = frozenset({ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.OUTAGE,
                       ErrorKind.RATE_LIMIT, ErrorKind.SERVICE})


def uncertain(error: ImagebotError) -> bool:
    """Whether a failed create may nevertheless have created the job."""
    return error.kind in UNCERTAIN


class BatchRemote:
    """Thin async calls of the SDK's ``batches`` and ``files``."""

    def __init__(self, session: GeminiSession) -> None:
        self.session = session

    async def upload(self, data: bytes, mime_type: str, display_name: str) -> RemoteFile:
        from google.genai import types

        async def call(client: genai.Client) -> types.File:
            return await client.aio.files.upload(
                file=io.BytesIO(data),
                config=types.UploadFileConfig(mime_type=mime_type, display_name=display_name))

        uploaded = await self.session.call(call)
        return RemoteFile(name=uploaded.name or "", uri=uploaded.uri or "",
                          mime_type=uploaded.mime_type or mime_type)

    async def create(self, model: str, src: list[types.InlinedRequest] | str,
                     display_name: str) -> types.BatchJob:
        from google.genai import types

        async def call(client: genai.Client) -> types.BatchJob:
            return await client.aio.batches.create(
                model=model, src=src,
                config=types.CreateBatchJobConfig(display_name=display_name))

        return await self.session.call(call)

    async def get(self, name: str) -> types.BatchJob:
        async def call(client: genai.Client) -> types.BatchJob:
            return await client.aio.batches.get(name=name)

        return await self.session.call(call)

    async def find(self, display_name: str) -> types.BatchJob | None:
        """The newest job created with ``display_name``, if Gemini lists one."""
        from google.genai import types

        async def call(client: genai.Client) -> types.BatchJob | None:
            pager = await client.aio.batches.list(config=types.ListBatchJobsConfig(page_size=100))
            seen = 0
            async for job in pager:
                if job.display_name == display_name:
                    return job
                seen += 1
                if seen >= FIND_PAGES * 100:
                    break
            return None

        return await self.session.call(call)

    async def cancel(self, name: str) -> None:
        async def call(client: genai.Client) -> None:
            await client.aio.batches.cancel(name=name)

        await self.session.call(call)

    async def download(self, file_name: str) -> bytes:
        async def call(client: genai.Client) -> bytes:
            return await client.aio.files.download(file=file_name)

        return await self.session.call(call)

    async def stats(self, name: str) -> dict[str, int]:
        """``batchStats`` of a job (the SDK's BatchJob leaves them out): request counts."""

        async def call(client: genai.Client) -> str:
            response = await client.aio._api_client.async_request("get", name, {})
            return response.body or "{}"

        body: dict[str, Any] = json.loads(await self.session.call(call))
        stats = (body.get("metadata") or {}).get("batchStats") or {}
        return {str(k): int(v) for k, v in stats.items() if str(v).isdigit()}
