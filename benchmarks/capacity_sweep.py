"""A capacity sweep: Poisson rates against one simulator profile, one run per rate.

Shows the shape the engine model must have: TTFT p99 flat while the server keeps up, then rising
steeply past saturation (requests queue for a slot); throughput rising with the offered rate, then
flat at the engine's ceiling. Also a template for capacity planning against a real server:
pass --target URL.

    python benchmarks/capacity_sweep.py [--profile laptop-1.5b] [--rates 0.5,1,2,3,4,6] [--seconds 20]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from loadbench import Decode, Experiment, Fixed, Poisson, Remote, Scenario, SimConfig, Stop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="laptop-1.5b")
    p.add_argument("--rates", default="0.5,1,2,3,4,6")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--target", default="sim", help="'sim' or an OpenAI-compatible base URL")
    ns = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="loadbench-sweep-"))
    print(f"profile {ns.profile}: Decode prompts, 128 input / 64 output tokens; {ns.seconds:g} s per rate, "
          f"first 3 s warm-up")
    print(f"{'rate/s':>7}{'done/s':>8}{'out tok/s':>10}{'TTFT p50':>10}{'TTFT p99':>10}"
          f"{'TPOT p50':>10}{'E2E p99':>10}{'failed':>8}")
    for rate in (float(r) for r in ns.rates.split(",")):
        scenario = Scenario(
            name=f"sweep-{rate:g}",
            workload=Decode(input_tokens=Fixed(128), output_tokens=Fixed(64)),
            deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
            load=Poisson(rate),
            stop=Stop(duration_s=ns.seconds, warmup_s=3.0, drain_s=60.0),
            target=ns.target,
            sim=SimConfig(profile=ns.profile, seed=1),
            seed=1,
            energy=False,
            out_dir=out / f"rate-{rate:g}",
        )
        s = Experiment(scenario).run().summary
        m, t = s["metrics"], s["throughput"]
        print(f"{rate:>7g}{t['requests_per_s'] or 0:>8.2f}{t['output_tokens_per_s'] or 0:>10.1f}"
              f"{m['ttft_ms']['p50'] or 0:>10.0f}{m['ttft_ms']['p99'] or 0:>10.0f}"
              f"{m['tpot_ms']['p50'] or 0:>10.1f}{m['e2e_ms']['p99'] or 0:>10.0f}{s['requests']['failed']:>8}",
              flush=True)
    print(f"runs in {out}")


if __name__ == "__main__":
    main()
