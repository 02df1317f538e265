"""compare's statistics: tolerances per statistic, block lengths from the autocorrelation, runs as
the unit with several baselines, and the command line (synthetic runs: no simulator needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from loadbench.contract.errors import ConfigError
from loadbench.results.compare import (
    LATENCIES,
    RunSamples,
    Settings,
    _parse_tolerances,
    _t_quantile,
    block_length,
    compare_samples,
    main,
    markdown_table,
)


def samples(values: np.ndarray, name: str = "run", *, seed: int = 0) -> RunSamples:
    """A run whose TTFT, TPOT and E2E are all ``values`` (ms, in intended-time order)."""
    rng = np.random.default_rng(seed)
    return RunSamples(
        path=name,
        latencies={m: values for m in LATENCIES},
        failed=np.zeros(values.size),
        token_bins=1000 + rng.normal(0, 20, 100),
        bin_s=1.0,
    )


def lognormal(rng: np.random.Generator, n: int, median_ms: float = 100.0) -> np.ndarray:
    return np.exp(rng.normal(np.log(median_ms), 0.3, n))


def figures(result: dict) -> dict[str, dict]:
    return {r["figure"]: r for r in result["figures"]}


def test_tails_get_wider_default_tolerances_than_centres_and_each_can_be_set() -> None:
    s = Settings()
    assert [s.tolerance_for(f) for f in ("ttft_ms.p50", "e2e_ms.mean", "throughput.output_tokens_per_s")] == [0.05] * 3
    assert s.tolerance_for("tpot_ms.p90") == 0.10 and s.tolerance_for("e2e_ms.p99") == 0.20
    assert s.tolerance_for("error_rate") == 0.005
    s = Settings(tolerance=0.1, tail_tolerance={"p99": 0.3}, per_figure={"ttft_ms.p99": 0.5})
    assert s.tolerance_for("e2e_ms.p50") == 0.1 and s.tolerance_for("e2e_ms.p90") == 0.10  # p90 keeps its default
    assert s.tolerance_for("e2e_ms.p99") == 0.3 and s.tolerance_for("ttft_ms.p99") == 0.5
    assert _parse_tolerances(["8%", "p99=25%", "p90=0.15", "mean=3%", "ttft_ms.p50=0.02", "error_rate=0.01"]) == (
        0.08,
        0.01,
        {"p99": 0.25, "p90": 0.15},
        {"ttft_ms.mean": 0.03, "tpot_ms.mean": 0.03, "e2e_ms.mean": 0.03, "ttft_ms.p50": 0.02},
    )
    with pytest.raises(ConfigError):
        Settings(tail_tolerance={"p95": 0.1})
    with pytest.raises(ConfigError):
        _parse_tolerances(["p99=lots"])


def test_block_length_follows_the_autocorrelation() -> None:
    rng = np.random.default_rng(1)
    assert block_length(rng.normal(size=2000)) <= 2  # no time structure: single requests
    x = np.zeros(2000)
    noise = rng.normal(size=2000)
    for i in range(1, x.size):
        x[i] = 0.8 * x[i - 1] + noise[i]
    assert block_length(x) > 20  # a queue-like memory: long blocks
    assert block_length(np.ones(100)) == 1 and block_length(np.arange(5.0)) == 1


def test_a_known_15_percent_shift_is_flagged() -> None:
    rng = np.random.default_rng(2)
    base, new = samples(lognormal(rng, 1000), "base"), samples(lognormal(rng, 1000, 115.0), "new")
    result = compare_samples(base, new)
    rows = figures(result)
    for f in ("ttft_ms.p50", "ttft_ms.mean", "e2e_ms.p50"):
        assert rows[f]["verdict"] == "regression", rows[f]
        assert rows[f]["ci_low"] > 0.05 and rows[f]["ci_low"] < rows[f]["change"] < rows[f]["ci_high"]
        assert rows[f]["change"] == pytest.approx(0.15, abs=0.05)
    assert rows["ttft_ms.p99"]["verdict"] != "improvement"
    assert rows["throughput.output_tokens_per_s"]["verdict"] == "no change"  # the same token bins
    assert "ttft_ms.p50" in result["regressions"]
    assert "🔴 regression" in markdown_table(result) and "| ±20% |" in markdown_table(result)


def test_an_identical_pair_with_a_tail_outlier_is_not_a_regression() -> None:
    """Same distribution; the new run had three stalls of 15 consecutive requests at 2.5x. They
    move its p99 by about +40%, but they are three events, not a slower server: the p99's block
    length, chosen from the clustering of the requests beyond it, covers a stall, and the p99
    tolerance is 20%. (With blocks of n ** (1/3) and a 5% tolerance this pair said regression
    on three p99s.)"""
    rng = np.random.default_rng(0)
    base, new = lognormal(rng, 2000), lognormal(rng, 2000)
    for start in (300, 900, 1500):
        new[start : start + 15] *= 2.5
    result = compare_samples(samples(base, "base"), samples(new, "new"))
    assert result["regressions"] == []
    p99 = figures(result)["ttft_ms.p99"]
    assert p99["change"] > 0.25 and p99["verdict"] == "too few samples"
    assert p99["blocks"][1] > 2 * p99["blocks"][0]  # the stalls are seen as time structure
    for f in ("ttft_ms.p50", "ttft_ms.mean"):
        assert figures(result)[f]["verdict"] in ("no change", "too few samples")


def test_several_baselines_put_the_spread_between_runs_into_the_interval() -> None:
    """Each run has its own level (machine load, another day): the runs differ by more than any
    one run's bootstrap can see. One baseline calls an unlucky identical run a regression; five
    baselines show the spread, and still flag a change well beyond it."""
    rng = np.random.default_rng(4)
    levels = (0.92, 1.0, 1.08, 0.96, 1.04)
    bases = [samples(lognormal(rng, 1000, 100 * lv), f"base{i}") for i, lv in enumerate(levels)]
    unlucky = samples(lognormal(rng, 1000, 112.0), "unlucky")
    one = figures(compare_samples(bases[1], unlucky))["ttft_ms.p50"]
    assert one["verdict"] == "regression" and one["interval"] == "within runs"
    five = compare_samples(bases, unlucky)
    assert five["regressions"] == [] and five["baselines"] == [b.path for b in bases]
    p50 = figures(five)["ttft_ms.p50"]
    assert p50["interval"] == "between runs" and p50["ci_low"] < 0.05 < p50["ci_high"]
    assert p50["base"] == pytest.approx(100 * np.exp(np.mean(np.log(levels))), rel=0.03)
    slow = compare_samples(bases, samples(lognormal(rng, 1000, 160.0), "slow"))
    assert {"ttft_ms.p50", "ttft_ms.mean"} <= set(slow["regressions"])
    assert "5 baselines" in markdown_table(slow)


def test_t_quantiles() -> None:
    assert _t_quantile(0.975, 1) == pytest.approx(12.706, rel=1e-3)
    assert _t_quantile(0.975, 2) == pytest.approx(4.303, rel=1e-3)
    assert _t_quantile(0.975, 4) == pytest.approx(2.776, rel=1e-3)
    assert _t_quantile(0.975, 30) == pytest.approx(2.042, rel=1e-3)


def write_run(run_dir: Path, e2e_ms: np.ndarray) -> Path:
    """A run directory with only the ``requests.jsonl`` that compare reads."""
    run_dir.mkdir(parents=True)
    lines = []
    for i, e2e in enumerate(e2e_ms.tolist()):
        t0 = i * 20_000_000
        first = t0 + int(e2e * 0.2e6)
        end = t0 + int(e2e * 1e6)
        lines.append(orjson.dumps({
            "phase": "measured", "status": "ok", "intended_ns": t0, "sent_ns": t0, "first_token_ns": first,
            "end_ns": end, "ttft_ms": e2e * 0.2, "e2e_ms": e2e, "output_tokens": 32,
        }))  # fmt: skip
    (run_dir / "requests.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return run_dir


def test_the_command_takes_several_baselines_then_the_new_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(5)
    bases = [str(write_run(tmp_path / f"b{i}", lognormal(rng, 600))) for i in range(3)]
    same = str(write_run(tmp_path / "same", lognormal(rng, 600)))
    slow = str(write_run(tmp_path / "slow", lognormal(rng, 600, 140.0)))
    md = tmp_path / "cmp.md"
    assert main([*bases, slow, "--markdown", str(md), "--resamples", "500"]) == 99
    out = capsys.readouterr().out
    assert out.startswith("3 baselines ") and "regression" in out
    assert "3 baselines (" in md.read_text() and "🔴 regression" in md.read_text()
    assert main([bases[0], same, "--json", "--resamples", "500", "--tolerance", "p99=30%"]) == 0
    result = orjson.loads(capsys.readouterr().out)
    assert result["settings"]["tail_tolerance"] == {"p90": 0.1, "p99": 0.3} and result["regressions"] == []
    with pytest.raises(ConfigError):
        main([bases[0]])
