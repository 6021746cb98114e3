"""Command line: ``python -m offline_gemini --port N``, serve until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import textwrap
from collections.abc import Sequence

from offline_gemini.recording import KEEP_REQUESTS
from offline_gemini.server import OfflineGemini


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagebot offline-gemini",
        description="Serve an offline stand-in for the Gemini image API.",
        epilog=textwrap.dedent(
            """\
            Point the SDK at it with GOOGLE_GEMINI_BASE_URL=<printed URL> and
            api_version v1beta. The base URL is the only line printed on stdout."""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    parser.add_argument("--api-key", default="offline-key", help="accepted key (default offline-key)")
    parser.add_argument("--any-key", action="store_true", help="accept any non-empty API key")
    parser.add_argument("--no-strict", action="store_true", help="do not check thought signatures")
    parser.add_argument("--banner", default="OFFLINE PREVIEW", help="banner text on every image")
    parser.add_argument("--real-sizes", action="store_true",
                        help="answer real formats and byte sizes (Pro JPEG, ~1 MB signatures)")
    parser.add_argument("--signature-bytes", type=int, default=None,
                        help="bytes per thought signature (default: 1 MiB with --real-sizes, else 36)")
    parser.add_argument("--refuse-model-files", action="store_true",
                        help="refuse image fileData parts in model turns (400)")
    parser.add_argument("--refuse-dummy-signatures", action="store_true",
                        help="refuse the documented dummy thought signature on history parts (400)")
    parser.add_argument("--trailing-signature", action="store_true",
                        help="in streams, send the last image's signature on a trailing empty text")
    parser.add_argument("--stream-gap", type=float, default=0.0,
                        help="seconds between stream chunks (default 0)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait per request")
    parser.add_argument("--keep-requests", type=int, default=KEEP_REQUESTS,
                        help=f"recent requests kept in memory (default {KEEP_REQUESTS})")
    parser.add_argument("--stock-frames", action="store_true",
                        default=os.environ.get("OFFLINE_GEMINI_STOCK_FRAMES") == "1",
                        help="draw one frame per size and reuse it (the request named in a "
                             "comment chunk): cheap answers for benchmarks "
                             "(or OFFLINE_GEMINI_STOCK_FRAMES=1)")
    parser.add_argument("--admin", action="store_true",
                        help="tests only: serve POST /_admin/clock and GET /_admin/stats")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    server = OfflineGemini(
        api_key=None if args.any_key else args.api_key,
        strict_signatures=not args.no_strict,
        banner=args.banner,
        real_sizes=args.real_sizes,
        signature_bytes=args.signature_bytes,
        refuse_model_files=args.refuse_model_files,
        refuse_dummy_signatures=args.refuse_dummy_signatures,
        trailing_signature=args.trailing_signature,
        stream_gap=args.stream_gap,
        keep_requests=args.keep_requests,
        admin=args.admin,
        stock_frames=args.stock_frames,
    )
    server.faults.latency = args.latency
    url = await server.start(args.host, args.port)
    print(url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: serve until interrupted, printing the base URL on stdout."""
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main(sys.argv[1:])
