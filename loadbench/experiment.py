"""Experiment: wires workload → deployment → scheduler → recorder → results for one run.

``Experiment(workload=Prefill(), deployment=Local("llama3.2"), reasoning=False, quant=Q3B()).run()``
is the seed's API; every ``Scenario`` field may be given, or a ``Scenario`` passed whole.

The order of a run: prepare the run directory (every path problem is an error before anything
starts), resolve the target (start the embedded simulator when asked, its trace going into the run
directory), measure the idle power baseline, open the deployment's client (which fails fast on a
missing key, a wrong URL or a missing model), then run the scheduler while the recorder counts and
the run writer flushes. On the way out, whatever happened (a stop rule, Ctrl-C, SIGTERM, the
simulator dying, a full disk), the records, the interval log and the summary are written; a run
that never started leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from loadbench.contract.errors import LoadbenchError, RunAborted
from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.contract.sender import Sender
from loadbench.deployments.base import ClientSettings
from loadbench.gates import Gate, LiveFigures, LiveJudge, check_paths, evaluate, schema
from loadbench.load.calm_gc import calm_gc
from loadbench.load.executors import Driver, resolve_executor
from loadbench.load.plans import NS_PER_S, Concurrency
from loadbench.load.scheduler import RunTiming, Scheduler
from loadbench.metrics.drift import DriftTracker, default_window_s
from loadbench.metrics.facts import RunFacts
from loadbench.metrics.harness import HarnessMonitor
from loadbench.metrics.recorder import METRICS, Recorder, Snapshot
from loadbench.metrics.slo import SloTally
from loadbench.metrics.summary import build_summary, load_summary
from loadbench.results import run_info
from loadbench.results.run import RunResult
from loadbench.results.run_dir import (
    RunWriter,
    WriteFailure,
    discard_run_dir,
    prepare_run_dir,
    release_reserve,
    write_json,
)
from loadbench.results.run_info import RunClock
from loadbench.scenario import Scenario, describe_value
from loadbench.urls import redact_url
from loadbench.workloads.report import lengths_outcome, lengths_plan

_SNAPSHOT_S = 0.25
_SIM_POLL_S = 0.2  # how soon a dead embedded simulator is noticed
_GATE_CHECK_S = 0.5
_METRIC_KEYS = tuple(m.key for m in METRICS)


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """Where the run's requests go: ``kind`` is "sim", "url" or "deployment"."""

    kind: str
    base_url: str
    dialect: str
    model: str

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "base_url": redact_url(self.base_url), "dialect": self.dialect, "model": self.model}


@dataclass(frozen=True, slots=True)
class Progress:
    """What an observer sees a few times a second while the run goes."""

    snapshot: Snapshot
    scheduled: int
    in_flight: int
    duration_s: float | None
    requests: int | None
    stopping: bool


class Observer(Protocol):
    """Receives run events; the CLI's live display implements it. Methods must return quickly."""

    def target_ready(self, target: TargetInfo, out_dir: Path) -> None: ...

    def progress(self, progress: Progress) -> None: ...

    def stopping(self, reason: str) -> None:
        """The run is stopping early, or changing how it stops: ``reason`` is one sentence saying
        what happened and what the run does now (fit to print as it is)."""
        ...


# An observer may also offer ``early_stop(progress) -> str | None``: a reason ends the run as if
# its stop rule had (drained, status "finished", stopped_by "early_stop"). Capacity probes use it
# to cut short a load that is clearly past what the server can take.


class _Silent:
    def target_ready(self, target: TargetInfo, out_dir: Path) -> None:
        pass

    def progress(self, progress: Progress) -> None:
        pass

    def stopping(self, reason: str) -> None:
        pass


def _pool_size(scenario: Scenario) -> int:
    if isinstance(scenario.load, Concurrency):
        return scenario.load.users
    cap = getattr(scenario.load, "max_concurrency", None)
    return cap or 0


