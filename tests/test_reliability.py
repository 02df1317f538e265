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
