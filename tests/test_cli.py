"""End to end: the command line against the embedded simulator, in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from loadbench.metrics.recorder import METRICS
from loadbench.sim import SimConfig, SimProcess

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ("run.json", "requests.jsonl", "metrics.hlog", "summary.json")


def run_cli(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "loadbench", *args],
        capture_output=True, text=True, timeout=timeout, cwd=kw.pop("cwd", ROOT), env=env, **kw,
    )


def scenario_file(tmp_path: Path, body: str, name: str = "scn.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


SMALL = """
from loadbench import Concurrency, Decode, Fixed, Remote, Scenario, SimConfig, Stop, FaultPlan
scenario = Scenario(
    workload=Decode(input_tokens=Fixed(32), output_tokens=Fixed(24)),
    deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
    load=Concurrency(8),
    stop=Stop(requests={requests}, warmup_requests=4),
    target="sim",
    sim=SimConfig(profile="instant"{sim_extra}),
    energy={energy},
    hlog_interval_s=0.2,
)
"""


def small(tmp_path: Path, *, requests: int = 120, sim_extra: str = "", energy: str = "False") -> Path:
    return scenario_file(tmp_path, SMALL.format(requests=requests, sim_extra=sim_extra, energy=energy))


def read_hlog_counts(path: Path) -> dict[str, int]:
    reader = HistogramLogReader(str(path), HdrHistogram(1, 3_600_000_000, 3))
    counts: dict[str, int] = {}
    while (h := reader.get_next_interval_histogram()) is not None:
        counts[h.get_tag()] = counts.get(h.get_tag(), 0) + h.get_total_count()
    return counts


def test_shipped_decode_burst_runs_on_the_simulator(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("scenarios/decode_burst.py", "--duration", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert "embedded simulator" in first and "127.0.0.1" in first
    for name in (*RUN_FILES, "energy.csv", "sim_trace.jsonl"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    req = summary["requests"]
    assert req["scheduled"] == 32 == req["completed"] + req["failed"] + req["cancelled"]
    assert req["completed"] == 32
    for key in ("ttft_ms", "ttft_from_schedule_ms", "e2e_ms", "itl_ms", "tpot_ms", "dispatch_lag_ms"):
        m = summary["metrics"][key]
        assert m["count"] > 0
        assert all(isinstance(m[k], float) for k in ("mean", "p50", "p90", "p99", "max"))
        assert m["p50"] <= m["p90"] <= m["p99"] <= m["max"]
    assert summary["throughput"]["requests_per_s"] > 0
    assert summary["throughput"]["output_tokens_per_s"] > 0
    assert summary["energy"]["kind"] == "estimated"
    # the workload's length targets against the simulator's own counts
    lengths = summary["lengths"]
    assert lengths["input"]["n"] == 32 and lengths["output"]["n"] == 32
    assert lengths["input"]["rel_error_p90"] < 0.05 and lengths["output"]["rel_error_p90"] == 0.0
    lines = (out / "requests.jsonl").read_text().splitlines()
    assert len(lines) == 32
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["target"]["kind"] == "sim"


def test_hlog_reads_back_and_agrees_with_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli(str(small(tmp_path)), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    counts = read_hlog_counts(out / "metrics.hlog")
    assert set(counts) == {m.tag for m in METRICS}
    for m in METRICS:
        assert counts[m.tag] == summary["metrics"][m.key]["count"], m.tag
    # warm-up requests are in the records but not in the metrics
    assert summary["metrics"]["e2e_ms"]["count"] == 116
    assert summary["requests"]["by_phase"]["warmup"]["ok"] == 4
    # 24-token answers: 23 gaps each
    assert summary["metrics"]["itl_ms"]["count"] == 116 * 23


def test_target_url_against_a_simulator_started_by_hand(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with SimProcess(SimConfig(profile="instant")) as sim:
        proc = run_cli(str(small(tmp_path)), "--target", sim.base_url, "--requests", "40", "--out", str(out))
        trace = sim.read_trace()
    assert proc.returncode == 0, proc.stderr
    assert sim.base_url in proc.stdout.splitlines()[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"]["completed"] == 40
    assert summary["target"]["kind"] == "url"
    ids = {json.loads(line)["request_id"] for line in (out / "requests.jsonl").read_text().splitlines()}
    assert ids <= {t["id"] for t in trace}  # every request reached that server, none went elsewhere


def test_json_flag_prints_only_the_summary_on_stdout(tmp_path: Path) -> None:
    proc = run_cli(str(small(tmp_path, requests=20)), "--out", str(tmp_path / "r"), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["requests"]["completed"] == 20
    assert "embedded simulator" in proc.stderr


def test_a_third_of_streams_killed_midway_are_counted_not_fatal(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scn = small(tmp_path, requests=300, sim_extra=", faults=FaultPlan(rates={'reset': 0.33}, after_tokens=8)")
    proc = run_cli(str(scn), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    req = summary["requests"]
    assert req["scheduled"] == 300 == req["completed"] + req["failed"] + req["cancelled"]
    assert set(req["errors"]) == {"stream_reset"}
    assert req["errors"]["stream_reset"] == req["failed"]
    assert 60 <= req["failed"] <= 140  # a third of 300, seeded draws
    records = [json.loads(x) for x in (out / "requests.jsonl").read_text().splitlines()]
    assert len(records) == 300
    failed = [r for r in records if r["status"] == "failed"]
    assert all(r["error"] == "stream_reset" and r["chunks"] == 8 for r in failed)


BAD = {
    "syntax.py": ("x = (\n", "syntax error"),
    "noscenario.py": ("x = 1\n", "defines no `scenario`"),
    "negative.py": (
        "from loadbench import *\nscenario = Scenario(workload=Decode(), "
        "deployment=Remote.compatible(base_url='http://127.0.0.1:1', model='m'), load=Poisson(-3))\n",
        "rate_per_s",
    ),
    "unknown.py": (
        "from loadbench import *\nscenario = Scenario(workload=Decode(), "
        "deployment=Remote.compatible(base_url='http://127.0.0.1:1', model='m'), duraton_s=3)\n",
        "duraton_s",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_scenario_files_exit_2_with_one_line(tmp_path: Path, name: str) -> None:
    body, expected = BAD[name]
    path = scenario_file(tmp_path, body, name)
    proc = run_cli(str(path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert expected in proc.stderr and name in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_scenario_file_exits_2() -> None:
    proc = run_cli("no/such/scenario.py")
    assert proc.returncode == 2 and "not found" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_flags_exit_2() -> None:
    assert run_cli("scenarios/decode_burst.py", "--duration", "-1").returncode == 2
    assert run_cli("scenarios/decode_burst.py", "--target", "ftp://x").returncode == 2


def test_help_explains_every_option() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for flag in ("--target", "--duration", "--requests", "--out", "--seed", "--quiet", "--json", "sim", "verify"):
        assert flag in proc.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_scheduling_and_still_writes_everything(tmp_path: Path, sig: signal.Signals) -> None:
    scn = scenario_file(
        tmp_path,
        """
        from loadbench import Poisson, Decode, Fixed, Remote, Scenario, SimConfig, Stop
        scenario = Scenario(
            workload=Decode(input_tokens=Fixed(32), output_tokens=Fixed(400)),
            deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
            load=Poisson(20),
            stop=Stop(duration_s=60, drain_s=0.5),
            target="sim",
            sim=SimConfig(profile="gpu-8b"),
            energy=False,
        )
        """,
    )
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadbench", str(scn), "--out", str(out), "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while not (out / "requests.jsonl").exists() or (out / "requests.jsonl").stat().st_size == 0:
        assert time.monotonic() < deadline, "no request finished"
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json.loads((out / "summary.json").read_text())
    req = summary["requests"]
    assert req["cancelled"] > 0  # 400-token answers outlive the 0.5 s drain
    assert req["scheduled"] == req["completed"] + req["failed"] + req["cancelled"]
    assert len((out / "requests.jsonl").read_text().splitlines()) == req["scheduled"]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and run["stopped_by"] == "signal"


def test_verify_joins_client_records_with_the_ground_truth(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(str(small(tmp_path, requests=60)), "--out", str(out), "--quiet").returncode == 0
    proc = run_cli("verify", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["joined_ok"] == 60 and result["token_count_mismatches"] == 0
    for name in ("ttft_diff_ms", "e2e_diff_ms", "first_token_delivery_ms"):
        assert result["metrics"][name]["count"] == 60
    # The client can only see a token after the server wrote it (same monotonic clock).
    assert result["metrics"]["first_token_delivery_ms"]["p50"] > 0
    assert run_cli("verify", str(tmp_path / "nothing")).returncode == 2


def test_report_prints_a_finished_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(str(small(tmp_path, requests=20)), "--out", str(out), "--quiet").returncode == 0
    proc = run_cli("report", str(out))
    assert proc.returncode == 0 and "TTFT" in proc.stdout and "20 completed" in proc.stdout


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scenarios").glob("*.py")))
def test_every_shipped_scenario_loads_and_targets_the_simulator(path: str) -> None:
    from loadbench.loader import load_definition
    from loadbench.scenario import Scenario

    found = load_definition(ROOT / path)
    if isinstance(found, Scenario):
        assert found.target == "sim" and found.name == Path(path).stem
    else:  # a study or a capacity search: every run it plans targets the simulator
        assert found.base.target == "sim" and found.with_name(Path(path).stem) == found
        for cell in getattr(found, "plan", list)():
            assert found.cell_scenario(cell, Path("x")).target == "sim"


def test_the_open_loop_and_closed_loop_scenarios_run(tmp_path: Path) -> None:
    for name in ("steady_poisson", "closed_loop"):
        out = tmp_path / name
        proc = run_cli(f"scenarios/{name}.py", "--duration", "2", "--out", str(out), "--quiet")
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((out / "summary.json").read_text())
        req = summary["requests"]
        assert req["completed"] > 0
        assert req["scheduled"] == req["completed"] + req["failed"] + req["cancelled"]
