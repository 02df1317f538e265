"""Gates: parsing, the figures they may name (from the summary builder), verdicts, early aborts."""

from __future__ import annotations

import pytest

from loadbench import Concurrency, Constant, Decode, Fixed, Gate, Poisson, Remote, Scenario, Stop
from loadbench.contract.errors import ConfigError
from loadbench.experiment import Experiment, _max_requests
from loadbench.gates import LiveFigures, LiveJudge, evaluate, schema
from loadbench.metrics.recorder import METRICS

KEYS = tuple(m.key for m in METRICS)


def scenario(**kw) -> Scenario:
    base = dict(
        workload=Decode(input_tokens=Fixed(16), output_tokens=Fixed(8)),
        deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
        load=Constant(10),
        stop=Stop(duration_s=10),
        target="sim",
        energy=False,
    )
    return Scenario(**{**base, **kw})


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("ttft_ms.p99 =< 500", "bad operator '=<'"),
        ("ttft_ms.p99 = 500", "bad operator '='"),
        ("ttft_ms.p99 <> 500", "bad operator '<>'"),
        ("ttft_ms.p99 < 5OO", "bad number '5OO'"),
        ("ttft_ms.p99 < nan", "bad number 'nan'"),
        ("ttft_ms.p99 < ", "bad number ''"),
        ("ttft_ms.p99", "expected 'PATH OP NUMBER'"),
        ("< 500", "expected 'PATH OP NUMBER'"),
        ("", "gate must be a string"),
    ],
)
def test_malformed_gates_are_config_errors_naming_the_expression(expr: str, message: str) -> None:
    with pytest.raises(ConfigError, match="gate") as info:
        scenario(gates=[expr])
    assert message in str(info.value)


