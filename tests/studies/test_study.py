"""Study: planning the cells, running them on the simulator, failing cells, Ctrl-C and resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadbench import Balanced, Concurrency, Decode, Fields, Fixed, Prefill, Remote, Scenario, SimConfig, Stop, Study
from loadbench.contract.errors import ConfigError, ScenarioError
from loadbench.loader import load_definition, load_scenario
from loadbench.studies.study import FIGURE_COLUMNS

ROOT = Path(__file__).resolve().parents[2]


def base(**kw) -> Scenario:
    fields = dict(
        workload=Decode(input_tokens=Fixed(16), output_tokens=Fixed(8)),
        deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
        load=Concurrency(2),
        stop=Stop(requests=6),
        target="sim",
        sim=SimConfig(profile="instant"),
        energy=False,
        slo={"ttft_ms": 1000},
    )
    fields.update(kw)
    return Scenario(**fields)


def test_the_cross_product_in_order_with_labels_and_repeats() -> None:
    study = Study(base=base(), vary={"workload": [Prefill(), Balanced()], "reasoning": [False, True]}, repeat=2)
    plan = study.plan()
    assert [c.id for c in plan] == [f"c{i:03d}" for i in range(8)]
    assert [(c.labels, c.repeat) for c in plan[:3]] == [
        ({"workload": "Prefill", "reasoning": "off"}, 0),
        ({"workload": "Prefill", "reasoning": "off"}, 1),
        ({"workload": "Prefill", "reasoning": "on"}, 0),
    ]
    scenario = study.cell_scenario(plan[1], Path("/tmp/s"))
    assert scenario.seed == 1 and scenario.reasoning is False and scenario.out_dir == Path("/tmp/s/cells/c001")
    assert study.describe()["vary"] == {"workload": ["Prefill", "Balanced"], "reasoning": ["off", "on"]}


def test_fields_move_together_and_explicit_cells_replace_the_product() -> None:
    local = Fields("small", sim=SimConfig(profile="laptop-1.5b"), load=Concurrency(1))
    big = Fields("big", sim=SimConfig(profile="gpu-8b"), load=Concurrency(8))
    study = Study(base=base(), vary={"server": [local, big]})
    scenarios = [study.cell_scenario(c, Path("x")) for c in study.plan()]
    assert [(s.sim.profile.name, s.load.users) for s in scenarios] == [("laptop-1.5b", 1), ("gpu-8b", 8)]
    explicit = Study(base=base(), cells=[{"load": Concurrency(1)}, {"load": Concurrency(4), "reasoning": True}])
    assert [c.labels for c in explicit.plan()] == [{"load": "1 users"}, {"load": "4 users", "reasoning": "on"}]
    assert explicit.axes() == ["load", "reasoning"]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"vary": {"workloads": [Prefill()]}}, "'workloads' is not a Scenario field"),
    ({"vary": {"workload": [Prefill(), Prefill()]}}, "read the same .*Prefill.*label: value"),
    ({"vary": {"load": [5]}}, "cell c000 .*load must be a load plan"),
    ({"vary": {"name": ["a", "b"]}}, "'name' cannot be varied"),
    ({"vary": {}}, "needs vary"),
    ({"vary": {"reasoning": [1]}}, "cell c000 .*reasoning must be True or False"),
    ({"vary": {"reasoning": [True]}, "repeat": 0}, "repeat must be an integer >= 1"),
])
def test_bad_studies_say_which_field_and_value(kwargs, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Study(base=base(), **kwargs)


def test_a_study_runs_every_cell_into_one_directory_and_a_failing_cell_does_not_stop_it(tmp_path: Path) -> None:
    down = Fields("down", target="http://127.0.0.1:9")  # nothing listens on the discard port
    study = Study(base=base(), vary={"server": {"up": Fields("up", target="sim"), "down": down},
                                     "load": [Concurrency(1), Concurrency(3)]})
    result = study.run(out_dir=tmp_path / "s")
    assert result.status == "finished"
    by_id = {c["id"]: c for c in result.cells}
    assert [c["status"] for c in result.cells] == ["finished", "finished", "failed", "failed"]
    assert "127.0.0.1:9" in by_id["c002"]["error"]
    doc = json.loads((tmp_path / "s" / "study.json").read_text())
    assert doc["kind"] == "study" and doc["vary"] == {"server": ["up", "down"], "load": ["1 users", "3 users"]}
    assert doc["repeat"] == 1 and doc["base"]["workload"]
    assert {k for k in doc["cells"][0]} >= {"id", "values", "repeat", "status", "run_dir", "error"}
    with open(tmp_path / "s" / "cells.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "repeat", "server", "load", "status", *FIGURE_COLUMNS]
    assert rows[0]["status"] == "finished" and float(rows[0]["requests_per_s"]) > 0
    assert rows[1]["load"] == "3 users" and float(rows[1]["slo_attainment"]) == 1.0
    assert rows[2]["status"] == "failed" and rows[2]["ttft_ms_p50"] == ""
    for cell in result.cells[:2]:
        run = json.loads((tmp_path / "s" / cell["run_dir"] / "run.json").read_text())
        assert run["status"] == "finished" and run["scenario"]["name"] == f"experiment-{cell['id']}"
        assert (tmp_path / "s" / cell["run_dir"] / "requests.jsonl").exists()


def test_resume_refuses_a_directory_made_by_another_study(tmp_path: Path) -> None:
    Study(base=base(), vary={"load": [Concurrency(1)]}).run(out_dir=tmp_path / "s")
    other = Study(base=base(), vary={"load": [Concurrency(2)]})
    with pytest.raises(ScenarioError, match="cell c000 was load=1 users"):
        other.run(resume=tmp_path / "s")
    with pytest.raises(ScenarioError, match="already holds a study"):
        other.run(out_dir=tmp_path / "s")


STUDY_FILE = """\
from loadbench import Concurrency, Decode, Fixed, Remote, Scenario, SimConfig, Stop, Study