class Experiment:
    """One run of one scenario. ``run()`` blocks; ``run_async()`` is the same inside a loop."""

    def __init__(self, scenario: Scenario | None = None, /, **fields: Any) -> None:
        if scenario is not None and fields:
            raise TypeError("pass a Scenario or its fields, not both")
        self.scenario = scenario if scenario is not None else Scenario(**fields)

    def run(self, *, observer: Observer | None = None) -> RunResult:
        """Run to the stop rule (or Ctrl-C / SIGTERM) and return the results; uses uvloop if present.

        Raises ``ConfigError`` for an unusable run directory before anything starts, and
        ``RunAborted`` (its ``result`` holds what was measured, all of it written) when the run had
        to stop early: its embedded simulator died, or its results could not be written.
        """
        loop_factory = None
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            pass
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(self.run_async(observer=observer))

    async def run_async(self, *, observer: Observer | None = None) -> RunResult:
        scenario = self.scenario
        observer = observer or _Silent()
        judge = self.check_gates(scenario)  # bad gates are bad input: before the target is touched
        out_dir = self._out_dir(scenario)
        created = prepare_run_dir(out_dir, overwrite=scenario.overwrite)
        sim = None
        try:
            with contextlib.ExitStack() as stack:
                target, sim = self._resolve_target(scenario, stack, out_dir)
                meter = self._energy_meter(scenario, stack)
                if meter is not None:
                    meter.stream_csv(out_dir / "energy.csv")
                result = await self._run(scenario, target, out_dir, meter, observer, sim, judge)
        except BaseException:
            if not (out_dir / "run.json").exists():  # it never started: leave nothing behind
                discard_run_dir(out_dir, created=created)
            raise
        finally:
            release_reserve(out_dir)
            if sim is not None:  # closed now, so its ground truth is complete
                _write_sim_trace(sim, out_dir)
        if sim is None and _is_loopback(target.base_url):  # a simulator started by hand keeps its trace
            await _fetch_sim_trace(target.base_url, result.run["run_id"], out_dir)
        return result

    # -- pieces ---------------------------------------------------------------------------------

    @staticmethod
    def _resolve_target(scenario: Scenario, stack: contextlib.ExitStack, out_dir: Path) -> tuple[TargetInfo, Any]:
        """Where requests go, and the simulator process when the target is "sim" (its trace is
        written into ``out_dir`` as it goes, unless the scenario put it elsewhere)."""
        deployment = scenario.deployment
        if scenario.target == "sim":
            from loadbench.results.verify import SIM_TRACE
            from loadbench.sim import SimConfig, SimProcess

            config = scenario.sim or SimConfig()
            if config.trace and config.trace_path is None:
                config = config.with_(trace_path=str((out_dir / SIM_TRACE).absolute()))
            sim = stack.enter_context(SimProcess(config))
            return TargetInfo("sim", sim.base_url, deployment.dialect, deployment.model_name), sim
        if scenario.target is not None:
            return TargetInfo("url", scenario.target, deployment.dialect, deployment.model_name), None
        url = deployment.default_base_url()
        return TargetInfo("deployment", url, deployment.dialect, deployment.model_name), None

    @staticmethod
    def _out_dir(scenario: Scenario) -> Path:
        if scenario.out_dir is not None:
            return Path(scenario.out_dir)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        base = Path("results") / f"{scenario.name}-{stamp}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return path

    @staticmethod
    def _energy_meter(scenario: Scenario, stack: contextlib.ExitStack) -> Any:
        if scenario.energy is False:
            return None
        from loadbench.energy import EnergyConfig, EnergyMeter

        config = scenario.energy if scenario.energy is not None else EnergyConfig()
        return stack.enter_context(EnergyMeter(config))

    @classmethod
    def summary_skeleton(cls, scenario: Scenario) -> dict[str, Any]:
        """The summary an empty run of ``scenario`` would write: every section and key a real run
        has (values ``None`` or 0), made by the same builder. Gates are checked against it."""
        target = TargetInfo("sim", "http://127.0.0.1", scenario.deployment.dialect, "")
        skeleton = cls._summarize(
            scenario,
            target,
            Recorder(),
            scheduled=0,
            timing=None,
            meter=None,
            facts=RunFacts(),
            slo=SloTally(scenario.slo) if scenario.slo else None,
            drift=DriftTracker(1.0),
            harness=HarnessMonitor(Path(os.devnull), start_ns=0),
        )
        if scenario.energy is not False:
            from loadbench.energy import EnergyConfig
            from loadbench.energy import report as energy_report

            skeleton["energy"] = energy_report.summary(
                energy_report.Metered(()), energy_report.Attribution((0, 0), (0, 0), output_tokens=0, requests=0),
                scenario.energy or EnergyConfig(),
            )
        if scenario.check_answers:
            skeleton.setdefault("accuracy", {"checked": 0, "correct": 0, "unchecked": 0, "accuracy": None})
        return skeleton

    @classmethod
    def check_gates(cls, scenario: Scenario) -> LiveJudge:
        """Raise ``ConfigError`` for a gate naming a figure the summary will not have, or asking to
        abort where no early verdict is possible; return the judge of the abort gates."""
        if not scenario.gates:
            return LiveJudge((), _METRIC_KEYS, None)
        check_paths(scenario.gates, schema(cls.summary_skeleton(scenario)), _METRIC_KEYS)
        needs_bound = any(g.abort_on_fail for g in scenario.gates)
        return LiveJudge(scenario.gates, _METRIC_KEYS, _max_requests(scenario) if needs_bound else None)

    async def _run(
        self, scenario: Scenario, target: TargetInfo, out_dir: Path, meter: Any, observer: Observer, sim: Any,
        judge: LiveJudge,
    ) -> RunResult:
        """Measure the load against ``target`` and write every result file.

        The steps, in order: run.json's first form and the measures that will count the records;
        the deployment's client, whose checks decide whether the run started (run.json is written
        once they pass); the load, with everything that writes and watches it; then summary.json
        and run.json's ending. Everything opened is closed whatever fails: the client and the
        load's parts on one exit stack, wound down before the summary is made; the signal
        handlers on another, held until the last file is written (a Ctrl-C never cuts it short).
        """
        clock = RunClock.now()
        info = run_info.started(
            secrets.token_hex(4), scenario=self.describe_scenario(scenario), target=target.describe(), clock=clock
        )
        measures = _Measures.open(scenario, target, info, observer)
        settings = _client_settings(scenario, target)
        async with contextlib.AsyncExitStack() as until_written:
            async with contextlib.AsyncExitStack() as load_scope:
                sender = await load_scope.enter_async_context(
                    scenario.deployment.open(base_url=target.base_url, settings=settings)
                )
                target = _target_ready(sender, target, info, out_dir, observer)
                load = _Load(
                    load_scope, scenario, target, settings, info["run_id"], clock, measures, sender, out_dir, observer
                )
                until_written.enter_context(_signals(load.scheduler, observer))
                await load.run(load_scope, meter, sim, judge)
                info["client"] = {"stamping": sender.stamping}  # a fall-back to reader stamps mid-run shows
            summary = self._conclude(scenario, target, measures, load, meter, observer, out_dir, info)
        return _result(out_dir, summary, info, load)

    @classmethod
    def _conclude(
        cls, scenario: Scenario, target: TargetInfo, measures: _Measures, load: _Load, meter: Any,
        observer: Observer, out_dir: Path, info: dict[str, Any],
    ) -> dict[str, Any]:
        """Write summary.json, then run.json with the run's ending, and return the summary.

        A file that cannot be written is one more reason the run stopped (``load.aborted``); the
        summary is returned all the same (the CLI prints it instead).
        """
        release_reserve(out_dir)  # its room is for what follows, should the disk be full
        summary = cls._final_summary(scenario, target, measures, load, meter, observer)
        try:
            write_json(out_dir / "summary.json", summary)
        except OSError as exc:
            load.aborted.append(f"cannot write summary.json: {exc.strerror or exc} (it is printed instead)")
        if meter is not None:
            meter.flush_csv()
            if meter.csv_error:
                summary.setdefault("energy", {})["csv_error"] = meter.csv_error
        info.update(
            run_info.ended(
                failure=load.failure,
                aborted=load.aborted,
                interrupted=load.scheduler.interrupted,  # a signal while the results were written counts too
                gate_lost=load.gates_lost[0].expr if load.gates_lost else None,
                stopped_by=load.timing.stopped_by if load.timing else "error",
            )
        )
        try:
            write_json(out_dir / "run.json", info)
        except OSError as exc:
            load.aborted.append(f"cannot write run.json: {exc.strerror or exc}")
        return summary

    @classmethod
    def _final_summary(
        cls, scenario: Scenario, target: TargetInfo, measures: _Measures, load: _Load, meter: Any, observer: Observer
    ) -> dict[str, Any]:
        """The finished run's summary: every section ``_summarize`` makes, and those only a real
        run has: the workers, the server's metrics, the gates' verdicts, the length calibration's
        outcome (its warnings noted to the observer), records the writer could not write."""
        hybrid = load.report() if callable(load.report) else None
        summary = cls._summarize(
            scenario, target, measures.recorder, scheduled=load.scheduler.scheduled, timing=load.timing, meter=meter,
            facts=measures.facts, slo=measures.slo, drift=measures.drift, harness=load.harness, hybrid=hybrid,
        )  # fmt: skip
        if isinstance(load.scheduler, Driver):
            summary["workers"] = load.scheduler.worker_report()
        if load.scraped is not None:
            summary["server_metrics"] = load.scraped
        if scenario.gates:
            aborted_by = load.gates_lost[0].expr if load.gates_lost else None
            summary["gates"] = evaluate(scenario.gates, summary, _METRIC_KEYS, aborted_by=aborted_by)
        lengths = measures.lengths
        if lengths is not None:  # the same dict as run.json's "lengths": its ending goes there too
            lengths.update(lengths_outcome(measures.stream, summary["lengths"], measures.facts.indices))
            summary["lengths"]["calibration"] = {k: v for k, v in lengths.items() if k != "note"}
            for warning in lengths.get("warnings", ()):
                _note(observer, f"warning: {warning}")
        if load.writer.records_unwritten:
            summary["requests"]["unwritten_records"] = load.writer.records_unwritten
        return summary

    @staticmethod
    def _summarize(
        scenario: Scenario,
        target: TargetInfo,
        recorder: Recorder,
        *,
        scheduled: int,
        timing: RunTiming | None,
        meter: Any,
        facts: RunFacts,
        slo: SloTally | None,
        drift: DriftTracker,
        harness: HarnessMonitor,
        hybrid: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "scenario": scenario.name,
            "target": target.describe(),
            "stopped_by": timing.stopped_by if timing else "error",
            "run_duration_s": (timing.end_ns - timing.start_ns) / 1e9 if timing else None,
        }
        goodput_ok = slo.met_all if slo is not None else None
        summary.update(build_summary(recorder, scheduled=scheduled, goodput_ok=goodput_ok))
        scheduling_ns = timing.scheduling_stopped_ns - timing.start_ns if timing else 0
        summary["load"] = load_summary(describe_value(scenario.load), scheduled, scheduling_ns)
        if slo is not None:
            summary["slo"] = slo.report(summary["window"]["duration_s"])
        summary["lengths"] = facts.lengths.report()
        if facts.server:
            summary["server"] = facts.server_summary()
        if (accuracy := facts.accuracy()) is not None:
            summary["accuracy"] = accuracy
        summary["drift"] = drift.report(
            origin_ns=timing.start_ns if timing else 0,
            first_ns=recorder.window_first_intended_ns,
            last_ns=recorder.window_last_end_ns,
        )
        summary["harness"] = harness.report(requests=sum(recorder.status.values()))
        if meter is not None and timing is not None:
            window = (
                recorder.window_first_intended_ns or timing.start_ns,
                recorder.window_last_end_ns or timing.end_ns,
            )
            summary["energy"] = meter.report(
                window_ns=window,
                run_ns=(timing.start_ns, timing.end_ns),
                output_tokens=recorder.measured_output_tokens,
                requests=recorder.measured_ok,
                location=(
                    "hybrid" if hybrid is not None
                    else "local" if target.kind == "sim" or _is_loopback(target.base_url)
                    else scenario.deployment.location
                ),
                remote_output_tokens=hybrid["remote"]["output_tokens"] if hybrid is not None else None,
            )
        if hybrid is not None:
            from loadbench.hybrid.deployment import with_energy

            summary["hybrid"] = with_energy(hybrid, summary.get("energy"), scenario.deployment.remote_energy)
        return summary

    @staticmethod
    def describe_scenario(scenario: Scenario) -> dict[str, Any]:
        """The resolved scenario for run.json (see ``Scenario.describe``)."""
        return scenario.describe()


