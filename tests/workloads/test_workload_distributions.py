"""Length distributions: the draws have the stated shape, are reproducible, and bad values fail."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from loadbench.contract.errors import ConfigError
from loadbench.workloads import Empirical, Fixed, LogNormal, Normal, Uniform


def draws(dist, n: int = 20_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([dist.sample(rng) for _ in range(n)])


def test_fixed_is_constant():
    assert set(draws(Fixed(37), 100)) == {37}


def test_uniform_covers_both_ends_evenly():
    x = draws(Uniform(10, 14))
    assert set(x) == {10, 11, 12, 13, 14}
    counts = np.bincount(x)[10:]
    assert counts.min() > 0.9 * len(x) / 5


def test_normal_is_truncated_by_redrawing_not_clipping():
    x = draws(Normal(100, 30, 80, 200))
    assert x.min() >= 80 and x.max() <= 200
    # Clipping would pile ~25 % of the mass at 80; redrawing spreads it.
    assert (x == 80).mean() < 0.03
    assert abs(np.median(x) - 108) < 4  # median of N(100, 30) truncated to [80, 200]


def test_normal_mean_and_sd_without_bounds():
    x = draws(Normal(500, 50))
    assert abs(x.mean() - 500) < 2
    assert abs(x.std() - 50) < 2


def test_lognormal_has_the_stated_mean_and_sd_and_a_right_tail():
    x = draws(LogNormal(300, 150), 50_000)
    assert abs(x.mean() - 300) / 300 < 0.02
    assert abs(x.std() - 150) / 150 < 0.05
    assert np.median(x) < x.mean()  # right-skewed


def test_empirical_draws_in_proportion(tmp_path):
    x = draws(Empirical((5, 5, 5, 9)))
    assert set(x) == {5, 9}
    assert abs((x == 5).mean() - 0.75) < 0.02


@pytest.mark.parametrize(
    ("content", "column"),
    [
        ("12\n40\n40\n7\n", None),
        ("[12, 40, 40, 7]", None),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,12,1\n1,40,2\n2,40,3\n3,7,4\n", "ContextTokens"),
        ('{"input_length": 12}\n{"input_length": 40}\n{"input_length": 40}\n{"input_length": 7}\n', "input_length"),
    ],
)
def test_empirical_from_file(tmp_path, content, column):
    path = tmp_path / "lengths.txt"
    path.write_text(content)
    dist = Empirical.from_file(path, column=column)
    assert sorted(dist.values) == [7, 12, 40, 40]
    d = dist.describe()
    assert d["n"] == 4 and d["source"] == str(path)
    json.dumps(d)


def test_same_seed_same_draws_and_different_seed_differs():
    for dist in (Uniform(1, 1000), Normal(500, 100, 1, 2000), LogNormal(300, 200), Empirical(tuple(range(1, 500)))):
        assert list(draws(dist, 50, seed=3)) == list(draws(dist, 50, seed=3))
        assert list(draws(dist, 50, seed=3)) != list(draws(dist, 50, seed=4))


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: Fixed(0), "Fixed.tokens"),
        (lambda: Uniform(10, 5), "Uniform.high"),
        (lambda: Normal(100, -1), "Normal.sd"),
        (lambda: Normal(100, 10, 50, 20), "Normal.max"),
        (lambda: LogNormal(0, 10), "LogNormal.mean"),
        (lambda: Normal(math.nan, 1), "Normal.mean"),
        (lambda: Empirical(()), "Empirical.values"),
        (lambda: Empirical((3, -1)), "Empirical.values[1]"),
    ],
)
def test_bad_values_name_the_field(make, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        make()


def test_empirical_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        Empirical.from_file(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("12\nabc\n")
    with pytest.raises(ConfigError, match="'abc' is not a token count"):
        Empirical.from_file(bad)
    csvf = tmp_path / "t.csv"
    csvf.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="no column 'c'"):
        Empirical.from_file(csvf, column="c")


def test_describe_is_json_ready():
    for dist in (Fixed(3), Uniform(1, 2), Normal(5, 1), LogNormal(5, 1, 2, 40), Empirical((1, 2, 3))):
        d = dist.describe()
        assert json.loads(json.dumps(d)) == d
        assert d["kind"] in {"fixed", "uniform", "normal", "lognormal", "empirical"}
