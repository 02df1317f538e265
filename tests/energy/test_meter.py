"""The meter: sampler thread timing and failure handling, detection on this host, attribution."""

from __future__ import annotations

import asyncio
import csv
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from loadbench.contract.errors import ConfigError
from loadbench.energy import (
    SOURCE_NAMES,
    Channel,
    EnergyConfig,
    EnergyMeter,
    Reading,
    format_line,
)
from loadbench.energy.base import SourceData
from loadbench.energy.estimate import CpuTimeEstimate
from loadbench.energy.report import Attribution, Metered, summary

S = 1_000_000_000


class ClockedCounter:
    """A measured source whose counter advances at ``watts`` with the real clock.

    ``fail_reads`` lists read numbers (1-based) that raise, as a flaky driver would.
    ``read_delay_s`` makes each read take that long (a slow or hung device).
    """

    name = "fake"
    estimated = False

    def __init__(self, watts: float = 100.0, *, fail_reads: set[int] | None = None, read_delay_s: float = 0.0) -> None:
        self.watts = watts
        self.fail_reads = fail_reads or set()
        self.read_delay_s = read_delay_s
        self.reads: list[int] = []
        self.closed = 0
        self.origin = time.perf_counter_ns()

    def open(self) -> list[Channel]:
        return [Channel("dev0", "gpu", "counter_j")]

    def read(self, now_ns: int) -> list[Reading]:
        self.reads.append(now_ns)
        if self.read_delay_s:
            time.sleep(self.read_delay_s)
        if len(self.reads) in self.fail_reads:
            raise RuntimeError("device fell off the bus")
        return [Reading(0, now_ns, (now_ns - self.origin) / 1e9 * self.watts)]

    def close(self) -> None:
        self.closed += 1


def test_close_stops_the_sampler_within_one_interval() -> None:
    source = ClockedCounter()
    meter = EnergyMeter(EnergyConfig(interval_s=0.5, idle_s=0), sources=[source])
    meter.start()
    time.sleep(0.05)
    assert meter.running
    started = time.perf_counter()
    meter.close()
    took_s = time.perf_counter() - started
    assert took_s < 0.5, f"close took {took_s:.3f} s with a 0.5 s interval"
    assert not meter.running
    assert len(source.reads) == 2  # the first tick, and the last sample taken on stop
    meter.close()  # idempotent
    assert source.closed == 1


def test_ticks_follow_a_deadline_grid_not_accumulated_sleeps() -> None:
    interval_s = 0.05
    source = ClockedCounter(read_delay_s=0.01)  # a read costs a fifth of the interval
    with EnergyMeter(EnergyConfig(interval_s=interval_s, idle_s=0), sources=[source]) as meter:
        time.sleep(0.6)
    ticks = source.reads[:-1]  # the last one is the stop sample, off the grid
    assert len(ticks) >= 8
    # Accumulated sleeps would drift by ~10 ms per tick; the grid keeps every tick near k x 50 ms.
    phases_ms = [((t - meter.started_ns) % round(interval_s * 1e9)) / 1e6 for t in ticks]
    on_grid = [p for p in phases_ms if p < 8 or p > 48]
    assert len(on_grid) >= 0.8 * len(phases_ms), phases_ms


def test_a_source_raising_mid_run_leaves_a_gap_not_a_crash(tmp_path: Path) -> None:
    source = ClockedCounter(watts=100.0, fail_reads={3, 4, 5})
    with EnergyMeter(EnergyConfig(interval_s=0.02, idle_s=0), sources=[source]) as meter:
        start = meter.mark("window_start")
        time.sleep(0.3)
        end = meter.mark("window_end")
    report = meter.report()
    assert report["gaps"] == 3
    assert report["gap_errors"] == ["fake: RuntimeError: device fell off the bus"]
    assert any("gaps" in note for note in report["notes"])
    assert report["channels"][0]["samples"] == len(source.reads) - 3  # it kept sampling
    # The counter kept counting through the gap, so the window's energy is still whole.
    assert report["wh_window"] * 3600 == pytest.approx(100.0 * (end - start) / 1e9, rel=0.02)

    meter.write_csv(tmp_path / "energy.csv")
    rows = list(csv.DictReader((tmp_path / "energy.csv").open()))
    errors = [r for r in rows if r["error"]]
    assert len(errors) == 3 and errors[0]["source"] == "fake"
    assert [int(r["t_ns"]) for r in rows] == sorted(int(r["t_ns"]) for r in rows)
    good = [r for r in rows if not r["error"]]
    assert good[0]["cumulative_j"] == "0.000000" and float(good[-1]["cumulative_j"]) > 0


