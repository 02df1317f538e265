"""How close the client's stamps come to the simulator's ground truth with ~100 concurrent streams.

Two scenarios against the embedded simulator (gpu-8b profile, 64-token prompts and answers):

* ``poisson75``: open loop, Poisson 75 req/s (about 100 streams in flight);
* ``closed100``: closed loop, 100 users.

Each runs under four client variants, each in a fresh process (so its CPU time is the client's):

* ``push/isolated``: bodies parsed inside ``data_received``; simulator on a CPU of its own (default);
* ``pull/isolated``: the ``readany`` loop (the previous read path), simulator isolated;
* ``push/shared`` and ``pull/shared``: the same with the simulator and the client free to share a
  core (the previous placement).

Prints, per run, the ``loadbench verify`` differences (client - server, ms, p50 / p99) and the
client's CPU per streamed chunk (process CPU over the whole run / token-bearing chunks, in µs;
start-up and the end-of-run summary included, so it overstates the per-chunk cost), and where the
run stamped arrivals (``run.json``'s ``client.stamping``: ``socket`` unless aiohttp's hooks no
longer fit). Asserts nothing. Run: ``python benchmarks/stamp_precision.py [--duration-s 12] [--repeat 1]``.

The host's other load shows up directly in p99: compare variants run back to back, and repeat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = ("lean/isolated", "push/isolated", "pull/isolated", "lean/shared", "push/shared", "pull/shared")
SCENARIOS = ("poisson75", "closed100")
METRICS = ("request_transit_ms", "first_token_delivery_ms", "end_delivery_ms", "ttft_diff_ms", "e2e_diff_ms")


def child(variant: str, scenario_name: str, duration_s: float, out_dir: str) -> None:
    """Run one scenario in this process under ``variant``; print one JSON line of figures."""
    import resource

    from loadbench import Concurrency, Decode, Experiment, Fixed, Poisson, Remote, Scenario, SimConfig, Stop
    from loadbench.deployments import transport
    from loadbench.results.verify import compare
    from loadbench.sim import process

    read_path, placement = variant.split("/")
    transport.DEFAULT_READ_PATH = read_path  # type: ignore[assignment]
    if placement == "shared":
        process.SimProcess.__init__.__kwdefaults__["isolate_cpu"] = False

    load = Poisson(75) if scenario_name == "poisson75" else Concurrency(100)
    scenario = Scenario(
        workload=Decode(input_tokens=Fixed(64), output_tokens=Fixed(64)),
        deployment=Remote.compatible(base_url="http://127.0.0.1:8000", model="m"),
        load=load,
        stop=Stop(duration_s=duration_s),
        target="sim",
        sim=SimConfig(profile="gpu-8b"),
        energy=False,
        out_dir=out_dir,
    )
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = Experiment(scenario).run()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    chunks = 0
    with open(Path(out_dir) / "requests.jsonl", "rb") as fh:
        for line in fh:
            row = json.loads(line)
            chunks += row.get("output_tokens") or 0
    report = compare(out_dir)
    print(json.dumps({"cpu_s": cpu_s, "chunks": chunks, "joined": report["joined_ok"],
                      "metrics": report["metrics"], "stamping": result.run["client"]["stamping"]}))


def run_one(variant: str, scenario: str, duration_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="stamp-precision-") as out_dir:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", variant, scenario, str(duration_s), out_dir],
            capture_output=True, text=True, check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"{variant} {scenario} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=12.0)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every variant, interleaved")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()

    short = {"request_transit_ms": "transit", "first_token_delivery_ms": "first tok",
             "end_delivery_ms": "end", "ttft_diff_ms": "TTFT diff", "e2e_diff_ms": "E2E diff"}
    header = f"{'scenario':<11}{'variant':<15}{'reqs':>5}" + "".join(f"{short[m]:>15}" for m in METRICS)
    header += f"{'CPU us/chunk':>14}{'stamping':>10}"
    print("client - server, ms: p50 / p99")
    print(header)
    print("-" * len(header))
    for scenario in args.scenarios.split(","):
        for _ in range(args.repeat):
            for variant in args.variants.split(","):
                r = run_one(variant, scenario, args.duration_s)
                cells = "".join(
                    f"{r['metrics'][m]['p50']:>7.2f} /{r['metrics'][m]['p99']:>6.2f}" for m in METRICS
                )
                per_chunk = 1e6 * r["cpu_s"] / max(r["chunks"], 1)
                print(f"{scenario:<11}{variant:<15}{r['joined']:>5}{cells}{per_chunk:>14.1f}{r['stamping']:>10}",
                      flush=True)


if __name__ == "__main__":
    main()
