"""How fast the embedded simulator itself can go: its ceiling on one core.

Starts the simulator with the "instant" profile (no modelled cost) in its own process pinned to one
core, drives it with a plain aiohttp client (pinned to another core where there is one), and
prints streamed tokens/s and requests/s. When a run against the simulator gets near these figures,
the simulator, not the harness or the modelled engine, is the bottleneck.

    python benchmarks/sim_ceiling.py [--duration-s 3] [--concurrency 64] [--no-trace]

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import aiohttp

from loadbench.sim import PROFILES, SimConfig, SimProcess


async def _drive(url: str, payload: dict, concurrency: int, duration_s: float, stream: bool) -> tuple[int, int, float]:
    """Closed loop: ``concurrency`` users send back to back for ``duration_s``.

    Returns (requests completed, token chunks received, elapsed seconds).
    """
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    requests = tokens = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + duration_s
        t0 = time.perf_counter()

        async def user() -> None:
            nonlocal requests, tokens
            while time.perf_counter() < deadline:
                async with session.post(url, json=payload) as resp:
                    if stream:
                        async for data in resp.content.iter_any():
                            tokens += data.count(b'"content":"') - data.count(b'"content":""')
                    else:
                        body = await resp.json()
                        tokens += body["usage"]["completion_tokens"]
                requests += 1

        await asyncio.gather(*(user() for _ in range(concurrency)))
        return requests, tokens, time.perf_counter() - t0


def _pin(pid: int, cpu: int) -> bool:
    try:
        os.sched_setaffinity(pid, {cpu})
        return True
    except (AttributeError, OSError):
        return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration-s", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--tokens", type=int, default=256, help="output tokens per streamed request")
    p.add_argument("--no-trace", action="store_true", help="run the simulator without ground truth")
    args = p.parse_args()

    config = SimConfig(profile=PROFILES["instant"], trace=not args.no_trace)
    t0 = time.perf_counter()
    with SimProcess(config) as sim:
        startup_s = time.perf_counter() - t0
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
        pinned = _pin(sim.pid or 0, cpus[0])
        if len(cpus) > 1:
            _pin(0, cpus[1])
        url = sim.base_url + "/v1/chat/completions"
        print(f"simulator: startup {startup_s * 1e3:.0f} ms, pid {sim.pid}, "
              f"{'pinned to cpu ' + str(cpus[0]) if pinned else 'not pinned'}, trace {'on' if config.trace else 'off'}")
        print(f"client: aiohttp, {args.concurrency} closed-loop users, {args.duration_s:g} s per case\n")

        def run(name: str, payload: dict, stream: bool) -> None:
            asyncio.run(_drive(url, payload, args.concurrency, 0.3, stream))  # warm up
            reqs, toks, elapsed = asyncio.run(_drive(url, payload, args.concurrency, args.duration_s, stream))
            print(f"{name:<44} {reqs / elapsed:>9.0f} req/s {toks / elapsed:>11.0f} tokens/s")

        msg = [{"role": "user", "content": "hello"}]
        run(f"streamed, {args.tokens} tokens/request", {"model": "m", "messages": msg, "stream": True,
                                                        "max_tokens": args.tokens}, True)
        run("streamed, 16 tokens/request", {"model": "m", "messages": msg, "stream": True, "max_tokens": 16}, True)
        run("non-streamed, 1 token/request", {"model": "m", "messages": msg, "max_tokens": 1}, False)


if __name__ == "__main__":
    main()
