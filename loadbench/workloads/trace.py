"""Trace replay: the arrival times and lengths of a public LLM-serving trace, sent again.

Two shapes are read (``format="auto"`` tells them apart by extension and columns):

* Azure LLM inference traces (CSV): ``TIMESTAMP`` (a date-time such as
  ``2023-11-16 18:15:46.6805900``, or seconds), ``ContextTokens``, ``GeneratedTokens``.
* Mooncake-style JSONL: ``timestamp`` (ms from the trace's start), ``input_length``,
  ``output_length`` and optionally ``hash_ids``, the ids of the prompt's blocks of
  ``block_tokens`` tokens (512 in Mooncake's traces); equal ids mean equal content, so prefix
  sharing in the trace becomes prefix sharing on the wire.

``TraceReplay(path)`` gives ``.plan()``, an open-loop arrival plan (request *i* at the trace's
*i*-th offset, divided by ``speedup``), and ``.workload()``, whose *i*-th prompt has the trace's
*i*-th input and output lengths (after the trace ends it starts over; the plan does not).
"""

from __future__ import annotations

import csv
import functools
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from loadbench.contract.errors import ConfigError
from loadbench.contract.prompt import Message, Prompt
from loadbench.workloads.base import Built, Composer, Workload
from loadbench.workloads.sources import Pool
from loadbench.workloads.synthetic import SyntheticChat
from loadbench.workloads.tokens import LengthModel, TokenCounter

__all__ = ["Trace", "TracePlan", "TraceReplay", "TraceWorkload"]

TraceFormat = Literal["auto", "azure", "mooncake"]
_NS_PER_MS = 1_000_000
_BLOCK_CACHE = 4096

# Column names, first match wins, so near variants of the two shapes read too.
_TIME_KEYS = ("timestamp", "TIMESTAMP", "arrival_time_ms", "timestamp_ms")
_INPUT_KEYS = ("input_length", "ContextTokens", "input_tokens", "prompt_tokens")
_OUTPUT_KEYS = ("output_length", "GeneratedTokens", "output_tokens", "completion_tokens")


@dataclass(frozen=True, eq=False)
class Trace:
    """A parsed trace: per request, the arrival offset (ns from the first), the input and output
    token counts, and the block hash ids (empty when the trace has none)."""

    path: str
    format: str
    offsets_ns: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    hash_ids: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.offsets_ns)

    @property
    def duration_s(self) -> float:
        return float(self.offsets_ns[-1]) / 1e9 if len(self) else 0.0


def _pick(row: dict[str, Any], keys: tuple[str, ...], what: str, where: str) -> Any:
    for k in keys:
        if k in row and row[k] not in (None, ""):
            return row[k]
    raise ConfigError(f"trace {where}: no {what} field (expected one of {', '.join(keys)})")


_EPOCH = datetime(1970, 1, 1)


def _time_ns(value: Any, unit_ns: int, where: str) -> int:
    """Nanoseconds on an arbitrary origin: a date-time string (exact to the microsecond, as the
    traces write them), or a number of ``unit_ns`` units."""
    if isinstance(value, int):
        return value * unit_ns
    if isinstance(value, float):
        return round(value * unit_ns)
    text = str(value).strip()
    try:
        return round(float(text) * unit_ns)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"trace {where}: cannot read time {text!r} (a date-time or a number)") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return (dt - _EPOCH) // timedelta(microseconds=1) * 1000


def _tokens(value: Any, what: str, where: str) -> int:
    try:
        n = int(float(value))
    except (TypeError, ValueError):
        raise ConfigError(f"trace {where}: {what} {value!r} is not a token count") from None
    if n < 0:
        raise ConfigError(f"trace {where}: {what} {n} is negative")
    return n


