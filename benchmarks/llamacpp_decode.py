"""loadbench against a real engine: llama.cpp's llama-server with the project's tiny GGUF model.

A Decode-shaped run (128-token prompts, exactly 256-token answers) at concurrency 1, 4 and 8 on a
server with 8 slots. For each, loadbench's client-side TTFT and decode rate beside the server's own
timings from each stream's final `timings` record (prompt_ms: prefill time; predicted_per_second:
decode rate), so the client's view and the engine's view can be read side by side.

    loadbench engine build     # once (minutes), cached in the user's cache directory
    python benchmarks/llamacpp_decode.py [--requests-per-user 6]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from loadbench import Concurrency, Decode, Experiment, Fixed, Remote, Scenario, Stop
from loadbench.engines.llamacpp import LlamaServer, find_llama_server, tiny_model_path


def _p50(section: dict | None) -> float | None:
    return None if not section else section.get("p50")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests-per-user", type=int, default=6)
    p.add_argument("--concurrency", default="1,4,8")
    ns = p.parse_args()
    if find_llama_server() is None:
        raise SystemExit("llama-server is not built: run `loadbench engine build` first")
    out = Path(tempfile.mkdtemp(prefix="loadbench-llamacpp-"))
    levels = [int(c) for c in ns.concurrency.split(",")]
    with LlamaServer(tiny_model_path(), n_parallel=max(levels), n_ctx=1024 * max(levels)) as server:
        print(f"llama-server at {server.base_url}, {max(levels)} slots, tiny llama GGUF (2 layers, 64 wide)")
        print(f"{'users':>6}{'req':>5}{'TTFT p50':>10}{'server prefill p50':>20}{'client decode tok/s':>21}"
              f"{'server decode tok/s':>21}{'ITL p50':>9}{'out tok/s':>11}")
        for users in levels:
            scenario = Scenario(
                name=f"llamacpp-c{users}",
                workload=Decode(input_tokens=Fixed(128), output_tokens=Fixed(256)),
                deployment=Remote.compatible(base_url=server.base_url),
                load=Concurrency(users),
                stop=Stop(requests=users * ns.requests_per_user, warmup_requests=users),
                target=server.base_url,
                energy=False,
                out_dir=out / f"c{users}",
            )
            s = Experiment(scenario).run().summary
            m, srv = s["metrics"], s.get("server", {})
            print(
                f"{users:>6}{s['requests']['completed']:>5}{m['ttft_ms']['p50']:>9.2f}m"
                f"{_p50(srv.get('prompt_ms')) or float('nan'):>19.2f}m"
                f"{m['decode_tokens_per_s']['p50']:>21.0f}{_p50(srv.get('output_tokens_per_s')) or float('nan'):>21.0f}"
                f"{m['itl_ms']['p50']:>8.3f}m{s['throughput']['output_tokens_per_s']:>11.0f}",
                flush=True,
            )
    print("(m = milliseconds)  runs in", out)


if __name__ == "__main__":
    main()
