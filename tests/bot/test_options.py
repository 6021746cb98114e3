"""Option parsing and resolution: pure functions."""

import pytest

from bot.config import DEFAULT_MODELS
from bot.errors import OptionError
from bot.options import FLASH, PRO, OptionInput, parse_inline, resolve, resolve_model

DEFAULTS = OptionInput(model="pro")


EMPTY = OptionInput()


def res(turn=EMPTY, thread=EMPTY, defaults=DEFAULTS):
    return resolve(turn, thread, defaults, DEFAULT_MODELS)


def test_inline_flags_are_removed_from_prompt():
    prompt, given = parse_inline("a red fox --ar 16:9 in snow --size 4k --model pro --search")
    assert prompt == "a red fox in snow"
    assert given == OptionInput(model="pro", aspect_ratio="16:9", size="4k", search=True)


def test_equals_form_and_dashes_from_chat_apps():
    prompt, given = parse_inline("poster \u2014ar=9:16 \u2013image-only")
    assert prompt == "poster"
    assert given == OptionInput(aspect_ratio="9:16", image_only=True)


def test_documented_aliases_inline():
    prompt, given = parse_inline("a fox -m flash --ratio 3:2 --res 2k --no-search --with-text")
    assert prompt == "a fox"
    assert given == OptionInput(model="flash", aspect_ratio="3:2", size="2k", search=False,
                                image_only=False)
    assert parse_inline("a fox -m=pro")[1] == OptionInput(model="pro")
    with pytest.raises(OptionError, match="`-m` needs a value"):
        parse_inline("a fox -m")


def test_prose_with_dashes_is_not_a_flag():
    prompt, given = parse_inline("a well-known logo -- bold, 2--3 colours - x -mm")
    assert prompt == "a well-known logo -- bold, 2--3 colours - x -mm"
    assert given == OptionInput()


def test_unknown_flag_lists_valid_flags():
    with pytest.raises(OptionError) as err:
        parse_inline("cat --stylize 100")
    assert "--stylize" in err.value.user_message and "--ar" in err.value.user_message


def test_flag_without_value():
    with pytest.raises(OptionError, match="needs a value"):
        parse_inline("cat --ar")


def test_size_any_case_sent_uppercase():
    assert res(OptionInput(size="4k")).size == "4K"


def test_aliases_and_passthrough():
    assert resolve_model("flash") == FLASH
    assert resolve_model("Pro") == PRO
    assert resolve_model("gemini-9-ultra-image") == "gemini-9-ultra-image"
    assert resolve_model("models/gemini-3-pro-image-preview") == PRO


def test_unknown_alias_lists_aliases():
    with pytest.raises(OptionError) as err:
        res(OptionInput(model="ultra"))
    assert "flash" in err.value.user_message and "pro" in err.value.user_message


def test_bad_ratio_lists_the_ten():
    with pytest.raises(OptionError) as err:
        res(OptionInput(aspect_ratio="7:3"))
    for ratio in ("1:1", "21:9", "9:16"):
        assert ratio in err.value.user_message


def test_bad_size():
    with pytest.raises(OptionError, match="1K, 2K, 4K"):
        res(OptionInput(size="8K"))


def test_size_refused_for_flash_with_reason():
    with pytest.raises(OptionError, match="fixed size"):
        res(OptionInput(model="flash", size="2K"))


def test_sticky_size_dropped_when_switching_to_flash():
    opts = res(OptionInput(model="flash"), thread=OptionInput(size="2K", model="pro"))
    assert opts.model == FLASH and opts.size is None


def test_precedence_turn_then_thread_then_defaults():
    defaults = OptionInput(model="pro", aspect_ratio="1:1", size="1K")
    thread = OptionInput(aspect_ratio="16:9", size="2K")
    opts = res(OptionInput(size="4K"), thread=thread, defaults=defaults)
    assert (opts.aspect_ratio, opts.size) == ("16:9", "4K")


def test_search_on_flash_refused_when_asked():
    with pytest.raises(OptionError, match="Google Search"):
        res(OptionInput(model="flash", search=True))


def test_summary_names_settings():
    opts = res(OptionInput(size="2k", aspect_ratio="16:9", search=True))
    assert opts.summary() == "Nano Banana Pro · 2K · 16:9 · search"
