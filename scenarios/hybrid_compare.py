"""Hybrid compare: the same filings and questions through Local, Remote, Hybrid(Minion), Hybrid(Minions).

Run it as a program to get one table (E2E, TTFT, remote tokens, cost and energy per request,
protocol errors, accuracy):

    python scenarios/hybrid_compare.py                  # on the simulator, a few minutes
    python scenarios/hybrid_compare.py --requests 40 --out results/compare

On the simulator the local side is a laptop-class engine and the remote side a hosted-API engine,
each a simulator of its own; the simulator answers the protocols' JSON (decisions, job plans, job
answers) but its words are not answers, so accuracy there is ~0 by construction. To measure real
models, edit LOCAL / REMOTE below and set TARGET = None (each deployment uses its own endpoint).

As a scenario file (``python -m loadbench scenarios/hybrid_compare.py``) it runs the
Hybrid(Minions) variant alone.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

from loadbench import (
    Concurrency,
    Experiment,
    Hybrid,
    Local,
    Minion,
    Minions,
    Prefill,
    Remote,
    Scenario,
    SimConfig,
    Stop,
    Uniform,
)

LOCAL = Local("llama3.2:3b")
REMOTE = Remote.openai("gpt-4o")
TARGET = "sim"
LOCAL_SIM = SimConfig(profile="laptop-1.5b", models=("llama3.2:3b",))
REMOTE_SIM = SimConfig(profile="remote-api", seed=1)
# Filings of ~2.5-3.5k tokens: long enough that Minions cuts them into several sections.
WORKLOAD = Prefill(input_tokens=Uniform(2500, 3500))
LOAD = Concurrency(2)
STOP = Stop(requests=8, drain_s=120.0)


def variants(remote_sim: SimConfig = REMOTE_SIM) -> list[tuple[str, str, Scenario]]:
    """``(label, kind, scenario)`` for the four deployments, same workload, load and stop rule."""
    base = Scenario(
        name="hybrid_compare", workload=WORKLOAD, deployment=LOCAL, load=LOAD, stop=STOP, target=TARGET,
        sim=LOCAL_SIM, check_answers=True,
    )
    minion = Minion(max_rounds=3, worker_max_tokens=128)
    minions = Minions(max_rounds=5, tasks_per_round=4, max_jobs_per_round=32, local_concurrency=4)
    return [
        ("Local", "local", base),
        ("Remote", "remote", dataclasses.replace(base, deployment=REMOTE, sim=remote_sim)),
        ("Hybrid(Minion)", "hybrid", dataclasses.replace(
            base, deployment=Hybrid(LOCAL, REMOTE, minion, remote_sim=remote_sim))),
        ("Hybrid(Minions)", "hybrid", dataclasses.replace(
            base, deployment=Hybrid(LOCAL, REMOTE, minions, remote_sim=remote_sim))),
    ]


scenario = variants()[3][2]


def main(argv: list[str]) -> int:
    from loadbench.hybrid.compare import row, table

    parser = argparse.ArgumentParser(description="Local / Remote / Hybrid on the same workload and load")
    parser.add_argument("--requests", type=int, default=STOP.requests, help="requests per deployment")
    parser.add_argument("--out", type=Path, default=Path("results/hybrid_compare"), help="one run directory each")
    parser.add_argument("--remote-malformed", type=float, default=0.0,
                        help="share of the simulated remote's JSON replies that are broken")
    args = parser.parse_args(argv)
    rows = []
    remote_sim = dataclasses.replace(REMOTE_SIM, json_malformed_rate=args.remote_malformed)
    for label, kind, variant in variants(remote_sim):
        variant = dataclasses.replace(variant, stop=dataclasses.replace(STOP, requests=args.requests),
                                      out_dir=args.out / label.lower().replace("(", "_").replace(")", ""))
        print(f"running {label} ...", file=sys.stderr, flush=True)
        summary = Experiment(variant).run().summary
        rows.append(row(label, summary, kind=kind, remote_model=REMOTE.model_name))
    print(table(rows))
    print(f"\nrun directories under {args.out}; remote energy is an estimate "
          "(tokens x RemoteEnergy), local energy is what this host's meter gave")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
