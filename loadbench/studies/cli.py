"""The command line's side of studies and capacity searches: run one, print its progress and table.

Called by ``python -m loadbench FILE.py`` when the file assigns ``study`` or ``search``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadbench.contract.errors import ConfigError
from loadbench.display import LiveProgress, RunProgress, RunTarget, live_progress
from loadbench.exit_codes import EXIT_INTERRUPTED, EXIT_NO_COMPLETED
from loadbench.studies.capacity import CapacitySearch, SearchResult
from loadbench.studies.study import Overrides, Study, StudyResult

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def run_definition(definition: Study | CapacitySearch, ns: argparse.Namespace, console: Console) -> int:
    """Run a study or a search with the parsed command line ``ns``; returns the exit code."""
    if ns.json:
        raise ConfigError("--json prints one run's summary; a study writes study.json and cells.csv instead")
    overrides = Overrides(target=ns.target, duration_s=ns.duration, requests=ns.requests, seed=ns.seed)
    if isinstance(definition, CapacitySearch):
        if ns.resume is not None:
            raise ConfigError(
                "--resume is for studies; a capacity search starts afresh (its probes depend on each other)"
            )
        if ns.duration is not None or ns.requests is not None:
            raise ConfigError("--duration/--requests do not apply to a capacity search: it sizes each probe itself")
        found = definition.run(out_dir=ns.out, overrides=overrides, observer=_SearchPrinter(console, ns.quiet))
        console.print(search_table(found, definition))
        console.print(answer_line(found, definition))
        console.print(f"results: {found.path}/capacity.json")
        return EXIT_INTERRUPTED if found.interrupted else 0
    if ns.resume is not None and ns.out is not None:
        raise ConfigError("give --resume DIR or --out DIR, not both")
    result = definition.run(
        out_dir=ns.out, resume=ns.resume, overrides=overrides, observer=_StudyPrinter(console, ns.quiet)
    )
    console.print(study_table(result))
    for k in result.extra.get("knee", []):
        group = ", ".join(f"{a}={v}" for a, v in k["group"].items()) or "sweep"
        if k["load"] is None:
            console.print(f"knee ({group}): {k['note']}")
        else:
            rps = f", {k['requests_per_s']:.2f} req/s" if k.get("requests_per_s") else ""
            console.print(f"knee ({group}): load {k['load']:g} ({k['metric']} {k['latency_ms']:.0f} ms{rps})")
    counts = {s: sum(c["status"] == s for c in result.cells) for s in ("finished", "failed", "interrupted", "pending")}
    console.print("cells: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f"; results: {result.path}")
    if result.status == "interrupted":
        console.print(f"resume with: python -m loadbench {ns.scenario} --resume {result.path}")
        return EXIT_INTERRUPTED
    return 0 if counts["finished"] else EXIT_NO_COMPLETED


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def study_table(result: StudyResult) -> Table:
    """The terminal table of a study: one row per cell."""
    from rich.table import Table

    table = Table(title=f"{result.kind} {result.path.name}", show_lines=False)
    table.add_column("cell")
    show_repeat = any(r["repeat"] for r in result.rows)
    if show_repeat:
        table.add_column("rep", justify="right")
    for axis in result.axes:
        table.add_column(axis)
    for title in ("status", "TTFT p50", "TTFT p99", "TPOT p50", "E2E p99", "req/s", "tok/s", "goodput/s", "errors"):
        table.add_column(title, justify="left" if title == "status" else "right")
    for row in result.rows:
        cells = [row["id"]]
        if show_repeat:
            cells.append(str(row["repeat"]))
        cells += [row["values"].get(a, "") for a in result.axes]
        cells += [
            row["status"],
            _fmt(row.get("ttft_ms_p50")),
            _fmt(row.get("ttft_ms_p99")),
            _fmt(row.get("tpot_ms_p50")),
            _fmt(row.get("e2e_ms_p99"), ".0f"),
            _fmt(row.get("requests_per_s"), ".2f"),
            _fmt(row.get("output_tokens_per_s"), ".0f"),
            _fmt(row.get("goodput_per_s"), ".2f"),
            _fmt(row.get("errors"), "d"),
        ]
        table.add_row(*cells)
    return table


def search_table(result: SearchResult, search: CapacitySearch) -> Table:
    """The terminal table of a capacity search: one row per probe."""
    from rich.table import Table

    table = Table(
        title=f"capacity search {result.path.name}: SLO " + ", ".join(f"{k} ≤ {v:g}" for k, v in search.slo.items())
    )
    for title in (
        "#",
        f"load ({search.unit})",
        "requests",
        "binding SLO",
        "attainment",
        "95% CI" if search.confidence == 0.95 else f"{search.confidence:.0%} CI",
        "verdict",
        "TTFT p99",
        "TPOT p99",
        "req/s",
        "s",
        "early stop",
    ):
        table.add_column(title, justify="left" if title in ("binding SLO", "verdict", "early stop") else "right")
    for p in result.probes:
        verdict = p["verdict"] if p["verdict"] == p["decision"] else f"{p['verdict']} → {p['decision']}"
        f = p["figures"]
        table.add_row(
            str(p["index"]),
            p["label"],
            str(p["requests"]),
            p["objective"],
            _fmt(p["attainment"], ".3f"),
            f"{p['ci_low']:.3f}-{p['ci_high']:.3f}",
            verdict,
            _fmt(f.get("ttft_ms_p99"), ".0f"),
            _fmt(f.get("tpot_ms_p99"), ".1f"),
            _fmt(f.get("requests_per_s"), ".2f"),
            f"{p['elapsed_s']:.0f}",
            p["early_stop"] or "",
        )
    return table


def answer_line(result: SearchResult, search: CapacitySearch) -> str:
    hp, lf = result.highest_passing, result.lowest_failing
    if hp is not None and lf is not None:
        answer = f"capacity: between {search.label(hp)} (passes) and {search.label(lf)} (fails)"
    elif hp is not None:
        answer = f"capacity: at least {search.label(hp)}"
    elif lf is not None:
        answer = f"capacity: below {search.label(lf)}"
    else:
        answer = "capacity: not found"
    return f"{answer}; stopped: {result.stop_reason}; {len(result.probes)} probes in {result.elapsed_s:.0f} s"


class _RunObserver:
    """The Experiment observer of one cell or probe: says when Ctrl-C stops it."""

    def __init__(self, live: LiveProgress | None) -> None:
        self._live = live

    def target_ready(self, target: RunTarget, out_dir: Path) -> None:
        if self._live is not None:
            self._live.start()

    def progress(self, progress: RunProgress) -> None:
        if self._live is not None:
            self._live.update(progress)

    def stopping(self, reason: str) -> None:
        if reason.startswith("SIG"):
            # ``reason`` is the run's own line ("SIGINT: stopping, draining ... (again to cancel
            # them)"): said once, with what it means for the study.
            print(f"loadbench: {reason}; the study stops after this run", file=sys.stderr)
        else:
            print(f"loadbench: ending the probe early: {reason}", file=sys.stderr)

    def close(self) -> None:
        if self._live is not None:
            self._live.close()


class _StudyPrinter:
    def __init__(self, console: Console, quiet: bool) -> None:
        self._console = console
        self._quiet = quiet
        self._run: _RunObserver | None = None

    def study_started(self, path: Path, cells: Sequence[dict[str, Any]], resumed: bool) -> None:
        done = sum(c["status"] == "finished" for c in cells)
        what = (
            f"resuming {path}: {done} of {len(cells)} cells finished, running the rest"
            if resumed
            else (f"study: {len(cells)} cells into {path}")
        )
        self._console.print(f"loadbench: {what}")

    def cell_started(self, cell: dict[str, Any], position: int, total: int) -> _RunObserver:
        if not self._quiet:
            values = ", ".join(f"{k}={v}" for k, v in cell["values"].items())
            rep = f" (repeat {cell['repeat']})" if cell["repeat"] else ""
            self._console.print(f"[{position}/{total}] {cell['id']}: {values}{rep}")
        self._run = _RunObserver(live_progress(self._quiet))
        return self._run

    def cell_ended(self, cell: dict[str, Any], row: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.close()
        if self._quiet:
            return
        if cell["status"] == "finished":
            self._console.print(
                f"    finished: TTFT p99 {_fmt(row.get('ttft_ms_p99'))} ms, "
                f"{_fmt(row.get('requests_per_s'), '.2f')} req/s, {row.get('errors')} errors"
            )
        else:
            self._console.print(f"    {cell['status']}: {cell.get('error')}")


class _SearchPrinter:
    def __init__(self, console: Console, quiet: bool) -> None:
        self._console = console
        self._quiet = quiet
        self._run: _RunObserver | None = None
        self._search: CapacitySearch | None = None

    def search_started(self, path: Path, search: CapacitySearch) -> None:
        self._search = search
        slo = ", ".join(f"{k} ≤ {v:g}" for k, v in search.slo.items())
        self._console.print(
            f"loadbench: capacity search over {search.over} ({search.unit}), SLO {slo}, "
            f"tolerance {search.tolerance:.0%}, confidence {search.confidence:.0%}; into {path}"
        )

    def probe_started(self, index: int, load: float, attempt: int, measure_s: float) -> _RunObserver:
        if not self._quiet:
            again = f", measurement {attempt + 1} (the interval straddled the target)" if attempt else ""
            label = self._search.label(load) if self._search is not None else f"{load:g}"
            self._console.print(f"probe {index}: {label} for {measure_s:.0f} s measured{again}")
        self._run = _RunObserver(live_progress(self._quiet))
        return self._run

    def probe_ended(self, probe: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.close()
        if not self._quiet:
            early = f"; ended early: {probe['early_stop']}" if probe["early_stop"] else ""
            early += "".join(f"; warning: {w}" for w in probe.get("warnings", []))
            self._console.print(
                f"    {probe['decision']} ({probe['decided_by']}): {probe['objective']} attainment "
                f"{_fmt(probe['attainment'], '.3f')} [{probe['ci_low']:.3f}, {probe['ci_high']:.3f}] "
                f"over {probe['requests']} requests{early}"
            )
