"""run.json's sections and the rules for how a run ended."""

from __future__ import annotations

import asyncio

from loadbench.results.run_info import RunClock, ended, started


def test_the_first_form_is_running_with_its_sections_in_order() -> None:
    clock = RunClock(perf_counter_ns=123, epoch_s=0.0)

    async def make() -> dict:
        return started("abcd", scenario={"name": "s"}, target={"kind": "sim"}, clock=clock)

    info = asyncio.run(make())  # the host section names the running event loop
    assert list(info) == ["run_id", "scenario", "target", "versions", "host", "clock", "started_at", "status"]
    assert info["status"] == "running" and info["clock"] == {"perf_counter_ns": 123, "epoch_s": 0.0}
    assert info["started_at"] == "1970-01-01T00:00:00+00:00"
    assert info["host"]["event_loop"] == "asyncio" and "python" in info["versions"]


def test_the_ending_says_why_first_match_wins() -> None:
    def status(**kw: object) -> dict:
        args = {"failure": None, "aborted": [], "interrupted": False, "gate_lost": None, "stopped_by": "requests"}
        end = ended(**{**args, **kw})
        assert end.pop("finished_at") and end.pop("stopped_by") == args["stopped_by"]
        return end

    assert status() == {"status": "finished"}
    assert status(gate_lost="ttft_ms.p99 < 5") == {"status": "aborted", "aborted_by_gate": "ttft_ms.p99 < 5"}
    assert status(interrupted=True, gate_lost="g") == {"status": "interrupted"}
    assert status(aborted=["disk full", "later"], interrupted=True) == {"status": "failed", "error": "disk full"}
    assert status(failure=KeyError("x"), aborted=["disk full"]) == {"status": "failed", "error": "KeyError"}
