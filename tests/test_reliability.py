"""Nothing measured is lost or inflated: signals from a terminal, run directories, a full disk, a
dying simulator, a report rebuilt from the records. End to end, through the command line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
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


class _HtmlPortal:
    """A loopback server that lists a model, then answers every completion with an HTML page and
    HTTP 200 (a proxy's sign-in page): what the simulator cannot be made to do."""

    PAGE = b"<!doctype html><html><head><title>Sign in - Corp Proxy</title></head><body>...</body></html>"

    def __enter__(self) -> str:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        page = self.PAGE

        class Handler(BaseHTTPRequestHandler):
            def _send(self, body: bytes, content_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(json.dumps({"object": "list", "data": [{"id": "m"}]}).encode(), "application/json")

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._send(page, "text/html; charset=utf-8")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_an_html_page_with_200_is_a_wrong_content_type_with_its_status_recorded(tmp_path: Path) -> None:
    from loadbench import Concurrency, Decode, Experiment, Fixed, Remote, Stop

    with _HtmlPortal() as url:
        result = Experiment(
            workload=Decode(input_tokens=Fixed(8), output_tokens=Fixed(4)),
            deployment=Remote.compatible(url, "m"),
            load=Concurrency(2),
            stop=Stop(requests=4),
            energy=False,
            out_dir=str(tmp_path / "run"),
        ).run()
    assert result.summary["requests"]["errors"] == {"wrong_content_type": 4}
    for line in result.records():
        assert line["status"] == "failed" and line["error"] == "wrong_content_type"
        assert line["http_status"] == 200 and line["content_type"] == "text/html"
        assert line["error_detail"] == "expected text/event-stream, got text/html (HTTP 200): Sign in - Corp Proxy"


# -- the run directory --------------------------------------------------------------------------


def test_an_existing_run_is_never_overwritten_without_force(a_run: Path, tmp_path: Path) -> None:
    before = (a_run / "requests.jsonl").read_bytes()
    proc = run_cli(str(small(tmp_path, requests=8)), "--out", str(a_run))
    assert proc.returncode == 2
    assert "not empty" in proc.stderr and "--force" in proc.stderr and "Traceback" not in proc.stderr
    assert "results in" not in proc.stdout  # refused before anything started
    assert (a_run / "requests.jsonl").read_bytes() == before
    # --force replaces every run file, the simulator's trace included, and keeps other files.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("run.json", "requests.jsonl", "summary.json", "sim_trace.jsonl"):
        (copy / name).write_bytes((a_run / name).read_bytes())
    (copy / "my_notes.txt").write_text("keep me")
    proc = run_cli(str(small(tmp_path, requests=8)), "--out", str(copy), "--force", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert len((copy / "requests.jsonl").read_text().splitlines()) == 8
    assert len((copy / "sim_trace.jsonl").read_text().splitlines()) == 8
    assert (copy / "my_notes.txt").read_text() == "keep me"
    assert run_cli("verify", str(copy)).stdout.startswith("8 requests joined")


def test_every_bad_out_path_is_exit_2_before_anything_starts(tmp_path: Path) -> None:
    scenario = str(small(tmp_path, requests=8))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "summary.json").write_text("mine")
    cases = {
        "": "out_dir must name a directory, got ''",
        str(a_file): "exists and is not a directory",
        str(a_file / "under"): "cannot create it",
        "/proc/loadbench-x": "cannot create it",
    }
    for out, message in cases.items():
        proc = run_cli(scenario, "--out", out, cwd=cwd)
        assert proc.returncode == 2, (out, proc.stderr)
        assert message in proc.stderr, (out, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert "results in" not in proc.stdout, out
    assert (cwd / "summary.json").read_text() == "mine"
    assert sorted(p.name for p in cwd.iterdir()) == ["summary.json"]


def test_a_target_that_fails_its_checks_leaves_no_directory(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "never"
    proc = run_cli(str(small(tmp_path, requests=8)), "--target", f"http://127.0.0.1:{port}", "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert not out.exists()


def test_report_on_a_file_is_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "x.txt"
    a_file.write_text("x")
    proc = run_cli("report", str(a_file))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "not a run directory" in proc.stderr


def test_report_rebuilds_a_missing_summary_from_the_records(a_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "killed"
    run.mkdir()
    for name in ("run.json", "requests.jsonl"):
        (run / name).write_bytes((a_run / name).read_bytes())
    # The process was killed mid-write: the last line is cut short.
    with open(run / "requests.jsonl", "ab") as f:
        f.write(b'{"index": 99, "request_id": "x-')
    proc = run_cli("report", str(run))
    assert proc.returncode == 0, proc.stderr
    assert "rebuilt it from requests.jsonl (30 records)" in proc.stderr
    rebuilt = json.loads((run / "summary.json").read_text())
    original = json.loads((a_run / "summary.json").read_text())
    assert rebuilt["rebuilt"]["unreadable_lines"] == 1
    assert rebuilt["requests"] == original["requests"]
    assert rebuilt["window"]["duration_s"] == pytest.approx(original["window"]["duration_s"])
    assert rebuilt["throughput"]["requests_per_s"] == pytest.approx(original["throughput"]["requests_per_s"])
    for key, m in original["metrics"].items():
        assert rebuilt["metrics"][key]["count"] == m["count"], key
        if m["count"] and key != "itl_ms":  # chunk offsets are whole microseconds
            assert rebuilt["metrics"][key]["p99"] == pytest.approx(m["p99"], rel=2e-3), key
    assert rebuilt["metrics"]["itl_ms"]["p50"] == pytest.approx(original["metrics"]["itl_ms"]["p50"], abs=0.002)
    assert "30 completed" in proc.stdout.replace("scheduled, ", "scheduled,") or "30 scheduled" in proc.stdout


# -- interrupts ---------------------------------------------------------------------------------


def test_ctrl_c_during_the_drain_is_an_interrupt_and_a_second_cancels_with_one_clear_message(tmp_path: Path) -> None:
    out = tmp_path / "run"
    term = Terminal([*PYTHON, "scenarios/decode_burst.py", "--duration", "1", "--out", str(out)],
                    cwd=str(ROOT), env=_env())
    term.wait_for("remaining   0.0 s")  # scheduling is over; the wave's answers take ~5 s
    term.type(b"\x03")
    term.wait_for("scheduling had already stopped")
    term.type(b"\x03")
    code = term.wait()
    assert code == 130, term.output
    lines = re.findall(r"loadbench: SIGINT[^\r\n]*", term.output)  # the live line shares the terminal
    assert lines == [
        "loadbench: SIGINT: scheduling had already stopped; draining in-flight requests (again to cancel them)",
        "loadbench: SIGINT again: cancelling in-flight requests",
    ], term.output
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and run["stopped_by"] == "duration"
    req = json.loads((out / "summary.json").read_text())["requests"]
    assert req["cancelled"] > 0 and req["failed"] == 0
    assert req["scheduled"] == req["completed"] + req["cancelled"] == 32


def test_ctrl_c_during_the_drain_alone_still_drains_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "run"
    term = Terminal([*PYTHON, "scenarios/decode_burst.py", "--duration", "1", "--out", str(out)],
                    cwd=str(ROOT), env=_env())
    term.wait_for("remaining   0.0 s")
    term.type(b"\x03")
    assert term.wait() == 130, term.output
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    req = json.loads((out / "summary.json").read_text())["requests"]
    assert req["completed"] == req["scheduled"] == 32


# -- a dying simulator, a killed harness, a full disk -------------------------------------------


STEADY = """
from loadbench import Constant, Decode, Fixed, Remote, Scenario, SimConfig, Stop
scenario = Scenario(
    workload=Decode(input_tokens=Fixed(32), output_tokens=Fixed({tokens})),
    deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
    load=Constant(rate_per_s={rate}),
    stop=Stop(duration_s={duration}),
    target="sim",
    sim=SimConfig(profile="instant"),
    energy={energy},
    hlog_interval_s=0.5,
)
"""


def _steady(tmp_path: Path, *, duration: float, rate: float = 20, tokens: int = 16, energy: str = "False") -> str:
    path = tmp_path / "steady.py"
    path.write_text(STEADY.format(duration=duration, rate=rate, tokens=tokens, energy=energy))
    return str(path)


def _popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*PYTHON, *args], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _wait_for_lines(path: Path, n: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists() or len(path.read_bytes().splitlines()) < n:
        assert time.monotonic() < deadline, f"{path} never reached {n} lines"
        time.sleep(0.05)


def test_a_dead_embedded_simulator_stops_the_run_with_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _popen(_steady(tmp_path, duration=30), "--out", str(out), "--quiet")
    _wait_for_lines(out / "requests.jsonl", 20)
    (sim_pid,) = _children(proc.pid)
    os.kill(sim_pid, signal.SIGKILL)
    t0 = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 5  # it did not run on blind for the other 25 s
    assert proc.returncode == 2, stderr
    assert "the embedded simulator exited mid-run (killed by signal 9): stopping" in stderr
    assert stderr.strip().splitlines()[-1].startswith("loadbench: the embedded simulator exited mid-run")
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and run["stopped_by"] == "target_died"
    req = json.loads((out / "summary.json").read_text())["requests"]
    assert req["completed"] >= 20
    assert req["failed"] + req["cancelled"] <= 5  # not a stream of connect failures


def test_a_killed_harness_leaves_the_trace_energy_and_records_in_the_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _popen(_steady(tmp_path, duration=30, energy="None"), "--out", str(out), "--quiet")
    _wait_for_lines(out / "requests.jsonl", 30)
    time.sleep(1.5)  # past the energy CSV's one-second batches
    proc.kill()
    proc.communicate(timeout=30)
    records = (out / "requests.jsonl").read_bytes().splitlines()
    assert len(records) >= 30 and not (out / "summary.json").exists()
    trace = [json.loads(line) for line in (out / "sim_trace.jsonl").read_bytes().splitlines()]
    assert len(trace) >= 30  # written by the simulator as it went, inside the run directory
    energy = (out / "energy.csv").read_text().splitlines()
    assert energy[0].startswith("t_ns,t_s,source") and len(energy) > 5
    rebuilt = run_cli("report", str(out))
    assert rebuilt.returncode == 0, rebuilt.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"]["completed"] == len(records)


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, check=False)
    return done.returncode == 0


def test_a_full_disk_stops_the_run_at_once_keeps_whole_lines_and_writes_the_summary(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "768k"):
        pytest.skip("needs root to mount a small tmpfs (the writer's unit test fakes the full disk instead)")
    try:
        out = disk / "run"
        proc = run_cli(_steady(tmp_path, duration=60, rate=200, tokens=200), "--out", str(out))
        assert proc.returncode == 2, proc.stderr
        assert "loadbench: cannot write requests.jsonl: No space left on device: stopping the run" in proc.stderr
        assert "Traceback" not in proc.stderr
        run = json.loads((out / "run.json").read_text())
        assert run["status"] == "failed" and run["stopped_by"] == "write_failed"
        assert "No space left on device" in run["error"]
        summary = json.loads((out / "summary.json").read_text())
        req = summary["requests"]
        data = (out / "requests.jsonl").read_bytes()
        assert data.endswith(b"\n")
        lines = [json.loads(line) for line in data.splitlines()]  # every line whole
        assert req["scheduled"] < 60 * 200  # stopped, not run on blind
        assert len(lines) + req["unwritten_records"] == req["scheduled"]
        # Requests in flight at the stop are drained; on a slow host some outlast the drain and are
        # cancelled, never failed (the disk is the client's trouble, not the server's).
        assert req["completed"] + req["cancelled"] == req["scheduled"] and req["failed"] == 0
        assert req["completed"] > 0
        assert "decode_burst" not in proc.stdout and "completed" in proc.stdout  # the summary was printed
    finally:
        subprocess.run(["umount", str(disk)], check=False)
