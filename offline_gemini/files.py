"""The Files API's storage: uploads in progress, stored files, expiry and file URIs."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from offline_gemini.clock import Clock, rfc3339
from offline_gemini.wire import ApiError, invalid

FILE_LIFETIME = timedelta(hours=48)
MAX_FILE_BYTES = 2 * 1024**3
LIVE_ORIGIN = "https://generativelanguage.googleapis.com"
_ID_ALPHABET = string.ascii_lowercase + string.digits
_FILE_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
_FILE_URI = re.compile(r"^(?P<origin>https?://[^/]+)/(?:v1|v1beta)/files/(?P<id>[^/?#]+)$")


def not_found(file_id: str) -> ApiError:
    """What the live API answers for a file that is unknown, expired or not yours."""
    return ApiError(
        403, f"You do not have permission to access the File {file_id} or it may not exist."
    )


@dataclass
class StoredFile:
    """One file: its bytes, where it came from and when it expires."""

    file_id: str
    mime: str
    data: bytes
    created: datetime
    display_name: str | None = None
    source: str = "UPLOADED"  # or GENERATED (batch results), the only downloadable ones
    #: SHA-256 of ``data``, computed once: requests naming the file do not hash it again.
    sha256: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = hashlib.sha256(self.data).digest()

    @property
    def name(self) -> str:
        return f"files/{self.file_id}"

    @property
    def expires(self) -> datetime:
        return self.created + FILE_LIFETIME

    def resource(self, base_url: str) -> dict[str, Any]:
        """The ``File`` resource as the API answers it."""
        digest = self.sha256.hex().encode("ascii")
        body: dict[str, Any] = {"name": self.name}
        if self.display_name:
            body["displayName"] = self.display_name
        body |= {
            "mimeType": self.mime,
            "sizeBytes": str(len(self.data)),
            "createTime": rfc3339(self.created),
            "updateTime": rfc3339(self.created),
            "expirationTime": rfc3339(self.expires),
            "sha256Hash": base64.b64encode(digest).decode("ascii"),
            "uri": f"{base_url}/v1beta/files/{self.file_id}",
            "state": "ACTIVE",
            "source": self.source,
        }
        if self.source == "GENERATED":
            body["downloadUri"] = f"{base_url}/v1beta/files/{self.file_id}:download?alt=media"
        return body


@dataclass
class _Upload:
    file_id: str
    mime: str
    size: int
    display_name: str | None
    received: bytearray = field(default_factory=bytearray)


class FileStore:
    """Files kept in memory for 48 hours of the given clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._files: dict[str, StoredFile] = {}
        self._uploads: dict[str, _Upload] = {}
        #: Uploads finalized since the server started.
        self.uploaded = 0

    def start_upload(self, *, mime: str, size: int, display_name: str | None,
                     name: str | None = None) -> str:
        """Open a resumable upload; return the token its upload URL carries."""
        file_id = self._new_id(name)
        if not mime:
            raise invalid("* CreateFileRequest.file.mime_type: mime_type is required\n")
        if size > MAX_FILE_BYTES:
            raise invalid(f"File size {size} exceeds the limit of {MAX_FILE_BYTES} bytes.")
        token = secrets.token_urlsafe(24)
        self._uploads[token] = _Upload(file_id, mime, size, display_name)
        return token

    def receive(self, token: str, offset: int, chunk: bytes, *, finalize: bool) -> StoredFile | None:
        """Append a chunk; on finalize, store and return the file. Raises ApiError."""
        upload = self._uploads.get(token)
        if upload is None:
            raise ApiError(404, "Upload session not found or already finalized.")
        if offset != len(upload.received):
            raise invalid(f"Invalid upload offset {offset}: {len(upload.received)} bytes received.")
        upload.received += chunk
        if len(upload.received) > upload.size:
            del self._uploads[token]
            raise invalid(f"Received more than the declared {upload.size} bytes.")
        if not finalize:
            return None
        del self._uploads[token]
        if len(upload.received) != upload.size:
            raise invalid(
                f"Upload finalized with {len(upload.received)} bytes; {upload.size} were declared."
            )
        self.uploaded += 1
        return self.add(bytes(upload.received), upload.mime, display_name=upload.display_name,
                        file_id=upload.file_id)

    def add(self, data: bytes, mime: str, *, display_name: str | None = None,
            source: str = "UPLOADED", file_id: str | None = None) -> StoredFile:
        """Store bytes as a file created now."""
        stored = StoredFile(file_id or self._new_id(None), mime, data, self.clock.now(),
                            display_name, source)
        self._files[stored.file_id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile | None:
        """The file, or None when it is unknown or has expired."""
        stored = self._files.get(file_id)
        if stored is None or self.clock.now() >= stored.expires:
            return None
        return stored

    def live_count(self) -> int:
        """How many files are stored and not expired."""
        self._purge()
        return len(self._files)

    def delete(self, file_id: str) -> bool:
        """Forget a file; False when there was none to forget."""
        if self.get(file_id) is None:
            return False
        del self._files[file_id]
        return True

    def page(self, page_size: int, page_token: str) -> tuple[list[StoredFile], str | None]:
        """Live files, newest first, one page at a time."""
        self._purge()
        start = _offset(page_token)
        newest = sorted(self._files.values(), key=lambda f: f.created, reverse=True)
        chunk = newest[start:start + page_size]
        more = start + page_size < len(newest)
        return chunk, _token(start + page_size) if more else None

    def by_uri(self, uri: str, base_url: str) -> StoredFile:
        """The file a ``fileData.fileUri`` names. Raises ApiError 400 or 403."""
        match = _FILE_URI.match(uri)
        if match is None or match.group("origin") not in (LIVE_ORIGIN, base_url):
            raise invalid(f"Invalid or unsupported file uri: {uri}")
        file_id = match.group("id")
        stored = self.get(file_id)
        if stored is None:
            raise not_found(file_id)
        return stored

    def _purge(self) -> None:
        now = self.clock.now()
        for file_id in [i for i, f in self._files.items() if now >= f.expires]:
            del self._files[file_id]

    def _new_id(self, name: str | None) -> str:
        if name is None:
            return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
        file_id = name.removeprefix("files/")
        if not _FILE_ID.match(file_id):
            raise invalid(f"Invalid file name: {name}. Use up to 40 lowercase letters, digits "
                          "and dashes, not starting or ending with a dash.")
        if self.get(file_id) is not None:
            raise ApiError(409, f"File {name} already exists.", status="ALREADY_EXISTS")
        return file_id


def _offset(page_token: str) -> int:
    if not page_token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(page_token.encode("ascii")).decode("ascii"))
    except (ValueError, UnicodeError):
        raise invalid(f"Invalid page token: {page_token}") from None


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode("ascii")).decode("ascii")
