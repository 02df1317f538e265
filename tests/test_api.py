"""The public API: the seed's Experiment shape, and the names the package promises."""

from __future__ import annotations

from pathlib import Path

import loadbench
from loadbench import Q3B, Experiment, Local, Prefill, SimConfig

EXPECTED = {
    "Balanced", "Burst", "Concurrency", "ConfigError", "Constant", "Decode", "Empirical", "EnergyConfig",
    "EngineProfile", "Experiment", "FaultPlan", "FaultWindow", "Fixed", "Gate", "Gamma", "Local", "LoadbenchError",
    "LogNormal",
    "ModelCatalog", "Normal", "Poisson", "Prefill", "Q1_5B", "Q3B", "Q8B", "Ramp", "Remote", "Responder",
    "RunResult", "Scenario", "ScenarioError", "SimConfig", "Stop", "TargetError", "Timeouts", "TraceReplay",
    # hybrid
    "Chunking", "Hybrid", "Minion", "Minions", "PriceTable", "RemoteEnergy",
    "Uniform", "__version__",
    # studies
    "CapacitySearch", "Fields", "Study", "concurrencies", "rates", "sweep",
}


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert set(loadbench.__all__) == EXPECTED
    for name in loadbench.__all__:
        assert getattr(loadbench, name) is not None


def test_the_seeds_experiment_runs_and_returns_results(tmp_path: Path) -> None:
    from loadbench import Stop

    experiment = Experiment(
        workload=Prefill(),
        deployment=Local("llama3.2"),
        reasoning=False,
        quant=Q3B(),
        target="sim",
        sim=SimConfig(profile="instant", models=("llama3.2:3b-instruct-q4_K_M",)),
        stop=Stop(requests=6),
        out_dir=tmp_path / "seed",
        energy=False,
    )
    result = experiment.run()
    assert result.summary["requests"]["completed"] == 6
    assert result.run["target"]["dialect"] == "ollama"
    assert result.run["target"]["model"] == "llama3.2:3b-instruct-q4_K_M"
    assert result.metric("ttft_ms")["count"] == 6
    assert len(list(result.records())) == 6
    # Prefill: inputs of 1,000-1,500 tokens by the simulator's own count
    inputs = [r["input_tokens"] for r in result.records()]
    assert all(900 <= n <= 1600 for n in inputs), inputs
