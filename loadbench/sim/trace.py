"""Ground truth: one JSON line per finished request, buffered on the hot path, written off it.

Fields (all stamps ``time.perf_counter_ns()``, comparable with the client's on one host):
``id`` (the request-id header, or ``sim-N`` when absent), ``dialect``, ``path``, ``model``,
``stream``, ``received_ns`` (the request's last bytes arrived), ``admitted_ns`` (engine admitted it; 0 if never),
``first_token_ns`` (the first token-bearing chunk was handed to the transport; 0 if none),
``last_ns`` (the last byte was handed to the transport), ``tokens_sent`` (token-bearing chunks
written, reasoning included), ``output_tokens`` (tokens generated, hidden reasoning included: what
usage reports), ``reasoning_tokens``, ``prompt_tokens``, ``status`` (HTTP status), ``outcome``
(``ok``, ``fault``, ``client_gone``, ``error``) and ``fault`` (the kind injected, or null).

"Handed to the transport" means ``transport.write`` returned: the bytes are in the kernel's
socket buffer (or the transport's, under back-pressure), which on loopback is microseconds from
the client's read.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

__all__ = ["TraceLog"]

FLUSH_INTERVAL_S = 0.1


class TraceLog:
    """Collects trace records; ``run()`` flushes them to ``path`` every ``FLUSH_INTERVAL_S``.

    Without a path the lines stay in memory (for ``/sim/trace``). ``close()`` flushes what is left
    and is idempotent.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._pending: list[dict[str, Any]] = []
        self._memory: list[bytes] = []
        self._file = open(path, "ab") if path else None  # noqa: SIM115 - closed in close()
        self.count = 0

    def add(self, record: dict[str, Any]) -> None:
        """Hot path: queue one finished request's record (no I/O)."""
        self._pending.append(record)
        self.count += 1

    def flush(self) -> None:
        """Write queued records (to the file, or to memory)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        lines = b"".join(orjson.dumps(r) + b"\n" for r in pending)
        if self._file is not None:
            self._file.write(lines)
            self._file.flush()
        else:
            self._memory.append(lines)

    def contents(self) -> bytes:
        """Every record so far, as JSONL."""
        self.flush()
        if self.path is not None:
            with open(self.path, "rb") as fh:
                return fh.read()
        return b"".join(self._memory)

    async def run(self) -> None:
        """Flush periodically until cancelled."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self.flush()

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None

