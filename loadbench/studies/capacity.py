"""CapacitySearch: the highest load at which every SLO holds, as an interval with a stated confidence.

    search = CapacitySearch(base, slo={"ttft_ms.p99": 500, "tpot_ms.p99": 50, "error_rate": 0.01}, over="rate")

The search, and what it guarantees:

1. Bracket: probe ``start`` (1 request/s or 1 user unless given), then multiply by ``growth``
   while probes pass (divide while they fail) until one load passes and a higher one fails.
2. Bisect between the highest passing and the lowest failing load until their gap is at most
   ``tolerance`` of the passing one (for concurrency, also when they are one user apart).
3. Each probe is one run of ``base`` at that load: ``warmup_s`` of warm-up, then a measured part
   long enough that the probe *can* show the strictest objective met (see
   ``slo.requests_needed``), between ``probe_s`` and ``max_probe_s``. While bracketing upwards,
   before any probe has failed, a probe is first measured for ``probe_s`` only: a pass there is
   never settled (point 4), it only says to go higher, and sizing it for its interval made the
   lowest loads, the farthest from capacity, the longest probes. With ``budget_s``, no probe is
   measured longer than the budget has left.
4. A probe is judged per objective by SLO attainment (the share of measured requests meeting the
   limit) and its Wilson interval at ``confidence``: ``pass`` when every interval lies at or above
   its target, ``fail`` when any lies below, else ``unsure``. An unsure probe is measured again,
   twice as long each time, up to ``remeasure`` times, pooling the requests, unless it is
   bracketing and points the way the bracket already goes (a later probe moves past it anyway);
   one still unsure is decided by its point estimate, and says so.
5. A probe stops early when the load is clearly past capacity: requests in flight keep growing
   through the probe (open loop), or the TTFT median so far already misses the SLO's TTFT limit.
   Its reason is recorded, and the probe counts as failing.
6. The search ends when the interval is within tolerance, or at ``max_probes``, ``budget_s`` (spent,
   or too little left for ``warmup_s`` and a second of measuring), a
   load of ``max_load`` still passing, the lowest load failing, a probe that cannot run, or
   Ctrl-C. The answer is (highest passing, lowest failing) with the stop reason and every probe.

Files, in one directory: ``capacity.json`` (the answer, the stop reason and every probe),
``study.json`` and ``cells.csv`` (each probe run as a cell, kind "capacity") and ``cells/cNNN/``
(each probe's full run directory).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from loadbench.contract.errors import ConfigError, LoadbenchError
from loadbench.load.plans import Concurrency, Stop
from loadbench.results.run_dir import write_json
from loadbench.scenario import Scenario
from loadbench.studies.slo import Counts, Objective, count, parse_slo, requests_needed, wilson
from loadbench.studies.study import Overrides, StudyFiles, cell_figures, default_dir, read_records, row_for
from loadbench.studies.sweep import rate_plan


class SearchObserver(Protocol):
    """What a search tells its caller (the CLI prints it). Methods must return quickly."""

    def search_started(self, path: Path, search: CapacitySearch) -> None: ...

    def probe_started(self, index: int, load: float, attempt: int, measure_s: float) -> Any:
        """Return an Experiment observer for the probe's run (or None)."""
        ...

    def probe_ended(self, probe: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class CapacitySearch:
    """Find the highest load of ``base`` at which every objective of ``slo`` holds.

    ``over``: ``"rate"`` (open loop, requests/s, ``arrivals`` "poisson", "constant" or
    "gamma:SHAPE") or ``"concurrency"`` (closed loop, users). ``slo`` keys are the summary's metric
    names with a percentile (``"ttft_ms.p99"``, ``"tpot_ms.p95"``, ``"e2e_ms.p50"``, ...) and
    ``"error_rate"``; values are limits in ms (a share for ``error_rate``). ``tolerance`` is the
    relative width of the final interval. ``min_load`` is the lowest load tried when even ``start``
    fails (default 1 user, or ``start / growth³``); ``max_load`` the highest while all pass.
    Times in seconds.
    """

    base: Scenario
    slo: Mapping[str, float]
    over: str = "rate"
    start: float | None = None
    growth: float = 2.0
    tolerance: float = 0.05
    confidence: float = 0.95
    warmup_s: float = 2.0
    probe_s: float = 10.0
    max_probe_s: float = 60.0
    remeasure: int = 2
    max_probes: int = 20
    budget_s: float | None = None
    max_load: float | None = None
    min_load: float | None = None
    arrivals: str = "poisson"
    drain_s: float = 10.0
    early_stop: bool = True
    name: str | None = None
    out_dir: str | Path | None = None
    objectives: tuple[Objective, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.base, Scenario):
            raise ConfigError(f"CapacitySearch.base must be a Scenario(...), got {type(self.base).__name__}")
        object.__setattr__(self, "objectives", parse_slo(self.slo, "CapacitySearch.slo"))
        if self.over not in ("rate", "concurrency"):
            raise ConfigError(f"CapacitySearch.over must be 'rate' or 'concurrency', got {self.over!r}")
        checks = {
            "growth": (self.growth, 1.0, False),
            "tolerance": (self.tolerance, 0.0, False),
            "warmup_s": (self.warmup_s, 0.0, True),
            "probe_s": (self.probe_s, 0.0, False),
            "max_probe_s": (self.max_probe_s, 0.0, False),
            "drain_s": (self.drain_s, 0.0, True),
        }
        for name, (value, floor, zero_ok) in checks.items():
            bad = not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value)
            if bad or value < floor or (value == floor and not zero_ok):
                raise ConfigError(
                    f"CapacitySearch.{name} must be a number {'>=' if zero_ok else '>'} {floor:g}, got {value!r}"
                )
        if self.max_probe_s < self.probe_s:
            raise ConfigError(
                f"CapacitySearch.max_probe_s ({self.max_probe_s:g}) must be >= probe_s ({self.probe_s:g})"
            )
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"CapacitySearch.confidence must be in [0.5, 1), got {self.confidence!r}")
        for name in ("remeasure", "max_probes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "remeasure" else 2):
                raise ConfigError(
                    f"CapacitySearch.{name} must be an integer >= {0 if name == 'remeasure' else 2}, got {value!r}"
                )
        for name in ("start", "max_load", "min_load", "budget_s"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or value <= 0):
                raise ConfigError(f"CapacitySearch.{name} must be a number > 0, got {value!r}")
        if self.over == "concurrency" and self.start is not None and self.start != int(self.start):
            raise ConfigError(f"CapacitySearch.start must be a whole number of users, got {self.start!r}")
        rate_plan(1.0, self.arrivals)  # checks the arrivals name
        if self.name is not None and (not isinstance(self.name, str) or not self.name or "/" in self.name):
            raise ConfigError(f"CapacitySearch.name must be a non-empty string without '/', got {self.name!r}")

    @property
    def search_name(self) -> str:
        return self.name or self.base.name

    @property
    def unit(self) -> str:
        return "requests/s" if self.over == "rate" else "users"

    def plan_for(self, load: float) -> Any:
        return rate_plan(load, self.arrivals) if self.over == "rate" else Concurrency(int(load))

    def label(self, load: float) -> str:
        return f"{load:.4g}/s" if self.over == "rate" else f"{int(load)} users"

    def with_name(self, name: str) -> CapacitySearch:
        import dataclasses

        return dataclasses.replace(self, name=name)

    def run(
        self,
        *,
        out_dir: str | Path | None = None,
        overrides: Overrides | None = None,
        observer: SearchObserver | None = None,
    ) -> SearchResult:
        """Search until a stop condition; returns the answer (also in ``capacity.json``)."""
        return _Search(self, Path(out_dir or self.out_dir or default_dir(self.search_name)), overrides, observer).run()


@dataclass(frozen=True)
class SearchResult:
    """The answer: ``highest_passing`` / ``lowest_failing`` loads (either may be None), why the
    search stopped, every probe (as in capacity.json), and the directory holding them."""

    path: Path
    over: str
    highest_passing: float | None
    lowest_failing: float | None
    stop_reason: str
    elapsed_s: float
    probes: list[dict[str, Any]]
    interrupted: bool = False
    document: dict[str, Any] = field(default_factory=dict)


def judge(objectives: tuple[Objective, ...], counts: Mapping[str, Counts], confidence: float) -> dict[str, Any]:
    """The verdict of pooled ``counts``: each objective's attainment, interval and verdict, and
    the probe's (``fail`` if any fails, ``pass`` if all pass, else ``unsure``), with the binding
    objective (the smallest margin over its target) named."""
    per: dict[str, dict[str, Any]] = {}
    for o in objectives:
        c = counts[o.name]
        lo, hi = wilson(c.met, c.n, confidence)
        verdict = "pass" if c.n and lo >= o.target else "fail" if hi < o.target else "unsure"
        per[o.name] = {
            "target": o.target,
            "limit": o.limit,
            "met": c.met,
            "n": c.n,
            "attainment": c.share,
            "ci_low": lo,
            "ci_high": hi,
            "verdict": verdict,
        }
    verdicts = {v["verdict"] for v in per.values()}
    overall = "fail" if "fail" in verdicts else "unsure" if "unsure" in verdicts else "pass"

    def margin(name: str) -> float:
        v = per[name]
        return (v["attainment"] if v["attainment"] is not None else 0.0) - v["target"]

    binding = min(per, key=margin)
    return {"verdict": overall, "binding": binding, "objectives": per}


class _ProbeWatch:
    """The Experiment observer of one probe: forwards progress, and ends the probe early when the
    load is clearly past capacity (see the module docstring, point 5)."""

    def __init__(
        self,
        inner: Any,
        *,
        rate_per_s: float | None,
        warmup_s: float,
        measure_s: float,
        ttft_limit: tuple[str, float] | None,
    ) -> None:
        self._inner = inner
        self._rate = rate_per_s
        self._warmup_s = warmup_s
        self._min_s = warmup_s + min(3.0, max(1.0, 0.25 * measure_s))
        self._ttft_limit = ttft_limit
        self._samples: list[tuple[float, int]] = []
        self.reason: str | None = None

    def target_ready(self, target: Any, out_dir: Path) -> None:
        if self._inner is not None:
            self._inner.target_ready(target, out_dir)

    def progress(self, progress: Any) -> None:
        self._samples.append((progress.snapshot.elapsed_s, progress.in_flight))
        if self._inner is not None:
            self._inner.progress(progress)

    def stopping(self, reason: str) -> None:
        if self._inner is not None:
            self._inner.stopping(reason)

    def early_stop(self, progress: Any) -> str | None:
        snap = progress.snapshot
        now = snap.elapsed_s
        if now < self._min_s:
            return None
        if self._ttft_limit is not None and snap.completed >= 10 and snap.ttft_p50_ms is not None:
            name, limit = self._ttft_limit
            if snap.ttft_p50_ms > limit:
                self.reason = (
                    f"TTFT p50 so far {snap.ttft_p50_ms:.0f} ms is above {name}'s limit of {limit:g} ms "
                    f"after {now:.1f} s"
                )
                return self.reason
        if self._rate is not None:
            since = max(self._warmup_s, now / 2)
            window = [(t, n) for t, n in self._samples if t >= since]
            if len(window) >= 8 and window[-1][0] - window[0][0] >= 1.5:
                slope = _slope(window)
                first = min(n for _, n in window[: max(2, len(window) // 4)])
                last = window[-1][1]
                if slope >= max(0.5, 0.1 * self._rate) and last >= max(8, 2 * first):
                    self.reason = (
                        f"backlog growing: requests in flight rose from {first} to {last} over "
                        f"{window[-1][0] - window[0][0]:.1f} s (+{slope:.1f}/s at {self._rate:g}/s offered)"
                    )
                    return self.reason
        return None


def _slope(points: list[tuple[float, int]]) -> float:
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return sum((t - mx) * (v - my) for t, v in points) / var if var else 0.0


class _Search:
    def __init__(
        self, search: CapacitySearch, path: Path, overrides: Overrides | None, observer: SearchObserver | None
    ) -> None:
        from loadbench.experiment import Experiment

        if (path / "capacity.json").exists() or (path / "study.json").exists():
            raise LoadbenchError(f"{path} already holds a study or search; choose another --out")
        self.s = search
        self.path = path
        self.overrides = overrides
        self.seed = overrides.seed if overrides is not None else None
        self.observer = observer
        self.probes: list[dict[str, Any]] = []
        self.cells: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self.created = datetime.now(UTC).isoformat()
        self.files = StudyFiles(
            path,
            {
                "kind": "capacity",
                "name": search.search_name,
                "created": self.created,
                "base": Experiment.describe_scenario(search.base),
                "vary": {"load": []},
                "repeat": 1,
            },
            ["load"],
        )
        ttft = [o for o in search.objectives if o.metric == "ttft_ms" and o.target > 0.5]
        self.ttft_limit = (ttft[0].name, min(o.limit for o in ttft)) if ttft else None
        self.need = max(requests_needed(o.target, search.confidence) for o in search.objectives)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def run(self) -> SearchResult:
        s = self.s
        if self.observer is not None:
            self.observer.search_started(self.path, s)
        load = float(s.start or 1.0)
        hp: float | None = None
        lf: float | None = None
        reason = ""
        interrupted = False
        self._write(hp, lf, "running")
        while True:
            if len(self.probes) >= s.max_probes:
                reason = f"max_probes: {s.max_probes} probes run"
                break
            if s.budget_s is not None and self._budget_left_s() < 1.0:
                reason = f"budget: {s.budget_s:g} s spent"
                break
            try:
                # While bracketing, an unsure probe that points the way the bracket is already going is
                # not measured again: a later probe moves past it. One that would end the bracket, and
                # every probe once both ends are known, may become an end, so it is settled.
                probe = self._probe(load, settle=hp is not None and lf is not None, up=lf is None, down=hp is None)
            except _ProbeCannotRun as exc:
                reason = f"probe at {s.label(load)} could not run: {exc}"
                break
            if probe.get("interrupted"):
                reason, interrupted = "interrupted", True
                break
            if probe["decision"] == "pass":
                hp = load if hp is None else max(hp, load)
            else:
                lf = load if lf is None else min(lf, load)
            self._write(hp, lf, "running")
            if lf is None:
                nxt = load * s.growth
                if s.over == "concurrency":
                    nxt = max(load + 1, math.ceil(nxt))
                if s.max_load is not None and load >= s.max_load:
                    reason = f"max_load: {s.label(load)} still passes; capacity is above the highest load allowed"
                    break
                load = min(nxt, s.max_load) if s.max_load is not None else nxt
            elif hp is None:
                nxt = math.floor(load / s.growth) if s.over == "concurrency" else load / s.growth
                floor = s.min_load or (1 if s.over == "concurrency" else float(s.start or 1.0) / s.growth**3)
                if load <= floor or nxt < floor * (1 - 1e-9):
                    reason = f"lowest load fails: even {s.label(load)} misses the SLO"
                    break
                load = nxt
            else:
                if lf - hp <= s.tolerance * hp or (s.over == "concurrency" and lf - hp <= 1):
                    reason = (
                        f"converged: {s.label(hp)} passes and {s.label(lf)} fails, "
                        f"{(lf - hp) / hp:.1%} apart (tolerance {s.tolerance:.0%})"
                    )
                    break
                load = math.floor((hp + lf) / 2) if s.over == "concurrency" else round((hp + lf) / 2, 6)
        doc = self._write(hp, lf, reason)
        return SearchResult(
            path=self.path,
            over=s.over,
            highest_passing=hp,
            lowest_failing=lf,
            stop_reason=reason,
            elapsed_s=self.elapsed(),
            probes=self.probes,
            interrupted=interrupted,
            document=doc,
        )

    def _measure_s(self, load: float, *, short: bool = False) -> float:
        """Measured seconds for a first probe at ``load``: enough requests to show the strictest
        objective met, if the server keeps up; ``probe_s`` when ``short`` (bracketing upwards)."""
        s = self.s
        rate = load if s.over == "rate" else self._estimated_rate(load)
        if short or not rate:
            return s.probe_s
        return min(s.max_probe_s, max(s.probe_s, 1.1 * self.need / rate))

    def _budget_left_s(self) -> float:
        """Seconds a probe starting now may measure within ``budget_s`` (after its warm-up and
        about a second to start and drain); unbounded without a budget."""
        if self.s.budget_s is None:
            return math.inf
        return self.s.budget_s - self.elapsed() - self.s.warmup_s - 1.0

    def _estimated_rate(self, users: float) -> float | None:
        """Requests/s at ``users``, from the nearest earlier probe (scaled, optimistic)."""
        seen = [
            (p["load"], p["figures"].get("requests_per_s")) for p in self.probes if p["figures"].get("requests_per_s")
        ]
        if not seen:
            return None
        load, rps = min(seen, key=lambda x: abs(x[0] - users))
        return rps * max(1.0, users / load) if users >= load else rps * users / load

    def _probe(self, load: float, *, settle: bool = True, up: bool = False, down: bool = False) -> dict[str, Any]:
        """Probe ``load``: measure it (again, longer and pooled, while unsure: module docstring,
        point 4), decide it, and record it in ``probes``; ``{"interrupted": True}`` on Ctrl-C.
        Raises ``_ProbeCannotRun`` when a run cannot start."""
        s = self.s
        index = len(self.probes)
        measure_s = min(self._measure_s(load, short=up and not settle), self._budget_left_s())
        pooled = {o.name: Counts(0, 0) for o in s.objectives}
        run_dirs: list[str] = []
        early: str | None = None
        figures: dict[str, Any] = {}
        verdict: dict[str, Any] = {}
        measured_s = 0.0
        started = self.elapsed()
        for attempt in range(s.remeasure + 1):
            measured = self._measure(load, index, attempt, measure_s)
            if measured is None:
                return {"interrupted": True}
            run_dirs.append(measured.run_dir)
            figures = measured.figures
            measured_s += measured.window_s
            pooled = {k: pooled[k] + measured.counts[k] for k in pooled}
            verdict = judge(s.objectives, pooled, s.confidence)
            if measured.early_stop is not None:
                early = measured.early_stop
                break
            if verdict["verdict"] != "unsure":
                break
            if not settle:
                point_ok = _point_ok(verdict)
                if (up and point_ok) or (down and not point_ok):
                    break
            if self._budget_left_s() < 1.0:
                break
            measure_s = min(s.max_probe_s, 2 * measure_s, self._budget_left_s())
        per = verdict["objectives"]
        binding = per[verdict["binding"]]
        decision, decided_by = _decision(verdict, early)
        lag_p99 = _dispatch_lag_p99(self.path / run_dirs[-1])
        probe = {
            "index": index,
            "load": load,
            "label": s.label(load),
            "attainment": binding["attainment"],
            "ci_low": binding["ci_low"],
            "ci_high": binding["ci_high"],
            "objective": verdict["binding"],
            "verdict": verdict["verdict"],
            "decision": decision,
            "decided_by": decided_by,
            "early_stop": early,
            "run_dir": run_dirs[-1],
            "run_dirs": run_dirs,
            "measurements": len(run_dirs),
            "requests": binding["n"],
            "measured_s": measured_s,
            "elapsed_s": self.elapsed() - started,
            "objectives": per,
            "figures": {**figures, "dispatch_lag_ms_p99": lag_p99, "offered": load, "unit": s.unit},
            "warnings": _lag_warnings(lag_p99),
        }
        self.probes.append(probe)
        if self.observer is not None:
            self.observer.probe_ended(probe)
        return probe

    def _measure(self, load: float, index: int, attempt: int, measure_s: float) -> _Measured | None:
        """One run of probe ``index`` at ``load``, ``measure_s`` seconds measured, kept as a cell
        (its row in cells.csv kept current); ``None`` when it was interrupted. Raises
        ``_ProbeCannotRun`` (the cell marked failed, the files written) when it could not run."""
        from loadbench.experiment import Experiment

        cell_id = f"c{len(self.cells):03d}"
        run_dir = self.path / "cells" / cell_id
        scenario = self._probe_scenario(load, measure_s, cell_id, run_dir)
        watch = self._probe_watch(index, load, attempt, measure_s)
        entry = self._add_cell(cell_id, load, attempt, index)
        try:
            result = Experiment(scenario).run(observer=watch)
        except KeyboardInterrupt:
            entry.update(status="interrupted", error="interrupted")
            self.rows[-1] = row_for(entry, None)
            return None
        except LoadbenchError as exc:
            entry.update(status="failed", error=str(exc))
            self.rows[-1] = row_for(entry, None)
            self._write(None, None, "running")
            raise _ProbeCannotRun(str(exc)) from None
        status = result.run.get("status")
        entry["status"] = "interrupted" if status == "interrupted" else "finished"
        figures = cell_figures(run_dir)
        self.rows[-1] = row_for(entry, figures)
        if status == "interrupted":
            return None
        return _Measured(
            run_dir=entry["run_dir"],
            figures=figures,
            window_s=result.summary.get("window", {}).get("duration_s") or 0.0,
            counts=count(self.s.objectives, read_records(run_dir)),
            early_stop=watch.reason,
        )

    def _probe_scenario(self, load: float, measure_s: float, cell_id: str, run_dir: Path) -> Scenario:
        """The base scenario at ``load``: a warm-up, then ``measure_s`` measured; a seed of its own
        per cell; the command line's target, if it gave one."""
        s = self.s
        scenario = s.base.replace(
            load=s.plan_for(load),
            stop=Stop(duration_s=s.warmup_s + measure_s, warmup_s=s.warmup_s, drain_s=s.drain_s),
            name=f"{s.search_name}-{cell_id}",
            out_dir=run_dir,
            seed=(self.seed if self.seed is not None else s.base.seed) + len(self.cells),
        )
        if self.overrides is not None and self.overrides.target is not None:
            scenario = Overrides(target=self.overrides.target).apply(scenario)
        return scenario

    def _probe_watch(self, index: int, load: float, attempt: int, measure_s: float) -> _ProbeWatch:
        """The run's observer: the caller's, wrapped to end the probe early when the scenario's
        search allows it."""
        s = self.s
        inner = self.observer.probe_started(index, load, attempt, measure_s) if self.observer else None
        watch = _ProbeWatch(
            inner,
            rate_per_s=load if s.over == "rate" else None,
            warmup_s=s.warmup_s,
            measure_s=measure_s,
            ttft_limit=self.ttft_limit if s.early_stop else None,
        )
        if not s.early_stop:
            watch.early_stop = lambda progress: None  # type: ignore[method-assign]
        return watch

    def _add_cell(self, cell_id: str, load: float, attempt: int, index: int) -> dict[str, Any]:
        """A running cell for the probe's run, with its row, and its load among the varied values."""
        label = self.s.label(load)
        entry = {
            "id": cell_id,
            "values": {"load": label},
            "repeat": attempt,
            "status": "running",
            "run_dir": f"cells/{cell_id}",
            "error": None,
            "probe": index,
        }
        self.cells.append(entry)
        self.rows.append(row_for(entry, None))
        if label not in self.files.head["vary"]["load"]:
            self.files.head["vary"]["load"].append(label)
        return entry

    def _write(self, hp: float | None, lf: float | None, reason: str) -> dict[str, Any]:
        s = self.s
        doc = {
            "kind": "capacity",
            "name": s.search_name,
            "created": self.created,
            "over": s.over,
            "unit": s.unit,
            "arrivals": s.arrivals if s.over == "rate" else None,
            "slo": dict(s.slo),
            "objectives": [o.describe() for o in s.objectives],
            "confidence": s.confidence,
            "tolerance": s.tolerance,
            "requests_needed": self.need,
            "answer": {"highest_passing": hp, "lowest_failing": lf},
            "stop_reason": reason,
            "elapsed_s": self.elapsed(),
            "probes": self.probes,
        }
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / "capacity.json", doc)
        self.files.write(self.cells, self.rows)
        return doc


@dataclass(frozen=True, slots=True)
class _Measured:
    """One finished run of a probe: its cell's run directory (relative), figures, measured
    window, objective counts, and the early stop's reason (``None``: it ran its course)."""

    run_dir: str
    figures: dict[str, Any]
    window_s: float
    counts: Mapping[str, Counts]
    early_stop: str | None


def _decision(verdict: dict[str, Any], early: str | None) -> tuple[str, str]:
    """A probe's decision ("pass" or "fail") and what decided it: an early stop fails it, an
    interval clear of the target decides it, else the point estimate does (and says so)."""
    if early is not None:
        return "fail", "early stop"
    if verdict["verdict"] == "unsure":
        return ("pass" if _point_ok(verdict) else "fail"), "point estimate (interval still straddles the target)"
    return verdict["verdict"], "confidence interval"


def _lag_warnings(lag_p99: float | None) -> list[str]:
    """A warning when the client fell behind its own schedule: the probe then measured the load
    generator's host as well as the server."""
    if lag_p99 is None or lag_p99 <= _LAG_WARN_MS:
        return []
    return [
        f"the client fell behind its own schedule (dispatch lag p99 {lag_p99:.0f} ms): the load generator's "
        "host may be saturated, so this probe measured it as well as the server"
    ]


def _point_ok(verdict: dict[str, Any]) -> bool:
    """Whether every objective's point estimate reaches its target."""
    return all(v["attainment"] is not None and v["attainment"] >= v["target"] for v in verdict["objectives"].values())


class _ProbeCannotRun(Exception):
    pass


# Dispatch lag (sent - intended) above this at p99 means the client, not only the server, fell behind.
_LAG_WARN_MS = 50.0


def _dispatch_lag_p99(run_dir: Path) -> float | None:
    import orjson

    try:
        summary = orjson.loads((run_dir / "summary.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return ((summary.get("metrics") or {}).get("dispatch_lag_ms") or {}).get("p99")