# -- the steps of a run -----------------------------------------------------------------------


def _client_settings(scenario: Scenario, target: TargetInfo) -> ClientSettings:
    """What the deployment's client is opened with: a connection pool the size of the load's
    concurrency, the scenario's timeouts, reasoning and quant, and answer text kept only when the
    run checks answers."""
    return ClientSettings(
        pool_size=_pool_size(scenario),
        timeouts=scenario.timeouts,
        reasoning=scenario.reasoning,
        quant=scenario.quant,
        simulated=target.kind == "sim",
        keep_text=scenario.check_answers,
    )


@dataclass(slots=True)
class _Measures:
    """What counts the run's records as they arrive: the recorder (histograms and counters, each
    closed interval handed to the drift tracker), the summary's other facts, the SLO tally, and
    the prompt stream with its length plan (``lengths``, ``None`` where the workload plans none)."""

    recorder: Recorder
    drift: DriftTracker
    window_s: float  # the drift window, after which the harness takes its memory baseline
    stream: Any
    facts: RunFacts
    slo: SloTally | None
    lengths: dict[str, Any] | None

    @classmethod
    def open(cls, scenario: Scenario, target: TargetInfo, info: dict[str, Any], observer: Observer) -> _Measures:
        """Make the measures and open the workload's prompt stream (its prompts measured against
        the target where it tokenizes); the length plan goes into ``info`` (run.json) and its note
        to the observer."""
        stop = scenario.stop
        window_s = scenario.drift_window_s or default_window_s(
            None if stop.duration_s is None else stop.duration_s - stop.warmup_s - stop.cooldown_s,
            scenario.hlog_interval_s,
        )
        drift = DriftTracker(window_s)
        recorder = Recorder(on_interval=drift.add)
        stream = _open_stream(scenario, target)
        facts = RunFacts(getattr(scenario.workload, "check", None))
        slo = SloTally(scenario.slo) if scenario.slo else None
        lengths = lengths_plan(stream, stop, users=_pool_size(scenario))
        if lengths is not None:
            info["lengths"] = lengths
            _note(observer, lengths["note"])
        return cls(recorder, drift, window_s, stream, facts, slo, lengths)

    def on_record(self, writer: RunWriter) -> Callable[[RequestRecord, Prompt | None], None]:
        """The scheduler's ``on_record`` (hot path, no I/O): each finished record counted, queued
        for ``writer``, shown to the stream (its length calibration) and, when measured, judged
        against the SLOs and, when ``ok``, tallied in the facts."""
        recorder, slo, facts = self.recorder, self.slo, self.facts
        observe = getattr(self.stream, "observe", None)

        def on_record(record: RequestRecord, prompt: Prompt | None) -> None:
            recorder.add(record)
            writer.add(record)
            if observe is not None and prompt is not None:
                observe(prompt, record)
            if record.phase == "measured":
                if slo is not None:
                    slo.add(record)
                if record.status == "ok":
                    facts.add(record, prompt)

        return on_record


