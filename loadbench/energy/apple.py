"""Apple silicon: ``powermetrics`` (ships with macOS, needs root) and ``macmon`` (no sudo).

Both run as a child process that prints one record per interval; a reader thread parses each
record as it arrives and stamps it with ``perf_counter_ns()``; the sampler drains them. Every
figure is the mean power over the interval that just ended (``interval_power_w``).

* ``powermetrics --samplers cpu_power,gpu_power -i MS -f plist`` writes XML property lists
  separated by NUL bytes. The ``processor`` dict holds ``cpu_power``, ``gpu_power``, ``ane_power``
  and ``combined_power`` in milliwatts (older macOS: ``*_energy`` in millijoules over the interval)
  and the top level ``elapsed_ns``, the interval's exact length. The text format
  (``*** Sampled system activity (...) (1002.90ms elapsed) ***`` blocks with ``CPU Power: 823 mW``
  ... ``Combined Power (CPU + GPU + ANE): 1172 mW``) is parsed too.
* ``macmon pipe -i MS`` writes one JSON object per line with ``cpu_power``, ``gpu_power``,
  ``ane_power``, ``all_power`` (CPU + GPU + ANE), ``ram_power`` and ``sys_power`` in watts.

The total is the SoC figure (CPU + GPU + ANE), plus DRAM where macmon gives it; the parts and
macmon's whole-system ``sys_power`` are reported beside it, not added.
"""

from __future__ import annotations

import collections
import json
import os
import plistlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from loadbench.energy.base import Channel, Reading, SourceUnavailable


@dataclass(frozen=True, slots=True)
class ApplePower:
    """One powermetrics record: mean watts per component over ``span_ns`` (None when unstated)."""

    watts: dict[str, float] = field(default_factory=dict)  # keys: cpu, gpu, ane, combined
    span_ns: int | None = None


_POWER_LINE = re.compile(r"^(CPU|GPU|ANE) Power:\s*([\d.]+)\s*(mW|W)\s*$|^Combined Power[^:]*:\s*([\d.]+)\s*(mW|W)\s*$")
_BLOCK = re.compile(r"^\*\*\* Sampled system activity .*\(([\d.]+)\s*ms elapsed\) \*\*\*\s*$")


def parse_powermetrics_text(text: str) -> list[ApplePower]:
    """Every sample block of powermetrics' text output, in order.

    The first line of each kind in a block wins: with the ``gpu_power`` sampler on, "GPU Power"
    appears a second time under "GPU usage" with the same meaning.
    """
    records: list[ApplePower] = []
    watts: dict[str, float] | None = None
    span_ns: int | None = None

    def flush() -> None:
        if watts:
            records.append(ApplePower(_with_combined(watts), span_ns))

    for raw in text.splitlines():
        line = raw.strip()
        block = _BLOCK.match(line)
        if block:
            flush()
            watts, span_ns = {}, round(float(block.group(1)) * 1e6)
            continue
        match = _POWER_LINE.match(line)
        if not match:
            continue
        if watts is None:  # output without a block header (one sample piped in)
            watts, span_ns = {}, None
        if match.group(1):
            key, value, unit = match.group(1).lower(), match.group(2), match.group(3)
        else:
            key, value, unit = "combined", match.group(4), match.group(5)
        watts.setdefault(key, float(value) / (1e3 if unit == "mW" else 1.0))
    flush()
    return records


def parse_powermetrics_plist(record: bytes) -> ApplePower | None:
    """One NUL-delimited plist record of ``powermetrics -f plist``; None if it holds no power."""
    record = record.strip(b"\x00 \t\r\n")
    if not record:
        return None
    data = plistlib.loads(record)
    processor = data.get("processor") or {}
    elapsed_ns = data.get("elapsed_ns")
    span_ns = int(elapsed_ns) if isinstance(elapsed_ns, int | float) and elapsed_ns > 0 else None
    watts: dict[str, float] = {}
    for key in ("cpu", "gpu", "ane", "combined"):
        mw = processor.get(f"{key}_power")
        if isinstance(mw, int | float):
            watts[key] = mw / 1e3
        elif span_ns:
            mj = processor.get(f"{key}_energy")
            if isinstance(mj, int | float):
                watts[key] = mj / 1e3 / (span_ns / 1e9)  # older macOS: energy over the interval
    # The gpu sampler keeps its own copy under "gpu" on some versions.
    gpu = data.get("gpu") or {}
    if "gpu" not in watts and isinstance(gpu.get("gpu_power"), int | float):
        watts["gpu"] = gpu["gpu_power"] / 1e3
    if not watts:
        return None
    return ApplePower(_with_combined(watts), span_ns)


