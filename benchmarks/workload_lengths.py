"""How close the workloads' token targets land on what a server counts.

For each preset, opens a prompt stream, sends its prompts one after another to a real server
(the embedded simulator by default; llama.cpp's ``llama-server`` with ``--target llama`` when it
has been built), feeds every finished request back to the stream (``observe``: the calibration a
run does during warm-up), and prints target vs server-reported input and output tokens (p50,
p90) and the relative error per request, over the requests after the warm-up.

Three token counters are compared: ``estimate`` (the default, which needs nothing and calibrates
from the records), ``estimate/7`` (the same with a deliberately wrong characters-per-token, to
show what the calibration corrects during warm-up) and ``server`` (the target's ``/tokenize``:
the first prompts are measured before the load, see ``first_request_lengths.py``). Note that the
simulator's tokenizer splits words into pieces of at most four characters, which the default
estimate mirrors, so against the simulator the default is exact from the first request; the
mis-set estimate and llama-server show calibration at work.

    python benchmarks/workload_lengths.py [--target sim|llama] [--requests 48] [--warmup 16]

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from loadbench.contract.record import RequestRecord
from loadbench.workloads import (
    Balanced,
    CalibratedEstimate,
    Decode,
    MultiTurn,
    Prefill,
    Prompt,
    ServerTokenizer,
    TokenCounter,
    Workload,
    length_report,
)


@contextlib.contextmanager
def _target(kind: str) -> Iterator[tuple[str, str]]:
    """(base URL, description) of a running server, stopped on exit."""
    if kind == "sim":
        from loadbench.sim import SimConfig, SimProcess

        with SimProcess(SimConfig(trace=False)) as sim:
            yield sim.base_url, "embedded simulator (instant profile)"
        return
    from loadbench.engines.llamacpp import LlamaServer, find_llama_server

    if find_llama_server() is None:
        raise SystemExit("llama-server is not built: loadbench engine build")
    with LlamaServer(n_ctx=8192, n_parallel=1) as server:
        yield server.base_url, "llama-server (tiny random-weight model)"


def _send(base_url: str, prompt: Prompt, timeout_s: float) -> dict[str, Any]:
    body = {
        "model": "loadbench",
        "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
        "max_tokens": prompt.max_output_tokens,
        "ignore_eos": prompt.ignore_eos,
        "stream": False,
    }
    req = urllib.request.Request(
        base_url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.loads(resp.read())["usage"]


def _measure(
    base_url: str, workload: Workload, counter: TokenCounter, *, warmup: int, requests: int, timeout_s: float
) -> dict[str, Any]:
    t0 = time.perf_counter()
    stream = workload.open(seed=0, counter=counter)
    open_s = time.perf_counter() - t0
    records: list[RequestRecord] = []
    build_s = 0.0
    for i in range(warmup + requests):
        t1 = time.perf_counter()
        prompt = next(stream)
        build_s += time.perf_counter() - t1
        usage = _send(base_url, prompt, timeout_s)
        rec = RequestRecord(index=i, request_id=f"wl-{i}", intended_ns=0, phase="warmup" if i < warmup else "measured")
        rec.status = "ok"
        rec.target_input_tokens = prompt.target_input_tokens
        rec.target_output_tokens = prompt.target_output_tokens
        rec.input_tokens = usage.get("prompt_tokens")
        rec.output_tokens = usage.get("completion_tokens")
        stream.observe(prompt, rec)
        records.append(rec)
    report = length_report(r for r in records if r.phase == "measured")
    report["warmup"] = length_report(r for r in records if r.phase == "warmup")
    report["open_s"] = open_s
    report["build_us_per_prompt"] = build_s / (warmup + requests) * 1e6
    report["calibration"] = stream.model.describe()
    return report


def _row(label: str, side: dict[str, Any]) -> str:
    if not side.get("n"):
        return f"  {label:<7} (no server counts)"
    return (
        f"  {label:<7} target p50 {side['target_p50']:7.0f} p90 {side['target_p90']:7.0f} | "
        f"reported p50 {side['reported_p50']:7.0f} p90 {side['reported_p90']:7.0f} | "
        f"|err| p50 {100 * side['rel_error_p50']:5.1f}% p90 {100 * side['rel_error_p90']:5.1f}% "
        f"bias {100 * side['rel_error_mean_signed']:+5.1f}%"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("sim", "llama"), default="sim")
    parser.add_argument("--requests", type=int, default=48, help="measured requests per preset and counter")
    parser.add_argument("--warmup", type=int, default=16, help="requests fed back before measuring")
    parser.add_argument("--timeout-s", type=float, default=120.0)
    args = parser.parse_args(argv)

    presets: list[tuple[str, Workload]] = [
        ("prefill", Prefill()),
        ("balanced", Balanced()),
        ("decode", Decode()),
        ("balanced multi-turn", Balanced(multi_turn=MultiTurn())),
    ]
    with _target(args.target) as (base_url, what):
        print(f"target: {what} at {base_url}; {args.warmup} warm-up + {args.requests} measured requests each")
        for name, workload in presets:
            counters: list[tuple[str, TokenCounter]] = [
                ("estimate", CalibratedEstimate()),
                ("estimate/7", CalibratedEstimate(chars_per_token=7)),
                ("server", ServerTokenizer(base_url)),
            ]
            for counter_name, counter in counters:
                rep = _measure(
                    base_url, workload, counter, warmup=args.warmup, requests=args.requests, timeout_s=args.timeout_s
                )
                cal = rep["calibration"]
                print(
                    f"{name} [{counter_name}]  build {rep['build_us_per_prompt']:.0f} us/prompt, open "
                    f"{rep['open_s'] * 1e3:.0f} ms; learnt overhead {cal['overhead_tokens']:.1f} + "
                    f"{cal['per_message_tokens']:.1f}/message, scale {cal['scale']:.3f}"
                )
                warm = rep["warmup"]["input"]
                if warm.get("n"):
                    print(f"  warm-up input |err| p50 {100 * warm['rel_error_p50']:5.1f}% "
                          f"p90 {100 * warm['rel_error_p90']:5.1f}%")
                print(_row("input", rep["input"]))
                print(_row("output", rep["output"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
