"""Experiment: wires workload → deployment → scheduler → recorder → results for one run.

``Experiment(workload=Prefill(), deployment=Local("llama3.2"), reasoning=False, quant=Q3B()).run()``
is the seed's API; every ``Scenario`` field may be given, or a ``Scenario`` passed whole.

The order of a run: resolve the target (start the embedded simulator when asked), measure the idle
power baseline, open the deployment's client (which fails fast on a missing key, a wrong URL or a
missing model), then run the scheduler while the recorder counts and the run writer flushes. On
the way out, whatever happened (a stop rule, Ctrl-C, SIGTERM), the records, the interval log and
the summary are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import platform
import secrets
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit, urlunsplit

from loadbench.deployments.base import ClientSettings
from loadbench.load.executors import Driver, resolve_executor
from loadbench.load.plans import Concurrency
from loadbench.load.scheduler import RunTiming, Scheduler
from loadbench.metrics.record import RequestRecord
from loadbench.metrics.recorder import Recorder, Snapshot
from loadbench.metrics.summary import build_summary
from loadbench.results.run import RunResult
from loadbench.results.run_dir import RunWriter, write_json
from loadbench.scenario import Scenario
from loadbench.workloads.prompt import Prompt
from loadbench.workloads.report import length_report

_SNAPSHOT_S = 0.25


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

    def stopping(self, reason: str) -> None: ...


class _Silent:
    def target_ready(self, target: TargetInfo, out_dir: Path) -> None:
        pass

    def progress(self, progress: Progress) -> None:
        pass

    def stopping(self, reason: str) -> None:
        pass


def redact_url(url: str) -> str:
    """``url`` without user:password and query string, which may carry credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("loadbench", "aiohttp", "uvloop", "numpy", "hdrhistogram", "orjson", "rich"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def _describe(value: Any) -> Any:
    describe = getattr(value, "describe", None)
    if callable(describe):
        return describe()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **dataclasses.asdict(value)}
    return None if value is None else repr(value)


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
        """Run to the stop rule (or Ctrl-C / SIGTERM) and return the results; uses uvloop if present."""
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
        sim = None
        with contextlib.ExitStack() as stack:
            target, sim = self._resolve_target(scenario, stack)
            out_dir = self._out_dir(scenario)
            observer.target_ready(target, out_dir)
            meter = self._energy_meter(scenario, stack)
            result = await self._run(scenario, target, out_dir, meter, observer)
        if sim is not None:  # closed now, so its ground truth is complete
            _write_sim_trace(sim, out_dir)
        return result

    # -- pieces ---------------------------------------------------------------------------------

    @staticmethod
    def _resolve_target(scenario: Scenario, stack: contextlib.ExitStack) -> tuple[TargetInfo, Any]:
        """Where requests go, and the simulator process when the target is "sim"."""
        deployment = scenario.deployment
        if scenario.target == "sim":
            from loadbench.sim import SimConfig, SimProcess

            sim = stack.enter_context(SimProcess(scenario.sim or SimConfig()))
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

    async def _run(
        self, scenario: Scenario, target: TargetInfo, out_dir: Path, meter: Any, observer: Observer
    ) -> RunResult:
        run_id = secrets.token_hex(4)
        anchor_ns, anchor_epoch_s = time.perf_counter_ns(), time.time()
        settings = ClientSettings(
            pool_size=_pool_size(scenario),
            timeouts=scenario.timeouts,
            reasoning=scenario.reasoning,
            quant=scenario.quant,
            simulated=target.kind == "sim",
            keep_text=scenario.check_answers,
        )
        run_info: dict[str, Any] = {
            "run_id": run_id,
            "scenario": self.describe_scenario(scenario),
            "target": target.describe(),
            "versions": _versions(),
            "host": {
                "hostname": socket.gethostname(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            },
            "clock": {"perf_counter_ns": anchor_ns, "epoch_s": anchor_epoch_s},
            "started_at": datetime.fromtimestamp(anchor_epoch_s, UTC).isoformat(),
            "status": "running",
        }

        recorder = Recorder()
        stream = scenario.workload.open(seed=scenario.seed, counter=_token_counter(target))
        observe = getattr(stream, "observe", None)
        facts = _RunFacts(dict(scenario.slo))

        async with scenario.deployment.open(base_url=target.base_url, settings=settings) as sender:
            # The model actually sent (a preset resolved, or the server's own model picked).
            sent_model = getattr(getattr(sender, "wire", None), "model", None)
            if sent_model and sent_model != target.model:
                target = dataclasses.replace(target, model=sent_model)
                run_info["target"] = target.describe()
            # The directory is made only once the target has passed its checks, so a run that
            # cannot start leaves nothing behind.
            out_dir.mkdir(parents=True, exist_ok=True)
            write_json(out_dir / "run.json", run_info)
            writer = RunWriter(
                out_dir,
                recorder=recorder,
                start_ns=anchor_ns,
                start_epoch_s=anchor_epoch_s,
                hlog_interval_s=scenario.hlog_interval_s,
                chunk_times=scenario.chunk_times,
            )

            def on_record(record: RequestRecord, prompt: Prompt | None) -> None:
                recorder.add(record)
                writer.add(record)
                if observe is not None and prompt is not None:
                    observe(prompt, record)
                if record.phase == "measured" and record.status == "ok":
                    facts.add(record, prompt)

            executor = resolve_executor(scenario.executor, scenario.workers)
            if executor is not None:  # workers run the plan; their records arrive here
                scheduler: Any = Driver(
                    scenario=scenario,
                    executor=executor,
                    base_url=target.base_url,
                    simulated=target.kind == "sim",
                    settings=settings,
                    run_id=run_id,
                    on_record=on_record,
                )
            else:
                scheduler = Scheduler(
                    plan=scenario.load,
                    stop=scenario.stop,
                    sender=sender,
                    prompts=_prompts(stream),
                    on_record=on_record,
                    run_id=run_id,
                    seed=scenario.seed,
                    keep_text=scenario.check_answers,
                )
            loop = asyncio.get_running_loop()
            installed = _install_signals(loop, scheduler, observer)
            writer.start()
            scraper = None
            if scenario.scrape_metrics:
                from loadbench.metrics.prometheus import MetricsScraper, metrics_url

                explicit = scenario.scrape_metrics if isinstance(scenario.scrape_metrics, str) else None
                scraper = MetricsScraper(
                    metrics_url(target.base_url, explicit),
                    out_dir / "server_metrics.jsonl",
                    start_ns=anchor_ns,
                    interval_s=scenario.scrape_interval_s,
                )
                scraper.start()
            if meter is not None:
                meter.mark("load_start")
            ticker = loop.create_task(_tick(scheduler, recorder, scenario, observer))
            timing: RunTiming | None = None
            failure: BaseException | None = None
            try:
                with _calm_gc():
                    timing = await scheduler.run()
            except BaseException as exc:  # a harness bug or a hard cancel: still write what was measured
                failure = exc
            finally:
                ticker.cancel()
                _remove_signals(loop, installed)
                if meter is not None:
                    meter.mark("load_end")
                await writer.close()
                scraped = await scraper.close() if scraper is not None else None

        summary = self._summarize(scenario, target, recorder, scheduler, timing, meter, facts)
        if isinstance(scheduler, Driver):
            summary["workers"] = scheduler.worker_report()
        if scraped is not None:
            summary["server_metrics"] = scraped
        write_json(out_dir / "summary.json", summary)
        if meter is not None:
            meter.write_csv(out_dir / "energy.csv")
        if failure is not None:
            run_info["status"] = "failed"
            run_info["error"] = type(failure).__name__
        else:
            run_info["status"] = "interrupted" if timing and timing.stopped_by == "signal" else "finished"
        run_info["stopped_by"] = timing.stopped_by if timing else "error"
        run_info["finished_at"] = datetime.now(UTC).isoformat()
        write_json(out_dir / "run.json", run_info)
        if failure is not None:
            raise failure
        return RunResult(path=out_dir, summary=summary, run=run_info)

    def _summarize(
        self,
        scenario: Scenario,
        target: TargetInfo,
        recorder: Recorder,
        scheduler: Scheduler,
        timing: RunTiming | None,
        meter: Any,
        facts: _RunFacts,
    ) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "scenario": scenario.name,
            "target": target.describe(),
            "stopped_by": timing.stopped_by if timing else "error",
            "run_duration_s": (timing.end_ns - timing.start_ns) / 1e9 if timing else None,
        }
        goodput_ok = facts.met_slo if scenario.slo else None
        summary.update(build_summary(recorder, scheduled=scheduler.scheduled, goodput_ok=goodput_ok))
        if slo := dict(scenario.slo):
            summary["slo"] = slo
        summary["lengths"] = length_report(facts.lengths)
        if facts.server_views:
            summary["server"] = _server_summary(facts.server_views)
        if facts.answers:
            summary["accuracy"] = _accuracy(scenario.workload, facts.answers)
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
                    "local" if target.kind == "sim" or _is_loopback(target.base_url) else scenario.deployment.location
                ),
            )
        return summary

    @staticmethod
    def describe_scenario(scenario: Scenario) -> dict[str, Any]:
        """The resolved scenario for run.json (deployments describe themselves without secrets)."""
        return {
            "name": scenario.name,
            "workload": _describe(scenario.workload),
            "deployment": scenario.deployment.describe(),
            "reasoning": scenario.reasoning,
            "quant": _describe(scenario.quant),
            "load": _describe(scenario.load),
            "stop": scenario.stop.describe(),
            "target": "sim" if scenario.target == "sim" else (redact_url(scenario.target) if scenario.target else None),
            "sim": _describe(scenario.sim) if scenario.target == "sim" else None,
            "seed": scenario.seed,
            "timeouts": dataclasses.asdict(scenario.timeouts),
            "slo": dict(scenario.slo),
            "energy": False if scenario.energy is False else _describe(scenario.energy),
            "check_answers": scenario.check_answers,
            "scrape_metrics": scenario.scrape_metrics,
            "workers": scenario.workers,
            "executor": _describe(scenario.executor),
        }