def _target_ready(
    sender: Sender, target: TargetInfo, info: dict[str, Any], out_dir: Path, observer: Observer
) -> TargetInfo:
    """The target as the opened client resolved it; run.json is written (a run directory without
    it never started, and is removed) and the observer told, once it exists and the target answered."""
    # The model actually sent (a preset resolved with the run's quant and reasoning, or the
    # server's own model picked), known only now that the target has been asked.
    sent_model = sender.model
    if sent_model:
        target = dataclasses.replace(target, model=sent_model)
        info["target"] = target.describe()
        deployment_info = info["scenario"]["deployment"]
        deployment_info["tag" if "tag" in deployment_info else "model"] = sent_model
    info["client"] = {"stamping": sender.stamping}  # where arrivals are stamped (docs/metrics.md)
    write_json(out_dir / "run.json", info)
    observer.target_ready(target, out_dir)
    return target


class _Load:
    """The load phase: the scheduler (or the driver of the workers that run the plan), the writer
    its records go to, and what watches it: the harness sampler, the metrics scraper, the energy
    marks, the live ticker, the abort gates and the embedded simulator.

    Every part is closed whatever fails: its closer goes on the caller's exit stack before the
    part starts, in the reverse of the order a load is wound down in (watchers, harness sampler,
    the energy mark, writer, scraper). ``run`` does not raise what the scheduler raised: it is
    kept in ``failure``, so the summary of what was measured is still written.
    """

    def __init__(
        self, stack: contextlib.AsyncExitStack, scenario: Scenario, target: TargetInfo, settings: ClientSettings,
        run_id: str, clock: RunClock, measures: _Measures, sender: Any, out_dir: Path, observer: Observer,
    ) -> None:  # fmt: skip
        self.aborted: list[str] = []  # why the run had to stop early, in order
        self.gates_lost: list[Gate] = []
        self.timing: RunTiming | None = None
        self.failure: BaseException | None = None
        self.scraped: dict[str, Any] | None = None
        # A deployment with figures of its own to summarise (a hybrid's protocol and side split).
        self.report = getattr(sender, "report", None)
        self._scenario, self._recorder, self._observer = scenario, measures.recorder, observer
        self._scraper = _scraper(scenario, target, out_dir, clock)
        stack.push_async_callback(self._close_scraper)
        self.scheduler: Scheduler | Driver | None = None
        self.writer = RunWriter(
            out_dir,
            recorder=measures.recorder,
            start_ns=clock.perf_counter_ns,
            start_epoch_s=clock.epoch_s,
            hlog_interval_s=scenario.hlog_interval_s,
            chunk_times=scenario.chunk_times,
            on_failure=self._write_failed,
        )
        stack.push_async_callback(self.writer.close)
        self.scheduler = scheduler = _scheduler(scenario, target, settings, run_id, sender, measures, self.writer)
        # The RSS baseline for growth is taken once start-up (pools, buffers) is past: after the
        # warm-up and the first drift window.
        self.harness = HarnessMonitor(
            out_dir / "harness.jsonl",
            start_ns=clock.perf_counter_ns,
            in_flight=lambda: scheduler.in_flight,
            finished=lambda: measures.recorder.status.total(),
            baseline_after_s=scenario.stop.warmup_s + measures.window_s,
        )

    async def run(self, stack: contextlib.AsyncExitStack, meter: Any, sim: Any, judge: LiveJudge) -> None:
        """Start the writer and the watchers, then drive the load to its stop; ``timing`` holds
        how it went, or ``failure`` what it raised."""
        scheduler, recorder, observer = self.scheduler, self._recorder, self._observer
        if meter is not None:
            stack.callback(meter.mark, "load_end")
        if self.writer.failure is not None:  # the disk was full from the start (already reported)
            scheduler.request_stop("write_failed")
        self.writer.start()
        stack.push_async_callback(self.harness.close)
        self.harness.start()
        if judge:
            self._watch(stack, _watch_gates(judge, scheduler, recorder, observer, self.gates_lost))
        if self._scraper is not None:
            self._scraper.start()
        if meter is not None:
            meter.mark("load_start")
        self._watch(stack, _tick(scheduler, recorder, self._scenario, observer))
        if sim is not None:
            self._watch(stack, _watch_sim(sim, scheduler, observer, self.aborted))
        try:
            with calm_gc():  # the scheduler calms it too; here it also covers the run's start-up
                self.timing = await scheduler.run()
        except BaseException as exc:  # a harness bug or a hard cancel: still write what was measured
            self.failure = exc

    @staticmethod
    def _watch(stack: contextlib.AsyncExitStack, watcher: Coroutine[Any, Any, None]) -> None:
        """Run ``watcher`` beside the load, cancelled when the load winds down."""
        stack.callback(asyncio.get_running_loop().create_task(watcher).cancel)

    def _write_failed(self, failure: WriteFailure) -> None:
        self.aborted.append(f"{failure}; the run was stopped")
        self._observer.stopping(f"{failure}: stopping the run, draining in-flight requests into the summary")
        if self.scheduler is not None:
            self.scheduler.request_stop("write_failed")

    async def _close_scraper(self) -> None:
        if self._scraper is not None:
            self.scraped = await self._scraper.close()


