"""Log redaction and reply wording."""

import logging

from bot.config import DEFAULT_MODELS
from bot.logs import RedactingFilter, setup_logging
from bot.model import Reply, ThreadKey, Usage
from bot.options import OptionInput, resolve
from bot.presentation import OFFLINE_BADGE, footer, split_text


def test_secrets_and_token_shapes_are_redacted(capsys):
    setup_logging("json", "INFO", secrets=["my-signing-secret-123"])
    log = logging.getLogger("test.redact")
    log.info("secret %s and token %s", "my-signing-secret-123", "xoxb-1234567890-abcdefghij")
    try:
        raise ValueError("bad key AIzaSyA1234567890abcdefghijklmnopqrstuv")
    except ValueError:
        log.exception("failed")
    err = capsys.readouterr().err
    assert "my-signing-secret-123" not in err and "xoxb-1234567890" not in err
    assert "AIzaSyA1234567890" not in err
    assert err.count("[redacted]") >= 3
    assert '"level": "INFO"' in err


def test_filter_handles_args():
    record = logging.LogRecord("x", logging.INFO, "f", 1, "token=%s", ("xapp-1-A0-12345678",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "token=[redacted]"


def test_split_text_prefers_boundaries():
    text = ("word " * 500).strip()
    chunks = split_text(text, 2000)
    assert all(len(c) <= 2000 for c in chunks)
    assert " ".join(chunks) == text
    assert split_text("a" * 4500, 2000) == ["a" * 2000, "a" * 2000, "a" * 500]
    para = "first paragraph.\n\n" + "b" * 30
    assert split_text(para, 25) == ["first paragraph.", "b" * 25, "b" * 5]


def test_footer_names_settings_time_tokens_and_offline():
    options = resolve(OptionInput(model="pro", size="2K", aspect_ratio="16:9"), OptionInput(),
                      OptionInput(), DEFAULT_MODELS)
    reply = Reply(turn_id="t", thread=ThreadKey("cli", "", "", "x"), parts=(),
                  usage=Usage(total_tokens=2345), options=options, elapsed=12.34, offline=True)
    assert footer(reply) == f"{OFFLINE_BADGE} · Nano Banana Pro · 2K · 16:9 · 12.3s · 2,345 tokens"
