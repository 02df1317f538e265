"""Scenario: everything one run needs, as one immutable value.

The seed's ``Experiment`` fields (workload, deployment, reasoning, quant) are joined by the load
plan, the stop rule, the target and the output settings. Scenario files (``scenario =
Scenario(...)``) are read by ``loadbench.loader``, which also knows the studies that build on
scenarios; this module knows neither, so studies and the experiment import it one way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from loadbench.contract.errors import ConfigError
from loadbench.deployments.base import Deployment, Timeouts
from loadbench.gates import normalize as normalize_gates
from loadbench.load.executors import check_executor
from loadbench.load.plans import Concurrency, LoadPlan, Stop, check_plan
from loadbench.params import named_parameters
from loadbench.urls import redact_url

if TYPE_CHECKING:  # annotations only: importing them here would load the workloads, the simulator and the meters
    from loadbench.deployments.models import Quant
    from loadbench.energy import EnergyConfig
    from loadbench.sim import SimConfig
    from loadbench.workloads import Workload

SLO_KEYS = ("ttft_ms", "ttft_from_schedule_ms", "tpot_ms", "e2e_ms", "e2e_from_schedule_ms")


def check_target(target: str | None) -> None:
    """Raise ConfigError unless ``target`` is None, "sim" or an http(s) URL with a host."""
    if target is None or target == "sim":
        return
    parts = urlsplit(target) if isinstance(target, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"target must be 'sim' or an http(s) URL such as http://127.0.0.1:8000, got {target!r}")


def describe_value(value: Any) -> Any:
    """A configuration value for run.json: its own ``describe()``, else a dataclass's fields
    under its type's name, else its repr (``None`` stays ``None``)."""
    describe = getattr(value, "describe", None)
    if callable(describe):
        return describe()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **dataclasses.asdict(value)}
    return None if value is None else repr(value)


