"""The command line's load options: --rate, --arrivals, --concurrency, --max-concurrency."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest

from loadbench.contract.errors import ConfigError
from loadbench.load.overrides import Arrivals, override_load
from loadbench.load.plans import Burst, Concurrency, Constant, Gamma, Poisson, Ramp


def test_rate_replaces_any_plan_with_poisson_and_keeps_the_scenarios_cap() -> None:
    assert override_load(Concurrency(4), rate_per_s=30) == Poisson(30)
    assert override_load(Burst(8, max_concurrency=3), rate_per_s=5) == Poisson(5, max_concurrency=3)
    assert override_load(Poisson(6), rate_per_s=30, max_concurrency=8) == Poisson(30, max_concurrency=8)


def test_arrivals_shape_the_rate() -> None:
    assert override_load(Poisson(6), rate_per_s=10, arrivals=Arrivals.parse("constant")) == Constant(10)
    gamma = override_load(Poisson(6), rate_per_s=10, arrivals=Arrivals.parse("gamma:2"))
    assert isinstance(gamma, Gamma) and gamma.burstiness == pytest.approx(0.25)
    # The gaps really have that coefficient of variation and mean.
    offsets = np.fromiter(islice(gamma.offsets_ns(np.random.default_rng(1)), 50_000), float)
    gaps = np.diff(offsets) / 1e9
    assert gaps.mean() == pytest.approx(0.1, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.05)
    # gamma:1 is Poisson; arrivals alone reshape the scenario's own rate.
    assert override_load(Constant(7), arrivals=Arrivals.parse("gamma:1")) == Poisson(7)
    assert override_load(Poisson(7, max_concurrency=2), arrivals=Arrivals.parse("constant")) == Constant(
        7, max_concurrency=2
    )


def test_concurrency_and_max_concurrency() -> None:
    assert override_load(Poisson(6), concurrency=16) == Concurrency(16)
    assert override_load(Concurrency(2, think_s=0.5), concurrency=16) == Concurrency(16, think_s=0.5)
    assert override_load(Poisson(6), max_concurrency=8) == Poisson(6, max_concurrency=8)
    ramp = Ramp(1, 10, 5)
    assert override_load(ramp, max_concurrency=4) == Ramp(1, 10, 5, max_concurrency=4)
    plan = Poisson(6)
    assert override_load(plan) is plan


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_per_s": 3, "concurrency": 2}, "--rate and --concurrency"),
        ({"concurrency": 2, "max_concurrency": 2}, "users are the cap"),
        ({"max_concurrency": 4}, "Concurrency(1)"),
        ({"arrivals": Arrivals("constant")}, "--arrivals needs --rate"),
        ({"rate_per_s": 0.0}, "--rate must be > 0"),
        ({"concurrency": 0}, "--concurrency must be >= 1"),
        ({"rate_per_s": 3, "max_concurrency": 0}, "--max-concurrency must be >= 1"),
    ],
)
def test_meaningless_combinations_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        override_load(Concurrency(1), **kwargs)


@pytest.mark.parametrize("text", ["gamma", "gamma:0", "gamma:x", "uniform", "constant:2", "gamma:-1"])
def test_bad_arrivals_name_the_value(text: str) -> None:
    with pytest.raises(ConfigError, match=repr(text).replace("(", r"\(")):
        Arrivals.parse(text)
