"""The side-effect-free plan of a turn: one set of rules and words for every surface."""

from __future__ import annotations

import pytest

from bot.config import load_settings
from bot.errors import AttachmentError, ImagebotError, OptionError, PromptError
from bot.model import Attachment
from bot.options import FLASH, PRO, OptionInput
from bot.planning import PlanLimits, display_prompt, plan_turn, sticky_settings


@pytest.fixture
def limits() -> PlanLimits:
    settings = load_settings(env={}, max_attachment_bytes=1_000_000)
    return PlanLimits(defaults=settings.option_defaults, models=settings.models,
                      max_attachment_bytes=settings.max_attachment_bytes)


def declared(name: str, size: int, mime: str) -> Attachment:
    async def fetch() -> bytes:
        raise AssertionError("a plan never downloads")

    return Attachment(name=name, mime_type=mime, fetch=fetch, size=size)


@pytest.mark.parametrize(("text", "ui", "files", "error", "words"), [
    ("a cat", OptionInput(model="flash", size="4K"), (), OptionError, "fixed size"),
    ("a cat --wat", OptionInput(), (), OptionError, "Unknown flag `--wat`"),
    ("--ar 16:9", OptionInput(), (), PromptError, "The prompt is empty"),
    ("a cat", OptionInput(aspect_ratio="7:3"), (), OptionError, "not a supported aspect ratio"),
    ("x", OptionInput(), (declared("doc.pdf", 10, "application/pdf"),), AttachmentError,
     "is not an image"),
    ("x", OptionInput(), (declared("big.png", 2_000_000, "image/png"),), AttachmentError,
     "at most 977 KB"),
    ("x", OptionInput(model="flash"),
     tuple(declared(f"{i}.png", 10, "image/png") for i in range(4)), AttachmentError,
     "at most 3 reference images"),
    ("y" * 10_001, OptionInput(), (), PromptError, "at most 10,000"),
])
def test_refusals_name_the_problem(text: str, ui: OptionInput, files: tuple[Attachment, ...],
                                   error: type[ImagebotError], words: str,
                                   limits: PlanLimits) -> None:
    with pytest.raises(error) as caught:
        plan_turn(text, files, ui=ui, sticky=OptionInput(), limits=limits)
    assert words in caught.value.user_message


def test_inline_flags_win_over_platform_fields(limits: PlanLimits) -> None:
    ui = OptionInput(model="pro", aspect_ratio="16:9", size="4K", search=True)
    plan = plan_turn("a dog --ar 1:1 --size 1K --no-search", (), ui=ui, sticky=OptionInput(),
                     limits=limits)
    assert plan.prompt == "a dog"
    assert (plan.options.aspect_ratio, plan.options.size, plan.options.search) == (
        "1:1", "1K", False)
    assert plan.options.model == PRO


def test_plan_sees_the_thread_settings(limits: PlanLimits) -> None:
    with pytest.raises(OptionError, match="cannot ground on Google Search"):
        plan_turn("a cat", (), ui=OptionInput(search=True), sticky=OptionInput(model="flash"),
                  limits=limits)
    plan = plan_turn("a cat", (), ui=OptionInput(), sticky=OptionInput(model="flash"),
                     limits=limits)
    assert plan.options.model == FLASH and plan.given == OptionInput()


def test_display_prompt_and_sticky_settings(limits: PlanLimits) -> None:
    assert display_prompt("make it --bogus blue") == "make it --bogus blue"
    assert display_prompt("a  red\nfox --ar 16:9") == "a red fox"
    plan = plan_turn("a fox --ar auto --size 2K", (), ui=OptionInput(),
                     sticky=OptionInput(aspect_ratio="16:9", model="pro"), limits=limits)
    after = sticky_settings(OptionInput(aspect_ratio="16:9", model="pro"), plan.given,
                            plan.options)
    assert after == OptionInput(model="pro", aspect_ratio="auto", size="2K")
