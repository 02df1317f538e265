"""RAPL through a powercap tree the test writes: zones, counters that advance and wrap, permissions."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from loadbench.energy import EnergyConfig, EnergyMeter, SourceUnavailable
from loadbench.energy.rapl import RaplSource

MAX_UJ = 262_143_328_850  # a real package's max_energy_range_uj


def zone(root: Path, zone_id: str, name: str, uj: int, max_uj: int = MAX_UJ) -> Path:
    """Write one zone; sub-zones (intel-rapl:N:M) go inside their package, as sysfs nests them."""
    parts = zone_id.split(":")
    path = root / zone_id if len(parts) == 2 else root / ":".join(parts[:2]) / zone_id
    path.mkdir(parents=True, exist_ok=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


def set_uj(path: Path, uj: int) -> None:
    (path / "energy_uj").write_text(f"{uj}\n")


def test_zones_are_named_classified_and_read_as_joules(tmp_path: Path) -> None:
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 5_000_000)
    core = zone(tmp_path, "intel-rapl:0:0", "core", 1_000_000)
    dram = zone(tmp_path, "intel-rapl:0:1", "dram", 2_000_000)
    # sysfs also lists sub-zones flat under the root (as links); they must not be read twice.
    (tmp_path / "intel-rapl:0:1").symlink_to(dram)
    (tmp_path / "intel-rapl-mmio:0").mkdir()  # duplicates the package counter: skipped

    source = RaplSource(tmp_path)
    channels = source.open()
    by_name = {c.name: c for c in channels}
    assert list(by_name) == ["package-0", "core", "dram"]
    assert by_name["package-0"].measures == "cpu-package" and by_name["package-0"].in_total
    assert by_name["dram"].measures == "dram" and by_name["dram"].in_total
    assert by_name["core"].measures == "cpu-core" and not by_name["core"].in_total
    assert not any(c.estimated for c in channels)

    set_uj(pkg, 5_000_000 + 2_500_000)  # +2.5 J
    set_uj(core, 1_000_000 + 1_000_000)  # +1 J
    set_uj(dram, 2_000_000 + 250_000)  # +0.25 J
    readings = source.read(123)
    assert [(r.channel, r.value, r.t_ns) for r in readings] == [(0, 2.5, 123), (1, 1.0, 123), (2, 0.25, 123)]
    set_uj(pkg, 5_000_000 + 4_000_000)
    assert source.read(456)[0].value == 4.0  # cumulative since open


def test_counter_wrapping_at_max_energy_range_counts_the_wrap_once(tmp_path: Path) -> None:
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 999_000, max_uj=1_000_000)
    source = RaplSource(tmp_path)
    source.open()
    set_uj(pkg, 500)  # passed max (1.0 J) and started again: 1000 uJ before the wrap, 500 after
    assert source.read(1)[0].value == pytest.approx(0.0015)
    set_uj(pkg, 800_500)
    assert source.read(2)[0].value == pytest.approx(0.8015)
    set_uj(pkg, 100)  # wraps again
    assert source.read(3)[0].value == pytest.approx(0.8015 + 0.1995 + 0.0001)


def test_two_sockets_prefix_repeated_sub_zone_names(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "package-0", 0)
    zone(tmp_path, "intel-rapl:0:0", "dram", 0)
    zone(tmp_path, "intel-rapl:1", "package-1", 0)
    zone(tmp_path, "intel-rapl:1:0", "dram", 0)
    zone(tmp_path, "intel-rapl:2", "psys", 0)
    channels = RaplSource(tmp_path).open()
    assert [c.name for c in channels] == ["package-0", "package-0/dram", "package-1", "package-1/dram", "psys"]
    psys = channels[-1]
    assert psys.measures == "system" and not psys.in_total  # it overlaps the packages


def test_missing_tree_says_there_is_no_powercap(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="no powercap interface"):
        RaplSource(tmp_path / "absent").open()
    with pytest.raises(SourceUnavailable, match="no intel-rapl zones"):
        RaplSource(tmp_path).open()


def _open_as_nobody(root: Path) -> str:
    """Open the source in a forked child that has dropped root, and return its message."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: everything needed is already imported, so no file outside root is read
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            try:
                RaplSource(root).open()
                message = "OPENED"
            except SourceUnavailable as exc:
                message = str(exc)
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        message = f.read().decode()
    os.waitpid(pid, 0)
    return message


def test_unreadable_counter_says_permission_and_how_to_fix_it() -> None:
    # Real file permissions, as on Linux 5.10+ (energy_uj is 0400 root). Root reads anything, so
    # when the tests run as root the open happens in a child process that drops to "nobody".
    root = Path(tempfile.mkdtemp(prefix="rapl-"))
    try:
        pkg = zone(root, "intel-rapl:0", "package-0", 7)
        for path in (root, pkg):
            os.chmod(path, 0o755)
        for f in pkg.iterdir():
            os.chmod(f, 0o444)
        os.chmod(pkg / "energy_uj", 0o000)
        if os.geteuid() == 0:
            message = _open_as_nobody(root)
        else:
            with pytest.raises(SourceUnavailable) as info:
                RaplSource(root).open()
            message = str(info.value)
    finally:
        shutil.rmtree(root)
    assert "permission denied" in message, message
    assert f"{root}/intel-rapl:0/energy_uj" in message
    assert "sudo chmod a+r" in message and "run as root" in message


def test_meter_reports_rapl_window_energy_from_the_tree(tmp_path: Path) -> None:
    # The tree's counter advances by the same amount at every read: 1 J per sample.
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 0)

    class Advancing(RaplSource):
        def read(self, now_ns: int):  # type: ignore[no-untyped-def]
            current = int((pkg / "energy_uj").read_text())
            set_uj(pkg, current + 1_000_000)
            return super().read(now_ns)

    config = EnergyConfig(interval_s=0.02, idle_s=0, rapl_root=tmp_path)
    with EnergyMeter(config, sources=[Advancing(tmp_path)]) as meter:
        import time

        time.sleep(0.2)
    report = meter.report()
    assert report["kind"] == "measured"
    assert report["source"] == "rapl: package-0"
    samples = report["channels"][0]["samples"]
    # Energy over the run = (samples - 1) J, up to the interpolation at the run's start.
    assert report["wh_total"] * 3600 == pytest.approx(samples - 1, abs=1.0)
    assert samples >= 5
