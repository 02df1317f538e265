"""The experiment matrix: workload x deployment x reasoning, every cell measured the same way.

Prefill (long documents, short answers), Balanced (chat) and Decode (short questions, long answers)
against a Local model (Ollama's native dialect, a laptop-class engine in the simulator), a Remote
one (an OpenAI-compatible API, a hosted-fleet engine in the simulator) and a Hybrid of the two (the
Minion protocol: the remote supervisor asks, the local worker answers from the document, the
supervisor answers), with reasoning off and on: 18 cells of four users for 10 s each, about five
minutes on the embedded simulator. Lengths are shortened from the presets' defaults (same shapes)
so a laptop-class cell ends in time. A Hybrid request's TTFT and E2E run from its schedule to the
final answer, across all of its calls.

    python -m loadbench scenarios/matrix.py                      # study.json, cells.csv, a table
    python -m loadbench scenarios/matrix.py --resume results/matrix-...   # after a Ctrl-C
    python -m loadbench scenarios/matrix.py --target http://127.0.0.1:11434   # a real Ollama

With ``--target URL`` every cell goes to that server, a Hybrid cell's local and remote calls both:
an Ollama serves both dialects (and so all three deployments); an OpenAI-only server (vLLM,
llama-server) fails the Local and Hybrid cells (the Hybrid's worker speaks Ollama's dialect), which
are recorded as failed while the Remote ones run. To send a Hybrid's sides to two servers, give it
``local_url=`` and ``remote_url=`` (they take precedence over ``--target``); for a hosted API, swap
in ``Remote.openai(...)`` / ``Remote.claude(...)``.
"""

from loadbench import (
    Q3B,
    Balanced,
    Concurrency,
    Decode,
    Fields,
    Hybrid,
    Local,
    Minion,
    Normal,
    Prefill,
    Remote,
    Scenario,
    SimConfig,
    Stop,
    Study,
    Uniform,
)

LOCAL = Fields(
    "Local",
    deployment=Local("llama3.2", quant=Q3B()),
    sim=SimConfig(profile="laptop-1.5b", models=("llama3.2:3b-instruct-q4_K_M",), seed=1),
)
REMOTE = Fields(
    "Remote",
    deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),  # the server's own model
    sim=SimConfig(profile="remote-api", seed=1),
)
# Both of the above as one: the local worker reads the document, the remote supervisor asks and
# answers (Minion). On the simulator the remote side gets a simulator of its own (the hosted-fleet
# engine); with --target both sides go to that server.
HYBRID = Fields(
    "Hybrid",
    deployment=Hybrid(
        LOCAL.fields["deployment"],
        REMOTE.fields["deployment"],
        Minion(max_rounds=1, worker_max_tokens=64),  # one exchange: question, reply, answer
        remote_sim=REMOTE.fields["sim"],
    ),
    sim=LOCAL.fields["sim"],
)

study = Study(
    base=Scenario(
        workload=Balanced(),
        deployment=LOCAL.fields["deployment"],
        load=Concurrency(4),
        stop=Stop(duration_s=10.0, warmup_s=2.0, drain_s=20.0),
        target="sim",
        sim=LOCAL.fields["sim"],
        seed=1,
        slo={"ttft_ms": 2000, "tpot_ms": 60},
    ),
    vary={
        "workload": {
            "Prefill": Prefill(),
            "Balanced": Balanced(input_tokens=Normal(256, 64, 64, 512), output_tokens=Normal(128, 32, 32, 256)),
            "Decode": Decode(input_tokens=Normal(96, 24, 32, 192), output_tokens=Uniform(160, 320)),
        },
        "deployment": [LOCAL, REMOTE, HYBRID],
        "reasoning": [False, True],
    },
)
