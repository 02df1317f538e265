"""Apple silicon: powermetrics (text and plist) and macmon parsers on output in their real formats,
and the streaming sources driven by a child process that prints those formats."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import pytest

from loadbench.energy import EnergyConfig, EnergyMeter, SourceUnavailable
from loadbench.energy.apple import (
    MacmonSource,
    PowermetricsSource,
    parse_macmon_line,
    parse_powermetrics_plist,
    parse_powermetrics_text,
)

# `sudo powermetrics --samplers cpu_power,gpu_power -i 1000` on an M2 (trimmed cluster detail).
POWERMETRICS_TEXT = """Machine model: Mac14,2
OS version: 23E224
Boot arguments:
Boot time: Thu Sep 10 23:42:17 2026



*** Sampled system activity (Fri Sep 11 13:41:46 2026 -0700) (1002.90ms elapsed) ***


**** Processor usage ****

E-Cluster HW active frequency: 1248 MHz
E-Cluster HW active residency:  77.43% (600 MHz:   0% 912 MHz:  54% 2424 MHz: 8.7%)
E-Cluster idle residency:  22.57%
CPU 0 frequency: 1359 MHz

P-Cluster HW active frequency: 1145 MHz
P-Cluster HW active residency:  56.23% (660 MHz:  36% 924 MHz: .54% 3504 MHz:   0%)
P-Cluster idle residency:  43.77%

CPU Power: 823 mW
GPU Power: 26 mW
ANE Power: 323 mW
Combined Power (CPU + GPU + ANE): 1172 mW

**** GPU usage ****

GPU HW active frequency: 389 MHz
GPU HW active residency:   2.10% (389 MHz: 2.1% 486 MHz:   0%)
GPU SW requested state: (P1 : 100% P2 :   0%)
GPU idle residency:  97.90%
GPU Power: 25 mW


*** Sampled system activity (Fri Sep 11 13:41:47 2026 -0700) (1010.09ms elapsed) ***


**** Processor usage ****

CPU Power: 12450 mW
GPU Power: 18300 mW
ANE Power: 0 mW
Combined Power (CPU + GPU + ANE): 30750 mW

**** GPU usage ****

GPU Power: 18250 mW
"""

PLIST_RECORD = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
<key>is_delta</key><true/>
<key>elapsed_ns</key><integer>1002900000</integer>
<key>hw_model</key><string>Mac14,2</string>
<key>timestamp</key><date>2026-09-11T20:41:46Z</date>
<key>processor</key>
<dict>
<key>clusters</key>
<array>
<dict><key>name</key><string>E-Cluster</string><key>freq_hz</key><real>1.248e+09</real>
<key>idle_ratio</key><real>0.2257</real></dict>
</array>
<key>cpu_energy</key><integer>825</integer>
<key>cpu_power</key><real>823.12</real>
<key>gpu_energy</key><integer>26</integer>
<key>gpu_power</key><real>26.3</real>
<key>ane_energy</key><integer>324</integer>
<key>ane_power</key><real>323</real>
<key>combined_power</key><real>1172.42</real>
</dict>
<key>gpu</key>
<dict><key>freq_hz</key><real>389</real><key>idle_ratio</key><real>0.979</real>
<key>gpu_energy</key><integer>26</integer></dict>
</dict>
</plist>
"""

# macOS 12 plists carry energy over the interval (mJ) and no *_power keys.
PLIST_ENERGY_ONLY = b"""<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>elapsed_ns</key><integer>500000000</integer>
<key>processor</key><dict>
<key>cpu_energy</key><integer>2000</integer>
<key>gpu_energy</key><integer>500</integer>
<key>ane_energy</key><integer>0</integer>
</dict></dict></plist>
"""

# One line of `macmon pipe` (the shape in macmon's README, on one line as it prints it).
MACMON_LINE = (
    '{"timestamp":"2025-02-24T20:38:15.427569+00:00","temp":{"cpu_temp_avg":43.73614,'
    '"gpu_temp_avg":36.95167},"memory":{"ram_total":25769803776,"ram_usage":20985479168,'
    '"swap_total":4294967296,"swap_usage":2602434560},"ecpu_usage":[1181,0.082656614],'
    '"pcpu_usage":[1974,0.015181795],"gpu_usage":[461,0.021497859],"cpu_power":0.20486385,'
    '"gpu_power":0.017451683,"ane_power":0.0,"all_power":0.22231553,"sys_power":5.876533,'
    '"ram_power":0.11635789,"gpu_ram_power":0.0009615385}'
)


def test_powermetrics_text_blocks_take_the_first_line_of_each_kind() -> None:
    records = parse_powermetrics_text(POWERMETRICS_TEXT)
    assert len(records) == 2
    first, second = records
    assert first.span_ns == 1_002_900_000
    assert first.watts == {"cpu": 0.823, "gpu": 0.026, "ane": 0.323, "combined": 1.172}
    assert second.span_ns == 1_010_090_000
    assert second.watts["gpu"] == 18.3  # not the GPU-usage section's 18250 mW
    assert second.watts["combined"] == 30.75


def test_powermetrics_text_without_combined_line_sums_the_parts() -> None:
    (record,) = parse_powermetrics_text("CPU Power: 3200 mW\nGPU Power: 900 mW\nANE Power: 0 mW\n")
    assert record.watts["combined"] == pytest.approx(4.1)
    assert record.span_ns is None
    assert parse_powermetrics_text("**** Thermal pressure ****\nCurrent pressure level: Nominal") == []