@functools.lru_cache(maxsize=4)
def _parse(path: str, fmt: str, limit: int | None, _mtime_ns: int) -> Trace:
    p = Path(path)
    try:
        handle = p.open(encoding="utf-8", newline="")
    except OSError as e:
        raise ConfigError(f"TraceReplay: cannot read {path!r}: {e.strerror or e}") from e
    with handle:
        if fmt == "auto":
            first = handle.readline()
            handle.seek(0)
            fmt = "mooncake" if first.lstrip().startswith("{") else "azure"
        rows: Iterator[dict[str, Any]] = (
            (json.loads(line) for line in handle if line.strip()) if fmt == "mooncake" else csv.DictReader(handle)
        )
        times: list[int] = []
        inputs: list[int] = []
        outputs: list[int] = []
        hashes: list[tuple[int, ...]] = []
        has_hashes = False
        try:
            for i, row in enumerate(rows):
                if limit is not None and i >= limit:
                    break
                where = f"{path!r} row {i + 1}"
                # Mooncake-style numbers are milliseconds; Azure numbers are seconds.
                unit = _NS_PER_MS if fmt == "mooncake" else 1_000_000_000
                times.append(_time_ns(_pick(row, _TIME_KEYS, "time", where), unit, where))
                n_in = _tokens(_pick(row, _INPUT_KEYS, "input length", where), "input length", where)
                n_out = _tokens(_pick(row, _OUTPUT_KEYS, "output length", where), "output length", where)
                inputs.append(max(1, n_in))
                outputs.append(max(1, n_out))
                ids = row.get("hash_ids")
                if isinstance(ids, list) and ids:
                    has_hashes = True
                    hashes.append(tuple(int(h) for h in ids))
                else:
                    hashes.append(())
        except json.JSONDecodeError as e:
            raise ConfigError(f"trace {path!r}: a line is not JSON: {e.msg}") from e
    if not times:
        raise ConfigError(f"trace {path!r} holds no requests")
    t = np.asarray(times, dtype=np.int64)
    order = np.argsort(t, kind="stable")  # arrival order, ties kept in file order
    t = t[order]
    offsets = t - t[0]
    return Trace(
        path=path,
        format=fmt,
        offsets_ns=offsets,
        input_tokens=np.asarray(inputs, dtype=np.int64)[order],
        output_tokens=np.asarray(outputs, dtype=np.int64)[order],
        hash_ids=tuple(hashes[i] for i in order) if has_hashes else (),
    )


@dataclass(frozen=True, slots=True)
class TraceReplay:
    """A trace file to replay. ``speedup`` divides every offset (2.0 replays twice as fast);
    ``limit`` keeps the first requests only; ``max_concurrency`` caps requests in flight;
    ``block_tokens`` is the size of one ``hash_ids`` block."""

    path: str
    format: TraceFormat = "auto"
    speedup: float = 1.0
    limit: int | None = None
    max_concurrency: int | None = None
    block_tokens: int = 512
    ignore_eos: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", str(self.path))
        if self.format not in ("auto", "azure", "mooncake"):
            raise ConfigError(f"TraceReplay.format must be 'auto', 'azure' or 'mooncake', got {self.format!r}")
        _check_speedup(self.speedup)
        for name in ("limit", "max_concurrency"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"TraceReplay.{name} must be an integer >= 1 or None, got {v!r}")
        if isinstance(self.block_tokens, bool) or not isinstance(self.block_tokens, int) or self.block_tokens < 1:
            raise ConfigError(f"TraceReplay.block_tokens must be an integer >= 1, got {self.block_tokens!r}")

    def load(self) -> Trace:
        """The parsed trace (cached while the file is unchanged)."""
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError as e:
            raise ConfigError(f"TraceReplay: cannot read {self.path!r}: {e.strerror or e}") from e
        return _parse(self.path, self.format, self.limit, mtime)

    def plan(self) -> TracePlan:
        """The trace's arrivals as an open-loop plan."""
        trace = self.load()
        return TracePlan(
            offsets=trace.offsets_ns, speedup=self.speedup, max_concurrency=self.max_concurrency, source=self.path
        )

    def workload(self) -> TraceWorkload:
        """A workload whose prompts have the trace's lengths, in order."""
        return TraceWorkload(self)


def _check_speedup(speedup: object) -> None:
    ok = isinstance(speedup, int | float) and not isinstance(speedup, bool) and 0 < speedup < float("inf")
    if not ok:
        raise ConfigError(f"trace speedup must be a number > 0, got {speedup!r}")