@contextlib.contextmanager
def _calm_gc() -> Iterator[None]:
    """Keep the cyclic garbage collector from pausing the event loop mid-run.

    A full collection walks every live object; with tens of thousands of records and chunk stamps
    that is tens of milliseconds during which no token is stamped (measured against the
    simulator's ground truth: p99.9 delivery error fell from ~30 ms to ~7 ms). Objects alive at
    the start are frozen out of collection and the young-generation threshold is raised; cycles
    made during the run are still collected, just in fewer, cheaper passes.
    """
    import gc

    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _token_counter(target: TargetInfo) -> Any:
    """Count prompt tokens with the target's own /tokenize where it is ours or on this host.

    Remote APIs get no probe (it would be an unauthenticated request to a provider); their prompts
    are sized by an estimate that calibrates itself from the usage counts of the first requests.
    """
    if target.kind == "sim" or _is_loopback(target.base_url):
        from loadbench.workloads import auto_counter

        return auto_counter(target.base_url)
    return None


def _write_sim_trace(sim: Any, out_dir: Path) -> None:
    """Keep the simulator's ground truth beside the records, for ``loadbench verify``."""
    import orjson

    from loadbench.results.verify import SIM_TRACE

    rows = sim.read_trace()
    if rows:
        (out_dir / SIM_TRACE).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def _prompts(stream: Any) -> Iterator[Prompt]:
    return stream if hasattr(stream, "__next__") else iter(stream)


