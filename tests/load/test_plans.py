"""Load plans: the offsets each plan yields, their statistics, validation and phases."""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import islice, pairwise

import numpy as np
import orjson
import pytest

from loadbench.contract.errors import ConfigError
from loadbench.load.plans import (
    NS_PER_S,
    Burst,
    Concurrency,
    Constant,
    Gamma,
    Poisson,
    Ramp,
    Stop,
    check_plan,
    is_closed_loop,
)


def take(plan, n: int, seed: int = 0) -> list[int]:
    return list(islice(plan.offsets_ns(np.random.default_rng(seed)), n))


def gaps_s(offsets: list[int]) -> np.ndarray:
    return np.diff(np.asarray(offsets, dtype=np.int64)) / NS_PER_S


# -- offsets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1.0, 7.0, 333.3, 0.25])
def test_constant_offset_is_i_over_rate_to_the_nanosecond(rate: float) -> None:
    offsets = take(Constant(rate), 2000)
    exact_rate = Fraction(rate)
    for i, off in enumerate(offsets):
        exact_ns = Fraction(i * NS_PER_S) / exact_rate
        assert abs(off - exact_ns) <= Fraction(1, 2) + Fraction(1, 10**6), (i, off, float(exact_ns))
    # No drift from summing gaps: the 2000th offset is where i / rate puts it.
    assert offsets[-1] == round(1999 * NS_PER_S / rate)


@pytest.mark.parametrize("plan", [Poisson(50.0), Gamma(50.0, burstiness=0.3), Gamma(50.0, burstiness=5.0)])
def test_random_plans_start_at_zero_and_never_go_back(plan) -> None:
    offsets = take(plan, 5000, seed=3)
    assert offsets[0] == 0
    assert all(b >= a for a, b in pairwise(offsets))


def test_poisson_gaps_have_mean_one_over_rate_and_cv_one() -> None:
    rate = 40.0
    gaps = gaps_s(take(Poisson(rate), 200_001, seed=11))
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.01)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("shape", [0.25, 1.0, 4.0])
def test_gamma_mean_gap_and_burstiness_sets_coefficient_of_variation(shape: float) -> None:
    rate = 20.0
    gaps = gaps_s(take(Gamma(rate, burstiness=shape), 200_001, seed=5))
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.02)
    # Gamma(shape k) gaps: CV = 1 / sqrt(k). Burstier (k < 1) means CV above 1.
    assert gaps.std() / gaps.mean() == pytest.approx(1 / math.sqrt(shape), rel=0.03)


def test_random_plans_are_deterministic_for_a_seed() -> None:
    for plan in (Poisson(10.0), Gamma(10.0, burstiness=0.5), Ramp(1.0, 10.0, 5.0, arrivals="poisson")):
        assert take(plan, 3000, seed=42) == take(plan, 3000, seed=42)
        assert take(plan, 3000, seed=42) != take(plan, 3000, seed=43)


