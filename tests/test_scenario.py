"""Scenario values: validation, replace and the command line's overrides (files: test_loader.py)."""

from __future__ import annotations

import pytest

from loadbench.contract.errors import ConfigError
from loadbench.deployments import Remote
from loadbench.load.plans import Concurrency, Poisson, Stop
from loadbench.scenario import Scenario


class TinyWorkload:
    """The least a workload must offer a Scenario."""

    def open(self, seed: int, counter: object) -> object:
        return iter(())

    def describe(self) -> dict:
        return {"workload": "tiny"}


def deployment() -> Remote:
    return Remote.compatible(base_url="http://127.0.0.1:9", model="m")


def scenario(**kw) -> Scenario:
    return Scenario(**{"workload": TinyWorkload(), "deployment": deployment(), **kw})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"deployment": "gpt"}, "deployment"),
        ({"workload": 5}, "workload"),
        ({"reasoning": "yes"}, "reasoning"),
        ({"load": 10}, "load"),
        ({"stop": 10}, "stop"),
        ({"target": "ftp://host"}, "target"),
        ({"target": "http://"}, "target"),
        ({"seed": 1.5}, "seed"),
        ({"slo": {"ttft": 100}}, "slo"),
        ({"slo": {"ttft_ms": -1}}, "slo"),
        ({"hlog_interval_s": 0}, "hlog_interval_s"),
        ({"name": "a/b"}, "name"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_scenario_values_raise_config_error_naming_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        scenario(**changes)
    assert field in str(info.value)


def test_valid_targets() -> None:
    for target in (None, "sim", "http://127.0.0.1:8000", "https://example.com/v1"):
        assert scenario(target=target).target == target


def test_replace_validates_and_names_unknown_fields() -> None:
    s = scenario()
    assert s.replace(seed=3).seed == 3
    with pytest.raises(ConfigError, match="colour"):
        s.replace(colour="red")
    with pytest.raises(ConfigError, match="seed"):
        s.replace(seed="x")


def test_with_overrides_none_changes_nothing() -> None:
    s = scenario(stop=Stop(duration_s=30, requests=100))
    assert s.with_overrides() is s


def test_with_overrides_applies_target_seed_and_out_dir() -> None:
    s = scenario().with_overrides(target="sim", seed=9, out_dir="results/x")
    assert (s.target, s.seed, str(s.out_dir)) == ("sim", 9, "results/x")
    with pytest.raises(ConfigError, match="target"):
        scenario().with_overrides(target="nonsense")


def test_a_duration_alone_replaces_both_limits() -> None:
    s = scenario(stop=Stop(duration_s=30, requests=100, drain_s=5)).with_overrides(duration_s=10)
    assert (s.stop.duration_s, s.stop.requests, s.stop.drain_s) == (10, None, 5)


def test_requests_alone_replace_both_limits() -> None:
    s = scenario(stop=Stop(duration_s=30, requests=100)).with_overrides(requests=7)
    assert (s.stop.duration_s, s.stop.requests) == (None, 7)


def test_both_limits_together() -> None:
    s = scenario().with_overrides(duration_s=5, requests=50)
    assert (s.stop.duration_s, s.stop.requests) == (5, 50)


def test_overrides_drop_a_warmup_that_no_longer_fits() -> None:
    base = scenario(stop=Stop(duration_s=60, requests=100, warmup_s=10, cooldown_s=5, warmup_requests=20))
    short = base.with_overrides(duration_s=12)
    assert (short.stop.warmup_s, short.stop.cooldown_s) == (0.0, 0.0)
    assert short.stop.warmup_requests == 20  # still fine: no request limit
    few = base.with_overrides(requests=10)
    assert few.stop.warmup_requests == 0
    # --requests alone ends the run by count: a timed cool-down has nothing to apply to
    assert (few.stop.warmup_s, few.stop.cooldown_s) == (10, 0.0)
    kept = base.with_overrides(duration_s=40)
    assert (kept.stop.warmup_s, kept.stop.cooldown_s) == (10, 5)


def test_bad_override_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"Stop\.requests"):
        scenario().with_overrides(requests=0)
    with pytest.raises(ConfigError, match=r"Stop\.duration_s"):
        scenario().with_overrides(duration_s=-1)


def test_scenario_is_frozen_and_defaults_are_sane() -> None:
    s = scenario()
    with pytest.raises(AttributeError):
        s.seed = 4  # type: ignore[misc]
    assert s.load == Concurrency(1) and s.stop == Stop(requests=10)
    assert scenario(load=Poisson(3.0)).load == Poisson(3.0)