def _scheduler(
    scenario: Scenario, target: TargetInfo, settings: ClientSettings, run_id: str, sender: Any, measures: _Measures,
    writer: RunWriter,
) -> Any:
    """What runs the plan: with workers, the driver whose workers each open their own client and
    send their records here; otherwise a scheduler sending the stream's prompts through ``sender``."""
    on_record = measures.on_record(writer)
    executor = resolve_executor(scenario.executor, scenario.workers)
    if executor is not None:
        return Driver(
            scenario=scenario,
            executor=executor,
            base_url=target.base_url,
            simulated=target.kind == "sim",
            settings=settings,
            run_id=run_id,
            on_record=on_record,
        )
    return Scheduler(
        plan=scenario.load,
        stop=scenario.stop,
        sender=sender,
        prompts=_prompts(measures.stream),
        on_record=on_record,
        run_id=run_id,
        seed=scenario.seed,
        keep_text=scenario.check_answers,
    )


def _scraper(scenario: Scenario, target: TargetInfo, out_dir: Path, clock: RunClock) -> Any:
    """The target's Prometheus scraper, not yet started, when the scenario asks for one."""
    if not scenario.scrape_metrics:
        return None
    from loadbench.metrics.prometheus import MetricsScraper, metrics_url

    explicit = scenario.scrape_metrics if isinstance(scenario.scrape_metrics, str) else None
    return MetricsScraper(
        metrics_url(target.base_url, explicit),
        out_dir / "server_metrics.jsonl",
        start_ns=clock.perf_counter_ns,
        interval_s=scenario.scrape_interval_s,
    )


