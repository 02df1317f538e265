"""The two client paths side by side: lean aiohttp (``client="http"``) vs the official SDKs.

For each dialect (OpenAI-compatible, Ollama, Anthropic), each path, and 1 and 256 concurrent
streams, a closed loop sends requests to the embedded simulator (its own process, so this process's
CPU time is the client's alone) and reports:

* client CPU per request: process CPU time (user + system) over the run / requests, in ms;
* TTFT p50 / p99 as the client saw it (first token-bearing chunk - sent), in ms;
* first-token lag p50 / p99: the client's first-token stamp minus the simulator's stamp for the
  moment it handed that chunk to its socket (both ``perf_counter_ns``, one host), in ms: the time
  the client path itself adds before a token is counted.

Prints a table; asserts nothing. Run: ``python benchmarks/client_paths.py [--requests N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from time import perf_counter_ns

from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.deployments import ClientSettings, Local, Remote
from loadbench.sim import EngineProfile, SimConfig, SimProcess

# Paced like a fast GPU server: 10 ms per decode step whatever the batch, so the client, not the
# engine, is what differs between the paths.
PROFILE = EngineProfile(
    name="client-bench",
    slots=1024,
    kv_cache_tokens=10_000_000,
    step_base_ms=10.0,
    step_per_seq_ms=0.0,
    prefill_per_token_ms=0.0,
    prefill_chunk_tokens=1_000_000,
)


def deployment(dialect: str, client: str, base_url: str):
    if dialect == "openai":
        return Remote.compatible(base_url, "bench-model", client=client)
    if dialect == "ollama":
        return Local("llama3.2:3b", client=client)
    return Remote.claude("claude-bench", client=client)


async def closed_loop(dep, base_url: str, concurrency: int, requests: int, output_tokens: int, label: str):
    """``requests`` prompts through ``concurrency`` users; returns (records, cpu_s, wall_s).

    Request ids are ``{label}-{i}``: unique per cell, so they join with the simulator's trace.
    """
    settings = ClientSettings(pool_size=concurrency, simulated=True)
    prompt = Prompt.user("benchmark the client path", max_output_tokens=output_tokens, ignore_eos=True)
    records: list[RequestRecord] = []
    failures = 0
    next_index = 0

    async with dep.open(base_url=base_url, settings=settings) as sender:

        async def user(u: int) -> None:
            nonlocal next_index, failures
            while next_index < requests:
                i = next_index
                next_index += 1
                now = perf_counter_ns()
                rec = RequestRecord(index=i, request_id=f"{label}-{i}", intended_ns=now, user=u)
                rec.sent_ns = now
                try:
                    await sender.send(prompt, rec)
                    records.append(rec)
                except Exception:
                    failures += 1

        # One warm-up request opens a connection and imports lazily loaded code.
        warm = RequestRecord(index=-1, request_id=f"{label}-warmup", intended_ns=perf_counter_ns())
        warm.sent_ns = perf_counter_ns()
        await sender.send(prompt, warm)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(user(u) for u in range(concurrency)))
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    if failures:
        print(f"  ({failures} failed requests)")
    return records, cpu_s, wall_s


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=256, help="requests per cell at 256 streams")
    parser.add_argument("--output-tokens", type=int, default=32)
    parser.add_argument("--dialects", default="openai,ollama,anthropic")
    parser.add_argument("--concurrency", default="1,256")
    args = parser.parse_args()

    rows = []
    with SimProcess(SimConfig(profile=PROFILE, trace=True)) as sim:
        for dialect in args.dialects.split(","):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                requests = max(concurrency, args.requests if concurrency > 1 else args.requests // 4)
                for client in ("http", "sdk"):
                    dep = deployment(dialect, client, sim.base_url)
                    records, cpu_s, wall_s = asyncio.run(
                        closed_loop(
                            dep,
                            sim.base_url,
                            concurrency,
                            requests,
                            args.output_tokens,
                            f"{dialect}-{client}-{concurrency}",
                        )
                    )
                    rows.append((dialect, client, concurrency, records, cpu_s, wall_s))
        time.sleep(0.3)  # the simulator flushes its trace every 100 ms
        truth = {t["id"]: t for t in sim.read_trace()}

    header = (
        f"{'dialect':<10}{'path':<6}{'streams':>8}{'reqs':>6}{'CPU ms/req':>12}"
        f"{'TTFT p50':>10}{'TTFT p99':>10}{'lag p50':>9}{'lag p99':>9}{'tok/s':>9}"
    )
    print(header)
    print("-" * len(header))
    for dialect, client, concurrency, records, cpu_s, wall_s in rows:
        ttft = [(r.first_token_ns - r.sent_ns) / 1e6 for r in records if r.first_token_ns]
        lag = [
            (r.first_token_ns - truth[r.request_id]["first_token_ns"]) / 1e6
            for r in records
            if r.first_token_ns and r.request_id in truth and truth[r.request_id]["first_token_ns"]
        ]
        tokens = sum(r.output_tokens_used for r in records)
        n = len(records)
        print(
            f"{dialect:<10}{client:<6}{concurrency:>8}{n:>6}{1000 * cpu_s / max(n, 1):>12.3f}"
            f"{pct(ttft, 0.5):>10.2f}{pct(ttft, 0.99):>10.2f}{pct(lag, 0.5):>9.3f}{pct(lag, 0.99):>9.3f}"
            f"{tokens / wall_s if wall_s else 0:>9.0f}"
        )
    print(
        "\nCPU ms/req: this process's CPU time per request. TTFT: client-measured, ms. lag: client "
        "first-token stamp minus the simulator's send stamp, ms (the client path's own delay)."
    )


if __name__ == "__main__":
    main()