@dataclass(frozen=True, eq=False)
class TracePlan:
    """Open-loop arrivals at a trace's offsets (ns from the run's start), divided by ``speedup``.

    Finite: the plan ends with the trace. Implements ``loadbench.load.plans.OpenLoopPlan``."""

    offsets: np.ndarray = field(repr=False)
    speedup: float = 1.0
    max_concurrency: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        _check_speedup(self.speedup)
        arr = np.asarray(self.offsets, dtype=np.int64)
        if arr.ndim != 1 or (len(arr) > 1 and bool(np.any(np.diff(arr) < 0))) or (len(arr) and arr[0] < 0):
            raise ConfigError("TracePlan.offsets must be non-decreasing offsets >= 0 (ns)")
        object.__setattr__(self, "offsets", arr)

    def offsets_ns(self, rng: np.random.Generator) -> Iterator[int]:
        """The trace's offsets; ``rng`` is unused (a trace is already one realisation)."""
        if self.speedup == 1.0:
            yield from (int(x) for x in self.offsets)
        else:
            for x in self.offsets:
                yield int(int(x) / self.speedup)

    def describe(self) -> dict[str, Any]:
        n = len(self.offsets)
        return {
            "plan": "Trace",
            "source": self.source,
            "requests": n,
            "duration_s": float(self.offsets[-1]) / 1e9 / self.speedup if n else 0.0,
            "speedup": self.speedup,
            "max_concurrency": self.max_concurrency,
        }


@dataclass(frozen=True)
class TraceWorkload(Workload):
    """Prompts with a trace's lengths: generated text, with ``hash_ids`` blocks shared as the
    trace shares them. Output targets are exact (``ignore_eos``) unless the trace says not."""

    trace: TraceReplay
    name: ClassVar[str] = "trace"

    def _load(self) -> Pool[Any]:
        self.trace.load()  # fail before the load if the file is bad
        return SyntheticChat().load()

    def describe(self) -> dict[str, Any]:
        t = self.trace.load()
        return {
            "name": self.name,
            "trace": self.trace.path,
            "format": t.format,
            "requests": len(t),
            "input_tokens_mean": float(t.input_tokens.mean()),
            "output_tokens_mean": float(t.output_tokens.mean()),
            "block_tokens": self.trace.block_tokens if t.hash_ids else None,
            "ignore_eos": self.trace.ignore_eos,
        }

    def check(self, prompt: Prompt, answer: str | None) -> bool | None:
        return None

    def _composer(
        self, *, pool: Pool[Any], counter: TokenCounter, model: LengthModel, seed: int
    ) -> Callable[[], Built]:
        trace = self.trace.load()
        c = Composer(name=self.name, pool=pool, counter=counter, model=model, seed=seed)
        # Block content is fixed for the stream, so equal hash ids are equal text.
        block_n = model.to_counted(self.trace.block_tokens)
        blocks: OrderedDict[int, tuple[str, int]] = OrderedDict()

        def block(h: int) -> tuple[str, int]:
            hit = blocks.get(h)
            if hit is not None:
                blocks.move_to_end(h)
                return hit
            rng = np.random.default_rng([seed, 0xB10C, h & 0xFFFFFFFF, h >> 32])
            pages, _ = c.fill(block_n, lambda: pool.filler(rng))
            text = "\n\n".join(pages)
            blocks[h] = (text, c.count(text))
            if len(blocks) > _BLOCK_CACHE:
                blocks.popitem(last=False)
            return blocks[h]

        index = 0
        n = len(trace)

        def build(i: int) -> Built:
            wanted, out = int(trace.input_tokens[i]), int(trace.output_tokens[i])
            overhead, per_msg, scale = model.coefficients()
            budget = (c.aim(wanted) - overhead - per_msg) / scale
            ids = trace.hash_ids[i] if trace.hash_ids else ()
            parts: list[str] = []
            counted = 0.0
            if ids:
                for j, h in enumerate(ids):
                    room = budget - counted
                    if room < 1:
                        break
                    text, tn = block(h)
                    if j == len(ids) - 1 or tn + c.sep > room:
                        text = c.cut(text, room - (c.sep if parts else 0))
                        tn = c.count(text)
                    if text:
                        parts.append(text)
                        counted += tn + (c.sep if len(parts) > 1 else 0)
            else:
                parts, counted = c.fill(budget, lambda: pool.filler(c.rng))
            prompt = Prompt(
                messages=(Message("user", "\n\n".join(parts)),),
                max_output_tokens=out,
                ignore_eos=self.trace.ignore_eos,
                target_input_tokens=wanted,
                target_output_tokens=out,
                source=f"trace:{trace.format}",
            )
            return prompt, 1, counted

        def compose() -> Built:
            nonlocal index
            i = index % n
            index += 1
            return c.sized(lambda: build(i))

        return c.bind(compose)