@contextlib.contextmanager
def _signals(scheduler: Any, observer: Observer) -> Iterator[None]:
    """Ctrl-C and SIGTERM handled as ``_install_signals`` says while the block runs."""
    loop = asyncio.get_running_loop()
    installed = _install_signals(loop, scheduler, observer)
    try:
        yield
    finally:
        _remove_signals(loop, installed)


def _result(out_dir: Path, summary: dict[str, Any], info: dict[str, Any], load: _Load) -> RunResult:
    """The run's result, its files written: raises what the scheduler raised, or ``RunAborted``
    (holding the result) when the run had to stop early."""
    if load.failure is not None:
        raise load.failure
    result = RunResult(path=out_dir, summary=summary, run=info)
    if load.aborted:
        raise RunAborted("; ".join(load.aborted) + f"; what was measured is in {out_dir}", result)
    return result


def _token_counter(target: TargetInfo) -> Any:
    """Count prompt tokens with the target's own /tokenize where it is ours or on this host.

    Remote APIs get no probe (it would be an unauthenticated request to a provider); their prompts
    are sized by an estimate that calibrates itself from the usage counts of the first requests.
    """
    if target.kind == "sim" or _is_loopback(target.base_url):
        from loadbench.workloads import auto_counter

        return auto_counter(target.base_url)
    return None


