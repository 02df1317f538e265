"""CI use end to end, on the simulator: gates and their exit code, JUnit, the job summary, aborts,
drift and the harness's own figures, and compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from loadbench.results.ci import RunOutcome, junit_xml, markdown_summary
from loadbench.sim import SimConfig, SimProcess
from tests.test_cli import ROOT, scenario_file


def run_cli(*args: str, env_extra: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; a job summary is written only where ``env_extra`` asks for one."""
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env.update(PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "loadbench", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )

STEADY = """
from loadbench import Constant, Decode, EngineProfile, FaultPlan, FaultWindow, Fixed, Gate, Remote, Scenario
from loadbench import SimConfig, Stop
scenario = Scenario(
    workload=Decode(input_tokens=Fixed(32), output_tokens=Fixed(16)),
    deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
    load=Constant({rate}),
    stop=Stop({stop}),
    target="sim",
    sim=SimConfig(profile={profile}{sim_extra}),
    seed={seed},
    energy=False,
    hlog_interval_s=0.25,
    gates={gates},
)
"""


def steady(tmp_path: Path, *, rate: float = 100, stop: str = "requests=150", profile: str = "'gpu-8b'",
           sim_extra: str = "", gates: str = "[]", name: str = "steady.py", seed: int = 0) -> Path:  # fmt: skip
    body = STEADY.format(rate=rate, stop=stop, profile=profile, sim_extra=sim_extra, gates=gates, seed=seed)
    return scenario_file(tmp_path, body, name)


def test_a_failing_gate_exits_99_with_junit_and_a_line_naming_it(tmp_path: Path) -> None:
    out, junit, step = tmp_path / "run", tmp_path / "reports" / "junit.xml", tmp_path / "step.md"
    scn = steady(tmp_path, gates='["ttft_ms.p99 < 0.5", "error_rate < 1%"]')
    proc = run_cli(
        str(scn), "--out", str(out), "--quiet", "--junit", str(junit), "--gate", "requests.completed >= 150",
        env_extra={"GITHUB_STEP_SUMMARY": str(step)},
    )  # fmt: skip
    assert proc.returncode == 99, proc.stderr
    lines = proc.stderr.splitlines()
    failing = [x for x in lines if x.startswith("loadbench: gate FAIL")]
    assert len(failing) == 1 and "ttft_ms.p99 < 0.5 (measured" in failing[0]
    assert "loadbench: 1 of 3 gates failed (exit 99)" in lines
    summary = json.loads((out / "summary.json").read_text())
    gates = {g["expr"]: g for g in summary["gates"]}
    assert gates["ttft_ms.p99 < 0.5"]["passed"] is False
    assert gates["ttft_ms.p99 < 0.5"]["value"] == summary["metrics"]["ttft_ms"]["p99"]
    assert gates["error_rate < 1%"]["passed"] and gates["requests.completed >= 150"]["passed"]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "1" and suite.get("errors") == "0"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["ttft_ms.p99 < 0.5"].find("failure")
    assert failure is not None and "measured" in failure.get("message") and "limit < 0.5" in failure.get("message")
    assert cases["run"].find("error") is None and cases["error_rate < 1%"].find("failure") is None
    md = step.read_text()
    assert "1 of 3 gates failed" in md and "| ❌ | `ttft_ms.p99 < 0.5` |" in md


BAD_GATES = [
    ("ttft_ms.p999 < 500", "unknown figure 'ttft_ms.p999'"),  # a typo in the metric
    ("ttft_ms.p99 => 500", "bad operator '=>'"),
    ("ttft_ms.p99 < 500ms", "bad number '500ms'"),
    ("throughput.output_tokens_per_s > lots", "bad number 'lots'"),
]