@named_parameters
@dataclass(frozen=True)
class Scenario:
    """One run, fully described.

    ``target``: ``"sim"`` runs against the embedded simulator (started in its own process, speaking
    the deployment's dialect; ``sim`` configures it), a URL sends the deployment's requests there,
    ``None`` uses the deployment's own endpoint. ``out_dir`` defaults to
    ``results/<name>-<UTC time>``; a directory that already holds anything is refused unless
    ``overwrite``, which replaces the files of the run there (and nothing else). ``energy=None``
    measures with automatically detected sources; ``False`` turns energy off. ``scrape_metrics``
    (True, or a URL) scrapes the target's Prometheus endpoint (``/metrics`` at its origin) every
    ``scrape_interval_s`` into ``server_metrics.jsonl``. ``slo`` maps metric keys (``ttft_ms``,
    ``tpot_ms``, ``e2e_ms``, and the ``*_from_schedule_ms`` variants) to limits in ms for goodput.
    ``gates`` are pass/fail
    conditions on the summary's figures (expressions such as ``"ttft_ms.p99 < 500"`` or
    ``Gate`` values; see ``loadbench.gates``): a failed gate makes the CLI exit 99.
    ``drift_window_s`` is the length of the first and last windows compared for drift (default: a
    tenth of a timed run, between one hlog interval and 60 s).
    ``workers`` runs the load on
    that many event loops in as many processes (``loadbench.load.executors``: each takes its share
    of the plan; one run directory, one summary); ``executor`` picks another executor, such as
    ``Ray(address)`` for workers on a Ray cluster.
    """

    workload: Workload
    deployment: Deployment
    reasoning: bool = False
    quant: Quant | None = None
    load: LoadPlan = Concurrency(1)
    stop: Stop = Stop(requests=10)
    target: str | None = None
    sim: SimConfig | None = None
    name: str = "experiment"
    out_dir: str | Path | None = None
    overwrite: bool = False
    seed: int = 0
    timeouts: Timeouts = Timeouts()
    energy: EnergyConfig | Literal[False] | None = None
    slo: Mapping[str, float] = field(default_factory=dict)
    check_answers: bool = False
    hlog_interval_s: float = 5.0
    chunk_times: bool = True
    scrape_metrics: bool | str = False
    scrape_interval_s: float = 1.0
    gates: Any = ()
    drift_window_s: float | None = None
    workers: int = 1
    executor: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.deployment, Deployment):
            raise ConfigError(
                f"deployment must be a deployment such as Local('llama3.2') or Remote.openai(...), "
                f"got {self.deployment!r}"
            )
        if not (hasattr(self.workload, "open") and hasattr(self.workload, "describe")):
            raise ConfigError(
                f"workload must be a workload such as Prefill(), Balanced() or Decode(), got {self.workload!r}"
            )
        if not isinstance(self.reasoning, bool):
            raise ConfigError(f"reasoning must be True or False, got {self.reasoning!r}")
        check_plan(self.load)
        if not isinstance(self.stop, Stop):
            raise ConfigError(f"stop must be a Stop(duration_s=..., requests=...), got {self.stop!r}")
        check_target(self.target)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.timeouts, Timeouts):
            raise ConfigError(f"timeouts must be a Timeouts(...), got {self.timeouts!r}")
        for key, limit in dict(self.slo).items():
            if key not in SLO_KEYS:
                raise ConfigError(f"slo key {key!r} is not one of {', '.join(SLO_KEYS)}")
            if not isinstance(limit, int | float) or limit <= 0:
                raise ConfigError(f"slo[{key!r}] must be a positive number of ms, got {limit!r}")
        if not isinstance(self.scrape_metrics, bool | str):
            raise ConfigError(f"scrape_metrics must be True/False or a metrics URL, got {self.scrape_metrics!r}")
        if not isinstance(self.scrape_interval_s, int | float) or self.scrape_interval_s <= 0:
            raise ConfigError(f"scrape_interval_s must be a positive number, got {self.scrape_interval_s!r}")
        if not isinstance(self.hlog_interval_s, int | float) or self.hlog_interval_s <= 0:
            raise ConfigError(f"hlog_interval_s must be a positive number, got {self.hlog_interval_s!r}")
        if self.out_dir is not None and (not isinstance(self.out_dir, str | Path) or not str(self.out_dir).strip()):
            # Path("") is the current directory: never the place a run goes by accident.
            raise ConfigError(f"out_dir must name a directory, got {self.out_dir!r}")
        if not isinstance(self.overwrite, bool):
            raise ConfigError(f"overwrite must be True or False, got {self.overwrite!r}")
        object.__setattr__(self, "gates", normalize_gates(self.gates))
        if self.drift_window_s is not None and (
            isinstance(self.drift_window_s, bool)
            or not isinstance(self.drift_window_s, int | float)
            or not self.drift_window_s > 0
        ):
            raise ConfigError(f"drift_window_s must be a positive number of seconds, got {self.drift_window_s!r}")
        check_executor(self.executor, self.workers)
        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in "/\\\0"):
            raise ConfigError(f"name must be a non-empty string without path separators, got {self.name!r}")

    def replace(self, **changes: Any) -> Scenario:
        """A copy with ``changes`` applied (validated again)."""
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None

    def describe(self) -> dict[str, Any]:
        """The resolved scenario for run.json: each part as it describes itself (deployments
        without secrets, URLs without credentials)."""
        target = self.target
        return {
            "name": self.name,
            "workload": describe_value(self.workload),
            "deployment": self.deployment.describe(),
            "reasoning": self.reasoning,
            "quant": describe_value(self.quant),
            "load": describe_value(self.load),
            "stop": self.stop.describe(),
            "target": "sim" if target == "sim" else (redact_url(target) if target else None),
            "sim": describe_value(self.sim) if target == "sim" else None,
            "seed": self.seed,
            "timeouts": dataclasses.asdict(self.timeouts),
            "slo": dict(self.slo),
            "energy": False if self.energy is False else describe_value(self.energy),
            "check_answers": self.check_answers,
            "scrape_metrics": self.scrape_metrics,
            "gates": [g.describe() for g in self.gates],
            "drift_window_s": self.drift_window_s,
            "workers": self.workers,
            "executor": describe_value(self.executor),
        }

    def with_overrides(
        self,
        *,
        target: str | None = None,
        duration_s: float | None = None,
        requests: int | None = None,
        out_dir: str | Path | None = None,
        seed: int | None = None,
        overwrite: bool | None = None,
        gates: Sequence[str] = (),
        workers: int | None = None,
        executor: Any = None,
    ) -> Scenario:
        """Apply the command line's overrides; ``None`` leaves a field as the scenario set it.
        ``gates`` are added to the scenario's own.

        A ``--duration`` or ``--requests`` given alone replaces both stop limits, so the run stops
        where the command line says rather than at the scenario's other limit.
        """
        changes: dict[str, Any] = {}
        if target is not None:
            changes["target"] = target
        if out_dir is not None:
            changes["out_dir"] = out_dir
        if seed is not None:
            changes["seed"] = seed
        if overwrite is not None:
            changes["overwrite"] = overwrite
        if gates:
            changes["gates"] = (*self.gates, *normalize_gates(gates))
        if workers is not None:
            changes["workers"] = workers
        if executor is not None:
            changes["executor"] = executor
        if duration_s is not None or requests is not None:
            stop = self.stop
            warmup_requests = stop.warmup_requests
            if requests is not None and warmup_requests >= requests:
                warmup_requests = 0
            warmup_s, cooldown_s = stop.warmup_s, stop.cooldown_s
            if duration_s is not None and warmup_s + cooldown_s >= duration_s:
                warmup_s = cooldown_s = 0.0
            if duration_s is None:
                cooldown_s = 0.0  # a count-limited run has no timed end to cool down in
            changes["stop"] = dataclasses.replace(
                stop,
                duration_s=duration_s,
                requests=requests,
                warmup_s=warmup_s,
                warmup_requests=warmup_requests,
                cooldown_s=cooldown_s,
            )
        return self.replace(**changes) if changes else self
