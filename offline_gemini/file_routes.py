"""The Files API over HTTP: resumable upload, get, list, delete and download."""

from __future__ import annotations

import re
from collections.abc import Callable

from aiohttp import web

from offline_gemini.files import FileStore, StoredFile, not_found
from offline_gemini.wire import ApiError, camelize_keys, invalid, load_json

_UPLOAD = re.compile(r"^/upload/(v1|v1beta)/files$")
_FILES = re.compile(r"^/(v1|v1beta)/files$")
_FILE = re.compile(r"^/(v1|v1beta)/files/([^/:]+)(:download)?$")
_DEFAULT_PAGE = 10
_MAX_PAGE = 100


class FilesApi:
    """Answers the Files API's paths; other paths are left to the caller.

    Args:
        store: where files live.
        check_key: raises ApiError unless the request carries an accepted API key.
        base_url: gives the server's base URL once it is serving.
    """

    def __init__(self, store: FileStore, check_key: Callable[[web.Request], None],
                 base_url: Callable[[], str]) -> None:
        self.store = store
        self._check_key = check_key
        self._base_url = base_url

    def owns(self, path: str) -> bool:
        """True for the paths this API answers."""
        return any(p.match(path) for p in (_UPLOAD, _FILES, _FILE))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one Files API request. Raises ApiError."""
        path, method = request.path, request.method
        if _UPLOAD.match(path) and method == "POST":
            if "upload_id" in request.query:
                return await self._chunk(request)
            self._check_key(request)
            return await self._start(request)
        self._check_key(request)
        if _FILES.match(path) and method == "GET":
            return self._list(request)
        match = _FILE.match(path)
        if match is None:
            raise ApiError(404, f"Method not found: {method} {path}")
        file_id, download = match.group(2), bool(match.group(3))
        if download and method == "GET":
            return self._download(file_id)
        if not download and method == "GET":
            return web.json_response(self._get(file_id).resource(self._base_url()))
        if not download and method == "DELETE":
            if not self.store.delete(file_id):
                raise not_found(file_id)
            return web.json_response({})
        raise ApiError(404, f"Method not found: {method} {path}")

    async def _start(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("X-Goog-Upload-Protocol", "").lower() != "resumable":
            raise invalid("The offline stand-in supports only the resumable upload protocol.")
        if request.headers.get("X-Goog-Upload-Command", "").lower() != "start":
            raise invalid("A resumable upload starts with X-Goog-Upload-Command: start.")
        body = camelize_keys(load_json(await request.read()) or {})
        meta = body.get("file") if isinstance(body, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        size = meta.get("sizeBytes") or request.headers.get("X-Goog-Upload-Header-Content-Length")
        mime = meta.get("mimeType") or request.headers.get("X-Goog-Upload-Header-Content-Type")
        try:
            size_bytes = int(size or 0)
        except ValueError:
            raise invalid(f"Invalid file size: {size}") from None
        token = self.store.start_upload(mime=str(mime or ""), size=size_bytes,
                                        display_name=meta.get("displayName"), name=meta.get("name"))
        url = f"{self._base_url()}{request.path}?upload_id={token}&upload_protocol=resumable"
        return web.Response(headers={"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"})

    async def _chunk(self, request: web.Request) -> web.StreamResponse:
        """One ``upload`` (or ``upload, finalize``) request; it carries no API key, only
        the upload URL's token. Every answer says X-Goog-Upload-Status, or the SDK retries."""
        commands = {c.strip() for c in request.headers.get("X-Goog-Upload-Command", "").split(",")}
        try:
            if "upload" not in commands:
                raise invalid("Unsupported upload command; use 'upload' or 'upload, finalize'.")
            offset = int(request.headers.get("X-Goog-Upload-Offset", "0"))
            stored = self.store.receive(request.query["upload_id"], offset, await request.read(),
                                        finalize="finalize" in commands)
        except ValueError:
            return _final(invalid("Invalid X-Goog-Upload-Offset.").response())
        except ApiError as error:
            return _final(error.response())
        if stored is None:
            return web.Response(headers={"X-Goog-Upload-Status": "active"})
        body = {"file": stored.resource(self._base_url())}
        return web.json_response(body, headers={"X-Goog-Upload-Status": "final"})

    def _get(self, file_id: str) -> StoredFile:
        stored = self.store.get(file_id)
        if stored is None:
            raise not_found(file_id)
        return stored

    def _list(self, request: web.Request) -> web.StreamResponse:
        try:
            size = int(request.query.get("pageSize", _DEFAULT_PAGE))
        except ValueError:
            raise invalid("Invalid pageSize.") from None
        if size < 0:
            raise invalid("pageSize must not be negative.")
        files, token = self.store.page(min(size or _DEFAULT_PAGE, _MAX_PAGE),
                                       request.query.get("pageToken", ""))
        body: dict[str, object] = {}
        if files:
            body["files"] = [f.resource(self._base_url()) for f in files]
        if token:
            body["nextPageToken"] = token
        return web.json_response(body)

    def _download(self, file_id: str) -> web.StreamResponse:
        stored = self._get(file_id)
        if stored.source != "GENERATED":
            raise invalid(f"Only generated files can be downloaded; File {file_id} was uploaded.")
        return web.Response(body=stored.data, content_type=stored.mime)


def _final(response: web.Response) -> web.Response:
    response.headers["X-Goog-Upload-Status"] = "final"
    return response
