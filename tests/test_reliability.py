"""Nothing measured is lost or inflated: signals from a terminal, run directories, a full disk, a
dying simulator, a report rebuilt from the records. End to end, through the command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from terminal import Terminal
from test_cli import ROOT, run_cli, small

PYTHON = [sys.executable, "-m", "loadbench"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "160", "TERM": "xterm"}


def test_ctrl_c_at_a_terminal_drains_in_flight_requests(tmp_path: Path) -> None:
    """The terminal's SIGINT goes to its whole foreground process group; the simulator must not
    be in it, or it dies and every request being drained fails."""
    out = tmp_path / "run"
    term = Terminal([*PYTHON, "scenarios/decode_burst.py", "--out", str(out)], cwd=str(ROOT), env=_env())
    term.wait_for("results in")
    term.wait_for("in flight 32")  # the first wave is streaming (answers take ~5 s)
    term.type(b"\x03")
    code = term.wait()
    assert code == 130, term.output
    summary = json.loads((out / "summary.json").read_text())
    req = summary["requests"]
    assert req["scheduled"] >= 32
    assert req["failed"] == 0 and req["cancelled"] == 0, (req, term.output)
    assert req["completed"] == req["scheduled"]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted"


@pytest.fixture(scope="module")
def a_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small finished run on the simulator, shared by the tests that only read it."""
    tmp = tmp_path_factory.mktemp("a_run")
    out = tmp / "run"
    proc = run_cli(str(small(tmp, requests=30)), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


def test_verify_fails_when_no_request_joins(a_run: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "other_trace.jsonl"
    foreign.write_text(json.dumps({"id": "another-run-1", "outcome": "ok", "received_ns": 1, "last_ns": 2}) + "\n")
    proc = run_cli("verify", str(a_run), "--trace", str(foreign), "--max-p99-ms", "0.001")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no request joined" in proc.stderr and "30 client records" in proc.stderr
    assert "Traceback" not in proc.stderr
    # The run's own trace joins.
    proc = run_cli("verify", str(a_run))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("30 requests joined")
