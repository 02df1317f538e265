"""Every deployment, reasoning on and off, both client paths, against the simulator in its dialect.

One small closed-loop run per cell through the full harness (Experiment → scheduler → client →
recorder). Prints token counts (output, reasoning) and TTFT beside time to first *answer* token,
so the reasoning variable and the agreement of the two client paths can be read off one table:
the aiohttp path and the official SDKs must report the same counts.

    python benchmarks/dialect_matrix.py [--requests 12]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from loadbench import Q3B, Concurrency, Decode, Experiment, Fixed, Local, Remote, Scenario, SimConfig, Stop

MODELS = ("llama3.2:3b-instruct-q4_K_M", "deepseek-r1:1.5b")


def deployments(client: str) -> list[tuple[str, object, object]]:
    return [
        ("Local llama3.2 Q3B (ollama)", Local("llama3.2", client=client), Q3B()),
        ("Local deepseek-r1 (ollama)", Local("deepseek-r1:1.5b", client=client), None),
        ("Remote.openai", Remote.openai(client=client), None),
        ("Remote.deepseek", Remote.deepseek(client=client), None),
        ("Remote.claude", Remote.claude(client=client), None),
        ("Remote.compatible", Remote.compatible(base_url="http://127.0.0.1:8000", client=client), None),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=12)
    ns = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="loadbench-matrix-"))
    print(f"{'deployment':<30}{'reasoning':>10}{'client':>7}{'ok':>4}{'out tok':>9}{'reasoning tok':>14}"
          f"{'TTFT p50':>10}{'answer p50':>11}  model sent")
    for reasoning in (False, True):
        for client in ("http", "sdk"):
            for label, deployment, quant in deployments(client):
                result = Experiment(
                    Scenario(
                        workload=Decode(input_tokens=Fixed(48), output_tokens=Fixed(40)),
                        deployment=deployment,  # type: ignore[arg-type]
                        reasoning=reasoning,
                        quant=quant,
                        load=Concurrency(4),
                        stop=Stop(requests=ns.requests),
                        target="sim",
                        sim=SimConfig(profile="gpu-8b", models=MODELS, reasoning_tokens=24),
                        energy=False,
                        out_dir=out / f"{label.split()[0]}-{len(label)}-{reasoning}-{client}",
                    )
                ).run()
                s = result.summary
                m = s["metrics"]
                print(
                    f"{label:<30}{reasoning!s:>10}{client:>7}{s['requests']['completed']:>4}"
                    f"{s['tokens']['output_total']:>9}{s['tokens']['reasoning_total']:>14}"
                    f"{m['ttft_ms']['p50']:>9.1f}m{m['time_to_first_answer_ms']['p50']:>10.1f}m  "
                    f"{result.run['target']['model']}",
                    flush=True,
                )
    print("(m = milliseconds)")


if __name__ == "__main__":
    main()