# Prompts measured against a tokenizing server before the load: the planned requests (warm-up
# included) up to this many, or this many for a timed run; the rest are sized by the model the
# measurements fitted.
_EXACT_PROMPTS_MAX = 512
_EXACT_PROMPTS_TIMED = 256


def _open_stream(scenario: Scenario, target: TargetInfo) -> Any:
    counter = _token_counter(target)
    if counter is None or getattr(counter, "local", True):
        return scenario.workload.open(seed=scenario.seed, counter=counter)
    from loadbench.workloads.base import ExactLengths

    planned = scenario.stop.requests
    prompts = min(planned, _EXACT_PROMPTS_MAX) if planned else _EXACT_PROMPTS_TIMED
    return scenario.workload.open(seed=scenario.seed, counter=counter, exact=ExactLengths(prompts=prompts))


def _note(observer: Observer, text: str) -> None:
    note = getattr(observer, "note", None)
    if callable(note):
        note(text)


def _write_sim_trace(sim: Any, out_dir: Path) -> None:
    """Keep the simulator's ground truth beside the records, for ``loadbench verify``, when the
    scenario sent it elsewhere (by default the simulator writes it there itself, as it goes)."""
    import orjson

    from loadbench.results.verify import SIM_TRACE

    own = (out_dir / SIM_TRACE).absolute()
    if sim.trace_path is None or Path(sim.trace_path).absolute() == own or not (out_dir / "run.json").exists():
        return
    rows = sim.read_trace()
    if rows:
        (out_dir / SIM_TRACE).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


async def _fetch_sim_trace(base_url: str, run_id: str, out_dir: Path) -> None:
    """Keep a hand-started loadbench simulator's ground truth for this run beside the records.

    Asks the target's origin for ``/sim/trace`` (a loopback target only: the request says nothing
    a server on this host could misuse); a server that is not a loadbench simulator answers
    otherwise and nothing is written. Only this run's requests (ids ``<run_id>-N``) are kept.
    """
    from loadbench.results.verify import SIM_TRACE, fetch_trace

    try:
        # A short timeout: a target that is not a simulator, or one hung under the run's load,
        # must not hold up the end of the run.
        rows = await asyncio.to_thread(fetch_trace, base_url, run_id, timeout_s=3.0)
    except LoadbenchError:
        return
    if rows:
        import orjson

        (out_dir / SIM_TRACE).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def _prompts(stream: Any) -> Iterator[Prompt]:
    return stream if hasattr(stream, "__next__") else iter(stream)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def _install_signals(loop: asyncio.AbstractEventLoop, scheduler: Scheduler, observer: Observer) -> list[int]:
    """Ctrl-C / SIGTERM stop scheduling and drain; a second one cancels in-flight requests. Once
    the load is over they only say the results are being written (which they never interrupt)."""

    def handler(name: str) -> None:
        if scheduler.finished:
            observer.stopping(f"{name}: the load is over; writing the results")
            scheduler.interrupted = True
            return
        if scheduler.stop_requests == 0:
            if scheduler.stopping:
                message = f"{name}: scheduling had already stopped; draining in-flight requests (again to cancel them)"
            else:
                message = f"{name}: stopping, draining in-flight requests (again to cancel them)"
        else:
            message = f"{name} again: cancelling in-flight requests"
        observer.stopping(message)
        scheduler.request_stop()

    installed = []
    if sys.platform == "win32":
        return installed
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handler, sig.name)
            installed.append(sig)
        except (RuntimeError, ValueError):  # not the main thread: the caller handles signals
            pass
    return installed


