"""CI soak: a steady open-loop load with gates, for a pipeline's pass/fail.

Conversation-sized prompts with short answers arrive as a Poisson process at 20 requests/s for
two minutes (the first 10 s a warm-up left out of the summary). The run fails (exit 99, a JUnit
failure per gate with `--junit`) when the system is too slow or degrades over the run:

* TTFT p99 and TPOT p99 within limits, and at least 90% of the offered rate served;
* fewer than 1% of requests failing; the run stops early once that can no longer pass;
* drift: the last 30 s's TTFT p99 at most 1.5x the first 30 s's, no rise in errors;
* the harness itself: RSS grown by less than 50 MB after warm-up, event loop never 100 ms late.

The limits suit the embedded simulator's "gpu-8b" profile; against a real server
(`--target http://127.0.0.1:8000`), set them from a baseline run of your own.
`--duration 1200` turns it into a 20-minute soak.
"""

from loadbench import Balanced, Gate, Normal, Poisson, Remote, Scenario, SimConfig, Stop

scenario = Scenario(
    workload=Balanced(input_tokens=Normal(256, 64, 64, 512), output_tokens=Normal(48, 12, 16, 96)),
    deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),  # the server's own model
    load=Poisson(rate_per_s=20.0),
    stop=Stop(duration_s=120.0, warmup_s=10.0, drain_s=15.0),
    target="sim",
    sim=SimConfig(profile="gpu-8b", seed=3, jitter=True),
    seed=3,
    energy=False,
    drift_window_s=30.0,
    gates=[
        "ttft_ms.p99 < 300",
        "tpot_ms.p99 < 40",
        "throughput.requests_per_s > 18",
        Gate.parse("error_rate < 1%", abort_on_fail=True, delay_s=10.0),
        "drift.ttft_ms.p99 < 1.5",
        "drift.error_rate < 0.01",
        "harness.rss_growth_mb < 50",
        "harness.loop_lag_ms.max < 100",
    ],
)
