"""Validation of a turn before anything happens: the side-effect-free plan of a turn.

The service plans every turn with :func:`plan_turn` before it downloads or calls anything,
and an adapter may call the service's ``plan`` for an early answer (an ephemeral refusal)
with exactly the same rules and wording.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot import messages
from bot.errors import AttachmentError, OptionError, PromptError
from bot.model import Attachment
from bot.options import ModelCaps, OptionInput, Options, parse_inline, resolve

#: The longest prompt a turn takes; Gemini's image models read far less than this.
MAX_PROMPT_CHARS = 10_000
#: Declared types that are certainly not images (the bytes are checked again later).
_NOT_IMAGES = ("text/", "video/", "audio/", "application/pdf", "application/zip",
               "application/json")


@dataclass(frozen=True)
class TurnPlan:
    """A turn as it will run: its prompt, the options given now and resolved, the files.

    Attributes:
        prompt: the message text without inline flags.
        given: the options given with this turn (these stick to the thread).
        options: every option resolved and validated for the model.
        attachments: the reference images, not yet fetched.
        notices: what the reply should say about how the turn was planned.
    """

    prompt: str
    given: OptionInput
    options: Options
    attachments: tuple[Attachment, ...]
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanLimits:
    """The configured limits a plan checks."""

    defaults: OptionInput
    models: Mapping[str, ModelCaps]
    max_attachment_bytes: int
    max_prompt_chars: int = MAX_PROMPT_CHARS


def given_options(text: str, ui: OptionInput) -> tuple[str, OptionInput]:
    """The prompt and this turn's options; inline flags win over a platform's own fields.

    Raises:
        OptionError: an unknown flag or a flag without its value.
    """
    prompt, inline = parse_inline(text)
    return prompt, inline.over(ui)


def plan_turn(text: str, attachments: Sequence[Attachment], *, ui: OptionInput,
              sticky: OptionInput, limits: PlanLimits) -> TurnPlan:
    """Resolves and checks a turn without side effects.

    Args:
        text: the message text, inline flags included.
        attachments: the files on the message.
        ui: options set through platform UI (slash command fields, selectors).
        sticky: the thread's settings.
        limits: defaults, the model table and size limits.

    Raises:
        ImagebotError: an ``OptionError``, ``PromptError`` or ``AttachmentError`` whose
            message says what to change.
    """
    if len(text) > limits.max_prompt_chars:
        raise PromptError(messages.prompt_too_long(len(text), limits.max_prompt_chars))
    prompt, given = given_options(text, ui)
    options = resolve(given, sticky, limits.defaults, limits.models)
    if not prompt.strip():
        raise PromptError(messages.empty_prompt(bool(attachments)))
    check_attachments(attachments, options, limits.max_attachment_bytes)
    return TurnPlan(prompt=prompt, given=given, options=options,
                    attachments=tuple(attachments))


def check_attachments(attachments: Sequence[Attachment], options: Options,
                      max_bytes: int) -> None:
    """Counts and sizes the files as declared (their bytes are checked once fetched).

    Raises:
        AttachmentError: too many files, a file too big, or a file that is not an image.
    """
    limit = options.caps.max_reference_images
    if attachments and limit == 0:
        raise AttachmentError(messages.no_references(options.caps.label))
    if len(attachments) > limit:
        raise AttachmentError(messages.too_many_images(len(attachments), options.caps.label,
                                                       limit))
    for attachment in attachments:
        if attachment.size and attachment.size > max_bytes:
            raise AttachmentError(messages.attachment_too_big(attachment.name, attachment.size,
                                                              max_bytes))
        if attachment.mime_type.lower().startswith(_NOT_IMAGES):
            raise AttachmentError(messages.not_an_image(attachment.name, attachment.mime_type))


def display_prompt(text: str) -> str:
    """The prompt as people see it (titles, alt text): flags removed, one line."""
    try:
        prompt, _ = parse_inline(text)
    except OptionError:  # a bad flag is reported by the turn itself; show the text as typed
        prompt = text
    return " ".join(prompt.split())


#: Options that apply to their own turn only.
_ONE_OFF = frozenset({"count"})


def sticky_settings(settings: OptionInput, given: OptionInput, options: Options) -> OptionInput:
    """The thread's settings after a turn: the values given now, normalized, stick."""
    # "auto" resets a sticky ratio or size; it resolves to None, so keep the word itself.
    normalized = {name: "auto" if (value := getattr(options, name)) is None else value
                  for name in given.given() if name not in _ONE_OFF}
    return OptionInput.from_dict(normalized).over(settings)
