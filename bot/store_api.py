"""The store interface the core depends on, whichever database is behind it.

:class:`bot.store.HistoryStore` (SQLite) and :class:`bot.store_pg.PgHistoryStore`
(PostgreSQL) both provide :class:`Store`; the contract tests in
``tests/bot/test_store_contract.py`` run the same cases against each. The service talks to
this Protocol only; :func:`bot.runtime.open_store` picks the implementation from
``DATABASE_URL``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bot.history import StoredContent
from bot.model import Author, StoredImage, StoredReply, ThreadKey, ThreadSummary, TurnView
from bot.options import OptionInput

if TYPE_CHECKING:  # google.genai costs ~0.6 s to import; commands that only read never need it
    from google.genai import types


@dataclass
class NewTurn:
    """Everything one successful turn writes, in one transaction."""

    turn_id: str
    key: ThreadKey
    contents: Sequence[types.Content]
    settings: OptionInput
    author_id: str
    author_name: str
    prompt: str
    options: dict[str, Any]
    refs: list[StoredImage]
    reply: StoredReply
    model: str
    usage: dict[str, int]
    images: int
    created_at: float
    #: sha256 digests already computed this turn, by ``id()`` of the bytes they hash.
    known_hashes: Mapping[int, str] = field(default_factory=dict)
    #: Blobs the turn needs beyond its Contents (an Imagen answer, kept out of the history).
    blobs: Mapping[str, tuple[str, bytes]] = field(default_factory=dict)
    #: More rows to write in the turn's transaction (a turn's other candidates), given the
    #: store's aiosqlite-shaped connection (``?`` placeholders) bound to that transaction.
    also: Callable[[Any], Awaitable[None]] | None = None


@dataclass(frozen=True)
class Orphan:
    """A ticket whose holder stopped renewing it (the process died) while its turn was not
    over, with the turn's request as the adapter described it when it took its place.

    Attributes:
        joined_at: when the ticket was taken (the database's clock, epoch seconds).
        adoptions: how many times a live process took it over already.
    """

    ticket: int
    line: str
    request: str
    joined_at: float
    adoptions: int
    #: The process that held it last (it stopped renewing it).
    holder: str = ""


class LineStore(Protocol):
    """Tickets in each thread's line, shared by every process using the database.

    A ticket is a row with an expiry: its holder renews it while it waits or runs, so a
    process that dies leaves nothing behind once its tickets expire. Ticket numbers grow
    in the order the database took them, which is the line's order.

    A ticket may carry its turn's request (an opaque string). Such a ticket, once expired,
    stays in its line one more ``ttl`` as an :class:`Orphan`, so that a live process can
    take it over (:meth:`line_adopt`) in its place; it is dropped after that.
    """

    async def line_join(self, line: str, holder: str, ttl: float,
                        request: str | None = None) -> int:
        """Takes the next ticket in ``line`` for ``holder``, valid ``ttl`` seconds."""

    async def line_first(self, line: str, ticket: int) -> bool | None:
        """Drops expired tickets of ``line`` (orphans past their adoption window); whether
        ``ticket`` is now first in it (``None`` when the ticket itself is gone)."""

    async def line_renew(self, holder: str, ttl: float) -> None:
        """Extends every ticket of ``holder`` to ``ttl`` seconds from now."""

    async def line_leave(self, ticket: int) -> None:
        """Gives a ticket up (the turn is over, or its waiter gave up)."""

    async def line_busy(self, line: str) -> bool:
        """Whether ``line`` has a live ticket or an orphan (a turn waiting or running)."""

    async def line_orphans(self, max_adoptions: int, limit: int = 50) -> list[Orphan]:
        """Expired tickets with a request, still in their adoption window and adopted fewer
        than ``max_adoptions`` times, oldest first."""

    async def line_adopt(self, ticket: int, holder: str, ttl: float) -> bool:
        """Takes an expired ticket over for ``holder``: true for exactly one caller."""


class InstallationStore(Protocol):
    """Platform installations (Slack's OAuth installs) and one-time OAuth states."""

    async def save_installation(self, platform: str, key: str, data: Mapping[str, Any]) -> None:
        """Stores (or replaces) the installation known as ``key`` (a workspace id...)."""

    async def find_installation(self, platform: str, key: str) -> dict[str, Any] | None: ...

    async def delete_installation(self, platform: str, key: str) -> bool: ...

    async def issue_state(self, state: str, expires_at: float) -> None:
        """Records an OAuth ``state`` that may be consumed once before ``expires_at``."""

    async def consume_state(self, state: str) -> bool:
        """True once for a state that was issued and has not expired; False otherwise."""


class TableStore(Protocol):
    """What modules that keep their own tables on the store use (the cost ledger, the
    audit log, batch jobs): an aiosqlite-shaped connection with ``?`` placeholders, a write
    transaction (one writer at a time), and blobs by hash."""

    db: Any

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]: ...

    def _transaction(self) -> contextlib.AbstractAsyncContextManager[None]: ...

    async def write_blobs(self, blobs: dict[str, tuple[str, bytes]]) -> None: ...


class Store(LineStore, InstallationStore, TableStore, Protocol):
    """Threads, their history and blobs, turn records, usage and event ids."""

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    async def writable(self) -> bool:
        """A health check: can the database take a write now?"""

    # threads
    async def thread_exists(self, key: ThreadKey) -> bool: ...

    async def settings(self, key: ThreadKey) -> OptionInput: ...

    async def save_settings(self, key: ThreadKey, settings: OptionInput) -> None: ...

    async def list_threads(self, platform: str | None = None) -> list[ThreadSummary]: ...

    async def find_thread(self, key: ThreadKey) -> ThreadSummary | None: ...

    async def delete_thread(self, key: ThreadKey) -> bool: ...

    async def rename_thread(self, key: ThreadKey, title: str) -> bool: ...

    # history and blobs
    async def load_history(self, key: ThreadKey) -> list[types.Content]: ...

    async def load_stored(self, key: ThreadKey) -> list[StoredContent]: ...

    async def inflate(self, stored: Sequence[StoredContent],
                      files: Mapping[str, str] | None = None) -> list[types.Content]: ...

    async def blob_sizes(self, hashes: set[str] | list[str]) -> dict[str, int]: ...

    async def get_blobs(self, hashes: set[str] | list[str]) -> dict[str, bytes]: ...

    async def commit_turn(self, turn: NewTurn) -> None: ...

    # turn records, events, usage
    async def get_turn(self, turn_id: str) -> TurnView | None: ...

    async def list_turns(self, key: ThreadKey, *, include_deleted: bool = False
                         ) -> list[TurnView]: ...

    async def set_platform_refs(self, turn_id: str, refs: dict[str, Any]) -> None: ...

    async def delete_turn(self, turn_id: str) -> bool: ...

    async def mark_event(self, event_id: str) -> bool: ...

    async def prune_events(self, older_than: float) -> None: ...

    async def usage_rows(self, key: ThreadKey | None = None) -> list[dict[str, Any]]: ...


class Row(Protocol):
    """A database row read by column name: ``aiosqlite.Row`` or ``asyncpg.Record``."""

    def __getitem__(self, key: str) -> Any: ...


def summary_row(row: Row) -> ThreadSummary:
    """A ``threads`` row with its turn count ``n`` (either store's row type)."""
    return ThreadSummary(
        key=ThreadKey(row["platform"], row["workspace"], row["channel"], row["thread"]),
        title=row["title"], turns=int(row["n"]), updated_at=float(row["updated_at"]),
        settings=json.loads(row["settings"]))


def turn_row(row: Row) -> TurnView:
    """A ``turns`` row joined with its thread's key (either store's row type)."""
    return TurnView(
        id=row["id"],
        thread=ThreadKey(row["platform"], row["workspace"], row["channel"], row["thread"]),
        author=Author(row["author_id"], row["author_name"]), prompt=row["prompt"],
        options=json.loads(row["options"]),
        refs=tuple(StoredImage(**r) for r in json.loads(row["refs"])),
        reply=StoredReply.from_dict(json.loads(row["reply"])),
        platform_refs=json.loads(row["platform_refs"]),
        deleted=bool(row["deleted"]), created_at=float(row["created_at"]),
    )
