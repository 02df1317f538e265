"""Capacity search: the highest Poisson request rate a laptop-class server takes within its SLOs.

Chat-sized requests (about 256 tokens in, 64 out) against the simulator's ``laptop-3b`` engine (four
slots, ~22-36 ms per token). The search doubles the rate from 0.5/s until a probe fails, then bisects
to 10%, judging each probe by how many of its requests met each objective (with a 95% Wilson
interval), and ends a probe early once its backlog or TTFT shows it is clearly past capacity.
About eight to ten minutes on a busy host; the answer, stop reason and every probe go to capacity.json.

    python -m loadbench scenarios/capacity.py
    python -m loadbench scenarios/capacity.py --target http://127.0.0.1:8080   # a real server
"""

from loadbench import Balanced, CapacitySearch, Normal, Remote, Scenario, SimConfig

search = CapacitySearch(
    Scenario(
        workload=Balanced(input_tokens=Normal(256, 64, 64, 512), output_tokens=Normal(64, 16, 16, 128)),
        deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),  # the server's own model
        target="sim",
        sim=SimConfig(profile="laptop-3b", seed=1),
        seed=1,
    ),
    slo={"ttft_ms.p90": 1500, "tpot_ms.p90": 60, "error_rate": 0.1},
    over="rate",
    start=0.5,
    tolerance=0.1,
    warmup_s=3.0,
    probe_s=10.0,
    max_probe_s=40.0,
)
