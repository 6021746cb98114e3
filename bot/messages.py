"""Every sentence a user may see about a turn's lifecycle, in one place for every surface.

Adapters format these for their platform (blocks, embeds, JSON) but never reword them.
"""

from __future__ import annotations

from bot.presentation import format_size

INTERNAL_ERROR = ("Something went wrong inside imagebot, so this request was not completed. "
                  "Nothing was saved; try again.")
QUEUED = "Waiting for the previous turn in this thread to finish. Yours starts next."
STOPPING = ("imagebot is restarting, so this request was not started. Nothing was saved; "
            "send it again in a moment.")
RESTART_CANCELLED = ("The bot was restarting, so this request was cancelled before it finished. "
                     "Nothing was saved; send it again.")
GONE = "That result was deleted, so its buttons no longer do anything."
DELETED = "Deleted: the result is removed here and from the conversation history."
OFFLINE_NOTICE = "Offline preview: made by imagebot's offline stand-in, not by Gemini."
NO_IMAGE_NOTICE = ("No image this time: the model answered in text only. "
                   "Ask for the image explicitly, or try again.")
FLAGS_ONLY = " Flags alone (like `--ar 16:9`) are not a prompt."

# --- live progress and Cancel ------------------------------------------------------------

#: Each stage of a running turn, as a status line names it.
STAGES = {"queued": "Waiting", "sending": "Generating", "thinking": "Thinking",
          "drawing": "Drawing", "finishing": "Finishing"}
CANCEL_NOT_YOURS = ("Only the person who asked for this, or an admin, can cancel it.")
CANCEL_GONE = "That request is no longer running, so there is nothing to cancel."
CANCELLING = "Cancelling…"
NO_DRAFTS = ("This result has no draft images (only Nano Banana Pro shows the drafts it "
             "makes while thinking).")
DRAFTS_HEADING = "Drafts Gemini made while thinking (not part of the conversation):"


def queued(position: int) -> str:
    """The status of a turn waiting in its thread's line, ``position`` turns from the front."""
    if position <= 1:
        return QUEUED
    return (f"Waiting for {position} earlier turns in this thread to finish. "
            "Yours starts after them.")


def busy(ahead: int) -> str:
    """The status of a turn waiting for a free place at Gemini (the worker's capacity)."""
    others = "" if ahead <= 0 else f" ({ahead} other request{'s' if ahead != 1 else ''} first)"
    return f"Waiting for a free slot: this bot is busy with other requests{others}."


def live_status(stage: str, *, elapsed: float, drafts: int = 0, settings: str = "") -> str:
    """``Thinking… 12 s · 1 draft · Nano Banana Pro · 4K · 16:9``."""
    bits = [f"{STAGES.get(stage, stage.capitalize())}… {int(elapsed)} s"]
    if drafts:
        bits.append(f"{drafts} draft" + ("" if drafts == 1 else "s"))
    if settings:
        bits.append(settings)
    return " · ".join(bits)


def cancelled(by: str) -> str:
    who = f" by {by}" if by else ""
    return f"Cancelled{who}. Nothing was saved; this thread carries on as before."


def draft_caption(number: int) -> str:
    return f"Draft {number}, still thinking…"


def empty_prompt(with_attachments: bool) -> str:
    return ("The prompt is empty. Say what to draw or what to change"
            + (" in the attached image." if with_attachments else ".") + FLAGS_ONLY)


def prompt_too_long(length: int, limit: int) -> str:
    return (f"The prompt is {length:,} characters long; imagebot takes at most {limit:,}. "
            "Shorten it, or split the request over several turns.")


def too_many_images(count: int, label: str, limit: int) -> str:
    return (f"{count} images attached, but {label} takes at most {limit} reference images per "
            "message" + (". Nano Banana Pro takes up to 14." if limit < 14 else ".")
            + " Images made earlier in this thread don't need attaching again.")


def attachment_too_big(name: str, size: int, limit: int) -> str:
    return (f"`{name}` is {format_size(size)}; reference images can be at most "
            f"{format_size(limit)}. Resize or compress it and attach it again.")


def not_an_image(name: str, mime_type: str) -> str:
    return (f"`{name}` is not an image ({mime_type}). Attach PNG, JPEG, WebP or HEIC images "
            "(GIF, BMP and TIFF are converted).")


def no_references(label: str) -> str:
    return (f"{label} makes images from the prompt alone and takes no reference images. "
            "To edit or combine images, use `--model pro` (Nano Banana Pro) or `--model flash`.")


def one_shot_notice(label: str) -> str:
    """Said once per thread, on its first Imagen turn."""
    return (f"{label} makes each image from the prompt alone: it does not see this "
            "conversation. Your next message here with a Gemini model (`--model pro` or "
            "`--model flash`) edits this result, which goes in as a reference image.")


def carried_notice(label: str, count: int) -> str:
    """Said on the Gemini turn that takes an Imagen result as its reference."""
    what = "image" if count == 1 else f"{count} images"
    return f"Edited the {label} {what} from the previous turn (sent as a reference)."


def model_unavailable(label: str, model: str, detail: str) -> str:
    detail = f" Gemini said: {detail}" if detail else ""
    return (f"{label} ({model}) is not available to this Gemini API key.{detail} "
            "Use `--model pro` or `--model flash` instead.")


def some_withheld(label: str, withheld: int, asked: int) -> str:
    return (f"{label} withheld {withheld} of the {asked} images under its safety filter; "
            "the others are here.")


def candidates_notice(count: int, chosen: int, failed: int, *, one_shot: bool) -> str:
    """Said on a turn with candidates: which one the thread continues from, and how to pick."""
    lost = f" {failed} of them failed (the reason is shown in its place)." if failed else ""
    if one_shot:
        return (f"{count} candidates.{lost} U{chosen} is the one a Gemini turn here would "
                "edit, until you pick another with its Use button.")
    return (f"{count} candidates.{lost} U{chosen} finished first, so the conversation continues "
            "from it until you pick another with its Use button.")


def chosen_text(number: int, who: str = "") -> str:
    by = f" (chosen by {who})" if who else ""
    return f"Continuing from U{number}{by}: the next message in this thread builds on it."


def moved_on(number: int, chosen: int) -> str:
    return (f"The conversation has gone on from U{chosen} since these candidates were made, so "
            f"U{number} can no longer be chosen. Reroll makes a new set.")


def picked_notice(count: int, chosen: int) -> str:
    """A turn's candidates notice once someone picked one with Use."""
    return (f"{count} candidates. The conversation continues from U{chosen}, picked with its "
            "Use button.")
