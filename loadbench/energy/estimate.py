"""The estimate used when nothing can be metered: CPU time of the process tree times watts per core.

CPU time comes from the kernel, not from a library: on Linux ``/proc/<pid>/stat`` for this
process, every descendant (the embedded simulator runs as a child process) and any ``extra_pids``
trees, including the time of children they have already reaped; elsewhere ``os.times()``, which
counts this process and only the children it has waited for. The result is a ``counter_j``
channel labelled estimated, whose detail states the assumption.

It leaves out everything a CPU-time model cannot see: idle and uncore power, memory, GPUs, and
processes outside the tree (a server started separately is counted only if its pid is given).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from loadbench.energy.base import Channel, Reading, SourceUnavailable

# Look for new descendants at most once a second: their CPU time is cumulative, so a late find
# loses nothing.
_RESCAN_NS = 1_000_000_000


class CpuTimeEstimate:
    """Joules = CPU seconds consumed by the process tree since ``open`` x ``watts_per_core``."""

    name = "cpu-estimate"
    estimated = True

    def __init__(
        self,
        watts_per_core: float,
        *,
        extra_pids: tuple[int, ...] = (),
        proc_root: Path | None = None,
    ) -> None:
        self._watts_per_core = watts_per_core
        self._roots = (os.getpid(), *extra_pids)
        self._proc = proc_root if proc_root is not None else Path("/proc")
        self._use_proc = sys.platform.startswith("linux") and (self._proc / "self" / "stat").exists()
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._tracked: list[int] = []  # ancestors before descendants (see _sum_ticks)
        self._next_scan_ns = 0
        self._origin_s = 0.0
        self._last_raw_s = 0.0
        self._lost_s = 0.0

    @property
    def scope(self) -> str:
        """What the CPU time covers, in words."""
        if self._use_proc:
            others = ", ".join(map(str, self._roots[1:]))
            extra = f", and pid(s) {others} with theirs" if others else ""
            return f"this process and its children{extra}"
        return "this process and the children it has waited for (live children are not counted)"

    def open(self) -> list[Channel]:
        """Take the starting CPU time; ``SourceUnavailable`` only if the kernel gives none."""
        try:
            self._origin_s = self._cpu_seconds(0)
        except OSError as exc:
            raise SourceUnavailable(f"cannot read process CPU time: {exc}") from None
        self._last_raw_s = self._origin_s
        detail = f"CPU seconds of {self.scope} x {self._watts_per_core:g} W per busy core (assumed, not measured)"
        return [Channel("process-tree", "process-cpu", "counter_j", True, True, detail)]

    def read(self, now_ns: int) -> list[Reading]:
        """Estimated joules since ``open``; never decreases."""
        raw_s = self._cpu_seconds(now_ns)
        if raw_s < self._last_raw_s:
            # A descendant was reaped outside the tree and took its time with it: keep what it used.
            self._lost_s += self._last_raw_s - raw_s
        self._last_raw_s = raw_s
        cpu_s = raw_s + self._lost_s - self._origin_s
        return [Reading(0, now_ns, cpu_s * self._watts_per_core)]

    def close(self) -> None:
        """Nothing is held."""

    def _cpu_seconds(self, now_ns: int) -> float:
        if not self._use_proc:
            t = os.times()
            return t.user + t.system + t.children_user + t.children_system
        if now_ns >= self._next_scan_ns:
            self._tracked = self._scan()
            self._next_scan_ns = now_ns + _RESCAN_NS
        return self._sum_ticks() / self._hz

    def _sum_ticks(self) -> int:
        # Parents are read before their children: a child reaped between the two reads is then
        # missed for one sample instead of counted twice (in the parent's cutime and in itself).
        total = 0
        alive = []
        for pid in self._tracked:
            stat = _read_stat(self._proc / str(pid) / "stat")
            if stat is None:
                continue
            alive.append(pid)
            total += stat[1]
        self._tracked = alive
        return total

    def _scan(self) -> list[int]:
        """Every live process in the trees rooted at ``_roots``, breadth first."""
        children: dict[int, list[int]] = {}
        for entry in os.scandir(self._proc):
            if entry.name.isdigit():
                stat = _read_stat(Path(entry.path) / "stat")
                if stat is not None:
                    children.setdefault(stat[0], []).append(int(entry.name))
        order: list[int] = []
        seen: set[int] = set()
        queue = [pid for pid in self._roots if (self._proc / str(pid)).exists()]
        while queue:
            pid = queue.pop(0)
            if pid in seen:
                continue
            seen.add(pid)
            order.append(pid)
            queue.extend(sorted(children.get(pid, ())))
        return order


def _read_stat(path: Path) -> tuple[int, int] | None:
    """(ppid, utime + stime + cutime + cstime in clock ticks) from a ``/proc/<pid>/stat``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields start after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[1]), int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    except (IndexError, ValueError):
        return None
