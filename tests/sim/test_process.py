"""SimProcess: the simulator in a child process."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request

import pytest

from loadbench.contract.errors import TargetError
from loadbench.contract.headers import REQUEST_ID_HEADER
from loadbench.sim import PROFILES, SimConfig, SimProcess


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read()


def _chat(base_url: str, request_id: str, n: int = 3) -> dict:
    req = urllib.request.Request(
        base_url + "/v1/chat/completions",
        data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                         "max_tokens": n}).encode(),
        headers={"Content-Type": "application/json", REQUEST_ID_HEADER: request_id},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_start_serve_stop_and_idempotent_close():
    sim = SimProcess(SimConfig(profile=PROFILES["instant"]))
    with sim:
        assert sim.running
        assert sim.base_url.startswith("http://127.0.0.1:")
        assert sim.startup_s < 5.0  # the < 1.5 s target is measured in the benchmark, not asserted
        assert json.loads(_get(sim.base_url + "/health"))["status"] == "ok"
        body = _chat(sim.base_url, "req-1")
        assert body["usage"]["completion_tokens"] == 3
        assert sim.trace_path is not None
        pid = sim.pid
    assert not sim.running
    sim.close()  # idempotent
    sim.close()
    # The child is gone.
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)
    records = sim.read_trace()
    assert [r["id"] for r in records] == ["req-1"]
    assert records[0]["outcome"] == "ok"


def test_async_context_manager():
    import asyncio

    async def main():
        async with SimProcess() as sim:
            return json.loads(await asyncio.to_thread(_get, sim.base_url + "/health"))

    assert asyncio.run(main())["status"] == "ok"


def test_fixed_port_and_explicit_trace_path(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    trace = tmp_path / "trace.jsonl"
    with SimProcess(SimConfig(trace_path=str(trace)), port=port) as sim:
        assert sim.base_url == f"http://127.0.0.1:{port}"
        _chat(sim.base_url, "a")
        _chat(sim.base_url, "b")
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == ["a", "b"]
    # An explicit trace path is left in place after close.
    assert trace.exists()


def test_failure_to_start_reports_stderr_tail():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        t0 = time.perf_counter()
        with pytest.raises(TargetError) as info:
            SimProcess(port=port, startup_timeout_s=10).start()
        assert time.perf_counter() - t0 < 10
    message = str(info.value)
    assert "did not come up" in message
    assert "cannot listen" in message  # from the child's stderr


def test_base_url_before_start_is_an_error():
    with pytest.raises(TargetError):
        _ = SimProcess().base_url


def test_python_m_loadbench_sim_serves_and_stops_on_sigint():
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "loadbench.sim", "--port", "0", "--no-trace"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("loadbench sim: serving on http://127.0.0.1:"), line
        url = line.split("serving on ", 1)[1].split(" ", 1)[0]
        assert json.loads(_get(url + "/api/version"))["version"]
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_main_rejects_bad_flags_with_status_2(capsys):
    from loadbench.sim.cli import main

    assert main(["--fault", "explode:0.5"]) == 2
    err = capsys.readouterr().err
    assert "explode" in err and err[-1] == "\n"


MULTI_CPU = hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2


@pytest.mark.skipif(not MULTI_CPU, reason="needs Linux CPU affinity and at least two CPUs")
def test_child_gets_a_cpu_of_its_own_and_the_caller_is_kept_off_it():
    before = os.sched_getaffinity(0)
    with SimProcess(SimConfig()) as sim:
        assert sim.cpu == max(before)
        assert os.sched_getaffinity(sim.pid) == {sim.cpu}
        assert os.sched_getaffinity(0) == before - {sim.cpu}
        with urllib.request.urlopen(sim.base_url + "/v1/models", timeout=5) as resp:
            assert resp.status == 200
    assert os.sched_getaffinity(0) == before


@pytest.mark.skipif(not MULTI_CPU, reason="needs Linux CPU affinity and at least two CPUs")
def test_async_start_pins_the_event_loop_thread_not_the_worker():
    before = os.sched_getaffinity(0)

    async def main():
        async with SimProcess(SimConfig()) as sim:
            inside = os.sched_getaffinity(0), os.sched_getaffinity(sim.pid), sim.cpu
        return inside, os.sched_getaffinity(0)

    (caller, child, cpu), after = asyncio.run(main())
    assert child == {cpu} and caller == before - {cpu}
    assert after == before


def test_isolation_can_be_turned_off():
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with SimProcess(SimConfig(), isolate_cpu=False) as sim:
        assert sim.cpu is None
        if before is not None:
            assert os.sched_getaffinity(0) == before
            assert os.sched_getaffinity(sim.pid) == before


@pytest.mark.parametrize("bad", ["", "x", "-1", "1,,a"])
def test_cli_rejects_bad_cpus(capsys, bad):
    from loadbench.sim.cli import main

    assert main(["--cpus", bad, "--port", "0"]) == 2
    assert "--cpus" in capsys.readouterr().err
