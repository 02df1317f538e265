"""What a new user meets first, through the command line against the simulator: the start line
names the model sent, the load from the command line, SLO attainment, exit code 3, one command
family, ``verify --trace URL``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadbench.sim import SimConfig, SimProcess

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "loadbench", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )


def scenario_file(tmp_path: Path, body: str, name: str = "scn.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path

SMALL = """
from loadbench import Concurrency, Decode, FaultPlan, Fixed, Local, Q3B, Remote, Scenario, SimConfig, Stop
scenario = Scenario(
    workload=Decode(input_tokens=Fixed(32), output_tokens=Fixed(8)),
    deployment={deployment},
    reasoning={reasoning},
    quant={quant},
    load=Concurrency(2),
    stop=Stop(requests=6),
    target={target},
    sim=SimConfig(profile="instant"{sim_extra}),
    energy=False,
    slo={{"ttft_ms": 5000, "tpot_ms": 1000}},
)
"""


def small(tmp_path: Path, deployment: str, *, reasoning: bool = False, quant: str = "None", target: str = '"sim"',
          sim_extra: str = "") -> Path:
    body = SMALL.format(deployment=deployment, reasoning=reasoning, quant=quant, target=target, sim_extra=sim_extra)
    return scenario_file(tmp_path, body)


def trace_models(run_dir: Path) -> set[str]:
    return {json.loads(line)["model"] for line in (run_dir / "sim_trace.jsonl").read_text().splitlines()}


@pytest.fixture(scope="module")
def hand_sim() -> Iterator[SimProcess]:
    """A simulator started apart from the run, as by ``loadbench sim``."""
    with SimProcess(SimConfig(profile="instant", models=("served-first", "served-second"))) as sim:
        yield sim


@pytest.mark.parametrize(
    ("deployment", "reasoning", "quant", "sent"),
    [
        ("Remote.deepseek()", True, "None", "deepseek-reasoner"),
        ("Remote.deepseek()", False, "None", "deepseek-chat"),
        ('Local("llama3.2")', False, "Q3B()", "llama3.2:3b"),  # the catalog's tag is not served; this one is
    ],
)
def test_start_line_and_run_json_name_the_model_the_server_received(
    tmp_path: Path, deployment: str, reasoning: bool, quant: str, sent: str
) -> None:
    out = tmp_path / "run"
    proc = run_cli(str(small(tmp_path, deployment, reasoning=reasoning, quant=quant)), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert f"model {sent};" in first and f"results in {out}" in first
    assert trace_models(out) == {sent}
    run = json.loads((out / "run.json").read_text())
    assert run["target"]["model"] == sent
    dep = run["scenario"]["deployment"]
    assert dep.get("tag", dep["model"]) == sent


def test_compatible_names_the_servers_model_keeps_its_trace_and_verifies_by_url(
    tmp_path: Path, hand_sim: SimProcess
) -> None:
    out = tmp_path / "run"
    scn = small(tmp_path, f'Remote.compatible(base_url="{hand_sim.base_url}")', target="None")
    proc = run_cli(str(scn), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "model served-first)" in proc.stdout.splitlines()[0]
    # The run directory keeps the hand-started simulator's ground truth for this run only.
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    rows = [json.loads(line) for line in (out / "sim_trace.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["id"].startswith(f"{run_id}-") for r in rows)
    assert trace_models(out) == {"served-first"}
    # Another run's requests reach the same simulator; verify --trace URL keeps only this run's.
    assert run_cli(str(scn), "--out", str(tmp_path / "other"), "--quiet").returncode == 0
    for trace in (hand_sim.base_url, hand_sim.base_url + "/v1", hand_sim.base_url + "/sim/trace"):
        verified = run_cli("verify", str(out), "--trace", trace, "--json")
        assert verified.returncode == 0, verified.stderr
        result = json.loads(verified.stdout)
        assert result["joined_ok"] == 6 and result["server_requests"] == 6
        assert result["trace"] == hand_sim.base_url + "/sim/trace"


def test_verify_names_an_unreachable_trace_url_intact(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(str(small(tmp_path, 'Remote.deepseek()')), "--out", str(out), "--quiet").returncode == 0
    proc = run_cli("verify", str(out), "--trace", "http://127.0.0.1:9")
    assert proc.returncode == 2
    assert "http://127.0.0.1:9/sim/trace: cannot fetch the trace" in proc.stderr
    # A server that is not a simulator: its answer is named, not parsed.
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        proc = run_cli("verify", str(out), "--trace", url)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 2
    assert f"{url}/sim/trace: HTTP 404 (is this a loadbench simulator" in proc.stderr


def test_a_target_that_fails_its_check_announces_no_directory(tmp_path: Path) -> None:
    out = tmp_path / "never"
    scn = small(tmp_path, 'Remote.compatible(base_url="http://127.0.0.1:9")', target="None")
    proc = run_cli(str(scn), "--out", str(out))
    assert proc.returncode == 2
    assert "results in" not in proc.stdout + proc.stderr
    assert "connection refused" in proc.stderr
    assert not out.exists()


def test_rate_and_max_concurrency_replace_the_plan_and_are_recorded(tmp_path: Path) -> None:
    out = tmp_path / "rate"
    proc = run_cli(
        "scenarios/steady_poisson.py", "--rate", "30", "--max-concurrency", "8", "--duration", "4", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["scenario"]["load"] == {"plan": "Poisson", "rate_per_s": 30.0, "max_concurrency": 8}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["load"]["plan"] == run["scenario"]["load"]
    assert 15 < summary["load"]["scheduled_per_s"] < 50  # seeded Poisson at 30/s over 4 s
    # Never more than 8 in flight: the simulator's ground truth overlaps at most 8 requests.
    rows = [json.loads(line) for line in (out / "sim_trace.jsonl").read_text().splitlines()]
    events = sorted([(r["received_ns"], 1) for r in rows] + [(r["last_ns"], -1) for r in rows])
    in_flight = peak = 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak <= 8
    # The table shows SLO attainment, and the summary has it per SLO and all at once.
    assert "SLO attainment (of " in proc.stdout
    slo = summary["slo"]
    assert set(slo["attainment"]) == {"ttft_ms", "tpot_ms", "all"}
    assert slo["requests"] == summary["requests"]["by_phase"]["measured"].get("ok", 0) + sum(
        n for st, n in summary["requests"]["by_phase"]["measured"].items() if st != "ok"
    )


def test_concurrency_and_arrivals_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "users"
    proc = run_cli("scenarios/steady_poisson.py", "--concurrency", "16", "--requests", "40", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["scenario"]["load"] == {"plan": "Concurrency", "users": 16, "think_s": 0.0}
    users = {json.loads(line)["user"] for line in (out / "requests.jsonl").read_text().splitlines()}
    assert users == set(range(16))
    # Five requests all fall in the scenario's 3 s warm-up: nothing is measured, and the run says so.
    proc = run_cli("scenarios/steady_poisson.py", "--rate", "20", "--arrivals", "gamma:3", "--requests", "5",
                   "--out", str(tmp_path / "gamma"), "--quiet")
    assert proc.returncode == 3
    assert "0 failed, 0 cancelled; errors: none; 5 in the warm-up or cool-down, not measured" in proc.stderr
    load = json.loads((tmp_path / "gamma" / "run.json").read_text())["scenario"]["load"]
    assert load["plan"] == "Gamma" and load["burstiness"] == pytest.approx(1 / 9)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "5", "--concurrency", "2"], "--rate and --concurrency"),
        (["--arrivals", "uniform"], "--arrivals must be poisson, constant or gamma:CV"),
        (["--concurrency", "4", "--max-concurrency", "2"], "users are the cap"),
    ],
)
def test_bad_load_options_are_one_line_errors(args: list[str], message: str) -> None:
    proc = run_cli("scenarios/steady_poisson.py", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_run_where_nothing_completed_exits_3_and_keeps_its_results(tmp_path: Path) -> None:
    out = tmp_path / "failing"
    scn = small(tmp_path, 'Remote.deepseek()', sim_extra=', faults=FaultPlan(rates={"500": 1.0})')
    proc = run_cli(str(scn), "--out", str(out))
    assert proc.returncode == 3, proc.stderr
    assert "no measured request completed (6 failed, 0 cancelled; errors: server_error=6)" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"]["failed"] == 6
    assert summary["slo"]["attainment"]["all"] == 0.0


def test_a_missing_scenario_is_reported_before_the_harness_is_imported(tmp_path: Path) -> None:
    code = (
        "import sys; from loadbench.cli import main; rc = main(['nope/missing.py']); "
        "assert rc == 2, rc; assert 'loadbench.experiment' not in sys.modules; "
        "assert 'aiohttp' not in sys.modules; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ})
    assert proc.stdout.strip() == "ok", proc.stderr
    assert proc.stderr.strip() == "loadbench: nope/missing.py: scenario file not found"


def test_one_command_family() -> None:
    for command, prog in (("engine", "loadbench engine"), ("verify", "loadbench verify"),
                          ("report", "loadbench report"), ("sim", "loadbench sim")):
        proc = run_cli(command, "--help")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"usage: {prog}"), proc.stdout[:80]
    top = run_cli("--help")
    assert top.stdout.startswith("usage: loadbench ") and "--max-concurrency" in top.stdout
    assert "python -m loadbench.engines" not in top.stdout


def test_requests_cancelled_at_the_drain_say_what_they_waited_for(tmp_path: Path) -> None:
    """A simulator that holds headers back for some requests and stalls others mid-stream: after
    the drain, the summary and the records say which were waiting for the first token and which
    were streaming."""
    scn = scenario_file(tmp_path, """
        from loadbench import Burst, Decode, FaultPlan, Fixed, Remote, Scenario, SimConfig, Stop
        scenario = Scenario(
            workload=Decode(input_tokens=Fixed(16), output_tokens=Fixed(20)),
            deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
            load=Burst(size=8, waves=1),
            stop=Stop(requests=8, drain_s=1.0),
            target="sim",
            sim=SimConfig(profile="instant", seed=3, faults=FaultPlan(
                rates={"slow_headers": 0.5, "stall": 0.5}, slow_headers_s=60, stall_s=60, after_tokens=3)),
            energy=False,
        )
    """)
    out = tmp_path / "hang"
    proc = run_cli(str(scn), "--out", str(out))
    assert proc.returncode == 3, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    cancelled_in = summary["requests"]["cancelled_in"]
    assert summary["requests"]["cancelled"] == 8 == sum(cancelled_in.values())
    assert set(cancelled_in) == {"waiting_first_token", "streaming"}
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    for r in records:
        if r["cancelled_in"] == "streaming":
            assert r["first_token_ns"] and r["error_detail"] == "cancelled while streaming (the response had not ended)"
        else:
            assert not r["first_token_ns"] and "headers_ns" not in r
            assert r["error_detail"] == "cancelled while waiting for the first token"
    assert "cancelled while: " in proc.stdout
