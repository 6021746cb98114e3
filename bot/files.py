"""History images on Gemini's Files API: each image is uploaded once and later requests
name it by URI, so turn N of a thread does not send every earlier image again.

A file lives 48 hours. Before a request, every image it names as a file must have a record
that outlives the next hour; otherwise the image is uploaded (again). Images are keyed by
the hash of their bytes, so a reference shared by several threads is uploaded once.
Whether a model takes its own images back as files is not documented: when a model refuses
them, :meth:`HistoryFiles.refuse_model_files` makes its model images go inline for the rest
of the process.

A turn's images are uploaded in the background as soon as the turn is stored
(:meth:`HistoryFiles.upload_later`), off the critical path of both that reply and the next
turn: the next turn finds them uploaded, or waits for the upload in flight instead of
starting another; an upload that failed in the background is simply made again by the next
turn. Closing the service drains these uploads (:meth:`HistoryFiles.drain`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from bot.errors import ServiceError
from bot.model import ThreadKey
from bot.store_files import FileRecord
from bot.tasks import drain

if TYPE_CHECKING:
    from bot.gemini import GeminiSession

logger = logging.getLogger(__name__)

#: A file that expires sooner than this is uploaded again before a request names it.
EXPIRY_MARGIN = 3600.0
#: Uploads (and deletes) running at once, across all turns.
PARALLEL_CALLS = 4
#: Deleting a turn's or a thread's files never holds up the delete longer than this.
RELEASE_TIMEOUT = 15.0
#: Closing waits this long for background uploads before cancelling them.
DRAIN_GRACE = 60.0


class BackgroundUploadFailed(Exception):
    """A background upload did not finish (the turn that waited for it uploads itself)."""


class HistoryFiles:
    """Uploads history images to the Files API and remembers the files per blob hash.

    Args:
        store: where file records and blob bytes are.
        gemini: the session whose client uploads and deletes.
        enabled: the ``use_files_api`` setting; when off, every image goes inline.
        clock: seconds since the epoch (tests move it).
    """

    def __init__(self, store: Any, gemini: GeminiSession | None, *, enabled: bool,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.gemini = gemini
        self.enabled = enabled
        self.clock = clock
        self._inline_models: set[str] = set()
        #: Uploads in flight by hash: the shared result, and whether it runs in the background.
        self._uploading: dict[str, tuple[asyncio.Future[FileRecord], bool]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._calls = asyncio.Semaphore(PARALLEL_CALLS)
        #: Uploads made by this process (for logs, tests and benchmarks).
        self.uploads = 0

    @property
    def namespace(self) -> str:
        return self.gemini.files_namespace if self.gemini else ""

    @property
    def _session(self) -> GeminiSession:
        assert self.gemini is not None, "a read-only service has no Gemini session"
        return self.gemini

    # --- which images go as files ----------------------------------------------------------

    def model_files(self, model: str) -> bool:
        """Whether the model's own images go back to ``model`` as files."""
        return self.enabled and model not in self._inline_models

    def refuse_model_files(self, model: str) -> None:
        """Sends ``model``'s own images inline from now on (it refused them as files)."""
        if model in self._inline_models:
            return
        self._inline_models.add(model)
        logger.warning("%s refused its own images as Files API references; they go inline "
                       "to %s for the rest of this process", model, model)

    # --- files before a request ------------------------------------------------------------

    async def ensure(self, images: Mapping[str, str]) -> tuple[dict[str, FileRecord], set[str]]:
        """Live files for images (hash to MIME type), uploading those without one.

        Returns:
            The files by hash, and the hashes whose upload failed (they go inline).
        """
        live, failed = await self._ensure(images, background=False)
        for digest, exc in failed.items():
            logger.warning("could not upload image %s to the Files API (%s); it goes "
                           "inline", digest[:12], exc)
        return live, set(failed)

    async def _ensure(self, images: Mapping[str, str], *, background: bool
                      ) -> tuple[dict[str, FileRecord], dict[str, Exception]]:
        if not images:
            return {}, {}
        now = self.clock()
        known = await self.store.files.get(self.namespace, images)
        live = {h: r for h, r in known.items() if r.expires_at > now + EXPIRY_MARGIN}
        missing = [h for h in images if h not in live]
        if not missing:
            return live, {}
        results = await asyncio.gather(
            *(self._upload_once(h, images[h], background=background) for h in missing),
            return_exceptions=True)
        failed: dict[str, Exception] = {}
        for digest, result in zip(missing, results, strict=True):
            if isinstance(result, FileRecord):
                live[digest] = result
            elif isinstance(result, Exception):
                failed[digest] = result
            else:
                raise result
        return live, failed

    # --- uploads in the background ---------------------------------------------------------

    def upload_later(self, key: ThreadKey, turn_id: str, model: str) -> None:
        """Starts uploading the images of a turn just stored (the user's references, and
        the model's own images when they go back to ``model`` as files) in the background,
        so the next turn of the thread finds them uploaded. Never raises."""
        if not self.enabled or self.gemini is None:
            return
        task = asyncio.create_task(self._upload_turn(key, turn_id, model),
                                   name=f"upload turn {turn_id[:12]}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _upload_turn(self, key: ThreadKey, turn_id: str, model: str) -> None:
        try:
            stored = await self.store.load_stored(key)
            images = {h: mime for c in stored if c.turn_id == turn_id
                      and (c.role == "user" or self.model_files(model))
                      for h, mime in c.images().items()}
            _, failed = await self._ensure(images, background=True)
        except Exception:  # the next turn uploads what is missing
            logger.warning("uploading turn %s's images in the background failed; the next "
                           "turn uploads them", turn_id, exc_info=True)
            return
        for digest, exc in failed.items():
            logger.info("could not upload image %s in the background (%s); the next turn "
                        "tries again", digest[:12], exc)

    @property
    def background(self) -> int:
        """Background uploads of stored turns still running."""
        return len(self._background)

    async def drain(self, grace: float = DRAIN_GRACE) -> None:
        """Waits up to ``grace`` seconds for background uploads, then cancels the rest
        (called on close, before the Gemini session and the store close)."""
        await drain(self._background, grace)

    async def _upload_once(self, digest: str, mime_type: str, *, background: bool = False
                           ) -> FileRecord:
        """Uploads one image, sharing the upload with any turn that asks meanwhile; a turn
        that waited for a background upload that failed makes the upload itself."""
        while (running := self._uploading.get(digest)) is not None:
            shared, in_background = running
            try:
                return await asyncio.shield(shared)
            except Exception:
                if background or not in_background:
                    raise
        future: asyncio.Future[FileRecord] = asyncio.get_running_loop().create_future()
        self._uploading[digest] = (future, background)
        try:
            record = await self._upload(digest, mime_type)
        except BaseException as exc:
            shared_exc = (BackgroundUploadFailed(f"the upload of {digest[:12]} was cancelled")
                          if isinstance(exc, asyncio.CancelledError) else exc)
            future.set_exception(shared_exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._uploading.pop(digest, None)
        future.set_result(record)
        return record

    async def _upload(self, digest: str, mime_type: str) -> FileRecord:
        # Another turn may have uploaded it since this one looked.
        known = (await self.store.files.get(self.namespace, [digest])).get(digest)
        if known is not None and known.expires_at > self.clock() + EXPIRY_MARGIN:
            return known
        async with self._calls:  # also bounds the image bytes read for uploads at once
            data = (await self.store.get_blobs([digest]))[digest]
            started = self.clock()
            uploaded = await self._session.upload_file(data, mime_type, f"imagebot-{digest[:16]}")
        self.uploads += 1
        record = FileRecord(sha256=digest, name=uploaded.name, uri=uploaded.uri,
                            mime_type=mime_type, expires_at=started + uploaded.lifetime)
        await self.store.files.save(self.namespace, record)
        logger.debug("uploaded image %s (%d bytes) as %s", digest[:12], len(data), uploaded.name)
        return record

    async def recheck(self, used: Mapping[str, FileRecord]) -> set[str]:
        """After Gemini refused a file believed alive: asks which of ``used`` are gone,
        and forgets them so the retry uploads them again.

        Returns:
            The hashes whose files are gone.
        """
        async def gone(record: FileRecord) -> bool:
            async with self._calls:
                try:
                    return not await self._session.file_exists(record.name)
                except ServiceError:
                    return True  # cannot tell: uploading again is safe

        answers = await asyncio.gather(*(gone(r) for r in used.values()))
        lost = {h for h, is_gone in zip(used, answers, strict=True) if is_gone}
        if lost:
            await self.store.files.forget(self.namespace, lost)
        logger.info("%d of %d files a request named were gone; uploading them again",
                    len(lost), len(used))
        return lost

    # --- cleanup ---------------------------------------------------------------------------

    async def release(self, hashes: Collection[str]) -> int:
        """Deletes the files of those of ``hashes`` no history uses any more (after a turn
        or a thread was deleted). Best effort: failures are logged, never raised, and it
        gives up after ``RELEASE_TIMEOUT`` seconds (the files expire within 48 hours).

        Returns:
            How many files were deleted.
        """
        if not hashes:
            return 0
        try:
            return await asyncio.wait_for(self._release(hashes), timeout=RELEASE_TIMEOUT)
        except Exception:  # cleanup must never fail the delete that asked for it
            logger.warning("deleting Files API files of deleted turns failed", exc_info=True)
            return 0

    async def _release(self, hashes: Collection[str]) -> int:
        unused = await self.store.files.unused(hashes)
        if not unused:
            return 0
        records = await self.store.files.get(self.namespace, unused)
        await self.store.files.forget_everywhere(unused)
        results = await asyncio.gather(*(self._delete(r) for r in records.values()))
        deleted = sum(results)
        if records:
            logger.info("deleted %d of %d Files API file(s) no thread uses any more",
                        deleted, len(records))
        return deleted

    async def _delete(self, record: FileRecord) -> bool:
        if record.expires_at <= self.clock():
            return False  # Gemini has forgotten it already
        async with self._calls:
            try:
                await self._session.delete_file(record.name)
            except ServiceError as exc:
                logger.warning("could not delete %s from the Files API: %s", record.name, exc)
                return False
        return True

    async def sweep(self) -> int:
        """Forgets the records of files that have expired; returns how many."""
        if not hasattr(self.store, "files"):  # a store that keeps no file records
            return 0
        forgotten = await self.store.files.forget_expired(self.clock())
        if forgotten:
            logger.info("forgot %d expired Files API record(s)", forgotten)
        return forgotten