def test_the_sampler_never_blocks_the_event_loop() -> None:
    # Each read takes 100 ms (a slow device). The loop's 1 ms timers must not notice.
    source = ClockedCounter(read_delay_s=0.1)

    async def lateness_ms() -> list[float]:
        loop = asyncio.get_running_loop()
        late = []
        for _ in range(200):
            due = loop.time() + 0.001
            await asyncio.sleep(0.001)
            late.append((loop.time() - due) * 1e3)
        return late

    with EnergyMeter(EnergyConfig(interval_s=0.05, idle_s=0), sources=[source]):
        late = asyncio.run(lateness_ms())
    assert len(source.reads) >= 2
    assert max(late) < 50, f"worst lateness {max(late):.1f} ms while reads took 100 ms"


def test_a_hung_read_does_not_hang_close() -> None:
    release = threading.Event()

    class Hangs(ClockedCounter):
        def read(self, now_ns: int) -> list[Reading]:
            if self.reads:
                release.wait(10)
            return super().read(now_ns)

    meter = EnergyMeter(EnergyConfig(interval_s=0.05, idle_s=0), sources=[Hangs()])
    meter.start()
    time.sleep(0.1)
    started = time.perf_counter()
    meter.close()
    assert time.perf_counter() - started < 1.5
    assert any("hung" in note for note in meter.report()["notes"])
    release.set()


def test_auto_detection_on_this_host_explains_every_source() -> None:
    with EnergyMeter(EnergyConfig(interval_s=0.05, idle_s=0.1)) as meter:
        time.sleep(0.1)
    tried = meter.sources_tried()
    assert [t["name"] for t in tried] == list(SOURCE_NAMES)
    for entry in tried:
        assert set(entry) >= {"name", "measures", "available", "used", "reason"}
        if not entry["used"]:
            assert entry["reason"], entry
        else:
            assert entry["measures"], entry
    measured = [t for t in tried if t["used"] and not t["estimated"]]
    report = meter.report(output_tokens=10, requests=1)
    if sys.platform == "linux" and not Path("/sys/class/powercap").exists():
        assert not measured
    if not measured:
        # No counter here: the CPU-time estimate is used and labelled wherever it appears.
        estimate = tried[-1]
        assert estimate["name"] == "cpu-estimate" and estimate["used"]
        assert estimate["measures"] == "process-cpu"
        assert report["kind"] == "estimated"
        assert report["channels"][0]["kind"] == "estimated"
        assert "assumed" in report["estimate_basis"]
        assert "W per busy core" in report["estimate_basis"]
        assert "estimate" in format_line(report)
        by_name = {t["name"]: t for t in tried}
        if sys.platform != "darwin":
            assert by_name["powermetrics"]["reason"] == "not macOS"
            assert by_name["macmon"]["reason"] == "not macOS"
    else:
        assert report["kind"] == "measured"
        assert tried[-1]["used"] is False and "measured source is in use" in tried[-1]["reason"]