class _LengthFacts(NamedTuple):
    """What ``length_report`` reads of a record, kept instead of the record (and its stamps)."""

    status: str
    target_input_tokens: int | None
    input_tokens: int | None
    target_output_tokens: int | None
    output_tokens: int | None


class _RunFacts:
    """The few facts the summary needs beyond the histograms, gathered per measured ``ok``
    request: lengths against targets, server-side timings, SLO verdicts, answers to check."""

    def __init__(self, slo: dict[str, float]) -> None:
        self._slo = slo
        self.met_slo = 0
        self.lengths: list[_LengthFacts] = []
        self.server_views: list[dict[str, Any]] = []
        self.answers: list[tuple[Prompt, str]] = []

    def add(self, record: RequestRecord, prompt: Prompt) -> None:
        self.lengths.append(
            _LengthFacts(
                record.status,
                record.target_input_tokens,
                record.input_tokens,
                record.target_output_tokens,
                record.output_tokens,
            )
        )
        if record.server:
            self.server_views.append(record.server)
        if self._slo and _meets(record, self._slo):
            self.met_slo += 1
        if record.text is not None:
            self.answers.append((prompt, "".join(record.text)))


_SLO_STAMPS = {
    "ttft_ms": ("sent_ns", "first_token_ns"),
    "ttft_from_schedule_ms": ("intended_ns", "first_token_ns"),
    "e2e_ms": ("sent_ns", "end_ns"),
    "e2e_from_schedule_ms": ("intended_ns", "end_ns"),
}