def test_powermetrics_plist_record() -> None:
    record = parse_powermetrics_plist(b"\x00" + PLIST_RECORD)
    assert record is not None
    assert record.span_ns == 1_002_900_000
    assert record.watts == {"cpu": 0.82312, "gpu": 0.0263, "ane": 0.323, "combined": 1.17242}
    old = parse_powermetrics_plist(PLIST_ENERGY_ONLY)
    assert old is not None
    assert old.watts == {"cpu": 4.0, "gpu": 1.0, "ane": 0.0, "combined": 5.0}  # mJ / 0.5 s
    assert parse_powermetrics_plist(b"\n") is None


def test_macmon_line() -> None:
    watts = parse_macmon_line(MACMON_LINE)
    assert watts == {
        "all_power": 0.22231553,
        "ram_power": 0.11635789,
        "cpu_power": 0.20486385,
        "gpu_power": 0.017451683,
        "ane_power": 0.0,
        "sys_power": 5.876533,
    }
    assert parse_macmon_line("") is None
    assert parse_macmon_line("macmon: starting") is None
    assert parse_macmon_line('{"cpu_power": 1.0, "gpu_power": 2.5}') == {
        "cpu_power": 1.0,
        "gpu_power": 2.5,
        "all_power": 3.5,
    }


def test_sources_say_why_they_are_unavailable_off_macos() -> None:
    if sys.platform == "darwin":
        pytest.skip("this host is a Mac")
    for source in (PowermetricsSource(0.1), MacmonSource(0.1)):
        with pytest.raises(SourceUnavailable, match="not macOS"):
            source.open()


def _printer(records: list[bytes], gap_s: float, *, then_fail: bool = False) -> list[str]:
    """A child process that writes ``records`` ``gap_s`` apart, as the real tools do."""
    code = (
        "import sys, time\n"
        f"for r in {records!r}:\n"
        "    sys.stdout.buffer.write(r); sys.stdout.flush(); time.sleep(%r)\n" % gap_s
    )
    if then_fail:
        code += "sys.stderr.write('powermetrics: must be invoked as the superuser\\n')\nsys.exit(1)\n"
    else:
        code += "time.sleep(60)\n"
    return [sys.executable, "-c", code]


def _drain(source, until_count: int, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    readings = []
    deadline = time.monotonic() + timeout_s
    while len(readings) < until_count and time.monotonic() < deadline:
        readings += source.read(time.perf_counter_ns())
        time.sleep(0.01)
    return readings


def test_powermetrics_stream_of_nul_separated_plists() -> None:
    records = [PLIST_RECORD + b"\x00", PLIST_RECORD.replace(b"1172.42", b"2000") + b"\x00"]
    source = PowermetricsSource(0.1, argv=_printer(records, 0.05))
    channels = source.open()
    assert [c.name for c in channels if c.in_total] == ["combined"]
    try:
        readings = _drain(source, 8)
    finally:
        source.close()
        source.close()
    combined = [r for r in readings if r.channel == 0]
    assert [r.value for r in combined] == [1.17242, 2.0]
    assert all(r.span_ns == 1_002_900_000 for r in combined)
    assert combined[0].t_ns < combined[1].t_ns


def test_a_child_that_dies_is_a_gap_with_its_message() -> None:
    source = PowermetricsSource(0.1, argv=_printer([], 0, then_fail=True))
    source.open()
    try:
        deadline = time.monotonic() + 10
        with pytest.raises(RuntimeError, match="must be invoked as the superuser"):
            while time.monotonic() < deadline:
                source.read(0)
                time.sleep(0.01)
    finally:
        source.close()


def test_macmon_stream_through_the_meter(tmp_path: Path) -> None:
    # Six lines 50 ms apart at a constant 12 W SoC + 3 W DRAM: the meter should see about 15 W.
    line = b'{"cpu_power":8.0,"gpu_power":3.5,"ane_power":0.5,"all_power":12.0,"ram_power":3.0,"sys_power":40.0}\n'
    source = MacmonSource(0.05, argv=_printer([line] * 6, 0.05))
    with EnergyMeter(EnergyConfig(interval_s=0.02, idle_s=0), sources=[source]) as meter:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            report = meter.report()
            if report["channels"][0]["samples"] >= 6:
                break
            time.sleep(0.02)
    everything = (0, 2**62)  # clamped to the samples: the energy they cover, all of it
    report = meter.report(run_ns=everything, window_ns=everything)
    by_name = {c["channel"]: c for c in report["channels"]}
    assert by_name["all"]["samples"] == 6
    assert report["source"] == "macmon: all, ram"
    assert report["kind"] == "measured"
    assert not by_name["sys"]["in_total"]  # the whole-machine sensor is shown, not added
    assert by_name["all"]["wh_total"] / by_name["ram"]["wh_total"] == pytest.approx(4.0)

    csv_path = tmp_path / "energy.csv"
    meter.write_csv(csv_path)
    rows = [r for r in csv.DictReader(csv_path.open()) if r["channel"] == "all"]
    spans_s = sum(int(r["span_ns"]) for r in rows) / 1e9
    assert rows[0]["span_ns"] == str(50_000_000)  # the first line covers the interval asked for
    assert float(rows[-1]["cumulative_j"]) == pytest.approx(12.0 * spans_s, rel=1e-6)
    assert report["wh_total"] * 3600 == pytest.approx(15.0 * spans_s, rel=1e-6)
