"""A two-node Ray cluster on loopback for the tests: started with the ``ray`` CLI, stopped by pid.

Both raylets run on this host (``--num-cpus 1`` each), so one actor lands on each. The cluster's
processes are found by its own temporary directory (every one of them is started with it on its
command line, or is a child of one that is) and stopped by their ids: never ``ray stop``, which
would stop every Ray process on the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    """``with LocalRayCluster(pythonpath) as address:`` a head and one more node on 127.0.0.1."""

    def __init__(self, pythonpath: str, *, nodes: int = 2) -> None:
        self.pythonpath = pythonpath
        self.nodes = nodes
        # Short: Ray puts unix sockets under it (a 107-byte path limit).
        self.temp_dir = tempfile.mkdtemp(prefix="lbray", dir="/tmp")
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._ray = str(Path(sys.executable).with_name("ray"))

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": self.pythonpath, "RAY_USAGE_STATS_ENABLED": "0"}

    def _start(self, *args: str) -> None:
        common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(80 << 20),
                  "--disable-usage-stats"]
        proc = subprocess.run([self._ray, "start", *args, *common], env=self._env(), capture_output=True, text=True,
                              timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{proc.stderr[-2000:]}")

    def __enter__(self) -> str:
        try:
            self._start("--head", "--port", str(self.port), "--temp-dir", self.temp_dir, "--include-dashboard=false")
            for _ in range(self.nodes - 1):
                self._start("--address", self.address)
        except BaseException:
            self.stop()
            raise
        return self.address

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> set[int]:
        mine: set[int] = set()
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            pid = int(entry.name)
            parents[pid] = int(stat.rpartition(")")[2].split()[1])
            if self.temp_dir.encode() in cmdline:
                mine.add(pid)
        grew = True
        while grew:  # and their descendants (agents, actor workers)
            grew = False
            for pid, ppid in parents.items():
                if ppid in mine and pid not in mine:
                    mine.add(pid)
                    grew = True
        mine.discard(os.getpid())
        return mine

    def stop(self) -> None:
        for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
