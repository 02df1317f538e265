"""The integration rules, on synthetic signals whose exact energy is known."""

from __future__ import annotations

import pytest

from loadbench.energy.integrate import Timeline, cumulative

S = 1_000_000_000  # ns per second


def test_step_power_sampled_at_the_step_integrates_to_exactly_40_j() -> None:
    # 10 W for 1 s, then 30 W for 1 s; the step is sampled on both sides at t = 1 s.
    times = [0, S // 2, S, S, 3 * S // 2, 2 * S]
    watts = [10.0, 10.0, 10.0, 30.0, 30.0, 30.0]
    timeline, per_reading = cumulative("power_w", times, watts)
    assert timeline.energy_j(0, 2 * S) == 40.0
    assert timeline.energy_j(0, S) == 10.0
    assert timeline.energy_j(S, 2 * S) == 30.0
    assert per_reading == [0.0, 5.0, 10.0, 10.0, 25.0, 40.0]


def test_trapezoid_between_samples_either_side_of_a_step_splits_the_difference() -> None:
    # Samples at 0, 1, 2 s only: the rise from 10 W to 30 W is seen as a ramp over [1, 2] s.
    timeline, _ = cumulative("power_w", [0, S, 2 * S], [10.0, 10.0, 30.0])
    assert timeline.energy_j(0, 2 * S) == 10.0 + 20.0


def test_interval_power_is_watts_times_span_exactly() -> None:
    # powermetrics-style: each reading is the mean over the interval that ended at it.
    timeline, per_reading = cumulative("interval_power_w", [S, 2 * S], [10.0, 30.0], [S, S])
    assert timeline.t_ns == [0, S, 2 * S]  # the first span opens the timeline
    assert timeline.energy_j(0, 2 * S) == 40.0
    assert timeline.energy_j(S, 2 * S) == 30.0
    assert per_reading == [10.0, 40.0]


def test_interval_power_without_spans_uses_the_gap_since_the_previous_reading() -> None:
    timeline, _ = cumulative("interval_power_w", [0, S, 3 * S], [99.0, 10.0, 30.0])
    # The first reading has no known interval and only opens the timeline.
    assert timeline.energy_j(0, 3 * S) == 10.0 + 60.0


def test_counter_is_read_as_differences_and_interpolated_linearly() -> None:
    timeline, per_reading = cumulative("counter_j", [S, 2 * S, 3 * S], [1000.0, 1010.0, 1040.0])
    assert per_reading == [0.0, 10.0, 40.0]
    assert timeline.energy_j(S, 3 * S) == 40.0
    assert timeline.energy_j(S + S // 2, 2 * S + S // 2) == pytest.approx(5.0 + 15.0)


def test_no_extrapolation_and_coverage_reports_the_uncovered_part() -> None:
    timeline, _ = cumulative("counter_j", [S, 2 * S], [0.0, 10.0])
    assert timeline.energy_j(0, 4 * S) == 10.0  # nothing is invented outside [1, 2] s
    assert timeline.coverage(0, 4 * S) == 0.25
    assert timeline.coverage(S, 2 * S) == 1.0
    assert not Timeline([S], [0.0])  # one point covers nothing
    assert Timeline([S], [0.0]).coverage(0, S) == 0.0


def test_unknown_signal_and_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        cumulative("volts", [0], [1.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        cumulative("power_w", [0, 1], [1.0])
