"""The Ray executor on a local two-node Ray cluster (two raylets on loopback), against the simulator.

Skipped when ray is not installed (it is in the ``ray`` and ``test`` extras).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'loadbench[ray]')")

from loadbench import Decode, Experiment, Fixed, Poisson, Remote, Scenario, SimConfig, Stop  # noqa: E402
from loadbench.load.ray_executor import Ray  # noqa: E402

from .ray_cluster import LocalRayCluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster(str(ROOT)) as address:
        yield address
        if ray.is_initialized():  # the driver leaves before its cluster stops
            ray.shutdown()


def test_workers_as_ray_actors_on_two_nodes_make_one_run(cluster: str, tmp_path: Path) -> None:
    def run(executor, out: str):
        return Experiment(
            Scenario(
                workload=Decode(input_tokens=Fixed(16), output_tokens=Fixed(8)),
                deployment=Remote.compatible(base_url="http://127.0.0.1:8000", model="m"),
                load=Poisson(40),
                stop=Stop(duration_s=3),
                target="sim",
                sim=SimConfig(profile="instant"),
                energy=False,
                out_dir=tmp_path / out,
                executor=executor,
            )
        ).run()

    result = run(Ray(cluster, workers=2), "ray")
    alone = run(None, "alone")
    workers = result.summary["workers"]
    assert [w["status"] for w in workers] == ["finished", "finished"]
    assert len({w["node_id"] for w in workers}) == 2, "one actor on each raylet"
    assert all(w["same_clock"] for w in workers)
    rows = [json.loads(line) for line in (result.path / "requests.jsonl").read_text().splitlines()]
    assert len(rows) == sum(w["records"] for w in workers) == result.summary["requests"]["scheduled"]
    assert result.summary["metrics"]["e2e_ms"]["count"] == sum(r["status"] == "ok" for r in rows) == len(rows)
    # The same seeded plan as the run without Ray, arrival for arrival.
    assert result.summary["requests"]["scheduled"] == alone.summary["requests"]["scheduled"]
    assert json.loads((result.path / "run.json").read_text())["scenario"]["executor"]["executor"] == "ray"
