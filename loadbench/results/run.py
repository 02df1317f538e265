"""RunResult: what a finished run returns and what a run directory reads back as."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from loadbench.contract.errors import LoadbenchError


@dataclass(frozen=True)
class RunResult:
    """A finished run: its directory, ``summary`` (summary.json) and ``run`` (run.json)."""

    path: Path
    summary: dict[str, Any]
    run: dict[str, Any]

    def metric(self, key: str) -> dict[str, Any]:
        """One metric's statistics, e.g. ``result.metric("ttft_ms")["p99"]`` (milliseconds)."""
        return self.summary["metrics"][key]

    def records(self) -> Iterator[dict[str, Any]]:
        """The scheduled requests' lines of requests.jsonl, in the order they finished (a hybrid
        request's child calls are left out: see ``child_records``)."""
        for obj in self._lines():
            if obj.get("parent") is None:
                yield obj

    def child_records(self) -> Iterator[dict[str, Any]]:
        """The child calls of hybrid requests (lines with ``parent`` set), in the order written."""
        for obj in self._lines():
            if obj.get("parent") is not None:
                yield obj

    def _lines(self) -> Iterator[dict[str, Any]]:
        with open(self.path / "requests.jsonl", "rb") as f:
            for line in f:
                if line.strip():
                    yield orjson.loads(line)

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        """Read a run directory written by loadbench."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise LoadbenchError(f"{path}: not a run directory (it is a file)")
        try:
            summary = orjson.loads((path / "summary.json").read_bytes())
            run = orjson.loads((path / "run.json").read_bytes())
        except FileNotFoundError as exc:
            raise LoadbenchError(f"{path}: not a finished run directory ({Path(exc.filename).name} missing)") from None
        except orjson.JSONDecodeError as exc:
            raise LoadbenchError(f"{path}: unreadable run file ({exc})") from None
        return cls(path=path, summary=summary, run=run)