def test_every_kind_of_bad_gate_exits_2_before_any_request(tmp_path: Path) -> None:
    scn = steady(tmp_path, stop="requests=20")
    junit = tmp_path / "junit.xml"
    with SimProcess(SimConfig(profile="instant")) as sim:
        for expr, message in BAD_GATES:
            proc = run_cli(str(scn), "--target", sim.base_url, "--gate", expr, "--quiet", "--junit", str(junit),
                           "--out", str(tmp_path / "never"))  # fmt: skip
            assert proc.returncode == 2, (expr, proc.stderr)
            assert message in proc.stderr and "Traceback" not in proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1
            error = ET.parse(junit).getroot().find("testsuite/testcase/error")
            assert error is not None and error.get("type") == "bad_input" and message in error.get("message")
        # The same scenario with a good gate does reach this simulator.
        good = run_cli(str(scn), "--target", sim.base_url, "--gate", "ttft_ms.p99 < 5000", "--quiet",
                       "--out", str(tmp_path / "good"))  # fmt: skip
    assert good.returncode == 0, good.stderr
    trace = sim.read_trace()
    good_ids = {json.loads(x)["request_id"] for x in (tmp_path / "good" / "requests.jsonl").read_text().splitlines()}
    assert {t["id"] for t in trace} == good_ids  # the bad runs sent nothing at all
    assert not (tmp_path / "never").exists()


def test_a_bad_gate_in_the_scenario_file_is_bad_input_too(tmp_path: Path) -> None:
    proc = run_cli(str(steady(tmp_path, gates='["e2e_ms.p99 < < 3"]')), "--quiet")
    assert proc.returncode == 2 and "bad operator '< <'" in proc.stderr


def test_abort_on_fail_stops_a_run_whose_errors_rise_mid_run_and_writes_everything(tmp_path: Path) -> None:
    """From 3 s in, the simulator answers half of all requests with 503. At 50 req/s for 20 s the
    run can finish at most 1,000 requests; 5% of those failed, the error-rate gate can no longer
    pass, and the run stops long before its 20 s."""
    out, junit = tmp_path / "run", tmp_path / "junit.xml"
    scn = steady(
        tmp_path,
        rate=50,
        stop="duration_s=20",
        sim_extra=", faults=FaultPlan(schedule=(FaultWindow(3.0, 60.0, '503', 0.5),))",
        gates='[Gate.parse("error_rate < 5%", abort_on_fail=True, delay_s=1.0), "ttft_ms.p99 < 5000"]',
    )
    proc = run_cli(str(scn), "--out", str(out), "--quiet", "--junit", str(junit))
    assert proc.returncode == 99, proc.stderr
    assert "gate 'error_rate < 5%' can no longer pass (abort_on_fail)" in proc.stderr
    for name in ("run.json", "requests.jsonl", "metrics.hlog", "summary.json", "harness.jsonl", "sim_trace.jsonl"):
        assert (out / name).is_file(), name
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "aborted" and run["stopped_by"] == "gate" and run["aborted_by_gate"] == "error_rate < 5%"
    summary = json.loads((out / "summary.json").read_text())
    req = summary["requests"]
    assert summary["stopped_by"] == "gate"
    assert req["scheduled"] < 800 and req["failed"] >= 50  # stopped early, once 50 of 1,000 had failed
    assert req["scheduled"] == req["completed"] + req["failed"] + req["cancelled"]
    assert len((out / "requests.jsonl").read_text().splitlines()) == req["scheduled"]
    gates = {g["expr"]: g for g in summary["gates"]}
    assert gates["error_rate < 5%"]["aborted_run"] and not gates["error_rate < 5%"]["passed"]
    assert gates["ttft_ms.p99 < 5000"]["passed"]
    failure = ET.parse(junit).getroot().find("testsuite/testcase[@name='error_rate < 5%']/failure")
    assert failure is not None and "stopped early" in failure.get("message")


