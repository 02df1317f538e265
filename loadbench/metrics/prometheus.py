"""Scraping a target's Prometheus metrics during a run (vLLM, llama.cpp, SGLang, the simulator).

The scraper runs beside the load as its own task with its own tiny HTTP session: it never touches
the request path, and a failing or missing endpoint is counted, not fatal. Each scrape becomes one
line of ``server_metrics.jsonl``: ``{"t_s": seconds since the run's start, "values": {series: value}}``
where a series is the metric name with its labels, as exposition format writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from loadbench.urls import join_url, origin

_SCRAPE_TIMEOUT_S = 2.0


def metrics_url(target_base_url: str, explicit: str | None = None) -> str:
    """The metrics endpoint: ``explicit`` if given, else ``/metrics`` at the target's origin."""
    if explicit:
        return explicit
    return join_url(origin(target_base_url), "metrics")


def parse_exposition(text: str) -> dict[str, float]:
    """Samples of a Prometheus text exposition: ``{'name{labels}': value}``.

    Comments (``# HELP``/``# TYPE``) are skipped, as are lines that do not parse; timestamps after
    the value are ignored. Label values may hold spaces (inside quotes).
    """
    out: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            close = line.rfind("}")
            if close < 0:
                continue
            series, rest = line[: close + 1], line[close + 1 :].split()
        else:
            parts = line.split()
            series, rest = parts[0], parts[1:]
        if not rest:
            continue
        try:
            value = float(rest[0])
        except ValueError:
            continue
        if math.isfinite(value):
            out[series] = value
    return out


class MetricsScraper:
    """Scrapes ``url`` every ``interval_s`` into ``path`` until ``stop()``; ``close`` is idempotent."""

    def __init__(self, url: str, path: Path, *, start_ns: int, interval_s: float = 1.0) -> None:
        self.url = url
        self.path = path
        self._start_ns = start_ns
        self._interval_s = interval_s
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.scrapes = 0
        self.failures = 0
        self.last_error: str | None = None
        self.series: set[str] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=_SCRAPE_TIMEOUT_S)
        with open(self.path, "ab") as out:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                next_at = time.monotonic()
                while not self._stop.is_set():
                    await self._scrape(session, out)
                    next_at += self._interval_s
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), max(0.0, next_at - time.monotonic()))
                await self._scrape(session, out)  # one last look at the end state

    async def _scrape(self, session: aiohttp.ClientSession, out: Any) -> None:
        t_s = (time.perf_counter_ns() - self._start_ns) / 1e9
        try:
            async with session.get(self.url) as resp:
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            return
        values = parse_exposition(text)
        self.scrapes += 1
        self.series.update(values)
        out.write(orjson.dumps({"t_s": round(t_s, 3), "values": values}) + b"\n")
        out.flush()

    async def close(self) -> dict[str, Any]:
        """Stop (after one final scrape) and return a summary for summary.json."""
        self._stop.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task
        return {
            "url": self.url,
            "scrapes": self.scrapes,
            "failed_scrapes": self.failures,
            "last_error": self.last_error,
            "series": len(self.series),
            "file": self.path.name,
        }
