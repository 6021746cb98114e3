"""The ``imagebot`` command: one-line errors with documented exit codes, option aliases,
the threads table, history by any listed name, and a database in one known place."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters import cli
from adapters.main import _parser, main
from bot.model import Author, IncomingMessage, ThreadKey

ROOT = Path(__file__).resolve().parents[2]
PREFIXES = ("GEMINI_", "GOOGLE_", "SLACK_", "DISCORD_", "IMAGEBOT_", "DATABASE_URL",
            "XDG_DATA_HOME")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No configuration from the machine running the tests; HOME and the folder are fresh."""
    for name in list(os.environ):
        if name.startswith(PREFIXES):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return home


def run(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    return done.value.code, out, err


@pytest.mark.parametrize(("command", "env", "words"), [
    ("doctor", {"DATABASE_URL": "postgresql://db"},
     "DATABASE_URL must be postgresql://user[:password]@host[:port]/database"),
    ("threads", {"DATABASE_URL": "mysql-ish"}, "DATABASE_URL must be sqlite:////absolute"),
    ("serve", {"DATABASE_URL": "sqlite:////nonexistent/dir/x.db"},
     "the folder /nonexistent/dir does not exist"),
    ("serve", {"IMAGEBOT_PORT": "abc"}, "IMAGEBOT_PORT must be a whole number"),
    ("serve", {"IMAGEBOT_LOG_LEVEL": "LOUD"}, "IMAGEBOT_LOG_LEVEL must be one of DEBUG"),
    ("serve", {"IMAGEBOT_LOG_FORMAT": "yaml"}, "IMAGEBOT_LOG_FORMAT must be text or json"),
    ("doctor", {"IMAGEBOT_DEFAULT_MODEL": "dalle"}, "IMAGEBOT_DEFAULT_MODEL must be flash, pro"),
    ("doctor", {"IMAGEBOT_MAX_ATTACHMENT_BYTES": "5000"}, "at least 65536 (64 KB), got 5000"),
    ("doctor", {"IMAGEBOT_CONFIG": "/nonexistent/x.toml"}, "IMAGEBOT_CONFIG: no such settings"),
])
def test_configuration_errors_are_one_line_and_exit_2(clean_env, monkeypatch, capsys,
                                                      command, env, words):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = run([command], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("imagebot: configuration error: ")
    assert words in err, err
    assert not Path("/nonexistent").exists()


@pytest.mark.parametrize("argv", [["serve", "--port", "99999"], ["serve", "--port", "x"],
                                  ["--config", "missing.toml", "threads"],
                                  ["chat", "--thread", "t"], ["history"], ["explode"]])
def test_usage_errors_are_one_line_and_exit_2(clean_env, capsys, argv):
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("imagebot"), err


def test_an_invalid_toml_file_is_one_line(clean_env, capsys):
    Path("bad.toml").write_text("port = [\n")
    code, _, err = run(["--config", "bad.toml", "doctor"], capsys)
    assert code == 2 and err.count("\n") == 1 and "bad.toml is not valid TOML" in err


def test_documented_chat_aliases_parse():
    args = _parser().parse_args(["chat", "--thread", "t", "--ratio", "16:9", "--res", "2k",
                                 "-m", "flash", "--no-search", "--with-text", "a", "fox"])
    assert (args.aspect_ratio, args.size, args.model) == ("16:9", "2k", "flash")
    assert args.search is False and args.image_only is False
    args = _parser().parse_args(["chat", "--thread", "t", "--search", "--image-only", "fox"])
    assert args.search is True and args.image_only is True
    args = _parser().parse_args(["chat", "--thread", "t", "fox"])
    assert args.search is None and args.image_only is None


def test_chat_with_aliases_and_the_default_database(clean_env, capsys, tmp_path):
    code, out, err = run(["chat", "--offline", "--thread", "logo", "--ratio", "16:9", "-m",
                          "flash", "--out", str(tmp_path / "out"), "a fox"], capsys)
    assert code == 0, err
    assert "Nano Banana · 16:9" in out
    database = clean_env / ".local" / "share" / "imagebot" / "imagebot.sqlite3"
    assert database.is_file() and not Path("data").exists()
    code, out, _ = run(["threads"], capsys)
    assert code == 0 and out.splitlines()[1].startswith("logo ")
    code, out, _ = run(["doctor"], capsys)
    assert f"database: {database} (default location" in out


def test_a_turn_that_fails_exits_1(clean_env, capsys, tmp_path):
    code, out, err = run(["chat", "--offline", "--thread", "t", "--out", str(tmp_path),
                          "a fox --size 9K"], capsys)
    assert code == 1 and err.count("\n") == 1 and "9K" in err


def test_interrupted_exits_130(clean_env, capsys, monkeypatch):
    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr("adapters.main._main", interrupted)
    code, _, err = run(["threads"], capsys)
    assert code == 130 and err == "imagebot: interrupted\n"


def test_a_closed_output_pipe_is_not_a_traceback(clean_env, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "adapters", "threads"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head -0`: the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert err == "", err


async def test_threads_table_and_history_by_any_listed_name(core):
    author = Author("U1", "alice")
    web = ThreadKey("web", "", "", "ea38c0ffee")
    await core.service.handle(web, IncomingMessage(author=author, text="a cat --ar 16:9"))
    local = cli.thread_key("logo")
    for text in ("a fox", "make it blue"):
        await core.service.handle(local, IncomingMessage(author=author, text=text))
    out = io.StringIO()
    await cli.list_threads(core, out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["THREAD", "TURNS", "UPDATED", "SETTINGS", "TITLE"]
    assert lines[-1] == "2 threads"
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert set(rows) == {"logo", "web///ea38c0ffee"}
    end = lines[0].index("TURNS") + len("TURNS")  # numbers end under the header's end
    assert rows["logo"][end - 1:end + 1] == "2 " and rows["web///ea38c0ffee"][end - 1:end + 1] == "1 "
    assert len({line.index(":") for line in lines[:-1] if ":" in line}) == 1  # UPDATED aligned
    for name, turns in (("web///ea38c0ffee", "1 turn;"), ("logo", "2 turns;")):
        out = io.StringIO()
        assert await cli.show_history(core, name, out)
        assert f"thread {name}: {turns}" in out.getvalue()
    assert not await cli.show_history(core, "web///nope", io.StringIO())


async def test_commands_that_only_read_never_import_google_genai(core, clean_env):
    """`threads` and `history` answer from SQLite; importing google.genai costs ~0.6 s."""
    import asyncio

    author = Author("U1", "alice")
    await core.service.handle(cli.thread_key("logo"), IncomingMessage(author, "a logo"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": core.settings.database_url}
    for command in (["threads"], ["history", "--thread", "logo"]):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-X", "importtime", "-m", "adapters", *command, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]
        assert "a logo" in out.decode()
        imported = [line.rsplit("|", 1)[-1].strip() for line in err.decode().splitlines()
                    if line.startswith("import time:")]
        assert "bot.service" in imported, "the import list was read"
        assert not [m for m in imported if m.startswith("google.genai")], command