def test_explicit_sources_that_are_all_unavailable_name_the_reasons(tmp_path: Path) -> None:
    config = EnergyConfig(sources=("rapl",), rapl_root=tmp_path / "absent", idle_s=0)
    with pytest.raises(ConfigError, match=r"no energy source is available \(rapl: no powercap"):
        EnergyMeter(config).start()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cpu_estimate_counts_a_live_child_process() -> None:
    # The child burns CPU until its stdin closes; it is alive (not reaped) while we look.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, threading\n"
            "threading.Thread(target=lambda: sys.stdin.read() or sys.exit(), daemon=True).start()\n"
            "import os\nwhile True: pass\n",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        time.sleep(0.2)  # let it start before the meter's first scan
        config = EnergyConfig(interval_s=0.05, idle_s=0)
        with EnergyMeter(config, sources=[CpuTimeEstimate(10.0)]) as meter:
            child_before = _child_cpu_s(child.pid)  # after the meter's origin: counted
            # Wait for the child to burn 0.4 s of CPU (longer on a busy host), then look.
            deadline = time.monotonic() + 10
            while _child_cpu_s(child.pid) - child_before < 0.4 and time.monotonic() < deadline:
                time.sleep(0.05)
            child_seen = _child_cpu_s(child.pid)  # used before the next samples: all counted
            time.sleep(0.15)  # at least two more ticks
            report = meter.report()
            child_after = _child_cpu_s(child.pid)  # at least what the samples can have seen
        assert child.poll() is None  # still running: it was counted live, not at reaping
    finally:
        child.kill()
        child.wait()
    assert child_seen - child_before >= 0.4
    estimate_j = report["wh_total"] * 3600
    # The child's CPU time dominates; our own threads add a little, tick rounding +-0.02 s.
    assert estimate_j >= 10.0 * (child_seen - child_before - 0.03)
    assert estimate_j <= 10.0 * (child_after - child_before + 0.3)
    assert report["kind"] == "estimated"


def _child_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- attribution on synthetic data: exact figures ---------------------------------------------


class _Static:
    def __init__(self, estimated: bool) -> None:
        self.estimated = estimated


def _counter_source(
    name: str, watts_by_second: list[float], *, estimated: bool = False, measures: str = "gpu"
) -> SourceData:
    """A counter sampled once a second, drawing ``watts_by_second[i]`` during second i."""
    readings, total = [Reading(0, 0, 0.0)], 0.0
    for second, watts in enumerate(watts_by_second, start=1):
        total += watts
        readings.append(Reading(0, second * S, total))
    channel = Channel("c0", measures, "counter_j", True, estimated)  # type: ignore[arg-type]
    return SourceData(name, _Static(estimated), [channel], readings)  # type: ignore[arg-type]


def _build(sources: list[SourceData], config: EnergyConfig | None = None, **kwargs: Any) -> dict[str, Any]:
    metered = dict(idle_ns=(0, 2 * S), sources_tried=[], missed_ticks=0, sampler_stuck=False)
    attribution: dict[str, Any] = dict(
        run_ns=(2 * S, 10 * S), window_ns=(4 * S, 8 * S), output_tokens=80, requests=4, location="local",
        remote_output_tokens=None,
    )
    for key, value in kwargs.items():
        (metered if key in metered else attribution)[key] = value
    return summary(Metered(sources, **metered), Attribution(**attribution), config or EnergyConfig())


def test_gross_net_per_request_and_per_token_are_exact() -> None:
    # Idle 10 W for 2 s, then 50 W under load for 8 s.
    report = _build([_counter_source("gpu", [10, 10] + [50] * 8)])
    assert report["kind"] == "measured"
    assert report["idle_w"] == 10.0
    assert report["wh_total"] == pytest.approx(400 / 3600)  # 8 s x 50 W
    assert report["wh_total_net"] == pytest.approx(320 / 3600)  # minus 8 s x 10 W
    assert report["wh_window"] == pytest.approx(200 / 3600)  # 4 s x 50 W
    assert report["wh_window_net"] == pytest.approx(160 / 3600)
    assert report["mean_w_window"] == 50.0
    assert report["j_per_output_token"] == 2.5  # 200 J / 80 tokens
    assert report["j_per_output_token_net"] == 2.0
    assert report["wh_per_request"] == pytest.approx(50 / 3600)
    assert report["wh_per_request_net"] == pytest.approx(40 / 3600)
    assert report["coverage"] == 1.0
    assert format_line(report) == (
        "energy: 0.056 Wh gross, 0.044 Wh net over idle 10 W (gpu: c0) · 2.5 J/token · 0.014 Wh/request · measured"
    )


