"""Failures a user sees: each carries a kind (one enum, for metrics and status codes) and a
message that says what to try."""

from __future__ import annotations

import re
from enum import StrEnum


class ErrorKind(StrEnum):
    """Every category of failure; adapters map these (HTTP status, metrics labels)."""

    ERROR = "error"
    INTERNAL = "internal"
    CONFIG = "config"
    STARTUP = "startup"
    OPTION = "option"
    ATTACHMENT = "attachment"
    PROMPT = "prompt"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    POLICY = "policy"
    QUOTA = "quota"
    CANCELLED = "cancelled"
    # Gemini answered without a usable result.
    BLOCKED = "blocked"
    SAFETY = "safety"
    RECITATION = "recitation"
    NO_IMAGE = "no_image"
    EMPTY = "empty"
    GENERATION = "generation"
    # Gemini could not be reached or refused the request.
    SERVICE = "service"
    RATE_LIMIT = "rate_limit"
    OUTAGE = "outage"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    AUTH = "auth"
    MODEL = "model"
    BAD_REQUEST = "bad_request"


class ImagebotError(Exception):
    """A failure that is reported to the user; the thread's history is left as it was.

    Attributes:
        kind: the category (an :class:`ErrorKind`).
        user_message: what the user is told: what happened and what to try.
    """

    kind: ErrorKind = ErrorKind.ERROR
    #: User ids the core itself mentions as ``<@id>`` in the message (an admin to ask);
    #: renderers may show exactly these as mentions and escape everything else.
    mentions: tuple[str, ...] = ()

    def __init__(self, user_message: str, *, kind: ErrorKind | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        if kind is not None:
            self.kind = ErrorKind(kind)


class ConfigError(ImagebotError, ValueError):
    """The configuration cannot work (a missing key, a bad value). The message is one line:
    the variable (or file and key), what it accepts and what it got."""

    kind = ErrorKind.CONFIG


class OptionError(ImagebotError):
    """An invalid or unknown option value; no API call is made."""

    kind = ErrorKind.OPTION


class AttachmentError(ImagebotError):
    """A file that cannot be used as a reference image."""

    kind = ErrorKind.ATTACHMENT


class PromptError(ImagebotError):
    """A prompt that cannot be sent (empty, too long)."""

    kind = ErrorKind.PROMPT


class TooLargeError(ImagebotError):
    """The request would exceed Gemini's request size."""

    kind = ErrorKind.TOO_LARGE


class GenerationError(ImagebotError):
    """Gemini answered, but with no usable result (safety block, no image...)."""

    kind = ErrorKind.GENERATION


class ServiceError(ImagebotError):
    """Gemini could not be reached or refused the request (rate limit, outage, timeout)."""

    kind = ErrorKind.SERVICE


class NotFoundError(ImagebotError):
    """A turn, thread or image that does not exist (a stale button, a deleted result)."""

    kind = ErrorKind.NOT_FOUND


class ForbiddenError(ImagebotError):
    """The person asking may not do this (delete someone else's result)."""

    kind = ErrorKind.FORBIDDEN


class CancelledTurn(ImagebotError):
    """A turn cancelled (the bot is shutting down, or the requester cancelled it)."""

    kind = ErrorKind.CANCELLED


class PolicyError(ImagebotError):
    """A team policy refuses the turn (who may ask, models, sizes); no API call is made.

    Attributes:
        rule: the policy rule that refused (``allowed_models``, ``deny_users``...).
    """

    kind = ErrorKind.POLICY

    def __init__(self, user_message: str, *, rule: str = "") -> None:
        super().__init__(user_message)
        self.rule = rule
        # Policy wording is built from configuration only (rules, scopes, admins), never
        # from what a user typed, so the admins it names may show as mentions.
        self.mentions = tuple(re.findall(r"<@([A-Za-z0-9]+)>", user_message))


class QuotaError(PolicyError):
    """A daily quota or budget has no room left for the turn; no API call is made."""

    kind = ErrorKind.QUOTA


class CancelledByUser(CancelledTurn):
    """The requester (or an admin) pressed Cancel; unlike a shutdown, nobody needs to send
    it again. Nothing was stored."""
