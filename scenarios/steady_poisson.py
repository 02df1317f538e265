"""Steady Poisson: conversational prompts arriving at a steady random rate (open loop).

Balanced inputs and outputs of a few hundred tokens at 6 requests/s for 20 s, the first 3 s a
warm-up left out of the summary. Open loop: requests are sent when the arrival process says,
however slow the server gets, so TTFT-from-schedule shows queueing honestly.
"""

from loadbench import Balanced, Normal, Poisson, Remote, Scenario, SimConfig, Stop

scenario = Scenario(
    workload=Balanced(input_tokens=Normal(256, 64, 64, 512), output_tokens=Normal(128, 32, 32, 256)),
    deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),  # the server's own model
    load=Poisson(rate_per_s=6.0),
    stop=Stop(duration_s=20.0, warmup_s=3.0),
    target="sim",
    sim=SimConfig(profile="gpu-8b", seed=1),
    seed=1,
    slo={"ttft_ms": 300, "tpot_ms": 40},
)