def _meets(record: RequestRecord, slo: dict[str, float]) -> bool:
    for key, limit_ms in slo.items():
        if key == "tpot_ms":
            n = record.output_tokens_used
            tpot_ms = (record.end_ns - record.first_token_ns) / (n - 1) / 1e6 if n > 1 and record.first_token_ns else 0
            if tpot_ms > limit_ms:
                return False
            continue
        start, end = _SLO_STAMPS[key]
        a, b = getattr(record, start), getattr(record, end)
        if not b or (b - a) / 1e6 > limit_ms:
            return False
    return True


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "p50": float(np.percentile(arr, 50)), "p90": float(np.percentile(arr, 90))}


def _server_summary(views: list[dict[str, Any]]) -> dict[str, Any]:
    """The server's own timings (Ollama's done record, llama.cpp's timings) beside the client's."""
    keys = sorted({k for v in views for k, x in v.items() if isinstance(x, int | float) and not isinstance(x, bool)})
    return {k: _percentiles([v[k] for v in views if isinstance(v.get(k), int | float)]) for k in keys}


def _accuracy(workload: Any, answers: list[tuple[Prompt, str]]) -> dict[str, Any]:
    """The workload's own verdict on each answer (``None``: the data cannot tell)."""
    verdicts = [workload.check(p, a) for p, a in answers]
    graded = [v for v in verdicts if v is not None]
    return {
        "checked": len(graded),
        "correct": sum(graded),
        "unchecked": len(verdicts) - len(graded),
        "accuracy": (sum(graded) / len(graded)) if graded else None,
    }


def _install_signals(loop: asyncio.AbstractEventLoop, scheduler: Scheduler, observer: Observer) -> list[int]:
    """Ctrl-C / SIGTERM stop scheduling and drain; a second one cancels in-flight requests."""

    def handler(name: str) -> None:
        observer.stopping(name if scheduler.stop_requests == 0 else f"{name} again: cancelling in-flight requests")
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


async def _tick(scheduler: Scheduler, recorder: Recorder, scenario: Scenario, observer: Observer) -> None:
    """Hand the observer a snapshot a few times a second (cheap: counters and two percentiles)."""
    while True:
        await asyncio.sleep(_SNAPSHOT_S)
        now = time.perf_counter_ns()
        start = scheduler.start_ns or now
        observer.progress(
            Progress(
                snapshot=recorder.snapshot(start, now),
                scheduled=scheduler.scheduled,
                in_flight=scheduler.in_flight,
                duration_s=scenario.stop.duration_s,
                requests=scenario.stop.requests,
                stopping=scheduler.stopping,
            )
        )
