"""Fault soak: a steady load while the server misbehaves in every way the simulator knows.

Each request has a 3% chance of each fault: HTTP 429 (with Retry-After), 500, 503, Anthropic-style
529, a refused connection, a reset mid-stream, a stall longer than the first-token deadline, a
malformed chunk, an in-stream error event, a stream truncated before its final record, and slow
headers. The run must never crash: every failure lands in exactly one error category, and
scheduled = completed + failed + cancelled. A template for CI soak tests.
"""

from loadbench import Balanced, FaultPlan, Fixed, Poisson, Remote, Scenario, SimConfig, Stop, Timeouts

KINDS = (
    "429", "500", "503", "529", "refuse", "reset", "stall", "malformed", "stream_error", "truncate", "slow_headers",
)

scenario = Scenario(
    workload=Balanced(input_tokens=Fixed(128), output_tokens=Fixed(48)),
    deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
    load=Poisson(rate_per_s=40.0),
    stop=Stop(duration_s=15.0, drain_s=10.0),
    timeouts=Timeouts(connect_s=2.0, first_token_s=1.5, total_s=5.0),
    target="sim",
    sim=SimConfig(
        profile="gpu-8b",
        seed=7,
        faults=FaultPlan(rates=dict.fromkeys(KINDS, 0.03), after_tokens=6, stall_s=6.0, slow_headers_s=2.5),
    ),
)