def test_burst_releases_waves_of_equal_offsets_and_ends_after_the_last_wave() -> None:
    offsets = list(Burst(size=3, every_s=0.5, waves=4).offsets_ns(np.random.default_rng(0)))
    assert offsets == [w * NS_PER_S // 2 for w in range(4) for _ in range(3)]


def test_burst_without_wave_limit_keeps_going() -> None:
    offsets = take(Burst(size=2, every_s=1.5), 1000)
    assert len(offsets) == 1000
    assert offsets[-1] == round(499 * 1.5 * NS_PER_S)


@pytest.mark.parametrize(("a", "b"), [(2.0, 10.0), (0.0, 8.0), (10.0, 2.0), (5.0, 5.0)])
def test_constant_ramp_count_follows_the_integral_then_stays_at_the_final_rate(a: float, b: float) -> None:
    over_s = 4.0
    plan = Ramp(a, b, over_s)
    offsets = take(plan, 400)
    assert offsets[0] == 0
    assert all(y >= x for x, y in pairwise(offsets))

    def arrivals_by(t_s: float) -> int:
        return sum(1 for off in offsets if off <= t_s * NS_PER_S + 1)

    # Expected count by t during the ramp: a t + (b - a) t^2 / (2 T); request n goes when it reaches n.
    for t_s in (0.5, 1.0, 2.0, 3.0, 3.9):
        expected = a * t_s + (b - a) * t_s * t_s / (2 * over_s)
        assert arrivals_by(t_s) == math.floor(expected + 1e-9) + 1, t_s
    ramp_count = (a + b) / 2 * over_s
    assert arrivals_by(over_s) == math.floor(ramp_count) + 1
    # After the ramp: exactly 1 / b apart.
    after = [off for off in offsets if off > over_s * NS_PER_S + 1]
    assert len(after) > 100
    assert np.allclose(gaps_s(after), 1 / b, atol=2e-9)


def test_poisson_ramp_counts_match_the_rate_integral() -> None:
    a, b, over_s = 0.0, 1000.0, 10.0
    offsets = np.asarray(take(Ramp(a, b, over_s, arrivals="poisson"), 12_000, seed=9))
    in_ramp = int(np.sum(offsets < over_s * NS_PER_S))
    expected = (a + b) / 2 * over_s  # 5000, sd ~ 71
    assert abs(in_ramp - expected) < 5 * math.sqrt(expected)
    # First half of the ramp holds a quarter of its arrivals (the rate is linear).
    first_half = int(np.sum(offsets < over_s / 2 * NS_PER_S))
    assert abs(first_half - expected / 4) < 5 * math.sqrt(expected / 4)
    after = int(np.sum((offsets >= over_s * NS_PER_S) & (offsets < (over_s + 1) * NS_PER_S)))
    assert abs(after - b) < 5 * math.sqrt(b)


# -- validation names the field -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Constant(-1.0), "Constant.rate_per_s"),
        (lambda: Constant(0), "Constant.rate_per_s"),
        (lambda: Constant(float("nan")), "Constant.rate_per_s"),
        (lambda: Constant(float("inf")), "Constant.rate_per_s"),
        (lambda: Constant(True), "Constant.rate_per_s"),
        (lambda: Constant("5"), "Constant.rate_per_s"),
        (lambda: Poisson(-3.0), "Poisson.rate_per_s"),
        (lambda: Gamma(5.0, burstiness=0), "Gamma.burstiness"),
        (lambda: Concurrency(0), "Concurrency.users"),
        (lambda: Concurrency(2.5), "Concurrency.users"),
        (lambda: Concurrency(2, think_s=-1), "Concurrency.think_s"),
        (lambda: Constant(5.0, max_concurrency=0), "Constant.max_concurrency"),
        (lambda: Poisson(5.0, max_concurrency=1.5), "Poisson.max_concurrency"),
        (lambda: Burst(size=0), "Burst.size"),
        (lambda: Burst(size=2, every_s=0), "Burst.every_s"),
        (lambda: Burst(size=2, waves=0), "Burst.waves"),
        (lambda: Ramp(-1.0, 5.0, 10.0), "Ramp.from_rate_per_s"),
        (lambda: Ramp(1.0, 0.0, 10.0), "Ramp.to_rate_per_s"),
        (lambda: Ramp(1.0, 5.0, 0.0), "Ramp.over_s"),
        (lambda: Ramp(1.0, 5.0, 10.0, arrivals="uniform"), "Ramp.arrivals"),
        (lambda: Stop(duration_s=-5), "Stop.duration_s"),
        (lambda: Stop(requests=0), "Stop.requests"),
        (lambda: Stop(requests=10, drain_s=-1), "Stop.drain_s"),
        (lambda: Stop(duration_s=10, warmup_s=-1), "Stop.warmup_s"),
    ],
)
def test_bad_values_raise_config_error_naming_the_field(make, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert field in str(info.value)


def test_poisson_refuses_a_burstiness() -> None:
    with pytest.raises(ConfigError, match="burstiness"):
        Poisson(5.0, burstiness=2.0)


def test_stop_needs_a_limit() -> None:
    with pytest.raises(ConfigError, match="duration_s or requests"):
        Stop()


def test_stop_rejects_warmup_longer_than_the_run() -> None:
    with pytest.raises(ConfigError) as info:
        Stop(duration_s=10, warmup_s=8, cooldown_s=2)
    assert "warmup_s" in str(info.value) and "duration_s" in str(info.value)
    with pytest.raises(ConfigError, match="warmup_requests"):
        Stop(requests=5, warmup_requests=5)
    # Just inside the limits is fine.
    Stop(duration_s=10, warmup_s=7.5, cooldown_s=2)
    Stop(requests=5, warmup_requests=4)


def test_check_plan_accepts_plans_and_rejects_other_values() -> None:
    for plan in (Concurrency(2), Constant(1.0), Poisson(1.0), Gamma(1.0), Burst(2), Ramp(1.0, 2.0, 3.0)):
        check_plan(plan)
    assert is_closed_loop(Concurrency(2)) and not is_closed_loop(Constant(1.0))
    with pytest.raises(ConfigError, match="load must be a load plan"):
        check_plan(5)


def test_describe_is_json_ready_and_names_the_plan() -> None:
    for plan in (Concurrency(2), Constant(1.0), Poisson(1.0), Gamma(1.0, 0.5), Burst(2), Ramp(1.0, 2.0, 3.0)):
        d = orjson.loads(orjson.dumps(plan.describe()))
        assert d["plan"] == type(plan).__name__
    assert Poisson(3.0).describe() == {"plan": "Poisson", "rate_per_s": 3.0, "max_concurrency": None}
    assert Stop(requests=3).describe()["requests"] == 3


# -- phases -------------------------------------------------------------------------------------


def test_phase_by_time_warmup_and_cooldown() -> None:
    stop = Stop(duration_s=10, warmup_s=2, cooldown_s=3)
    s = NS_PER_S
    assert stop.phase(0, 0) == "warmup"
    assert stop.phase(50, 2 * s - 1) == "warmup"
    assert stop.phase(51, 2 * s) == "measured"
    assert stop.phase(90, 7 * s - 1) == "measured"
    assert stop.phase(91, 7 * s) == "cooldown"
    assert stop.phase(99, 10 * s) == "cooldown"


def test_phase_by_count_warmup() -> None:
    stop = Stop(requests=10, warmup_requests=3)
    assert [stop.phase(i, 10**12) for i in range(5)] == ["warmup"] * 3 + ["measured"] * 2


def test_no_warmup_means_everything_is_measured() -> None:
    stop = Stop(duration_s=5)
    assert {stop.phase(i, i * NS_PER_S // 2) for i in range(10)} == {"measured"}


def test_a_cooldown_needs_a_timed_run() -> None:
    with pytest.raises(ConfigError, match=r"cooldown_s needs duration_s"):
        Stop(requests=50, cooldown_s=2.0)
    assert Stop(requests=50, duration_s=10, cooldown_s=2.0).cooldown_s == 2.0
