"""The ``imagebot`` command, the composition's entry point: chat, threads, history, serve, doctor.

Every failure is one line on stderr and one of these exit codes:

* 0: done (also when the reader of the output went away early, as ``| head`` does);
* 1: the turn failed, a ``doctor`` check failed, or the thread was not found;
* 2: a usage or configuration error;
* 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from adapters import cli_batch
from bot.config import ConfigError, Settings, database_password, load_settings
from bot.errors import ImagebotError
from bot.options import OptionInput

logger = logging.getLogger(__name__)

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130

NO_KEY = ("No Gemini API key: set GEMINI_API_KEY (create one at "
          "https://aistudio.google.com/apikey), or pass --offline to use the built-in offline "
          "stand-in (previews only, not Gemini).")


BATCH_NO_KEY = ("No Gemini API key: set GEMINI_API_KEY. Batch jobs run at Gemini for hours, "
                "so the offline stand-in (gone when this command ends) cannot run them.")


class _Parser(argparse.ArgumentParser):
    """A usage error is one line (then exit 2), not the usage text followed by the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text!r}")
    return port


def _chat_parsers(sub: Any) -> None:
    """``imagebot chat`` and ``imagebot use`` (pick another candidate)."""
    chat = sub.add_parser("chat", help="run one turn of a local thread")
    chat.add_argument("--thread", required=True, help="thread name (created on first use)")
    chat.add_argument("--image", action="append", default=[], metavar="PATH",
                      help="reference image (repeatable)")
    chat.add_argument("--model", "-m", help="flash, pro, or a Gemini model id")
    chat.add_argument("--aspect-ratio", "--ar", "--ratio", "--aspect", dest="aspect_ratio",
                      help="e.g. 16:9, or auto")
    chat.add_argument("--size", "--res", "--resolution", dest="size",
                      help="1K, 2K or 4K (pro only), or auto")
    chat.add_argument("--search", action="store_true", default=None,
                      help="ground on Google Search (pro)")
    chat.add_argument("--no-search", dest="search", action="store_false",
                      help="no Google Search grounding")
    chat.add_argument("--image-only", action="store_true", default=None,
                      help="ask for images without text")
    chat.add_argument("--with-text", dest="image_only", action="store_false",
                      help="ask for text along with the images")
    chat.add_argument("--count", "-n", type=int, default=None, metavar="N",
                      help="make N candidates at once (1-4); `imagebot use` picks one")
    chat.add_argument("--out", default="out", help="directory for the images (default: out)")
    chat.add_argument("--thoughts", metavar="DIR",
                      help="also save the drafts the model makes while thinking (Pro) here")
    chat.add_argument("--json", action="store_true",
                      help="print one JSON object (paths, sizes, sources, usage, turn id)")
    chat.add_argument("--offline", action="store_true",
                      help="use the built-in offline stand-in instead of Gemini")
    chat.add_argument("prompt", nargs="+", help="what to draw or change (inline flags work)")

    use = sub.add_parser("use", help="continue a thread from another candidate (U1-U4)")
    use.add_argument("--thread", required=True, help="a name as `imagebot threads` prints it")
    use.add_argument("--turn", help="the turn (id or its start; default: the latest)")
    use.add_argument("number", type=int, choices=range(1, 5), metavar="N",
                     help="the candidate: 1 for U1 … 4 for U4")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="imagebot", description="Gemini image models in Slack, Discord, the web and the CLI.",
        epilog="Exit codes: 0 done, 1 turn or check failed, 2 usage or configuration error, "
               "130 interrupted.")
    parser.add_argument("--config", help="TOML settings file (default: $IMAGEBOT_CONFIG)")
    parser.add_argument("--database-url", help="sqlite:///path or postgresql://user@host/db "
                        "(default: $DATABASE_URL, else ~/.local/share/imagebot/imagebot.sqlite3)")
    sub = parser.add_subparsers(dest="command", required=True)

    _chat_parsers(sub)
    sub.add_parser("threads", help="list stored threads")
    history = sub.add_parser("history", help="show a stored thread")
    history.add_argument("--thread", required=True, help="a name as `imagebot threads` prints it")

    cli_batch.add_parser(sub)

    sub.add_parser("offline-gemini", add_help=False,
                   help="run the offline Gemini stand-in server (see offline-gemini --help)")

    serve = sub.add_parser("serve", help="run the bot: Slack, Discord and the web playground")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=None, help="port (default 8765)")
    serve.add_argument("--offline", action="store_true",
                       help="use the offline stand-in instead of Gemini (replies say so)")
    serve.add_argument("--log-format", choices=["text", "json"], default=None)

    sub.add_parser("doctor", help="check the configuration and every configured endpoint")
    from adapters import cli_usage

    cli_usage.add_commands(sub)  # usage, audit, policy

    migrate = sub.add_parser("migrate-db", help="copy an SQLite database into PostgreSQL")
    migrate.add_argument("--from", dest="source", required=True, metavar="sqlite:///PATH",
                         help="the SQLite database to copy (it is not changed)")
    migrate.add_argument("--to", dest="target", required=True,
                         metavar="postgresql://USER@HOST/DB",
                         help="an empty PostgreSQL database (or schema: ?search_path=NAME)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    try:
        code = _main(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # a closed pipe shows up here, not at exit
    except KeyboardInterrupt:
        print("imagebot: interrupted", file=sys.stderr)
        code = INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        code = OK
    raise SystemExit(code)


def _silence_stdout() -> None:
    """The reader went away (``| head``): drop the rest of the output, quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _main(argv: list[str]) -> int:
    if argv[:1] == ["offline-gemini"]:
        from offline_gemini.__main__ import main as offline_main

        offline_main(argv[1:])
        return OK
    args = _parser().parse_args(argv)
    from bot.logs import setup_logging

    try:
        settings = load_settings(args.config, database_url=args.database_url)
    except (ValueError, OSError) as exc:  # ConfigError is a ValueError
        print(f"imagebot: configuration error: {_one_line(str(exc))}", file=sys.stderr)
        return USAGE
    # One-shot commands print their result; their logs stay quiet unless asked for.
    quiet = args.command not in ("serve", "offline-gemini") and "IMAGEBOT_LOG_LEVEL" not in os.environ
    setup_logging(getattr(args, "log_format", None) or settings.log_format,
                  "WARNING" if quiet else settings.log_level, secrets=_secrets(settings),
                  third_party_debug=settings.debug_third_party)
    try:
        return asyncio.run(_dispatch(args, settings))
    except ConfigError as exc:
        print(f"imagebot: configuration error: {_one_line(str(exc))}", file=sys.stderr)
        return USAGE
    except sqlite3.Error as exc:
        logger.debug("database error", exc_info=True)
        print(f"imagebot: cannot use the database at {settings.database_location()}: "
              f"{_one_line(str(exc))}", file=sys.stderr)
        return USAGE
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        logger.debug("file error", exc_info=True)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"imagebot: {_one_line(exc.strerror or str(exc))}{where}", file=sys.stderr)
        return FAILED
    except Exception as exc:  # one line for the user; the traceback at DEBUG
        logger.debug("unexpected error", exc_info=True)
        if type(exc).__module__.startswith("asyncpg"):  # PostgreSQL refused or failed
            print(f"imagebot: cannot use the database at {settings.database_location()}: "
                  f"{_one_line(str(exc))}", file=sys.stderr)
            return USAGE
        print(f"imagebot: unexpected error: {type(exc).__name__}: {_one_line(str(exc))} "
              "(IMAGEBOT_LOG_LEVEL=DEBUG shows the traceback)", file=sys.stderr)
        return FAILED


def _secrets(settings: Settings) -> list[str]:
    return [s for s in (settings.gemini_api_key, settings.slack_bot_token,
                        settings.slack_app_token, settings.slack_signing_secret,
                        settings.slack_client_secret, settings.discord_token,
                        settings.web_token, settings.web_admin_token,
                        database_password(settings.database_url)) if s]


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        from adapters.serve import serve

        return await serve(settings, host=args.host, port=args.port, offline=args.offline)
    if args.command == "doctor":
        from adapters.doctor import doctor

        return await doctor(settings)
    if args.command == "migrate-db":
        return await _migrate_db(args.source, args.target)
    return await _local(args, settings)


async def _local(args: argparse.Namespace, settings: Settings) -> int:
    from adapters import cli as cli_adapter
    from adapters import cli_usage
    from adapters.composition import open_app

    offline = bool(getattr(args, "offline", False))
    gemini = args.command == "chat" or (args.command == "batch"
                                        and cli_batch.needs_gemini(args))
    if gemini and not offline and not settings.gemini_api_key:
        print(f"imagebot: {NO_KEY if args.command == 'chat' else BATCH_NO_KEY}",
              file=sys.stderr)
        return USAGE
    try:
        async with open_app(settings, offline=offline, require_gemini=gemini) as core:
            if args.command == "batch":
                return await cli_batch.run(core, args)
            if args.command in cli_usage.COMMANDS:
                return await cli_usage.run(args, core)
            if args.command == "threads":
                await cli_adapter.list_threads(core)
                return OK
            if args.command == "use":
                if await cli_adapter.use(core, thread=args.thread, number=args.number,
                                         turn=args.turn):
                    return OK
                print(f"imagebot: no thread named {args.thread!r} (or no such turn in it)",
                      file=sys.stderr)
                return FAILED
            if args.command == "history":
                if await cli_adapter.show_history(core, args.thread):
                    return OK
                print(f"imagebot: no thread named {args.thread!r} (`imagebot threads` lists "
                      "them)", file=sys.stderr)
                return FAILED
            options = OptionInput(model=args.model, aspect_ratio=args.aspect_ratio,
                                  size=args.size, search=args.search, image_only=args.image_only,
                                  count=args.count)
            status = sys.stderr if sys.stderr.isatty() else None
            await cli_adapter.chat(core, thread=args.thread, prompt=" ".join(args.prompt),
                                   image_paths=args.image, options=options, out_dir=args.out,
                                   status=status, thoughts_dir=args.thoughts,
                                   as_json=args.json)
            return OK
    except ImagebotError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": exc.user_message, "kind": str(exc.kind)}))
        print(f"imagebot: {_one_line(exc.user_message)}", file=sys.stderr)
        return FAILED
    except (FileNotFoundError, ValueError) as exc:
        print(f"imagebot: {exc}", file=sys.stderr)
        return USAGE


async def _migrate_db(source: str, target: str) -> int:
    from bot.migrate import migrate_database

    def progress(line: str) -> None:
        print(f"imagebot: {line}", file=sys.stderr, flush=True)

    report = await migrate_database(source, target, progress=progress)
    print(f"copied {report.summary()}")
    return OK


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    main()
