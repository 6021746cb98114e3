"""Reading the playground's requests: thread ids, JSON bodies, multipart turns and the
selector fields, each refused with a 400 and a clear message when malformed."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from adapters.web.errors import Refusal
from bot.errors import OptionError
from bot.model import Attachment, ThreadKey
from bot.options import OptionInput, parse_inline

PLATFORM = "web"
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
TITLE_LIMIT = 200
_THREAD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TRUE = ("1", "true", "on", "yes")
_FALSE = ("0", "false", "off", "no")


def thread_key(thread: str) -> ThreadKey:
    """The key of a playground thread id (ids are made by the page, or by ``POST``)."""
    if not _THREAD_ID.fullmatch(thread):
        raise Refusal(404, "That is not a playground thread id.", "not_found")
    return ThreadKey(PLATFORM, "", "", thread)


async def json_body(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    if allow_empty and not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise Refusal(400, "The request body must be a JSON object.", "request") from exc
    if not isinstance(body, dict):
        raise Refusal(400, "The request body must be a JSON object.", "request")
    return body


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """The turn's form; a body that is not well-formed multipart (or not UTF-8) is a 400."""
    if request.content_type not in FORM_TYPES:
        raise Refusal(400, "Send the turn as multipart/form-data.", "request")
    try:
        return await request.post()
    except UnicodeDecodeError as exc:
        raise Refusal(400, "A text field of the form (the prompt or an option) is not valid "
                           "UTF-8 text. Send text fields as UTF-8.", "request") from exc
    except ValueError as exc:
        # aiohttp's multipart reader says "Reading after EOF" or "Could not find starting
        # boundary": the body was cut off or is not the multipart it claims to be.
        raise Refusal(400, "The form data is incomplete or malformed (the upload may have "
                           "been cut off). Send the turn again.", "request") from exc


def option_input(data: dict[str, Any]) -> OptionInput:
    """Selector values (``model``, ``aspect_ratio``, ``size``, ``search``) as an OptionInput."""
    given: dict[str, Any] = {}
    for name in ("model", "aspect_ratio", "size"):
        value = data.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise Refusal(400, f"`{name}` must be a string.", "option")
        given[name] = value
    search = data.get("search")
    if search is not None:
        if not isinstance(search, bool):
            raise Refusal(400, "`search` must be true or false.", "option")
        given["search"] = search
    count = data.get("count")
    if count not in (None, ""):
        if isinstance(count, bool) or not str(count).strip().isdigit():
            raise Refusal(400, "`count` must be a number from 1 to 4.", "option")
        given["count"] = int(str(count))
    return OptionInput(**given)


def form_field(form: MultiDictProxy[Any], name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def form_options(form: MultiDictProxy[Any]) -> OptionInput:
    """The selector fields of a turn's form."""
    data: dict[str, Any] = {name: form_field(form, name)
                            for name in ("model", "aspect_ratio", "size", "count")}
    search = form_field(form, "search").strip().lower()
    if search in _TRUE:
        data["search"] = True
    elif search in _FALSE:
        data["search"] = False
    elif search:
        raise Refusal(400, "`search` must be true or false.", "option")
    return option_input(data)


async def attachments(form: MultiDictProxy[Any]) -> tuple[Attachment, ...]:
    files = [f for f in form.getall("refs", []) if isinstance(f, FileField)]
    datas = await asyncio.gather(*(asyncio.to_thread(f.file.read) for f in files))
    return tuple(Attachment.from_bytes(f.filename or "image", data, f.content_type or "")
                 for f, data in zip(files, datas, strict=True))


def typed_options(prompt: str) -> OptionInput:
    """The options typed as inline flags in a prompt (none when the flags are malformed)."""
    try:
        return parse_inline(prompt)[1]
    except OptionError:
        return OptionInput()


def title_of(body: dict[str, Any]) -> str:
    """A new thread title from ``{"title": ...}``: one line, not empty."""
    title = body.get("title")
    if not isinstance(title, str) or not title.split():
        raise Refusal(400, "Give the thread a title (some text).", "request")
    title = " ".join(title.split())
    if len(title) > TITLE_LIMIT:
        raise Refusal(400, f"A thread title can be at most {TITLE_LIMIT} characters.", "request")
    return title
