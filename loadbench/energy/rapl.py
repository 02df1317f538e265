"""RAPL energy counters through Linux powercap (Intel, and AMD which exposes the same interface).

Layout read: ``<root>/intel-rapl:N`` (a package) with sub-zones ``intel-rapl:N:M``, each holding
``name`` (``package-0``, ``core``, ``uncore``, ``dram``, ``psys``), ``energy_uj`` (a counter in
microjoules) and ``max_energy_range_uj`` (where the counter wraps back to zero). Sysfs lists the
zones both flat under the root and nested under their package; both layouts are accepted and a
zone is read once. ``intel-rapl-mmio`` zones duplicate the MSR package counter and are skipped.

The counters wrap every few minutes at high power (2^32 uJ is about 72 minutes at 1 W but 20 s at
200 W), so the sampler must read them more often than that; at the default 10 Hz a wrap is always
seen as exactly one.
"""

from __future__ import annotations

import re
from pathlib import Path

from loadbench.energy.base import Channel, Measures, Reading, SourceUnavailable

_ZONE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")

# Zone name -> (what it measures, whether it adds to the total). core and uncore are inside the
# package; psys (the platform) covers the package and more, so it is shown, not added, unless it
# is the only zone there is.
_KNOWN: dict[str, tuple[Measures, bool]] = {
    "core": ("cpu-core", False),
    "uncore": ("cpu-uncore", False),
    "dram": ("dram", True),
    "psys": ("system", False),
}


def _fix_hint(root: Path) -> str:
    return (
        f"run as root, or make the counters readable until the next reboot: "
        f"sudo chmod a+r {root}/intel-rapl:*/energy_uj {root}/intel-rapl:*/intel-rapl:*/energy_uj"
    )


class RaplSource:
    """Reads every RAPL zone under ``root`` as a ``counter_j`` channel (joules since ``open``)."""

    name = "rapl"
    estimated = False

    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        self._paths: list[Path] = []
        self._max_uj: list[int] = []
        self._last_uj: list[int] = []
        self._total_j: list[float] = []

    def open(self) -> list[Channel]:
        """Find the zones and take the first reading of each; ``SourceUnavailable`` says why not."""
        root = self._root
        if not root.is_dir():
            raise SourceUnavailable(f"no powercap interface ({root} does not exist)")
        zones = self._zones()
        if not zones:
            raise SourceUnavailable(f"no intel-rapl zones under {root} (no RAPL on this CPU/VM)")
        found: list[tuple[str, str, Path, int, str | None]] = []  # id, name, dir, uj, parent name
        names: dict[str, str] = {}
        for zone_id, zone_dir in zones:
            names[zone_id] = _read_str(zone_dir / "name") or zone_id
        for zone_id, zone_dir in zones:
            energy = zone_dir / "energy_uj"
            if not energy.exists():
                continue
            try:
                uj = _read_int(energy)
            except PermissionError:
                raise SourceUnavailable(
                    f"{energy} exists but is not readable (permission denied; Linux 5.10 and later "
                    f"make energy_uj readable by root only): {_fix_hint(root)}"
                ) from None
            except (OSError, ValueError) as exc:
                raise SourceUnavailable(f"cannot read {energy}: {exc}") from None
            parent_id = zone_id.rsplit(":", 1)[0] if zone_id.count(":") == 2 else None
            found.append((zone_id, names[zone_id], zone_dir, uj, names.get(parent_id or "")))
        if not found:
            raise SourceUnavailable(f"intel-rapl zones under {root} have no energy_uj counter")

        plain = [name for _, name, _, _, _ in found]
        has_package = any(name.startswith("package") for name in plain)
        channels: list[Channel] = []
        for zone_id, name, zone_dir, uj, parent in found:
            # A sub-zone name repeats across sockets (two "dram"); prefix its package then.
            label = f"{parent}/{name}" if parent and plain.count(name) > 1 else name
            if name.startswith("package"):
                measures, in_total = "cpu-package", True
            else:
                measures, in_total = _KNOWN.get(name, ("system", False))
                if name == "psys" and not has_package:
                    in_total = True
            try:
                max_uj = _read_int(zone_dir / "max_energy_range_uj")
            except (OSError, ValueError):
                max_uj = 0  # unknown: a decrease is then taken as a counter reset
            channels.append(Channel(label, measures, "counter_j", in_total, False, zone_id))
            self._paths.append(zone_dir / "energy_uj")
            self._max_uj.append(max_uj)
            self._last_uj.append(uj)
            self._total_j.append(0.0)
        return channels

    def read(self, now_ns: int) -> list[Reading]:
        """One cumulative reading per zone, wrap-around undone."""
        readings: list[Reading] = []
        for i, path in enumerate(self._paths):
            uj = _read_int(path)
            last = self._last_uj[i]
            if uj >= last:
                delta = uj - last
            elif self._max_uj[i] > 0:
                delta = uj + self._max_uj[i] - last  # wrapped once past max_energy_range_uj
            else:
                delta = uj
            self._last_uj[i] = uj
            self._total_j[i] += delta / 1e6
            readings.append(Reading(i, now_ns, self._total_j[i]))
        return readings

    def close(self) -> None:
        """Nothing is held between reads."""

    def _zones(self) -> list[tuple[str, Path]]:
        seen: dict[str, Path] = {}
        for entry in sorted(self._root.iterdir()):
            if _ZONE.match(entry.name):
                seen.setdefault(entry.name, entry)
                if entry.is_dir():
                    for sub in sorted(entry.iterdir()):
                        if _ZONE.match(sub.name):
                            seen.setdefault(sub.name, sub)
        return sorted(seen.items(), key=lambda item: _zone_key(item[0]))


def _zone_key(zone_id: str) -> tuple[int, int]:
    match = _ZONE.match(zone_id)
    assert match is not None
    return int(match.group(1)), int(match.group(2) or -1)


def _read_int(path: Path) -> int:
    with open(path, "rb") as f:
        return int(f.read().strip())


def _read_str(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