def test_measured_and_estimated_together_are_labelled_mixed_and_split() -> None:
    report = _build(
        [
            _counter_source("gpu", [10, 10] + [50] * 8),
            _counter_source("cpu-estimate", [0, 0] + [5] * 8, estimated=True, measures="process-cpu"),
        ]
    )
    assert report["kind"] == "mixed"
    assert report["measured_wh_window"] == pytest.approx(200 / 3600)
    assert report["estimated_wh_window"] == pytest.approx(20 / 3600)
    assert report["wh_window"] == pytest.approx(220 / 3600)
    assert "mixed" in format_line(report) and "estimate" in format_line(report)


def test_no_idle_baseline_means_no_net_figures() -> None:
    report = _build([_counter_source("gpu", [50] * 10)], idle_ns=None)
    assert report["idle_w"] is None and report["wh_window_net"] is None
    assert report["wh_window"] == pytest.approx(200 / 3600)
    assert "net" not in format_line(report).split("(")[0]


def test_partial_coverage_is_reported_not_extrapolated() -> None:
    # Samples stop at 6 s; the window runs to 10 s. Idle is 10 W, load 50 W.
    report = _build([_counter_source("gpu", [10, 10, 50, 50, 50, 50])], window_ns=(4 * S, 10 * S))
    assert report["coverage"] == pytest.approx(2 / 6, abs=1e-4)
    assert report["wh_window"] == pytest.approx(100 / 3600)  # only the 2 covered seconds
    # Net subtracts idle only for the covered time: 100 J - 10 W x 2 s.
    assert report["wh_window_net"] == pytest.approx(80 / 3600)
    assert "33% covered" in format_line(report)
    assert any("cover 33%" in note for note in report["notes"])


def test_a_source_that_fails_to_open_is_reported_and_the_others_still_run() -> None:
    class Broken(ClockedCounter):
        name = "broken"

        def open(self) -> list[Channel]:
            raise ValueError("driver mismatch")

    with EnergyMeter(EnergyConfig(interval_s=0.02, idle_s=0), sources=[Broken(), ClockedCounter()]) as meter:
        time.sleep(0.05)
    tried = {t["name"]: t for t in meter.sources_tried()}
    assert tried["broken"]["available"] is False and not tried["broken"]["used"]
    assert tried["broken"]["reason"] == "failed to open: ValueError: driver mismatch"
    assert tried["fake"]["used"]
    assert meter.report()["sources"] == ["fake"]


def test_remote_is_an_estimate_with_its_source_and_never_a_measurement() -> None:
    config = EnergyConfig(remote_j_per_output_token=0.5, remote_source="provider statement 2025")
    report = _build([_counter_source("gpu", [10] * 10)], config, location="remote", output_tokens=7200)
    assert report["location"] == "remote"
    assert report["kind"] == "estimated"
    assert report["wh_window"] == 1.0  # 7200 tokens x 0.5 J
    assert report["wh_per_request"] == 0.25
    assert "provider statement 2025" in report["source"]
    assert report["client_host"]["kind"] == "measured"  # the harness's own host, kept apart
    line = format_line(report)
    assert "estimate" in line and "provider statement 2025" in line

    unmetered = _build([_counter_source("gpu", [10] * 10)], location="remote")
    assert unmetered["kind"] == "unmetered" and unmetered["wh_window"] is None
    assert "not metered" in format_line(unmetered)


def test_hybrid_keeps_the_local_measurement_and_the_remote_estimate_apart() -> None:
    config = EnergyConfig(remote_j_per_output_token=2.0, remote_source="paper X")
    report = _build([_counter_source("gpu", [10, 10] + [50] * 8)], config, location="hybrid", remote_output_tokens=1800)
    assert report["kind"] == "measured"
    assert report["wh_window"] == pytest.approx(200 / 3600)
    assert report["remote"]["kind"] == "estimated"
    assert report["remote"]["wh_window"] == 1.0
    assert "remote ~1 Wh estimate" in format_line(report)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"interval_s": 0}, "interval_s"),
        ({"idle_s": -1}, "idle_s"),
        ({"sources": "all"}, "sources"),
        ({"sources": ("nvml", "geiger")}, "geiger"),
        ({"sources": ()}, "sources"),
        ({"cpu_watts_per_core": 0}, "cpu_watts_per_core"),
        ({"remote_j_per_output_token": 1.0}, "remote_source"),
        ({"remote_j_per_output_token": -1.0, "remote_source": "x"}, "remote_j_per_output_token"),
        ({"extra_pids": (0,)}, "extra_pids"),
    ],
)
def test_bad_configuration_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        EnergyConfig(**kwargs)


