"""Capacity search against a server whose capacity is known exactly: a check of the search itself.

The simulator's fixed timing: 4 slots, the first token 100 ms after a request gets a slot, then one
token every 20 ms, 32 tokens per answer. Each request holds its slot 100 + 31 x 20 = 720 ms, so the
server completes at most 4 / 0.72 = 5.56 requests/s. Arrivals are evenly spaced (constant rate), so
below that rate TTFT stays at 100 ms and above it the queue, and TTFT, grow without bound: the true
boundary of the SLO below is 5.56 requests/s. The search should end with an interval holding it,
5% wide, in two to three minutes.

    python -m loadbench scenarios/capacity_known.py [--seed N]
"""

from loadbench import CapacitySearch, Decode, EngineProfile, Fixed, Remote, Scenario, SimConfig

PROFILE = EngineProfile(name="fixed-4", slots=4, fixed_ttft_ms=100.0, fixed_itl_ms=20.0)
OUTPUT_TOKENS = 32
TRUE_CAPACITY_PER_S = PROFILE.capacity_per_s(OUTPUT_TOKENS)  # 5.556

search = CapacitySearch(
    Scenario(
        workload=Decode(input_tokens=Fixed(32), output_tokens=Fixed(OUTPUT_TOKENS)),
        deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
        target="sim",
        sim=SimConfig(profile=PROFILE),
        energy=False,
    ),
    slo={"ttft_ms.p90": 300, "error_rate": 0.1},
    over="rate",
    arrivals="constant",
    start=2.0,
    tolerance=0.05,
    warmup_s=2.0,
    probe_s=8.0,
)
