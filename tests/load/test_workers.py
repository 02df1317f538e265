"""Workers: one run's plan spread over several processes, against the embedded simulator."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from loadbench import Burst, Concurrency, Decode, Experiment, Fixed, Poisson, Remote, Scenario, SimConfig, Stop
from loadbench.contract.errors import ConfigError
from loadbench.load.executors import Processes, Share, share_of
from loadbench.load.plans import Constant


def scenario(tmp_path: Path, **fields) -> Scenario:
    base = dict(
        workload=Decode(input_tokens=Fixed(16), output_tokens=Fixed(8)),
        deployment=Remote.compatible(base_url="http://127.0.0.1:8000", model="m"),
        load=Poisson(60),
        stop=Stop(duration_s=2),
        target="sim",
        sim=SimConfig(profile="instant"),
        energy=False,
        out_dir=tmp_path / "run",
        workers=2,
    )
    base.update(fields)
    return Scenario(**base)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "requests.jsonl").read_text().splitlines()]


# -- shares of a plan ------------------------------------------------------------------------


@pytest.mark.parametrize("plan", [Poisson(500), Constant(100), Burst(32, every_s=0.5)], ids=str)
def test_the_workers_shares_add_up_to_the_plan_arrival_for_arrival(plan) -> None:
    want = list(itertools.islice(plan.offsets_ns(np.random.default_rng(7)), 600))
    for n in (2, 3):
        shares = [
            list(itertools.islice(Share(plan, k, n).offsets_ns(np.random.default_rng(7)), 600 // n)) for k in range(n)
        ]
        assert sorted(itertools.chain(*shares)) == sorted(want)


def test_closed_loop_users_and_limits_are_divided() -> None:
    load, stop = share_of(Concurrency(5), Stop(requests=11, warmup_requests=3), 1, 2)
    assert load == Concurrency(2) and stop.requests == 5 and stop.warmup_requests == 1
    assert share_of(Concurrency(1), Stop(requests=10), 1, 2) is None  # nothing left for worker 1
    burst, _ = share_of(Burst(32, max_concurrency=5), Stop(duration_s=1), 0, 2)
    assert burst.max_concurrency == 3


def test_bad_worker_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workers"):
        scenario(tmp_path, workers=0)
    with pytest.raises(ConfigError, match="executor"):
        scenario(tmp_path, executor="ray")
    with pytest.raises(ConfigError, match="start_method"):
        Processes(2, start_method="fork")


# -- runs ------------------------------------------------------------------------------------


def test_two_workers_make_one_run_whose_histograms_hold_every_workers_records(tmp_path: Path) -> None:
    one = Experiment(scenario(tmp_path, workers=1, out_dir=tmp_path / "one")).run()
    two = Experiment(scenario(tmp_path)).run()
    rows = records(two.path)
    workers = two.summary["workers"]
    assert [w["status"] for w in workers] == ["finished", "finished"]
    assert all(w["records"] > 0 for w in workers)
    assert sum(w["records"] for w in workers) == len(rows) == two.summary["requests"]["scheduled"]
    ok = [r for r in rows if r["status"] == "ok"]
    metrics = two.summary["metrics"]
    assert metrics["e2e_ms"]["count"] == metrics["ttft_ms"]["count"] == len(ok) == len(rows)
    assert metrics["itl_ms"]["count"] == sum(r["chunks"] - 1 for r in ok)
    assert len({r["request_id"] for r in rows}) == len(rows)
    # The same seeded plan: the two-worker run's arrivals are the one-process run's.
    def offsets(result) -> list[int]:
        rs = records(result.path)
        start = min(r["intended_ns"] for r in rs)
        return sorted(r["intended_ns"] - start for r in rs)

    assert offsets(two) == offsets(one)
    trace_ids = {json.loads(line)["id"] for line in (two.path / "sim_trace.jsonl").read_text().splitlines()}
    assert {r["request_id"] for r in rows} <= trace_ids


class _KillWorker:
    """An observer that SIGKILLs worker 1 once some requests have completed."""

    def __init__(self) -> None:
        self.killed: int | None = None

    def target_ready(self, target, out_dir) -> None:
        pass

    def progress(self, progress) -> None:
        if self.killed is None and progress.snapshot.completed >= 10:
            for child in multiprocessing.active_children():
                if child.name == "loadbench-worker-1":
                    os.kill(child.pid, signal.SIGKILL)
                    self.killed = child.pid

    def stopping(self, reason: str) -> None:
        pass


def test_a_killed_worker_is_reported_and_its_in_flight_requests_counted(tmp_path: Path) -> None:
    observer = _KillWorker()
    # 100-token answers at 12 ms a step: every user always has a request in flight.
    sc = scenario(
        tmp_path,
        workload=Decode(input_tokens=Fixed(16), output_tokens=Fixed(100)),
        load=Concurrency(8),
        stop=Stop(duration_s=4),
        sim=SimConfig(profile="gpu-8b"),
    )
    result = Experiment(sc).run(observer=observer)
    assert observer.killed is not None
    summary = result.summary
    w0, w1 = summary["workers"]
    assert w0["status"] == "finished"
    assert w1["status"] == "died" and w1["signal"] == "SIGKILL" and w1["lost_in_flight"] >= 1
    req = summary["requests"]
    assert req["errors"]["worker_died"] == w1["lost_in_flight"]
    assert req["scheduled"] == req["completed"] + req["failed"] + req["cancelled"]
    rows = records(result.path)
    assert len(rows) == req["scheduled"]
    died = [r for r in rows if r.get("error") == "worker_died"]
    assert len(died) == w1["lost_in_flight"]
    assert all(r["request_id"].startswith(result.run["run_id"] + ".1-") for r in died)
    assert summary["stopped_by"] == "worker_died"


def test_sigterm_drains_every_worker(tmp_path: Path) -> None:
    class StopSoon:
        sent = False

        def target_ready(self, target, out_dir) -> None:
            pass

        def progress(self, progress) -> None:
            if not self.sent and progress.snapshot.completed >= 5:
                self.sent = True
                os.kill(os.getpid(), signal.SIGTERM)

        def stopping(self, reason: str) -> None:
            pass

    t0 = time.monotonic()
    result = Experiment(scenario(tmp_path, stop=Stop(duration_s=60, drain_s=5))).run(observer=StopSoon())
    assert time.monotonic() - t0 < 45
    assert result.run["status"] == "interrupted"
    assert [w["status"] for w in result.summary["workers"]] == ["finished", "finished"]
    req = result.summary["requests"]
    assert req["scheduled"] == req["completed"] + req["failed"] + req["cancelled"] == len(records(result.path))


def test_record_batches_larger_than_a_pipe_buffer_reach_the_parent(tmp_path: Path) -> None:
    """Many long-chunked records at once: batches of hundreds of KB, read without loss or stall."""
    sc = scenario(
        tmp_path,
        workload=Decode(input_tokens=Fixed(16), output_tokens=Fixed(200)),
        load=Concurrency(64),
        stop=Stop(duration_s=2),
    )
    result = Experiment(sc).run()
    workers = result.summary["workers"]
    assert [w["status"] for w in workers] == ["finished", "finished"]
    req = result.summary["requests"]
    assert req["completed"] == req["scheduled"] == len(records(result.path)) == sum(w["records"] for w in workers)
    assert req["completed"] > 100