study = Study(
    base=Scenario(
        workload=Decode(input_tokens=Fixed(16), output_tokens=Fixed(20)),
        deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
        load=Concurrency(2),
        stop=Stop(duration_s=1.5),
        target="sim",
        sim=SimConfig(profile="laptop-1.5b"),
        energy=False,
    ),
    vary={"load": [Concurrency(1), Concurrency(2), Concurrency(3), Concurrency(4)]},
)
"""


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "loadbench", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def test_ctrl_c_keeps_finished_cells_and_resume_runs_only_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "sweep_file.py"
    path.write_text(STUDY_FILE)
    out = tmp_path / "study"
    proc = _cli(str(path), "--out", str(out), "--quiet")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the second cell's run has started sending
        if (out / "cells" / "c001" / "run.json").exists():
            break
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, text
    assert f"--resume {out}" in text
    doc = json.loads((out / "study.json").read_text())
    assert [c["status"] for c in doc["cells"]] == ["finished", "interrupted", "pending", "pending"]
    first_run = (out / "cells" / "c000" / "summary.json").read_bytes()
    assert (out / "cells" / "c001" / "summary.json").exists()  # the interrupted cell still wrote what it had

    proc = _cli(str(path), "--resume", str(out))
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, text
    assert "1 of 4 cells finished" in text
    assert "[1/3] c001" in text and "c000:" not in text  # only the missing cells ran
    doc = json.loads((out / "study.json").read_text())
    assert [c["status"] for c in doc["cells"]] == ["finished"] * 4
    assert len(doc["resumed"]) == 1
    assert (out / "cells" / "c000" / "summary.json").read_bytes() == first_run  # kept, not re-run
    assert (out / "cells" / "c001.attempt-1" / "requests.jsonl").exists()  # the partial attempt is kept aside
    with open(out / "cells.csv", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["finished"] * 4
    assert "knee (sweep)" not in text  # a plain study has no knee


def test_the_loader_takes_one_of_scenario_study_or_search(tmp_path: Path) -> None:
    path = tmp_path / "s.py"
    path.write_text(STUDY_FILE)
    study = load_definition(path)
    assert isinstance(study, Study) and study.study_name == "s"
    with pytest.raises(ScenarioError, match="defines a `study`, not a `scenario`"):
        load_scenario(path)
    both = tmp_path / "both.py"
    both.write_text(STUDY_FILE + "scenario = study.base\n")
    with pytest.raises(ScenarioError, match="defines `scenario` and `study`; define exactly one"):
        load_definition(both)
    wrong = tmp_path / "wrong.py"
    wrong.write_text("study = 5\n")
    with pytest.raises(ScenarioError, match=r"`study` must be a loadbench\.Study, got int"):
        load_definition(wrong)
    plain = tmp_path / "plain.py"
    plain.write_text(STUDY_FILE + "scenario = study.base\ndel study\n")
    proc = _cli(str(plain), "--resume", str(tmp_path))
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--resume is for studies" in text
