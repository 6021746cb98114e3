"""100 threads at once against the stand-in at 2 s latency: total wall time and the worst
event-loop lag seen meanwhile. Targets: total <= 3 s, lag <= 50 ms.

The stand-in runs in its own process, as Gemini would be elsewhere: the loop measured is the
bot's alone. (Run with --in-process to see both sharing one loop.) With --real-sizes the
stand-in answers as the live API does: 1K Pro JPEGs of ~1.35 MB, two thought images and
~1 MiB thought signatures per answer, all of which the bot parses and stores.

With --web the turns go through the web playground's HTTP API exactly as the page sends
them: ``imagebot serve``'s own HTTP server runs in this process; each of the 100 threads
gets an id made by the client, and its one turn is a multipart ``POST
/api/threads/{id}/turns`` with the selectors' fields, ``Accept: text/event-stream``, read
as the page reads it (progress events with the drafts, then the stored turn). Without
--web the turns call the core (``service.handle``) directly.

Besides wall time and loop lag it prints when the last final image had arrived (the answers
are in; everything after that is the bot storing and answering), this process's CPU time
and the stand-in's, and a baseline: the same 100 requests as bare google-genai streaming
calls from a client of their own, reading the answers and doing nothing with them (the
floor set by the stand-in and the SDK on this machine at this moment).

    python -m bench.concurrency [--real-sizes] [--web] [--in-process] [--threads N]
                                [--no-baseline] [--no-nice]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from adapters.serve import running
from bench.common import KEY, bench_core, settings_for, stand_in_process
from bot.gemini import build_client, build_config
from bot.model import Author, IncomingMessage, ThreadKey
from bot.options import OptionInput, resolve
from bot.progress import Progress
from bot.runtime import Core, open_core
from bot.turn_request import user_content

LATENCY = 2.0
#: Each thread asks for its own poster, so every answer (images, signatures) is different
#: and stored anew, as with the live API.
PROMPT = "a concert poster for band {}"
#: CPU seconds of the web client process (left out of the stand-in's).
CLIENT_CPU: list[float] = []


async def lag_probe(stop: asyncio.Event, interval: float = 0.005) -> list[float]:
    """How late each 5 ms sleep woke up until ``stop`` is set (seconds, one per sleep)."""
    lags = []
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(interval)
        lags.append(loop.time() - start - interval)
    return lags


async def idle_lag(seconds: float = 2.0) -> list[float]:
    """The loop's lag with nothing to do: what the machine itself (other processes on the
    same CPUs) costs every measurement here."""
    stop = asyncio.Event()
    probe = asyncio.create_task(lag_probe(stop))
    await asyncio.sleep(seconds)
    stop.set()
    return await probe


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


@dataclass
class Burst:
    """What one burst of turns took."""

    wall: float = 0.0
    lags: list[float] = field(default_factory=list)
    cpu: float = 0.0
    images: int = 0
    #: Seconds from the start until each turn's final image had arrived.
    answered: list[float] = field(default_factory=list)
    #: For each turn, seconds from its final image's arrival to its stored turn (storing,
    #: answering).
    tails: list[float] = field(default_factory=list)


@contextlib.asynccontextmanager
async def core_for_run(args: argparse.Namespace, url: str) -> AsyncIterator[tuple[Core, str]]:
    """The core, and the playground's URL when the turns go through the web API."""
    with tempfile.TemporaryDirectory() as tmp:
        # Capacity for the whole burst: this measures the loop with every turn in flight.
        settings = settings_for(url, Path(tmp) / "b.sqlite3",
                                max_concurrent_turns=args.threads)
        if args.web:
            async with running(settings, port=0) as server:
                yield server.core, server.url
            return
        async with open_core(settings, offline=False) as core:
            yield core, ""