def test_a_run_with_no_completed_request_is_an_error_not_a_gate_failure(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    scn = steady(tmp_path, stop="requests=20", sim_extra=", faults=FaultPlan(rates={'500': 1.0})",
                 gates='["ttft_ms.p99 < 500"]')  # fmt: skip
    proc = run_cli(str(scn), "--out", str(tmp_path / "run"), "--quiet", "--junit", str(junit))
    assert proc.returncode == 3, proc.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.find("testcase[@name='run']/error").get("type") == "no_completed"
    assert suite.find("testcase[@name='ttft_ms.p99 < 500']/failure") is not None  # not measured: not passed


def test_summary_has_drift_and_the_harness_and_harness_jsonl_samples_every_second(tmp_path: Path) -> None:
    out = tmp_path / "run"
    gates = '["drift.ttft_ms.p99 < 100", "harness.rss_growth_mb < 500"]'
    scn = steady(tmp_path, rate=40, stop="duration_s=6", gates=gates)
    body = scn.read_text().replace("energy=False,", "energy=False, drift_window_s=2.0,")
    scn.write_text(body)
    proc = run_cli(str(scn), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    drift = summary["drift"]
    assert drift["window_s"] == 2.0 and drift["note"] is None
    first, last = drift["first"], drift["last"]
    assert first["end_s"] <= last["start_s"] and last["end_s"] <= summary["run_duration_s"] + 1
    assert first["completed"] > 40 and last["completed"] > 40
    assert drift["ttft_ms"]["p99"] == pytest.approx(last["ttft_ms"]["p99"] / first["ttft_ms"]["p99"])
    assert drift["error_rate"] == 0.0
    samples = [json.loads(x) for x in (out / "harness.jsonl").read_text().splitlines()]
    assert 5 <= len(samples) <= 10
    for key in ("t_s", "rss_mb", "cpu_user_s", "cpu_percent", "open_fds", "sockets", "in_flight", "finished",
                "loop_lag_max_ms"):  # fmt: skip
        assert key in samples[-1]
    assert samples[-1]["finished"] == summary["requests"]["completed"]
    assert samples[-1]["sockets"] >= 1  # the connections to the simulator
    harness = summary["harness"]
    assert harness["samples"] == len(samples) and harness["rss_mb"]["max"] >= harness["rss_mb"]["first"] > 10
    assert harness["rss_growth_mb"] is not None and harness["loop_lag_ms"]["max"] is not None


def test_compare_flags_a_slower_server_and_not_the_same_one(tmp_path: Path) -> None:
    runs = {}
    slow = "EngineProfile(name='slow', slots=64, step_base_ms=13.0, step_per_seq_ms=0.6, prefill_per_token_ms=0.06)"
    fast = "EngineProfile(name='fast', slots=64, step_base_ms=10.0, step_per_seq_ms=0.5, prefill_per_token_ms=0.05)"
    for name, profile, seed in (("base", fast, 1), ("same", fast, 2), ("slow", slow, 3)):
        scn = steady(tmp_path, rate=60, stop="requests=600", profile=profile, sim_extra=f", jitter=True, seed={seed}",
                     name=f"{name}.py", seed=seed)  # fmt: skip
        runs[name] = tmp_path / name
        proc = run_cli(str(scn), "--out", str(runs[name]), "--quiet")
        assert proc.returncode == 0, proc.stderr
    md = tmp_path / "cmp.md"
    proc = run_cli("compare", str(runs["base"]), str(runs["slow"]), "--markdown", str(md))
    assert proc.returncode == 99, proc.stdout + proc.stderr
    assert "regression" in proc.stdout
    table = md.read_text()
    assert "| `ttft_ms.p50` |" in table and "🔴 regression" in table
    proc = run_cli("compare", str(runs["base"]), str(runs["same"]), "--json")
    assert proc.returncode == 0, proc.stdout
    result = json.loads(proc.stdout)
    assert result["regressions"] == []
    assert {r["verdict"] for r in result["figures"]} <= {"no change", "too few samples", "improvement"}


def test_compare_rejects_what_is_not_a_run(tmp_path: Path) -> None:
    proc = run_cli("compare", str(tmp_path), str(tmp_path))
    assert proc.returncode == 2 and "requests.jsonl missing" in proc.stderr
    proc = run_cli("compare", str(tmp_path), str(tmp_path), "--tolerance", "ttft_ms.p98=0.1")
    assert proc.returncode == 2


def test_junit_and_markdown_for_a_run_that_never_started() -> None:
    outcome = RunOutcome(scenario="ci", error_kind="bad_input", error="gate 'x < y': bad number 'y'")
    root = ET.fromstring(junit_xml(outcome))
    suite = root.find("testsuite")
    assert suite.get("errors") == "1" and suite.get("tests") == "1"
    assert suite.find("testcase/error").get("message") == "gate 'x < y': bad number 'y'"
    assert "run error (bad_input)" in markdown_summary(outcome)


def test_shipped_ci_soak_scenario_has_gates_that_the_summary_knows() -> None:
    from loadbench.experiment import Experiment
    from loadbench.loader import load_scenario

    scenario = load_scenario(Path(__file__).resolve().parents[1] / "scenarios" / "ci_soak.py")
    assert len(scenario.gates) >= 5 and scenario.target == "sim"
    assert Experiment.check_gates(scenario)  # the abort gate has its bound
