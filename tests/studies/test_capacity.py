"""Load sweeps and the capacity search, against a simulator of exactly known capacity.

The simulator's fixed timing (2 slots, 20 ms to the first token, 5 ms per further token, 9 tokens
per answer) holds each request's slot 60 ms: 2 / 0.060 = 33.3 requests/s. With constant
arrivals TTFT stays at ~20 ms below that rate and grows without bound above it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadbench import CapacitySearch, Decode, EngineProfile, Fixed, Remote, Scenario, SimConfig, Stop, rates, sweep
from loadbench.contract.errors import ConfigError
from loadbench.studies import concurrencies, geometric, knee, linear

PROFILE = EngineProfile(name="fixed-2", slots=2, fixed_ttft_ms=20.0, fixed_itl_ms=5.0)
CAPACITY = PROFILE.capacity_per_s(9)


def base(**kw) -> Scenario:
    fields = dict(
        workload=Decode(input_tokens=Fixed(16), output_tokens=Fixed(9)),
        deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
        stop=Stop(duration_s=2.5, warmup_s=0.5, drain_s=5.0),
        target="sim",
        sim=SimConfig(profile=PROFILE),
        energy=False,
        chunk_times=False,
    )
    fields.update(kw)
    return Scenario(**fields)


def test_rate_and_concurrency_lists() -> None:
    assert linear(1, 5, 5) == [1, 2, 3, 4, 5]
    assert [round(x, 6) for x in geometric(1, 16, 5)] == [1, 2, 4, 8, 16]
    plans = rates(2, 8, 4, spacing="linear", arrivals="constant")
    assert [type(p).__name__ for p in plans] == ["Constant"] * 4 and [p.rate_per_s for p in plans] == [2, 4, 6, 8]
    assert [p.burstiness for p in rates(1, 2, 2, arrivals="gamma:4")] == [4.0, 4.0]
    # 1, 1.5, 2.3, 3.5, 5.3, 8: rounded, repeats dropped
    assert [c.users for c in concurrencies(1, 8, 6)] == [1, 2, 3, 5, 8]
    with pytest.raises(ConfigError, match=r"sweep stop .* must be >= start"):
        rates(8, 2, 3)
    with pytest.raises(ConfigError, match="arrivals must be"):
        rates(1, 2, 2, arrivals="uniform")


def test_knee_is_the_last_load_before_latency_takes_off() -> None:
    flat_then_steep = [(10, 20.0), (20, 21.0), (30, 22.0), (40, 400.0), (50, 800.0)]
    assert knee(flat_then_steep) == 2
    assert knee([(1, 20.0), (2, 20.0), (3, 20.0)]) is None  # flat: no knee
    assert knee([(1, 20.0), (2, 40.0)]) is None  # too few points


def test_a_rate_sweep_finds_the_knee_at_the_known_capacity(tmp_path: Path) -> None:
    study = sweep(base(), rates(10, 50, 5, arrivals="constant"), name="sw")
    result = study.run(out_dir=tmp_path / "sweep")
    assert [c["status"] for c in result.cells] == ["finished"] * 5
    doc = json.loads((tmp_path / "sweep" / "study.json").read_text())
    assert doc["kind"] == "sweep" and doc["vary"]["load"] == [f"Constant {r}/s" for r in (10, 20, 30, 40, 50)]
    (k,) = doc["knee"]
    assert k["load"] == 30.0, doc["knee"]  # the highest step below 33.3/s
    ttft = [r["ttft_ms_p99"] for r in result.rows]
    assert 2 * max(ttft[:3]) < ttft[3] < ttft[4]  # flat below capacity, growing above it


def test_search_brackets_and_bisects_to_the_known_capacity(tmp_path: Path) -> None:
    # A 130 ms margin over the 20 ms TTFT: wide enough for a busy test host's scheduling noise, narrow
    # enough that a rate ~5% over capacity queues past it within a 3 s probe.
    search = CapacitySearch(base(), slo={"ttft_ms.p90": 150, "error_rate": 0.1}, over="rate", arrivals="constant",
                            start=16, tolerance=0.1, warmup_s=0.5, probe_s=2.5, max_probe_s=4.0, drain_s=3.0)
    result = search.run(out_dir=tmp_path / "cap")
    assert result.stop_reason.startswith("converged"), result.stop_reason
    hp, lf = result.highest_passing, result.lowest_failing
    assert CAPACITY * 0.9 <= hp < lf <= CAPACITY * 1.15, (hp, lf, CAPACITY)
    assert lf - hp <= 0.1 * hp
    loads = [p["load"] for p in result.probes]
    assert loads[:3] == [16, 32, 64]  # bracketing doubles from the start
    for p in result.probes:
        assert p["decision"] == ("pass" if p["load"] <= hp else "fail")
        assert 0 <= p["ci_low"] <= p["attainment"] <= p["ci_high"] <= 1
    far_over = [p for p in result.probes if p["load"] >= 1.5 * CAPACITY]
    assert far_over and all(p["early_stop"] for p in far_over)  # clearly over capacity: ended early, said why
    assert all(p["measured_s"] < 4 for p in far_over)

    doc = json.loads((tmp_path / "cap" / "capacity.json").read_text())
    assert doc["over"] == "rate" and doc["slo"] == {"ttft_ms.p90": 150, "error_rate": 0.1}
    assert doc["tolerance"] == 0.1 and doc["answer"] == {"highest_passing": hp, "lowest_failing": lf}
    assert doc["stop_reason"] == result.stop_reason and doc["elapsed_s"] > 0
    probe = doc["probes"][0]
    keys = {"index", "load", "attainment", "ci_low", "ci_high", "verdict", "early_stop", "run_dir", "figures"}
    assert keys <= set(probe)
    assert (tmp_path / "cap" / probe["run_dir"] / "requests.jsonl").exists()
    study = json.loads((tmp_path / "cap" / "study.json").read_text())
    assert study["kind"] == "capacity" and len(study["cells"]) >= len(doc["probes"])


def test_search_stops_when_even_the_lowest_load_fails(tmp_path: Path) -> None:
    search = CapacitySearch(base(), slo={"ttft_ms.p50": 1}, start=4, growth=2, warmup_s=0.2, probe_s=1.0,
                            max_probe_s=1.0, remeasure=0)
    result = search.run(out_dir=tmp_path / "low")
    assert result.highest_passing is None and result.lowest_failing == 0.5
    assert result.stop_reason.startswith("lowest load fails") and len(result.probes) == 4


def test_bad_searches_are_named() -> None:
    with pytest.raises(ConfigError, match=r"CapacitySearch\.slo key 'ttft\.p99'"):
        CapacitySearch(base(), slo={"ttft.p99": 5})
    with pytest.raises(ConfigError, match="over must be 'rate' or 'concurrency'"):
        CapacitySearch(base(), slo={"ttft_ms.p99": 5}, over="users")
    with pytest.raises(ConfigError, match="tolerance must be a number > 0"):
        CapacitySearch(base(), slo={"ttft_ms.p99": 5}, tolerance=0)


def test_search_over_concurrency_finds_the_slot_count(tmp_path: Path) -> None:
    # Two slots holding each request 100 + 8 x 20 = 260 ms: two users never wait (TTFT 100 ms); with
    # three, one request in three waits a whole hold for a slot (TTFT ~360 ms), so a p90 limit of
    # 170 ms holds up to 2 users, with margins a busy host's scheduling noise does not cross.
    profile = EngineProfile(name="fixed-2-slow", slots=2, fixed_ttft_ms=100.0, fixed_itl_ms=20.0)
    search = CapacitySearch(base(sim=SimConfig(profile=profile)), slo={"ttft_ms.p90": 170}, over="concurrency",
                            start=1, warmup_s=0.5, probe_s=2.0, max_probe_s=5.0, drain_s=3.0)
    result = search.run(out_dir=tmp_path / "users")
    seen = [(p["load"], p["decision"]) for p in result.probes]
    assert (result.highest_passing, result.lowest_failing) == (2, 3), seen
    assert result.stop_reason.startswith("converged")
    assert [p["label"] for p in result.probes][:3] == ["1 users", "2 users", "4 users"]


def test_bracketing_probes_are_short_and_a_budget_bounds_the_search(tmp_path: Path) -> None:
    # Sized for their interval, the first probes (4/s, 8/s: 35 requests for a p90) would measure
    # max_probe_s; bracketing upwards they measure probe_s, and none runs past the budget.
    search = CapacitySearch(base(), slo={"ttft_ms.p90": 150}, over="rate", arrivals="constant", start=4,
                            warmup_s=0.5, probe_s=1.0, max_probe_s=4.0, drain_s=2.0, budget_s=7.0)
    result = search.run(out_dir=tmp_path / "budget")
    assert result.stop_reason.startswith("budget"), result.stop_reason
    assert len(result.probes) >= 2
    assert [p["load"] for p in result.probes][:2] == [4, 8]
    assert all(p["measured_s"] <= 1.5 for p in result.probes[:2]), [p["measured_s"] for p in result.probes]
    assert result.elapsed_s < 7.0 + 3.0