async def through_core(core: Core, threads: int, started: float, burst: Burst) -> int:
    """All threads at once through ``service.handle``; returns how many made an image."""
    async def turn(i: int) -> bool:
        answered = [0.0]

        async def progress(event: Progress) -> None:
            if event.kind == "image":
                answered[0] = time.perf_counter()
                burst.answered.append(answered[0] - started)

        reply = await core.service.handle(
            ThreadKey("bench", "", "", f"t{i}"),
            IncomingMessage(author=Author("b"), text=PROMPT.format(i)),
            on_progress=progress)
        burst.tails.append(time.perf_counter() - answered[0])
        return bool(reply.images)

    return sum(await asyncio.gather(*(turn(i) for i in range(threads))))


async def page_turn(http: aiohttp.ClientSession, fields: dict[str, str], started: float,
                    burst: Burst, number: int) -> bool:
    """One turn as the page posts it (a fresh thread id made here, the selectors' fields,
    server-sent events); True when its stored turn has an image."""
    thread = uuid.uuid4().hex
    form = aiohttp.FormData()
    for name, value in {"prompt": PROMPT.format(number), **fields}.items():
        form.add_field(name, value)
    headers = {"X-Imagebot": "1", "Accept": "text/event-stream"}
    async with http.post(f"/api/threads/{thread}/turns", data=form, headers=headers) as resp:
        assert resp.headers.get("Content-Type", "").startswith("text/event-stream"), resp.status
        buffer, answered = b"", 0.0
        async for chunk in resp.content.iter_any():
            buffer += chunk
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                name, data = _event(frame)
                if name == "progress" and data.get("kind") == "image":
                    answered = time.perf_counter()
                    burst.answered.append(answered - started)
                elif name == "result":
                    burst.tails.append(time.perf_counter() - answered)
                    return any(p.get("kind") == "image" for p in data["turn"]["parts"])
                elif name == "error":
                    raise RuntimeError(f"a turn failed: {data}")
    return False


def _event(frame: bytes) -> tuple[str, dict[str, object]]:
    name, data = "message", ""
    for line in frame.decode().split("\n"):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
    return name, json.loads(data) if data else {}


async def page_fields(http: aiohttp.ClientSession) -> dict[str, str]:
    """The selectors' fields the page sends for the default model (from ``/api/config``)."""
    async with http.get("/api/config", headers={"X-Imagebot": "1"}) as resp:
        config = await resp.json()
    model = next(m for m in config["models"] if m["id"] == config["defaults"]["model"])
    fields = {"model": model["id"], "aspect_ratio": "auto"}
    if model["sizes"]:
        fields["size"] = "1K"
    if model["search"]:
        fields["search"] = "false"
    return fields


async def through_web(url: str, threads: int
                      ) -> tuple[float, int, list[float], list[float]]:
    """All turns at once from the page's side, in a process of its own (browsers are not
    in the bot's process): wall time, turns that made an image, when final images came."""
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.concurrency", "--client", url, "--threads", str(threads),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert client.stdin is not None and client.stdout is not None
    try:
        assert await client.stdout.readline() == b"ready\n"
        client.stdin.write(b"go\n")
        await client.stdin.drain()
        result = json.loads(await client.stdout.readline())
    finally:
        if client.returncode is None:
            client.kill()
        await client.wait()
    CLIENT_CPU.append(result["cpu"])
    return result["wall"], result["images"], result["answered"], result["tails"]


