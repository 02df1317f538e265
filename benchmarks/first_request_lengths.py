"""Input lengths from the first request: the error per preset and per block of requests, in real runs.

Each preset (Prefill, Balanced, Decode) is run as a user would run it, through ``Experiment``
(scheduler, prefetching, calibration and all), and the records' ``target_input_tokens`` are set
against the server's reported ``input_tokens``: relative error |reported - target| / target, p50
and p90 over the whole run and over each block of ``--block`` requests in the order they were
sent.

Targets:

* ``llama``: llama.cpp's ``llama-server`` on a GGUF model (``--model PATH``; by default the tiny
  model with the ``subword`` vocabulary, which no test tunes for). ``--no-tokenizer`` keeps the
  run from using the server's ``/tokenize`` (lengths must then be learnt from the records), to
  show what a server without one gets.
* ``sim-off``: the embedded simulator standing in for a foreign model (3-character word pieces,
  a chat template of 8 tokens per request and 4 per message) with ``/tokenize`` switched off.

For runs without a tokenizer it also prints how many requests it took until the error stayed
under 5 % (the first request from which every later one is within 5 %), the warm-up the run
said it needed and when it said lengths had settled.

    python benchmarks/first_request_lengths.py llama [--requests 24] [--users 2] [--block 8]
    python benchmarks/first_request_lengths.py llama --no-tokenizer --requests 96
    python benchmarks/first_request_lengths.py sim-off --requests 96

Written to run unchanged on older checkouts too (options they lack are skipped), so a baseline
can be measured from another worktree with ``PYTHONPATH`` pointing there. Prints figures only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from loadbench.deployments.remote import Remote
from loadbench.experiment import Experiment
from loadbench.load.plans import Concurrency, Stop
from loadbench.scenario import Scenario
from loadbench.workloads import Balanced, Decode, Prefill

_TOLERANCE = 0.05


@contextlib.contextmanager
def _llama(model: str | None, vocab: str, slots: int) -> Iterator[tuple[str, str]]:
    from loadbench.engines.llamacpp import LlamaServer, find_llama_server, tiny_model_path

    if find_llama_server() is None:
        raise SystemExit("llama-server is not built: python -m loadbench engine build")
    if model is None:
        try:
            model = str(tiny_model_path(vocab))
        except TypeError:  # a checkout whose tiny model has one vocabulary only
            raise SystemExit("this checkout cannot generate the vocabulary; pass --model PATH") from None
    with LlamaServer(model, n_parallel=slots, n_ctx=slots * 4096) as server:
        yield server.base_url, f"llama-server, model {Path(model).name}"


def _errors(out_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(signed relative input error, index) of the ok records, in request order."""
    rows = []
    for line in (out_dir / "requests.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("parent") is not None or r.get("status") != "ok":
            continue
        t, n = r.get("target_input_tokens"), r.get("input_tokens")
        if t and n is not None:
            rows.append((r["index"], (n - t) / t))
    rows.sort()
    return np.array([e for _, e in rows]), np.array([i for i, _ in rows])


def _pct(a: np.ndarray, q: float) -> float:
    return 100 * float(np.percentile(np.abs(a), q)) if len(a) else float("nan")


def _until_under(errors: np.ndarray, run: int = 8) -> int | None:
    """Index of the first request that opens ``run`` requests in a row within the tolerance."""
    ok = np.abs(errors) <= _TOLERANCE
    for i in range(len(ok) - run + 1):
        if ok[i : i + run].all():
            return i
    return None


def _all_after(errors: np.ndarray) -> int | None:
    """Index of the first request from which every later request is within the tolerance."""
    bad = np.nonzero(np.abs(errors) > _TOLERANCE)[0]
    if not len(bad):
        return 0
    return int(bad[-1]) + 1 if bad[-1] + 1 < len(errors) else None


def _run(workload: Any, base_url: str | None, sim: Any, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    if base_url is None:
        scenario = Scenario(
            workload=workload, deployment=Remote.compatible("http://127.0.0.1:9/v1"), target="sim", sim=sim,
            load=Concurrency(users=args.users), stop=Stop(requests=args.requests), energy=False, out_dir=str(out),
        )
    else:
        scenario = Scenario(
            workload=workload, deployment=Remote.compatible(base_url + "/v1"), target=base_url + "/v1",
            load=Concurrency(users=args.users), stop=Stop(requests=args.requests), energy=False, out_dir=str(out),
        )
    t0 = time.perf_counter()
    result = Experiment(scenario).run()
    wall_s = time.perf_counter() - t0
    errors, _ = _errors(out)
    run = json.loads((out / "run.json").read_text())
    return {"errors": errors, "wall_s": wall_s, "lengths": run.get("lengths"), "summary": result.summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=("llama", "sim-off"))
    parser.add_argument("--model", default=None, help="GGUF model for llama (default: the tiny subword model)")
    parser.add_argument("--vocab", default="subword", help="tiny model vocabulary when --model is not given")
    parser.add_argument("--no-tokenizer", action="store_true", help="llama: do not use the server's /tokenize")
    parser.add_argument("--requests", type=int, default=24, help="requests per preset")
    parser.add_argument("--users", type=int, default=2, help="closed-loop users")
    parser.add_argument("--block", type=int, default=8, help="requests per block in the table")
    args = parser.parse_args(argv)

    if args.no_tokenizer:
        import loadbench.experiment as experiment

        experiment._token_counter = lambda target: None  # as if the server served no /tokenize

    presets = [("Prefill", Prefill()), ("Balanced", Balanced()), ("Decode", Decode())]
    with contextlib.ExitStack() as stack:
        sim = None
        if args.target == "llama":
            base_url, what = stack.enter_context(_llama(args.model, args.vocab, args.users))
        else:
            from loadbench.sim import SimConfig

            try:
                sim = SimConfig(trace=False, tokenize=False, piece_chars=3, chat_template_tokens=8,
                                message_template_tokens=4)
            except TypeError:
                raise SystemExit("this checkout's simulator cannot switch /tokenize off") from None
            base_url, what = None, "embedded simulator, /tokenize off, 3-char pieces, template 8 + 4/message"
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        print(f"target: {what}{' (its /tokenize not used)' if args.no_tokenizer else ''}; "
              f"{args.requests} requests per preset, {args.users} users, no warm-up")
        nblocks = (args.requests + args.block - 1) // args.block
        size = args.block
        head = " | ".join(f"req {b * size + 1}-{min(args.requests, (b + 1) * size)}" for b in range(nblocks))
        print(f"{'preset':<9} | {'all: p50 / p90':<15} | {head}   (|input error| p50 / p90, %)")
        for name, workload in presets:
            rep = _run(workload, base_url, sim, args, tmp / name)
            e = rep["errors"]
            parts = [e[b * size : (b + 1) * size] for b in range(nblocks)]
            blocks = " | ".join(f"{_pct(x, 50):4.1f} / {_pct(x, 90):4.1f}" for x in parts)
            print(f"{name:<9} | {_pct(e, 50):5.1f} / {_pct(e, 90):5.1f}   | {blocks}")
            lengths = rep["lengths"] or {}
            extra = [f"run {rep['wall_s']:.1f} s", f"bias {100 * float(np.mean(e)):+.1f}%"]
            if lengths.get("exact_first"):
                x = lengths["exact_first"]
                if x.get("prompts"):
                    extra.append(
                        f"measured before the load: {x['prompts']} prompts in {x['elapsed_s']:.2f} s, "
                        f"{x['tokenize_calls']} tokenize calls, {x['builds']} builds"
                    )
            if lengths.get("mode") == "records" or not lengths:
                until, after = _until_under(e), _all_after(e)
                extra.append("8 in a row under 5% from request " + (str(until + 1) if until is not None else "never"))
                extra.append("every later one from request " + (str(after + 1) if after is not None else "never"))
                if lengths:
                    extra.append(f"stated warm-up needed ~{lengths.get('warmup_needed_requests')}, "
                                 f"settled after {lengths.get('settled_after')}")
            for w in (lengths.get("warnings") or []):
                extra.append(f"warned: {w[:60]}...")
            print("          " + "; ".join(extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
