"""A command run on a real pseudo-terminal, as a user runs it: its own session, the pty as its
controlling terminal, so a Ctrl-C typed there is the terminal driver's SIGINT to the whole
foreground process group (not a signal sent to one process)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import termios
import threading
import time
from collections.abc import Sequence


class Terminal:
    """``Terminal(argv)`` starts ``argv`` on a new pty; ``type(b"\\x03")`` presses Ctrl-C."""

    def __init__(self, argv: Sequence[str], *, cwd: str | None = None, env: dict[str, str] | None = None) -> None:
        master, slave = os.openpty()
        self._master = master

        def controlling_tty() -> None:  # runs in the child, after setsid (start_new_session)
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            list(argv), stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
            start_new_session=True, preexec_fn=controlling_tty, close_fds=True,
        )
        os.close(slave)
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO once the child side is closed
                return
            if not data:
                return
            with self._lock:
                self._output += data

    @property
    def output(self) -> str:
        with self._lock:
            return self._output.decode("utf-8", "replace")

    def wait_for(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{text!r} never appeared; output so far:\n{self.output}")
            time.sleep(0.05)

    def type(self, keys: bytes) -> None:
        os.write(self._master, keys)

    def wait(self, timeout_s: float = 120.0) -> int:
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=5)
        os.close(self._master)
        return code
