"""Run and study directories made once per session by real runs on the simulator, for the report tests."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from loadbench import Balanced, Constant, Experiment, Remote, SimConfig, Stop, Uniform
from loadbench.sim.config import FaultPlan
from tests.results.study_dirs import capacity_from_cells, write_study


def _run(out: Path, *, rate: float, seed: int, faults: dict[str, float] | None = None, warmup_s: float = 0.0,
         profile: str = "gpu-8b", duration_s: float = 2.0) -> Path:
    Experiment(
        workload=Balanced(input_tokens=Uniform(32, 96), output_tokens=Uniform(8, 24)),
        deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
        load=Constant(rate_per_s=rate),
        stop=Stop(duration_s=duration_s, warmup_s=warmup_s, drain_s=20.0),
        target="sim",
        sim=SimConfig(profile=profile, seed=seed, faults=FaultPlan(rates=faults or {})),
        seed=seed,
        slo={"ttft_ms": 200, "tpot_ms": 30},
        out_dir=out,
    ).run()
    return out


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    return {
        # Failures of two kinds, and a warm-up, so every chart of the run report has something to draw.
        "faulty": _run(base / "faulty", rate=30, seed=1, faults={"500": 0.1, "429": 0.05}, warmup_s=0.5),
        "slow": _run(base / "slow", rate=4, seed=2, profile="laptop-1.5b", duration_s=2.0),
    }


@pytest.fixture(scope="session")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-cell rate sweep on a 4-slot engine (it saturates), as a capacity study."""
    base = tmp_path_factory.mktemp("sweep")
    rates = (2.0, 6.0, 12.0)
    cells = [(f"Constant(rate_per_s={r})", _run(base / f"r{r:g}", rate=r, seed=3, profile="laptop-1.5b"), "finished")
             for r in rates]
    cells.append(("Constant(rate_per_s=24.0)", None, "failed"))
    study = write_study(base / "study", kind="capacity", field="load", cells=cells,
                        base={"workload": "balanced", "slo": {"ttft_ms": 200}}, errors={3: "target refused"})
    capacity = capacity_from_cells(study, over="rate", slo={"ttft_ms": 200, "attainment": 0.9}, loads=rates)
    (study / "capacity.json").write_bytes(orjson.dumps(capacity))
    return study
