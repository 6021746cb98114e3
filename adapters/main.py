"""The ``imagebot`` command, the composition's entry point: chat, threads, history, serve, doctor."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from bot.config import Settings, load_settings
from bot.errors import ImagebotError
from bot.options import OptionInput

logger = logging.getLogger(__name__)

NO_KEY = ("No Gemini API key: set GEMINI_API_KEY (create one at "
          "https://aistudio.google.com/apikey), or pass --offline to use the built-in offline "
          "stand-in (previews only, not Gemini).")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagebot", description="Gemini image models in Slack, Discord, the web and the CLI.")
    parser.add_argument("--config", help="TOML settings file (default: $IMAGEBOT_CONFIG)")
    parser.add_argument("--database-url", help="sqlite:///path (default: $DATABASE_URL or "
                        "sqlite:///data/imagebot.sqlite3)")
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="run one turn of a local thread")
    chat.add_argument("--thread", required=True, help="thread name (created on first use)")
    chat.add_argument("--image", action="append", default=[], metavar="PATH",
                      help="reference image (repeatable)")
    chat.add_argument("--model", help="flash, pro, or a Gemini model id")
    chat.add_argument("--aspect-ratio", "--ar", dest="aspect_ratio", help="e.g. 16:9")
    chat.add_argument("--size", help="1K, 2K or 4K (pro only)")
    chat.add_argument("--search", action="store_true", default=None,
                      help="ground on Google Search (pro)")
    chat.add_argument("--image-only", action="store_true", default=None,
                      help="ask for images without text")
    chat.add_argument("--out", default="out", help="directory for the images (default: out)")
    chat.add_argument("--offline", action="store_true",
                      help="use the built-in offline stand-in instead of Gemini")
    chat.add_argument("prompt", nargs="+", help="what to draw or change")

    sub.add_parser("threads", help="list stored threads")
    history = sub.add_parser("history", help="show a stored thread")
    history.add_argument("--thread", required=True)

    sub.add_parser("offline-gemini", add_help=False,
                   help="run the offline Gemini stand-in server (see offline-gemini --help)")

    serve = sub.add_parser("serve", help="run the bot: Slack, Discord and the web playground")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8765)")
    serve.add_argument("--offline", action="store_true",
                       help="use the offline stand-in instead of Gemini (replies say so)")
    serve.add_argument("--log-format", choices=["text", "json"], default=None)

    sub.add_parser("doctor", help="check the configuration and every configured endpoint")
    from adapters import cli_usage

    cli_usage.add_commands(sub)  # usage, audit, policy
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["offline-gemini"]:
        from offline_gemini.__main__ import main as offline_main

        offline_main(argv[1:])
        return
    args = _parser().parse_args(argv)
    from bot.logs import setup_logging

    try:
        settings = load_settings(args.config, database_url=args.database_url)
    except (ValueError, OSError) as exc:
        print(f"imagebot: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    # One-shot commands print their result; their logs stay quiet unless asked for.
    quiet = args.command not in ("serve", "offline-gemini") and "IMAGEBOT_LOG_LEVEL" not in os.environ
    setup_logging(getattr(args, "log_format", None) or settings.log_format,
                  "WARNING" if quiet else settings.log_level, secrets=_secrets(settings))
    try:
        code = asyncio.run(_dispatch(args, settings))
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


def _secrets(settings: Settings) -> list[str]:
    return [s for s in (settings.gemini_api_key, settings.slack_bot_token,
                        settings.slack_app_token, settings.slack_signing_secret,
                        settings.discord_token, settings.web_token,
                        settings.web_admin_token) if s]


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        from adapters.serve import serve

        return await serve(settings, host=args.host, port=args.port, offline=args.offline)
    if args.command == "doctor":
        from adapters.doctor import doctor

        return await doctor(settings)
    return await _local(args, settings)


async def _local(args: argparse.Namespace, settings: Settings) -> int:
    from adapters import cli as cli_adapter
    from adapters import cli_usage
    from adapters.composition import open_app

    offline = bool(getattr(args, "offline", False))
    if args.command == "chat" and not offline and not settings.gemini_api_key:
        print(f"imagebot: {NO_KEY}", file=sys.stderr)
        return 2
    try:
        async with open_app(settings, offline=offline,
                             require_gemini=args.command == "chat") as core:
            if args.command in cli_usage.COMMANDS:
                return await cli_usage.run(args, core)
            if args.command == "threads":
                await cli_adapter.list_threads(core)
                return 0
            if args.command == "history":
                if await cli_adapter.show_history(core, args.thread):
                    return 0
                print(f"imagebot: no thread named {args.thread!r}", file=sys.stderr)
                return 1
            options = OptionInput(model=args.model, aspect_ratio=args.aspect_ratio,
                                  size=args.size, search=args.search, image_only=args.image_only)
            await cli_adapter.chat(core, thread=args.thread, prompt=" ".join(args.prompt),
                                   image_paths=args.image, options=options, out_dir=args.out)
            return 0
    except ImagebotError as exc:
        print(f"imagebot: {_one_line(exc.user_message)}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as exc:
        print(f"imagebot: {exc}", file=sys.stderr)
        return 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    main()