def test_gate_parses_numbers_and_percent() -> None:
    g = Gate.parse("error_rate <= 1.5%")
    assert (g.path, g.op, g.limit) == ("error_rate", "<=", pytest.approx(0.015))
    assert Gate.parse("ttft_ms.p99<5e2").limit == 500
    assert scenario(gates="ttft_ms.p99 < 500").gates == (Gate.parse("ttft_ms.p99 < 500"),)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("ttft_ms.p999 < 5", "unknown figure 'ttft_ms.p999'; did you mean 'ttft_ms.p99_9'"),
        ("ttfb_ms.p99 < 5", "did you mean 'ttft_ms.p99'"),
        ("throughput.output_tokens < 5", "did you mean 'throughput.output_tokens_per_s'"),
        ("errors < 1", "unknown figure 'errors'"),
        ("scenario < 1", "'scenario' is not a number"),
        ("metrics.ttft_ms < 1", "unknown figure 'metrics.ttft_ms'"),
    ],
)
def test_gates_naming_figures_a_summary_lacks_are_rejected(expr: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Experiment.check_gates(scenario(gates=[expr]))
    assert message in str(info.value)


def test_the_gate_schema_is_the_summary_builders_own() -> None:
    kinds = schema(Experiment.summary_skeleton(scenario()))
    for path in (
        "metrics.ttft_ms.p99", "metrics.itl_ms.p99_9", "throughput.output_tokens_per_s", "requests.failed",
        "requests.errors.rate_limited", "error_rate", "drift.ttft_ms.p99", "drift.error_rate",
        "drift.throughput.output_tokens_per_s", "drift.first.ttft_ms.p99", "harness.rss_growth_mb",
        "harness.loop_lag_ms.max", "lengths.input.n", "window.duration_s",
    ):  # fmt: skip
        assert kinds.get(path) == "number", path
    assert kinds["stopped_by"] == "text"
    # Energy figures are there only when energy is measured.
    assert "energy.wh_per_request" not in kinds
    assert schema(Experiment.summary_skeleton(scenario(energy=None)))["energy.wh_per_request"] == "number"


def summary(**sections) -> dict:
    base = {
        "requests": {"failed": 3, "errors": {"unavailable": 3}, "by_phase": {"measured": {"ok": 97, "failed": 3}}},
        "metrics": {"ttft_ms": {"p99": 420.0, "max": None}},
        "throughput": {"output_tokens_per_s": 80.0},
    }
    return {**base, **sections}


def test_evaluate_reports_value_and_verdict_and_never_passes_on_missing_data() -> None:
    gates = [Gate.parse(e) for e in (
        "ttft_ms.p99 < 500", "error_rate < 1%", "throughput.output_tokens_per_s > 100", "ttft_ms.max < 1e9",
        "requests.errors.rate_limited == 0",
    )]  # fmt: skip
    results = {r["expr"]: r for r in evaluate(gates, summary(), KEYS)}
    assert results["ttft_ms.p99 < 500"] | {"passed": True, "value": 420.0, "path": "metrics.ttft_ms.p99"} == results[
        "ttft_ms.p99 < 500"
    ]
    assert results["error_rate < 1%"]["value"] == pytest.approx(0.03) and not results["error_rate < 1%"]["passed"]
    assert not results["throughput.output_tokens_per_s > 100"]["passed"]
    missing = results["ttft_ms.max < 1e9"]
    assert missing["passed"] is False and missing["value"] is None and missing["reason"] == "not measured"
    assert results["requests.errors.rate_limited == 0"]["passed"]  # an error category never seen is 0


def test_the_gate_that_aborted_a_run_fails_whatever_its_end_value() -> None:
    (result,) = evaluate([Gate.parse("ttft_ms.p99 < 500")], summary(), KEYS, aborted_by="ttft_ms.p99 < 500")
    assert result["passed"] is False and result["aborted_run"] and "aborted" in result["reason"]


def live(**kw) -> LiveFigures:
    base = dict(
        elapsed_s=100.0, measured_ok=0, measured_failed=0, counts={}, over=lambda m, t, i: 0, maximum=lambda m: None
    )
    return LiveFigures(**{**base, **kw})


def test_counts_and_maxima_are_lost_once_crossed() -> None:
    judge = LiveJudge([Gate.parse("requests.failed < 10", abort_on_fail=True)], KEYS, None)
    assert judge.lost(live(counts={"requests.failed": 9})) is None
    assert judge.lost(live(counts={"requests.failed": 10})).expr == "requests.failed < 10"
    judge = LiveJudge([Gate.parse("ttft_ms.max <= 2000", abort_on_fail=True)], KEYS, None)
    assert judge.lost(live(maximum=lambda m: 2000.0)) is None
    assert judge.lost(live(maximum=lambda m: 2000.5)) is not None


def test_error_rate_is_lost_only_when_no_remaining_request_could_save_it() -> None:
    judge = LiveJudge([Gate.parse("error_rate < 5%", abort_on_fail=True)], KEYS, max_finished=1000)
    # 49 failures in 60 requests is a 82% rate now, but 951 successes would still pass.
    assert judge.lost(live(measured_ok=11, measured_failed=49)) is None
    assert judge.lost(live(measured_ok=11, measured_failed=50)) is not None  # 50/1000 is not < 5%


def test_percentiles_are_lost_when_too_many_values_are_already_over_the_limit() -> None:
    judge = LiveJudge([Gate.parse("ttft_ms.p99 < 500", abort_on_fail=True)], KEYS, max_finished=1000)
    assert judge.lost(live(over=lambda m, t, i: 10)) is None  # 1% of 1,000 may be over
    assert judge.lost(live(over=lambda m, t, i: 11)) is not None


def test_no_early_verdict_before_the_delay() -> None:
    judge = LiveJudge([Gate.parse("requests.failed < 1", abort_on_fail=True, delay_s=30)], KEYS, None)
    assert judge.lost(live(elapsed_s=29.9, counts={"requests.failed": 5})) is None
    assert judge.lost(live(elapsed_s=30.0, counts={"requests.failed": 5})) is not None


@pytest.mark.parametrize("expr", ["throughput.output_tokens_per_s > 100", "ttft_ms.mean < 5", "drift.ttft_ms.p99 < 2",
                                  "ttft_ms.p99 > 1", "harness.rss_growth_mb < 50"])
def test_abort_on_gates_that_only_the_end_can_judge_is_bad_input(expr: str) -> None:
    with pytest.raises(ConfigError, match="only be judged at the end"):
        Experiment.check_gates(scenario(gates=[Gate.parse(expr, abort_on_fail=True)]))


def test_abort_on_a_rate_needs_a_bound_on_the_requests() -> None:
    timed_closed = scenario(load=Concurrency(4), gates=[Gate.parse("error_rate < 1%", abort_on_fail=True)])
    with pytest.raises(ConfigError, match="closed loop stopped by time"):
        Experiment.check_gates(timed_closed)
    Experiment.check_gates(timed_closed.replace(stop=Stop(requests=100)))  # a request limit bounds it


def test_the_bound_is_the_plans_own_arrivals() -> None:
    assert _max_requests(scenario(load=Constant(10), stop=Stop(duration_s=10))) == 100
    assert _max_requests(scenario(load=Constant(10), stop=Stop(duration_s=10, requests=40))) == 40
    assert _max_requests(scenario(load=Concurrency(3), stop=Stop(duration_s=10))) is None
    n = _max_requests(scenario(load=Poisson(20), stop=Stop(duration_s=30), seed=5))
    assert 450 < n < 750  # Poisson around 600, the exact count the scheduler will draw


def test_cli_gates_are_added_to_the_scenarios() -> None:
    s = scenario(gates=["ttft_ms.p99 < 500"]).with_overrides(gates=["error_rate < 1%"])
    assert [g.expr for g in s.gates] == ["ttft_ms.p99 < 500", "error_rate < 1%"]