_MACMON_KEYS = ("all_power", "ram_power", "cpu_power", "gpu_power", "ane_power", "sys_power")


def parse_macmon_line(line: str | bytes) -> dict[str, float] | None:
    """The power fields (watts) of one ``macmon pipe`` JSON line; None for any other line."""
    line = line.strip()
    if not line:
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    watts = {k: float(data[k]) for k in _MACMON_KEYS if isinstance(data.get(k), int | float)}
    if "all_power" not in watts and {"cpu_power", "gpu_power"} <= watts.keys():
        watts["all_power"] = watts["cpu_power"] + watts["gpu_power"] + watts.get("ane_power", 0.0)
    return watts or None


def _with_combined(watts: dict[str, float]) -> dict[str, float]:
    if "combined" not in watts:
        watts = {**watts, "combined": sum(watts.get(k, 0.0) for k in ("cpu", "gpu", "ane"))}
    return watts


class _Stream:
    """A child process whose stdout is cut into records, each parsed and stamped on arrival."""

    def __init__(self, argv: Sequence[str], split: bytes, parse: Callable[[bytes], object]) -> None:
        # Kept open for the life of the stream and closed in close(); a file, not a pipe, so a
        # chatty stderr can never fill up and stall the child.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr)
        self._split = split
        self._parse = parse
        self._queue: collections.deque[tuple[int, object]] = collections.deque()
        self._failure: str | None = None
        self._thread = threading.Thread(target=self._pump, name="loadbench-energy-pipe", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        buffer = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buffer += chunk
            *records, buffer = buffer.split(self._split)
            for record in records:
                t_ns = time.perf_counter_ns()
                try:
                    parsed = self._parse(record)
                except Exception as exc:  # a malformed record is a gap, not the end of the source
                    self._failure = f"unreadable record: {exc}"
                    continue
                if parsed is not None:
                    self._queue.append((t_ns, parsed))

    def drain(self) -> list[tuple[int, object]]:
        """Records that arrived since the last call; raises once the process has died."""
        items = []
        while self._queue:
            items.append(self._queue.popleft())
        if not items:
            if self._proc.poll() is not None:
                status = self._proc.returncode
                raise RuntimeError(f"exited with status {status}: {self.stderr_tail()}")
            if self._failure:
                failure, self._failure = self._failure, None
                raise RuntimeError(failure)
        return items

    def stderr_tail(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read()[-400:].decode(errors="replace").strip()
        return text or "(no message)"

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._thread.join(timeout=2)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()


def _interval_ms(interval_s: float) -> str:
    return str(max(1, round(interval_s * 1000)))


class PowermetricsSource:
    """Apple SoC power from ``powermetrics`` (plist stream)."""

    name = "powermetrics"
    estimated = False
    _KEYS = ("combined", "cpu", "gpu", "ane")

    def __init__(self, interval_s: float, *, argv: Sequence[str] | None = None) -> None:
        # ``argv`` replaces the detected command line (tests run a stand-in that prints plists).
        self._interval_s = interval_s
        self._argv = list(argv) if argv is not None else None
        self._stream: _Stream | None = None

    def open(self) -> list[Channel]:
        """Start powermetrics; ``SourceUnavailable`` when not macOS, not installed, or no root."""
        argv = self._argv if self._argv is not None else self._command()
        try:
            self._stream = _Stream(argv, b"\x00", parse_powermetrics_plist)
        except OSError as exc:
            raise SourceUnavailable(f"cannot start powermetrics: {exc}") from None
        return [
            Channel("combined", "soc", "interval_power_w", True, False, "CPU + GPU + ANE"),
            Channel("cpu", "cpu-package", "interval_power_w", False),
            Channel("gpu", "gpu", "interval_power_w", False),
            Channel("ane", "ane", "interval_power_w", False),
        ]

    def _command(self) -> list[str]:
        if sys.platform != "darwin":
            raise SourceUnavailable("not macOS")
        path = shutil.which("powermetrics") or (
            "/usr/bin/powermetrics" if os.path.exists("/usr/bin/powermetrics") else None
        )
        if path is None:
            raise SourceUnavailable("powermetrics not found on PATH")
        argv = [
            path,
            "--samplers",
            "cpu_power,gpu_power",
            "-i",
            _interval_ms(self._interval_s),
            "-f",
            "plist",
        ]
        if os.geteuid() == 0:
            return argv
        # -n: never prompt. "sudo -n -l CMD" succeeds only if we may run CMD without a password.
        probe = subprocess.run(["sudo", "-n", "-l", path], capture_output=True, timeout=5)
        if probe.returncode != 0:
            raise SourceUnavailable(
                "powermetrics needs root: run loadbench with sudo, or allow it without a password "
                f"(sudoers line: `{os.environ.get('USER', 'you')} ALL=(root) NOPASSWD: {path}`), "
                "or install macmon (brew install macmon), which needs no sudo"
            )
        return ["sudo", "-n", *argv]

    def read(self, now_ns: int) -> list[Reading]:
        """Records that arrived since the last call, four channels each."""
        assert self._stream is not None
        readings = []
        for t_ns, record in self._stream.drain():
            assert isinstance(record, ApplePower)
            for index, key in enumerate(self._KEYS):
                if key in record.watts:
                    readings.append(Reading(index, t_ns, record.watts[key], record.span_ns))
        return readings

    def close(self) -> None:
        """Stop the child process. Idempotent."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.close()


class MacmonSource:
    """Apple SoC power from ``macmon pipe`` (JSON lines, no sudo)."""

    name = "macmon"
    estimated = False
    _KEYS = ("all_power", "ram_power", "cpu_power", "gpu_power", "ane_power", "sys_power")

    def __init__(self, interval_s: float, *, argv: Sequence[str] | None = None) -> None:
        # ``argv`` replaces the detected command line (tests run a stand-in that prints lines).
        self._interval_s = interval_s
        self._argv = list(argv) if argv is not None else None
        self._stream: _Stream | None = None
        self._last_t_ns: int | None = None

    def open(self) -> list[Channel]:
        """Start ``macmon pipe``; ``SourceUnavailable`` when not macOS or macmon is missing."""
        if self._argv is None:
            if sys.platform != "darwin":
                raise SourceUnavailable("not macOS")
            path = shutil.which("macmon")
            if path is None:
                raise SourceUnavailable("macmon not installed (brew install macmon; needs no sudo)")
            argv = [path, "pipe", "-i", _interval_ms(self._interval_s)]
        else:
            argv = self._argv
        try:
            self._stream = _Stream(argv, b"\n", parse_macmon_line)
        except OSError as exc:
            raise SourceUnavailable(f"cannot start macmon: {exc}") from None
        return [
            Channel("all", "soc", "interval_power_w", True, False, "CPU + GPU + ANE"),
            Channel("ram", "dram", "interval_power_w", True),
            Channel("cpu", "cpu-package", "interval_power_w", False),
            Channel("gpu", "gpu", "interval_power_w", False),
            Channel("ane", "ane", "interval_power_w", False),
            Channel("sys", "system", "interval_power_w", False, False, "whole machine (SMC)"),
        ]

    def read(self, now_ns: int) -> list[Reading]:
        """Lines that arrived since the last call; each covers the time since the one before."""
        assert self._stream is not None
        readings = []
        for t_ns, watts in self._stream.drain():
            assert isinstance(watts, dict)
            # macmon states no interval: the first line covers the interval asked for, later ones
            # the time since the previous line, so consecutive lines tile the run exactly.
            span_ns = round(self._interval_s * 1e9) if self._last_t_ns is None else t_ns - self._last_t_ns
            self._last_t_ns = t_ns
            for index, key in enumerate(self._KEYS):
                if key in watts:
                    readings.append(Reading(index, t_ns, watts[key], span_ns))
        return readings

    def close(self) -> None:
        """Stop the child process. Idempotent."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.close()