async def client_main(url: str, threads: int) -> None:
    """The client process of ``through_web``: one warm-up turn, "ready", then on "go" every
    thread's turn at once; prints the figures as one JSON line."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(url, connector=connector) as http:
        fields = await page_fields(http)
        assert await page_turn(http, fields, time.perf_counter(), Burst(), -1)
        print("ready", flush=True)
        await reader.readline()
        burst = Burst()
        started = time.perf_counter()
        done = await asyncio.gather(*(page_turn(http, fields, started, burst, i)
                                      for i in range(threads)))
        wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"wall": wall, "images": sum(done), "answered": burst.answered,
                      "tails": burst.tails,
                      "cpu": usage.ru_utime + usage.ru_stime}), flush=True)


async def measure(core: Core, url: str, threads: int) -> Burst:
    burst = Burst()
    stop = asyncio.Event()
    probe = asyncio.create_task(lag_probe(stop))
    cpu, started = time.process_time(), time.perf_counter()
    if url:
        burst.wall, burst.images, burst.answered, burst.tails = await through_web(url, threads)
    else:
        burst.images = await through_core(core, threads, started, burst)
        burst.wall = time.perf_counter() - started
    burst.cpu = time.process_time() - cpu
    stop.set()
    burst.lags = await probe
    return burst


async def bare_sdk(core: Core, threads: int) -> tuple[float, float]:
    """The same requests as bare SDK streaming calls that only read the answers: wall and
    CPU seconds of this process."""
    client = build_client(core.settings)
    options = resolve(OptionInput(), OptionInput(), core.settings.option_defaults,
                      core.settings.models)
    config = build_config(options)

    async def one(i: int) -> None:
        stream = await client.aio.models.generate_content_stream(
            model=options.model, contents=[user_content(PROMPT.format(f"{i} (bare)"), [])], config=config)
        async for _ in stream:
            pass

    try:
        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(threads)))
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        await client.aio.aclose()


async def warm(core: Core) -> None:
    """Runs one turn first, so code paths are warm (the web client warms up itself)."""
    await core.service.handle(ThreadKey("bench", "", "", "warm"),
                              IncomingMessage(author=Author("b"), text="warm up"))


async def record_answers(url: str, model: str, numbers: list[int], folder: Path) -> None:
    """Asks the stand-in for each thread's first answer (as the bot will ask it) and keeps
    the raw server-sent events, one file per thread, for :func:`replay_main`."""
    body = {"generationConfig": {"responseModalities": ["TEXT", "IMAGE"],
                                 "imageConfig": {"imageSize": "1K"}}}
    gate = asyncio.Semaphore(4)
    async with aiohttp.ClientSession(headers={"x-goog-api-key": KEY}) as http:
        async def one(number: int) -> None:
            prompt = PROMPT.format(number) if number >= 0 else "warm up"
            request = {**body, "contents": [{"role": "user", "parts": [{"text": prompt}]}]}
            async with gate, http.post(f"{url}/v1beta/models/{model}:streamGenerateContent",
                                       params={"alt": "sse"}, json=request) as resp:
                assert resp.status == 200, await resp.text()
                (folder / f"{number}.sse").write_bytes(await resp.read())

        await asyncio.gather(*(one(n) for n in numbers))


async def replay_main(folder: Path) -> None:
    """The replay server's process: answers each thread's streamed request with the events
    recorded for it, after the same latency, and prints its URL."""
    from aiohttp import web

    recorded = await asyncio.to_thread(
        lambda: {int(p.stem): p.read_bytes() for p in folder.glob("*.sse")})

    async def answer(request: web.Request) -> web.StreamResponse:
        text = (await request.read()).decode()
        found = re.search(r"band (\d+)", text)
        number = int(found.group(1)) if found else -1
        await asyncio.sleep(LATENCY)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(recorded[number])
        await response.write_eof()
        return response

    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/v1beta/models/{model}:streamGenerateContent", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def replaying(args: argparse.Namespace) -> AsyncIterator[str]:
    """A replay server in a process of its own, serving answers recorded from the stand-in
    beforehand: real-size answers that cost the machine almost nothing to serve."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        async with stand_in_process(0.0, real_sizes=args.real_sizes, nice=False) as url:
            settings = settings_for(url, folder / "unused.sqlite3")
            model = resolve(OptionInput(), OptionInput(), settings.option_defaults,
                            settings.models).model
            await record_answers(url, model, [-1, *range(args.threads)], folder)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.concurrency", "--replay-server", tmp,
            stdout=asyncio.subprocess.PIPE)
        try:
            assert proc.stdout is not None
            yield (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode().strip()
        finally:
            proc.terminate()
            await proc.wait()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    burst: Burst
    #: The loop's lag while idle, just before the burst.
    idle: list[float]
    #: Wall and CPU seconds of the bare SDK baseline (None: not run).
    baseline: tuple[float, float] | None = None
    stand_in_cpu: float = 0.0


async def run(args: argparse.Namespace) -> Run:
    if args.in_process:
        async with bench_core(max_concurrent_turns=args.threads) as (stand_in, core):
            stand_in.faults.latency = LATENCY
            await warm(core)
            idle = await idle_lag()
            return Run(await measure(core, "", args.threads), idle)
    answers: contextlib.AbstractAsyncContextManager[str] = (
        replaying(args) if args.replay else
        stand_in_process(LATENCY, real_sizes=args.real_sizes, nice=not args.no_nice))
    before = children_cpu()
    async with answers as url:
        async with core_for_run(args, url) as (core, web_url):
            await warm(core)
            idle = await idle_lag()
            result = Run(await measure(core, web_url, args.threads), idle)
            if not args.no_baseline:
                result.baseline = await bare_sdk(core, args.threads)
    # With --replay this also counts the stand-in that made the recordings.
    result.stand_in_cpu = children_cpu() - before - sum(CLIENT_CPU)
    return result


def report(args: argparse.Namespace, result: Run) -> None:
    burst = result.burst
    where = ("in this process" if args.in_process else
             "replayed from recordings by a server in another process" if args.replay
             else "in its own process")
    sizes = ("real sizes (1K JPEG ~1.35 MB, ~1 MiB signatures, two thought images)"
             if args.real_sizes else "small images")
    path = ("the web API as the page sends it (POST /api/threads/{id}/turns, server-sent "
            "events, the client in another process)" if args.web
            else "the core (service.handle)")
    answered = max(burst.answered) if burst.answered else float("nan")
    tails = sorted(burst.tails) or [float("nan")]
    print(f"concurrency: {args.threads} threads through {path}, stand-in latency "
          f"{LATENCY:.1f} s, stand-in {where}, {sizes}")
    print(f"  total wall time {burst.wall:.2f} s (target <= 3 s); the last final image "
          f"arrived at {answered:.2f} s; from its final image to its stored turn a turn took "
          f"{statistics.median(tails) * 1000:.0f} ms (median), {tails[-1] * 1000:.0f} ms "
          "(most)")
    print(f"  event-loop lag: worst {max(burst.lags) * 1000:.1f} ms (target <= 50 ms), "
          f"p99 {p99(burst.lags) * 1000:.1f} ms; idle just before: worst "
          f"{max(result.idle) * 1000:.1f} ms, p99 {p99(result.idle) * 1000:.1f} ms")
    stand_in = ("" if args.in_process else f"; the stand-in {result.stand_in_cpu:.2f} s "
                "over the whole run (warm-up, burst, baseline)")
    print(f"  CPU: this process {burst.cpu:.2f} s during the burst{stand_in}")
    if result.baseline is not None:
        wall, cpu = result.baseline
        print(f"  baseline: the same {args.threads} requests as bare SDK streaming calls "
              f"(answers read, nothing done): {wall:.2f} s wall, CPU {cpu:.2f} s; "
              f"bot / baseline: wall {burst.wall / wall:.2f}x, CPU {burst.cpu / cpu:.2f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.concurrency")
    parser.add_argument("--real-sizes", action="store_true")
    parser.add_argument("--web", action="store_true")
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-nice", action="store_true",
                        help="run the stand-in at normal priority (on a machine busy with "
                             "other work a niced stand-in is starved and sets the wall time)")
    parser.add_argument("--threads", type=int, default=100)
    parser.add_argument("--replay", action="store_true",
                        help="answers recorded from the stand-in first, then replayed by a "
                             "minimal server in another process (the stand-in renders each "
                             "distinct real-size answer, ~50-120 ms of CPU: on a 2-CPU "
                             "machine it, not the bot, sets the wall time)")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--replay-server", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        await client_main(args.client, args.threads)
        return
    if args.replay_server:
        await replay_main(Path(args.replay_server))
        return
    if args.in_process and (args.web or args.replay):
        parser.error("--in-process runs the core against the stand-in only")
    result = await run(args)
    images = result.burst.images
    assert images == args.threads, f"only {images} of {args.threads} turns made an image"
    report(args, result)


if __name__ == "__main__":
    asyncio.run(main())