def test_report_location_is_checked_and_marks_are_kept() -> None:
    with EnergyMeter(EnergyConfig(idle_s=0), sources=[ClockedCounter()]) as meter:
        t = meter.mark("window_start")
        assert meter.marks["window_start"] == t
        with pytest.raises(ConfigError, match="location"):
            meter.report(location="moon")


def test_a_report_asked_mid_run_samples_up_to_the_requested_end() -> None:
    # The experiment writes its summary before the meter closes: the run's last interval must
    # still be covered, even with a long interval.
    with EnergyMeter(EnergyConfig(interval_s=5.0, idle_s=0), sources=[ClockedCounter(watts=100.0)]) as meter:
        start = meter.mark("window_start")
        time.sleep(0.2)
        end = meter.mark("window_end")
        report = meter.report()
    assert report["coverage"] == 1.0
    assert report["wh_window"] * 3600 == pytest.approx(100.0 * (end - start) / 1e9, rel=0.01)


def test_config_describes_itself_as_json_ready_values() -> None:
    import json

    described = EnergyConfig(sources=("rapl", "cpu-estimate"), rapl_root=Path("/x")).describe()
    assert json.loads(json.dumps(described)) == described
    assert described["sources"] == ["rapl", "cpu-estimate"]
    assert described["rapl_root"] == "/x"
    assert described["cpu_watts_per_core"] == 10.0 and described["cpu_watts_per_core_default"]


class PowerAndInterval:
    """Two power-style channels (instantaneous and interval means), for the streamed CSV."""

    name = "fake2"
    estimated = True

    def __init__(self) -> None:
        self.n = 0

    def open(self) -> list[Channel]:
        return [Channel("pkg", "cpu", "power_w"), Channel("gpu", "gpu", "interval_power_w")]

    def read(self, now_ns: int) -> list[Reading]:
        self.n += 1
        return [Reading(0, now_ns, 10.0 + self.n % 3), Reading(1, now_ns, 50.0 + self.n % 5, span_ns=20_000_000)]


def test_energy_csv_is_written_as_the_meter_runs_with_the_same_rows(tmp_path: Path) -> None:
    streamed = tmp_path / "energy.csv"
    with EnergyMeter(EnergyConfig(interval_s=0.02, idle_s=0),
                     sources=[ClockedCounter(fail_reads={4}), PowerAndInterval()]) as meter:
        meter.stream_csv(streamed, every_s=0.1)
        time.sleep(0.5)
        midway = list(csv.DictReader(streamed.open()))  # what a killed run would leave
        time.sleep(0.2)
    meter.flush_csv()  # the meter is closed: both writers see every reading
    meter.write_csv(tmp_path / "whole.csv")
    assert len(midway) > 10
    rows = list(csv.DictReader(streamed.open()))
    whole = list(csv.DictReader((tmp_path / "whole.csv").open()))
    assert rows[: len(midway)] == midway  # appended, never rewritten

    def key(r: dict) -> tuple:
        return (int(r["t_ns"]), r["source"], r["channel"], r["error"])

    # The same rows as the one-shot writer: cumulative joules carried across batches. Carried
    # sums associate differently from one pass over the whole run, so the last printed digit may
    # differ; every other field is the same text.
    streamed_rows, whole_rows = sorted(rows, key=key), sorted(whole, key=key)
    assert [{**r, "cumulative_j": ""} for r in streamed_rows] == [{**r, "cumulative_j": ""} for r in whole_rows]
    for a, b in zip(streamed_rows, whole_rows, strict=True):
        assert (a["cumulative_j"] == b["cumulative_j"] == "") or float(a["cumulative_j"]) == pytest.approx(
            float(b["cumulative_j"]), abs=2e-6
        )
    assert {r["source"] for r in rows} == {"fake", "fake2"} and any(r["error"] for r in rows)
    assert meter.csv_error is None
