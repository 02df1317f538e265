"""HTTP and SDK client paths through a whole run: TTFT p50 and each user's first request.

A run's first request on each connection pays for whatever the client does once (building an SDK
client, opening a connection, importing lazily loaded code). This runs the same small scenario
through ``Experiment`` (as the command line does) against one simulator for each path and user
count, and prints TTFT p50 over the run, the TTFT of request 0, and the mean TTFT of each user's
first request, next to the same figures for the HTTP path, which is the baseline.

Prints a table; asserts nothing. Run: ``python benchmarks/sdk_first_request.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from loadbench import Concurrency, Decode, EngineProfile, Experiment, Fixed, Remote, Scenario, SimConfig, Stop
from loadbench.sim import SimProcess

# A flat 10 ms per decode step and no prefill cost: the server adds ~10 ms to every TTFT whatever
# the batch, so what differs between the paths is the client.
PROFILE = EngineProfile(
    name="client-bench",
    slots=1024,
    kv_cache_tokens=10_000_000,
    step_base_ms=10.0,
    step_per_seq_ms=0.0,
    prefill_per_token_ms=0.0,
    prefill_chunk_tokens=1_000_000,
)


def one_run(base_url: str, client: str, users: int, requests: int, out: Path) -> dict[str, float]:
    scenario = Scenario(
        workload=Decode(input_tokens=Fixed(32), output_tokens=Fixed(16)),
        deployment=Remote.compatible(base_url, "bench-model", client=client),
        load=Concurrency(users),
        stop=Stop(requests=requests),
        target=base_url,
        energy=False,
        out_dir=out,
        name=f"{client}-{users}",
    )
    result = Experiment(scenario).run()
    rows = [json.loads(line) for line in (result.path / "requests.jsonl").read_text().splitlines()]
    ok = [r for r in rows if r["status"] == "ok" and r["first_token_ns"]]
    ttft = {r["index"]: (r["first_token_ns"] - r["sent_ns"]) / 1e6 for r in ok}
    firsts: dict[int, float] = {}
    for r in sorted(ok, key=lambda r: r["index"]):
        firsts.setdefault(r["user"], ttft[r["index"]])
    return {
        "p50": result.summary["metrics"]["ttft_ms"]["p50"],
        "first": ttft.get(0, float("nan")),
        "user_first": statistics.fmean(firsts.values()) if firsts else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (figures are medians)")
    parser.add_argument("--requests", type=int, default=160)
    parser.add_argument("--users", default="1,16")
    args = parser.parse_args()
    cells = []
    with SimProcess(SimConfig(profile=PROFILE, models=("bench-model",))) as sim, tempfile.TemporaryDirectory() as tmp:
        for users in (int(u) for u in args.users.split(",")):
            for client in ("http", "sdk"):
                runs = [
                    one_run(sim.base_url, client, users, args.requests, Path(tmp) / f"{client}-{users}-{i}")
                    for i in range(args.repeat)
                ]
                cells.append((client, users, {k: statistics.median(r[k] for r in runs) for k in runs[0]}, runs))
    print(f"{'path':<6}{'users':>6}{'TTFT p50 ms':>13}{'request 0 ms':>14}{'user firsts ms':>16}   runs (p50/first)")
    for client, users, med, runs in cells:
        each = " ".join(f"{r['p50']:.1f}/{r['first']:.1f}" for r in runs)
        print(f"{client:<6}{users:>6}{med['p50']:>13.2f}{med['first']:>14.2f}{med['user_first']:>16.2f}   {each}")
    print(
        "\nTTFT = first token-bearing chunk - sent, as the run records it; medians of the runs. "
        "user firsts: the mean TTFT of each user's first request."
    )


if __name__ == "__main__":
    main()
