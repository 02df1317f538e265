"""A server that sends one endless line: the request must fail as malformed, quickly and without
holding the harness up. Prints figures; asserts nothing.

A small OpenAI-compatible server on loopback (its own process) streams a 20-token answer at
25 ms a token to every request, except that one request (the 10th) gets ``data: `` and then
``--line-mib`` MiB of bytes with no newline. The harness runs a steady open-loop load against
it through the command line, twice: without the endless line (the baseline) and with it. For
each: the run's wall time, the dispatch lag of the other requests, the endless request's outcome
and the harness process's peak RSS.

    python benchmarks/endless_line.py                   # 100 MiB line, 10 s at 20 req/s, ~40 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
ENDLESS_INDEX = 10


def serve(line_bytes: int) -> None:
    from aiohttp import web

    count = [0]

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        count[0] += 1
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            if line_bytes and count[0] == ENDLESS_INDEX:
                await resp.write(b"data: ")
                piece = b"x" * (1 << 16)
                for _ in range(line_bytes // len(piece)):
                    await resp.write(piece)
                return resp
            for i in range(20):
                await asyncio.sleep(0.025)
                delta = orjson.dumps({"choices": [{"index": 0, "delta": {"content": f"t{i} "}}]})
                await resp.write(b"data: " + delta + b"\n\n")
            usage = {"prompt_tokens": 8, "completion_tokens": 20}
            await resp.write(b"data: " + orjson.dumps({"choices": [], "usage": usage}) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except ConnectionError:
            pass
        return resp

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/v1/models", models)
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


SCENARIO = """
from loadbench import Constant, Decode, Fixed, Remote, Scenario, Stop, Timeouts
scenario = Scenario(
    workload=Decode(input_tokens=Fixed(8), output_tokens=Fixed(20)),
    deployment=Remote.compatible(base_url="{url}", model="m"),
    load=Constant(rate_per_s={rate}),
    stop=Stop(duration_s={duration}, drain_s=30),
    energy=False,
    timeouts=Timeouts(first_token_s=60, total_s=60),
)
"""


def one(line_bytes: int, rate: float, duration_s: float, tmp: Path) -> dict:
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(line_bytes)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        scenario = tmp / f"endless_{line_bytes}.py"
        scenario.write_text(textwrap.dedent(SCENARIO.format(url=f"http://127.0.0.1:{port}", rate=rate,
                                                            duration=duration_s)))
        out = tmp / f"run_{line_bytes}"
        t0 = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "loadbench", str(scenario), "--out", str(out), "--quiet"],
                                 cwd=ROOT, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        wall_s = time.monotonic() - t0
        child.returncode = os.waitstatus_to_exitcode(status)
    finally:
        server.kill()
        server.wait()
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    lags = sorted(r["dispatch_lag_ms"] for r in records if r["dispatch_lag_ms"] is not None)
    bad = [r for r in records if r["status"] != "ok"]

    def pct(p: float) -> float:
        return lags[min(len(lags) - 1, int(p / 100 * len(lags)))]

    return {
        "exit": child.returncode,
        "wall_s": wall_s,
        "requests": len(records),
        "not_ok": [(r["status"], r.get("error"), (r.get("error_detail") or "")[:70], r["e2e_ms"]) for r in bad],
        "lag_p50": pct(50), "lag_p99": pct(99), "lag_max": lags[-1],
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux: KiB
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--line-mib", type=float, default=100)
    p.add_argument("--rate", type=float, default=20)
    p.add_argument("--duration-s", type=float, default=10)
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = [("without", one(0, args.rate, args.duration_s, Path(tmp))),
                (f"{args.line_mib:g} MiB line", one(int(args.line_mib * (1 << 20)), args.rate, args.duration_s,
                                                    Path(tmp)))]
    print(f"{args.duration_s:g} s at {args.rate:g} req/s; request {ENDLESS_INDEX} gets the endless line")
    print(f"{'run':<16}{'exit':>5}{'wall s':>8}{'reqs':>6}{'lag p50':>9}{'lag p99':>9}{'lag max':>9}{'peak RSS':>10}")
    for name, r in rows:
        print(f"{name:<16}{r['exit']:>5}{r['wall_s']:>8.1f}{r['requests']:>6}{r['lag_p50']:>9.2f}"
              f"{r['lag_p99']:>9.2f}{r['lag_max']:>9.2f}{r['peak_rss_mb']:>8.0f}MB")
    for name, r in rows:
        for status, error, detail, e2e in r["not_ok"]:
            print(f"{name}: a request ended {status} ({error}) after {e2e:.0f} ms: {detail}")


if __name__ == "__main__":
    main()
