"""``SimProcess``: the simulator in its own process, as a context manager.

The child runs ``loadbench.sim.cli.main(["--config-json", ..., "--ready-line",
"--exit-on-stdin-eof"])`` (what ``python -m loadbench.sim`` runs, minus the harness's imports). It
binds, then prints one JSON line (``{"ready": true, "port": N, ...}``) on stdout, which the parent
waits for; its stderr goes to a temporary file whose tail is quoted if it fails to come up. The
child also exits when its stdin reaches end-of-file, so it never outlives a parent that was killed.
It runs in a session (and process group) of its own: a terminal's Ctrl-C goes to the whole
foreground process group, and must reach only the harness, which then drains its requests.
Closing sends SIGTERM (the child flushes its trace and exits), then SIGKILL after a grace period.

CPU isolation (``isolate_cpu``, on by default where the OS allows it and at least two CPUs are
available): the child is pinned to one CPU and the thread that starts it (the client's event loop)
to the others, until close. Without it, Linux tends to wake the client on the simulator's core,
where it waits for the simulator's burst of writes to finish: with a hundred streams that put the
client's stamps ~0.7-1.5 ms behind the simulator's ground truth while the other core sat idle.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from loadbench.contract.errors import ConfigError, TargetError
from loadbench.sim.config import SimConfig

__all__ = ["SimProcess"]

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

# The child's entry point. It is ``python -m loadbench.sim`` except that the top-level package
# ``loadbench/__init__.py`` is not executed: that file imports the whole harness (numpy, the
# deployments, the SDK adapters), which the server never uses and which would triple the start-up
# time. A bare package object stands in for it, so only ``loadbench.sim`` and the two leaf modules
# it needs (``loadbench.contract.errors``, ``loadbench.contract.headers``) are loaded.


class SimProcess:
    """Run the simulator in a child process for the duration of a ``with`` (or ``async with``).

    ``port`` overrides ``config.port`` (0: the OS chooses). ``startup_timeout_s`` bounds the wait
    for the child's ready line. ``isolate_cpu`` gives the child a CPU of its own (the last one the
    starting thread may use; ``cpu`` says which, ``None`` when not isolated) and keeps the starting
    thread off it until close, when that thread's previous CPU set is restored. With
    ``config.trace`` on and no ``config.trace_path``, the trace goes to a temporary file that is
    read into memory and removed on close (``read_trace()`` still works after close); an explicit
    ``trace_path`` is left in place.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        port: int | None = None,
        startup_timeout_s: float = 15.0,
        terminate_timeout_s: float = 5.0,
        python: str | None = None,
        isolate_cpu: bool = True,
    ) -> None:
        config = config if config is not None else SimConfig()
        if not isinstance(config, SimConfig):
            raise ConfigError(f"SimProcess needs a SimConfig, got {config!r}")
        if port is not None:
            config = config.with_(port=port)
        if startup_timeout_s <= 0:
            raise ConfigError(f"SimProcess startup_timeout_s must be > 0, got {startup_timeout_s!r}")
        self._tmpdir: str | None = None
        if config.trace and config.trace_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="loadbench-sim-")
            config = config.with_(trace_path=os.path.join(self._tmpdir, "trace.jsonl"))
        self.config = config
        self.startup_timeout_s = startup_timeout_s
        self.terminate_timeout_s = terminate_timeout_s
        self.python = python or sys.executable
        self.port = 0
        self.startup_s = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_path: str | None = None
        self._final_trace: bytes | None = None
        self._closed = False
        self.isolate_cpu = isolate_cpu
        self.cpu: int | None = None
        # (native thread id, its CPU set before, the set we gave it) while the caller is pinned.
        self._caller_cpus: tuple[int, set[int], set[int]] | None = None

    # -- properties ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        if not self.port:
            raise TargetError("the simulator is not running (use `with SimProcess(...) as sim`)")
        return f"http://{self.config.host}:{self.port}"

    @property
    def trace_path(self) -> str | None:
        """The JSONL ground-truth file, or None when the trace is off."""
        return self.config.trace_path if self.config.trace else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has exited (negative: the signal that ended it)."""
        return self._proc.poll() if self._proc is not None else None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> SimProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> SimProcess:
        import asyncio

        # The child starts in a worker thread (the wait for its ready line blocks), but the thread
        # kept off its CPU is this one: the event loop's.
        plan = self._cpu_plan()
        await asyncio.to_thread(self._spawn, plan)
        self._pin_caller(plan)
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        await asyncio.to_thread(self.close)

    def start(self) -> SimProcess:
        """Start the child and wait until it listens; raises ``TargetError`` if it does not.

        With ``isolate_cpu``, the calling thread is the one kept off the child's CPU.
        """
        plan = self._cpu_plan()
        self._spawn(plan)
        self._pin_caller(plan)
        return self

    def _cpu_plan(self) -> tuple[set[int], set[int]] | None:
        """``(child's CPUs, caller's CPUs)``, or None when isolation is off or impossible."""
        if not self.isolate_cpu or self._proc is not None or not hasattr(os, "sched_getaffinity"):
            return None
        try:
            allowed = os.sched_getaffinity(0)
        except OSError:
            return None
        if len(allowed) < 2:
            return None
        child = {max(allowed)}
        return child, allowed - child

    def _pin_caller(self, plan: tuple[set[int], set[int]] | None) -> None:
        if plan is None or self._proc is None or self._caller_cpus is not None:
            return
        try:
            before = os.sched_getaffinity(0)
            os.sched_setaffinity(0, plan[1])
        except OSError:
            return
        self._caller_cpus = (threading.get_native_id(), before, plan[1])

    def _unpin_caller(self) -> None:
        pinned, self._caller_cpus = self._caller_cpus, None
        if pinned is None:
            return
        tid, before, ours = pinned
        # Only if nobody changed it since (and the thread still exists): close may run elsewhere.
        with contextlib.suppress(OSError):
            if os.sched_getaffinity(tid) == ours:
                os.sched_setaffinity(tid, before)

    def _spawn(self, plan: tuple[set[int], set[int]] | None) -> None:
        if self._proc is not None:
            return
        if self._closed:
            raise TargetError("this SimProcess was closed; make a new one")
        fd, self._stderr_path = tempfile.mkstemp(prefix="loadbench-sim-", suffix=".stderr")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        argv = [self.python, "-m", "loadbench.sim", "--config-json", self.config.to_json(),
                "--ready-line", "--exit-on-stdin-eof"]
        if plan is not None:
            argv += ["--cpus", ",".join(map(str, sorted(plan[0])))]
        t0 = time.perf_counter()
        try:
            with os.fdopen(fd, "wb") as err:
                # A session of its own: Ctrl-C at a terminal signals the whole foreground process
                # group, and a simulator in it would exit at once and fail every request the
                # harness is draining. It still dies with the parent (stdin EOF) and on close.
                self._proc = subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
                    close_fds=True, start_new_session=True,
                )
        except OSError as exc:
            self._cleanup_files()
            raise TargetError(f"could not start the simulator ({self.python}): {exc}") from exc
        try:
            line = self._read_ready_line()
            info = json.loads(line)
            self.port = int(info["port"])
        except (ValueError, KeyError, TypeError, TargetError) as exc:
            tail = self._stderr_tail()
            self.close()
            detail = exc if isinstance(exc, TargetError) else f"unexpected ready line {line!r}"
            raise TargetError(f"the simulator did not come up: {detail}"
                              + (f"; its stderr ends with:\n{tail}" if tail else "")) from None
        self.startup_s = time.perf_counter() - t0
        self.cpu = min(plan[0]) if plan is not None else None

    def _read_ready_line(self) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout_s
        buf = b""
        fd = proc.stdout.fileno()
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TargetError(f"no ready line within {self.startup_timeout_s:g} s")
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if ready:
                data = os.read(fd, 4096)
                if not data:
                    code = proc.wait(timeout=5)
                    raise TargetError(f"the process exited with status {code} before listening")
                buf += data
            elif proc.poll() is not None:
                raise TargetError(f"the process exited with status {proc.returncode} before listening")
        return buf.split(b"\n", 1)[0].decode("utf-8", "replace")

    def _stderr_tail(self, max_chars: int = 2000) -> str:
        if not self._stderr_path:
            return ""
        try:
            text = Path(self._stderr_path).read_text(errors="replace")
        except OSError:
            return ""
        return text[-max_chars:].strip()

    def close(self) -> None:
        """Stop the child: SIGTERM, then SIGKILL after ``terminate_timeout_s`` (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._unpin_caller()
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=self.terminate_timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=self.terminate_timeout_s)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        if self._tmpdir is not None and self.config.trace_path:
            try:
                self._final_trace = Path(self.config.trace_path).read_bytes()
            except OSError:
                self._final_trace = b""
        self._cleanup_files()

    def _cleanup_files(self) -> None:
        if self._stderr_path:
            with contextlib.suppress(OSError):
                os.remove(self._stderr_path)
            self._stderr_path = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # -- ground truth ----------------------------------------------------------------------------

    def read_trace(self) -> list[dict[str, Any]]:
        """The ground-truth records written so far (all of them after close).

        While running, the child flushes every ~100 ms, so the newest requests may be missing; fetch
        ``GET /sim/trace`` for an up-to-the-moment view.
        """
        if self._final_trace is not None:
            data = self._final_trace
        elif self.trace_path:
            try:
                data = Path(self.trace_path).read_bytes()
            except OSError:
                data = b""
        else:
            return []
        return [json.loads(line) for line in data.splitlines() if line.strip()]
