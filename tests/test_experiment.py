"""Experiment's run closes everything it opened, whatever fails on the way out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from loadbench import Q3B, Experiment, Local, Prefill, SimConfig, Stop
from loadbench.metrics.harness import HarnessMonitor
from loadbench.metrics.prometheus import MetricsScraper
from loadbench.results.run_dir import RunWriter


def _experiment(out: Path) -> Experiment:
    return Experiment(
        workload=Prefill(),
        deployment=Local("llama3.2"),
        quant=Q3B(),
        target="sim",
        sim=SimConfig(profile="instant", models=("llama3.2:3b-instruct-q4_K_M",)),
        stop=Stop(requests=4),
        out_dir=out,
        energy=False,
        scrape_metrics=True,
        scrape_interval_s=0.05,
    )


def _record_closes(monkeypatch: pytest.MonkeyPatch, closed: list[str]) -> None:
    """Note each part's close, in order: scraper, harness sampler, and the deployment's client."""

    def recording(name: str, close: Any) -> Any:
        async def wrapper(self: Any) -> Any:
            closed.append(name)
            return await close(self)

        return wrapper

    monkeypatch.setattr(MetricsScraper, "close", recording("scraper", MetricsScraper.close))
    monkeypatch.setattr(HarnessMonitor, "close", recording("harness", HarnessMonitor.close))
    opened = Local.open

    @contextlib.asynccontextmanager
    async def tracked(self: Local, **kw: Any) -> AsyncIterator[Any]:
        try:
            async with opened(self, **kw) as sender:
                yield sender
        finally:  # the client's own close has run, whatever was raised into it
            closed.append("client")

    monkeypatch.setattr(Local, "open", tracked)


def test_a_writer_whose_close_raises_still_leaves_the_scraper_harness_and_client_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []

    async def failing_close(self: RunWriter) -> None:
        closed.append("writer")
        raise RuntimeError("the writer could not close")

    _record_closes(monkeypatch, closed)
    monkeypatch.setattr(RunWriter, "close", failing_close)
    scrapers: list[MetricsScraper] = []
    start = MetricsScraper.start
    monkeypatch.setattr(MetricsScraper, "start", lambda self: (scrapers.append(self), start(self))[1])

    with pytest.raises(RuntimeError, match="the writer could not close"):
        _experiment(tmp_path / "run").run()

    # Wound down in order, every part closed though the writer's close raised.
    assert closed == ["harness", "writer", "scraper", "client"]
    assert scrapers and scrapers[0]._task is None  # its task finished, its file closed
    assert (tmp_path / "run" / "run.json").exists()  # it had started: its directory stays
    assert (tmp_path / "run" / "server_metrics.jsonl").exists()


def test_the_run_closes_its_parts_in_the_order_a_load_winds_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    _record_closes(monkeypatch, closed)
    writer_close = RunWriter.close

    async def close(self: RunWriter) -> None:
        closed.append("writer")
        await writer_close(self)

    monkeypatch.setattr(RunWriter, "close", close)
    result = _experiment(tmp_path / "run").run()
    assert closed == ["harness", "writer", "scraper", "client"]
    assert result.summary["requests"]["completed"] == 4
    assert result.summary["server_metrics"]["file"] == "server_metrics.jsonl"
    assert result.run["status"] == "finished"
