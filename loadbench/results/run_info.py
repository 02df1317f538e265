"""run.json: what ran, where, with what, and how it ended.

Each section is made by the part it describes (the scenario, the target, the run's clock, the
harness's environment); this module only puts them in their order. The first form is written once
the target has passed its checks (a run directory without run.json never started); the run's
ending is added to it at the end. Adding a section is one line in ``started``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

_DISTRIBUTIONS = ("loadbench", "aiohttp", "uvloop", "numpy", "hdrhistogram", "orjson", "rich")


@dataclass(frozen=True, slots=True)
class RunClock:
    """The run's time anchor: one ``perf_counter_ns`` reading and the wall clock at that moment.
    Every stamp in the run directory is a ``perf_counter_ns``; this pair places them in time."""

    perf_counter_ns: int
    epoch_s: float

    @classmethod
    def now(cls) -> RunClock:
        return cls(time.perf_counter_ns(), time.time())

    def describe(self) -> dict[str, Any]:
        return {"perf_counter_ns": self.perf_counter_ns, "epoch_s": self.epoch_s}

    @property
    def started_at(self) -> str:
        """The anchor as an ISO 8601 UTC time."""
        return datetime.fromtimestamp(self.epoch_s, UTC).isoformat()


def versions() -> dict[str, str]:
    """Python's version and those of the installed distributions a run's figures depend on."""
    out = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def host() -> dict[str, Any]:
    """The machine the harness runs on, and the event loop it runs (called on that loop)."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
    }


def started(run_id: str, *, scenario: dict[str, Any], target: dict[str, Any], clock: RunClock) -> dict[str, Any]:
    """run.json's first form: ``status`` is "running" until ``ended`` says how the run ended."""
    return {
        "run_id": run_id,
        "scenario": scenario,
        "target": target,
        "versions": versions(),
        "host": host(),
        "clock": clock.describe(),
        "started_at": clock.started_at,
        "status": "running",
    }


def ended(
    *,
    failure: BaseException | None,
    aborted: Sequence[str],
    interrupted: bool,
    gate_lost: str | None,
    stopped_by: str,
) -> dict[str, Any]:
    """The fields run.json gains at the end. ``status``, first match wins: "failed" (the harness
    raised ``failure``, or the run had to stop early: ``aborted`` says why, first reason as
    ``error``), "interrupted" (a signal, even one while the results were written), "aborted" (an
    ``abort_on_fail`` gate was lost: ``aborted_by_gate``), else "finished"."""
    end: dict[str, Any]
    if failure is not None:
        end = {"status": "failed", "error": type(failure).__name__}
    elif aborted:
        end = {"status": "failed", "error": aborted[0]}
    elif interrupted:
        end = {"status": "interrupted"}
    elif gate_lost is not None:
        end = {"status": "aborted", "aborted_by_gate": gate_lost}
    else:
        end = {"status": "finished"}
    end["stopped_by"] = stopped_by
    end["finished_at"] = datetime.now(UTC).isoformat()
    return end
