"""Log lines: one record is one line (control characters escaped), long messages are cut,
and third-party payload dumps never carry image bytes unless asked for."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from bot.logs import THIRD_PARTY_LOGGERS, setup_logging
from bot.model import Attachment, Author, IncomingMessage, ThreadKey
from tests import corpus


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in THIRD_PARTY_LOGGERS}
    yield
    root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


FORGED = "hello\n2026-01-01 00:00:00,000 ERROR bot.service: forged\r\x1b[31mred\u2028x"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_message_with_control_characters_is_one_escaped_line(capsys, fmt):
    setup_logging(fmt, "INFO")
    logging.getLogger("test.forge").warning("user said %s", FORGED)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n")
    line = err.rstrip("\n")
    for raw in ("\r", "\x1b", "\u2028"):
        assert raw not in line
    if fmt == "json":
        assert json.loads(line)["message"] == f"user said {FORGED}"
    else:
        assert line.endswith(
            r"user said hello\n2026-01-01 00:00:00,000 ERROR bot.service: forged\r\x1b[31mred"
            r"\u2028x")


def test_a_traceback_cannot_forge_a_record_in_text(capsys):
    setup_logging("text", "INFO")
    try:
        raise ValueError("bad\n2026-01-01 00:00:00,000 INFO bot: forged")
    except ValueError:
        logging.getLogger("test.forge").exception("failed")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("test.forge: failed")
    assert lines[1:] and all(line.startswith("    ") for line in lines[1:])
    assert "    2026-01-01 00:00:00,000 INFO bot: forged" in lines


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_very_long_messages_are_cut(capsys, fmt):
    setup_logging(fmt, "INFO")
    logging.getLogger("test.long").info("x" * 100_000)
    err = capsys.readouterr().err
    assert len(err) < 5000
    assert "… (96000 more chars)" in err


def test_secrets_are_still_redacted_after_cutting(capsys):
    setup_logging("text", "INFO", secrets=["a-signing-secret-value"])
    logging.getLogger("test.long").info("%s", "a-signing-secret-value " * 1000)
    err = capsys.readouterr().err
    assert "a-signing-secret" not in err and "[redacted]" in err


async def turn_log(core, capsys, *, third_party_debug: bool) -> tuple[str, list[bytes]]:
    setup_logging("text", "DEBUG", third_party_debug=third_party_debug)
    image = corpus.noise_png(64, 64)
    message = IncomingMessage(author=Author("U1", "alice"), text="make it blue",
                              attachments=(Attachment.from_bytes("noise.png", image),))
    reply = await core.service.handle(ThreadKey("test", "w", "c", "logs"), message)
    await core.service.store.get_blobs({i.sha256 for i in reply.images})
    return capsys.readouterr().err, [image, *(i.data for i in reply.images)]


def traces(data: bytes) -> list[str]:
    """How bytes show up in a log line: repr, hex or base64 of a stretch of them."""
    middle = data[40:72]
    return [repr(middle)[2:-1], middle.hex(), base64.b64encode(data).decode()[40:80]]


async def test_debug_logging_writes_no_image_bytes(core, capsys):
    err, images = await turn_log(core, capsys, third_party_debug=False)
    assert logging.getLogger("bot.store").isEnabledFor(logging.DEBUG)  # DEBUG is on...
    for data in images:  # ...but neither the reference nor the generated image is logged
        for trace in traces(data):
            assert trace not in err


async def test_third_party_debug_is_an_explicit_opt_in(core, capsys):
    err, images = await turn_log(core, capsys, third_party_debug=True)
    assert "aiosqlite" in err
    assert any(trace in err for data in images for trace in traces(data))