def _remove_signals(loop: asyncio.AbstractEventLoop, installed: list[int]) -> None:
    for sig in installed:
        loop.remove_signal_handler(sig)


async def _watch_sim(sim: Any, scheduler: Scheduler, observer: Observer, aborted: list[str]) -> None:
    """Stop the run, cancelling what is in flight, if the embedded simulator exits under it: every
    request after that would fail to connect, and be counted as the target's failure."""
    while sim.running:
        await asyncio.sleep(_SIM_POLL_S)
    code = sim.returncode
    how = f"killed by signal {-code}" if code is not None and code < 0 else f"with status {code}"
    aborted.append(f"the embedded simulator exited mid-run ({how}); the run was stopped")
    observer.stopping(f"the embedded simulator exited mid-run ({how}): stopping, cancelling in-flight requests")
    scheduler.request_stop("target_died")
    scheduler.request_stop("target_died")


async def _tick(scheduler: Scheduler, recorder: Recorder, scenario: Scenario, observer: Observer) -> None:
    """Hand the observer a snapshot a few times a second (cheap: counters and two percentiles)."""
    early_stop = getattr(observer, "early_stop", None)
    if isinstance(observer, _Silent) and early_stop is None:
        return  # nobody reads the snapshots: building them 4x/s was a visible share of a slow run's CPU
    while True:
        await asyncio.sleep(_SNAPSHOT_S)
        now = time.perf_counter_ns()
        start = scheduler.start_ns or now
        progress = Progress(
            snapshot=recorder.snapshot(start, now),
            scheduled=scheduler.scheduled,
            in_flight=scheduler.in_flight,
            duration_s=scenario.stop.duration_s,
            requests=scenario.stop.requests,
            stopping=scheduler.stopping,
        )
        observer.progress(progress)
        if early_stop is not None and not scheduler.stopping and (reason := early_stop(progress)):
            observer.stopping(reason)
            scheduler.request_stop(reason="early_stop")


def _max_requests(scenario: Scenario) -> int | None:
    """The most requests the run can schedule, or None where no bound is known (a closed loop
    stopped only by time). An open-loop plan's arrivals before the deadline are counted with the
    scheduler's own seeded generator, so the count is the one the run will see."""
    import numpy as np

    stop, plan = scenario.stop, scenario.load
    limit = stop.requests
    if stop.duration_s is None or isinstance(plan, Concurrency):
        return limit
    deadline_ns = round(stop.duration_s * NS_PER_S)
    cap = limit if limit is not None else 50_000_000
    n = 0
    for offset_ns in plan.offsets_ns(np.random.default_rng(scenario.seed)):
        if offset_ns >= deadline_ns or n >= cap:
            break
        n += 1
    return n


async def _watch_gates(
    judge: LiveJudge, scheduler: Scheduler, recorder: Recorder, observer: Observer, aborted: list[Gate]
) -> None:
    """Stop the run once an ``abort_on_fail`` gate is lost (see ``loadbench.gates``)."""
    status = recorder.status_by_phase
    while True:
        await asyncio.sleep(_GATE_CHECK_S)
        if not scheduler.start_ns:
            continue
        counts = {"requests.failed": recorder.status["failed"], "requests.cancelled": recorder.status["cancelled"]}
        counts.update({f"requests.errors.{k}": n for k, n in recorder.errors.items()})
        figures = LiveFigures(
            elapsed_s=(time.perf_counter_ns() - scheduler.start_ns) / 1e9,
            measured_ok=status[("measured", "ok")],
            measured_failed=status[("measured", "failed")],
            counts=counts,
            over=lambda key, limit, _inclusive: recorder.count_above(key, limit),
            maximum=recorder.max_of,
        )
        gate = judge.lost(figures)
        if gate is not None:
            aborted.append(gate)
            observer.stopping(f"gate {gate.expr!r} can no longer pass (abort_on_fail)")
            scheduler.request_stop(reason="gate")
            return
