"""Hybrid: a deployment made of two deployments, a small local model working with a large remote one.

``Hybrid(local=Local("llama3.2"), remote=Remote.openai("gpt-4o"), protocol=Minions())`` is one
deployment to the scheduler: one scheduled request is one hybrid request, however many calls the
protocol makes. Each call is a child record (``parent``, ``role``, ``round``, ``job``, ``step``)
written to requests.jsonl beside its parent, never counted as a scheduled request and never in the
top-level histograms; the parent's stamps are the hybrid request's: sent when scheduled, first
token and chunks those of the call that delivered the final answer, end when the protocol ended.

Where each side's calls go: ``local_url`` / ``remote_url`` when given (a URL, or ``"own"``: the
side's own endpoint); otherwise the run's target (the embedded simulator serves both sides) or,
with no target, each side's own endpoint. ``remote_sim`` gives the remote side a simulator of its
own when the run targets the simulator, so the two sides can run different engine profiles.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from time import perf_counter_ns
from typing import Any, ClassVar

import numpy as np

from loadbench.contract.errors import ConfigError, RequestFailed
from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.contract.sender import STAMPING_ORDER, Sender, Stamping
from loadbench.deployments.base import ClientSettings, Deployment, Dialect
from loadbench.hybrid.calls import ProtocolFailed, RequestRun, Side
from loadbench.hybrid.prices import PriceTable, RemoteEnergy
from loadbench.hybrid.protocols import Minion, Minions

#: The base URL a hybrid reports when the run names no target: each side uses its own endpoint.
OWN_ENDPOINTS = "hybrid://own-endpoints"


@dataclass(frozen=True, slots=True)
class Hybrid(Deployment):
    """A local worker deployment and a remote supervisor deployment run by ``protocol``.

    ``local`` and ``remote`` are any deployments (``Local``, ``Remote.openai/deepseek/claude``,
    ``Remote.compatible``). ``protocol`` is ``Minion(...)`` or ``Minions(...)``. ``prices`` prices the
    remote tokens; ``remote_energy`` is the stated per-token energy assumption for the remote side.
    See the module docstring for ``local_url``, ``remote_url`` and ``remote_sim``.
    """

    local: Deployment
    remote: Deployment
    protocol: Minion | Minions = field(default_factory=Minions)
    local_url: str | None = None
    remote_url: str | None = None
    remote_sim: Any = None
    prices: PriceTable = field(default_factory=PriceTable, repr=False)
    remote_energy: RemoteEnergy = field(default_factory=RemoteEnergy)

    location: ClassVar[str] = "hybrid"

    def __post_init__(self) -> None:
        for name in ("local", "remote"):
            value = getattr(self, name)
            if not isinstance(value, Deployment) or isinstance(value, Hybrid):
                raise ConfigError(
                    f"Hybrid.{name} must be a Local or Remote deployment, got {type(value).__name__}"
                )
        if not isinstance(self.protocol, Minion | Minions):
            raise ConfigError(f"Hybrid.protocol must be Minion(...) or Minions(...), got {self.protocol!r}")
        for name in ("local_url", "remote_url"):
            url = getattr(self, name)
            if url is not None and url != "own" and not str(url).startswith(("http://", "https://")):
                raise ConfigError(f"Hybrid.{name} must be an http(s) URL or 'own', got {url!r}")
        if self.remote_sim is not None:
            from loadbench.sim import SimConfig

            if not isinstance(self.remote_sim, SimConfig):
                raise ConfigError(f"Hybrid.remote_sim must be a SimConfig, got {self.remote_sim!r}")
        if not isinstance(self.prices, PriceTable):
            raise ConfigError(f"Hybrid.prices must be a PriceTable, got {type(self.prices).__name__}")
        if not isinstance(self.remote_energy, RemoteEnergy):
            raise ConfigError(f"Hybrid.remote_energy must be a RemoteEnergy, got {self.remote_energy!r}")

    @property
    def dialect(self) -> Dialect:
        return self.remote.dialect

    @property
    def model_name(self) -> str:
        return f"{self.local.model_name} + {self.remote.model_name}"

    def default_base_url(self) -> str:
        return OWN_ENDPOINTS

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "hybrid",
            "protocol": self.protocol.describe(),
            "local": self.local.describe(),
            "remote": self.remote.describe(),
            "local_url": self.local_url,
            "remote_url": self.remote_url,
            "remote_sim": None if self.remote_sim is None else {
                "profile": self.remote_sim.profile.name,
                "json_malformed_rate": self.remote_sim.json_malformed_rate,
            },
            "remote_price": self.prices.describe(self.remote.model_name),
            "remote_energy": {**self.remote_energy.describe(), "kind": "estimated"},
        }

    def _url(self, side: Deployment, given: str | None, run_url: str) -> tuple[str, bool]:
        """``(base URL, is the run's target)`` for one side."""
        if given == "own" or (given is None and run_url == OWN_ENDPOINTS):
            return side.default_base_url(), False
        if given is not None:
            return given, False
        return run_url, True

    def open(self, *, base_url: str, settings: ClientSettings) -> AbstractAsyncContextManager[Sender]:
        return self._open(base_url=base_url, settings=settings)

    @asynccontextmanager
    async def _open(self, *, base_url: str, settings: ClientSettings) -> AsyncIterator[Sender]:
        limit = self.protocol.local_limit
        local_url, local_at_target = self._url(self.local, self.local_url, base_url)
        remote_url, remote_at_target = self._url(self.remote, self.remote_url, base_url)
        with contextlib.ExitStack() as sims:
            remote_simulated = settings.simulated and remote_at_target
            if self.remote_sim is not None and remote_simulated:
                from loadbench.sim import SimProcess

                remote_url = sims.enter_context(SimProcess(self.remote_sim)).base_url
            # Child calls always keep their text: the protocol reads every reply.
            local_settings = replace(
                settings, keep_text=True, simulated=settings.simulated and local_at_target,
                pool_size=limit or (settings.pool_size * 2 if settings.pool_size else 0),
            )
            remote_settings = replace(settings, keep_text=True, simulated=remote_simulated)
            async with contextlib.AsyncExitStack() as stack:
                local = await stack.enter_async_context(self.local.open(base_url=local_url, settings=local_settings))
                remote = await stack.enter_async_context(
                    self.remote.open(base_url=remote_url, settings=remote_settings)
                )
                yield HybridSender(
                    self,
                    local=Side("local", "worker", local, _sent_model(local, self.local), _schema_option(self.local),
                               asyncio.Semaphore(limit) if limit else None, limit),
                    remote=Side("remote", "supervisor", remote, _sent_model(remote, self.remote),
                                _schema_option(self.remote)),
                    keep_text=settings.keep_text,
                )


def _sent_model(sender: Sender, deployment: Deployment) -> str:
    return sender.model or deployment.model_name


def _schema_option(deployment: Deployment) -> bool:
    """Whether the dialect can be asked for a JSON schema: Ollama's ``format`` and the
    OpenAI-compatible ``response_format`` (OpenAI, llama.cpp, vLLM, SGLang); DeepSeek's API takes
    only ``json_object`` and Anthropic's none, so theirs live in the prompt alone."""
    if deployment.dialect == "ollama":
        return True
    provider = getattr(deployment, "provider", None)
    return deployment.dialect == "openai" and provider in ("openai", "compatible")


class HybridSender:
    """Runs one hybrid request per ``send``; implements ``load.interface.Sender``.

    Keeps, per measured request, the facts ``report()`` turns into the summary's ``hybrid``
    section, and the local calls' spans (to compute how many were in flight at once). It speaks
    to two models (``model`` is ``None``; each side's is in the report); it stamps at the socket
    only where both sides do.
    """

    model: str | None = None

    def __init__(self, hybrid: Hybrid, *, local: Side, remote: Side, keep_text: bool) -> None:
        self.hybrid = hybrid
        self.local = local
        self.remote = remote
        self.keep_text = keep_text
        self.facts: list[dict[str, Any]] = []
        self._local_spans: list[tuple[int, int]] = []

    @property
    def stamping(self) -> Stamping:
        # The weaker of the two sides' (``STAMPING_ORDER`` runs best first).
        both = (self.local.sender.stamping, self.remote.sender.stamping)
        return max(both, key=STAMPING_ORDER.index)

    async def send(self, prompt: Prompt, record: RequestRecord) -> None:
        task, context = task_and_context(prompt)
        run = RequestRun(record, keep_text=self.keep_text)
        record.children = run.children
        outcome: dict[str, Any] = {"rounds": 0, "jobs_per_round": [], "dropped": 0}
        failed: RequestFailed | None = None
        try:
            outcome = await self.hybrid.protocol.run(run, self.local, self.remote, task, context)
        except ProtocolFailed as exc:
            failed = RequestFailed(exc.category, exc.detail)
        finally:
            record.end_ns = perf_counter_ns()
            rounds = max([c.round or 0 for c in run.children], default=0)
            facts = run.facts(self.hybrid.protocol.name, outcome["rounds"] or rounds, outcome["jobs_per_round"],
                              outcome["dropped"])
            record.hybrid = facts
            if record.phase == "measured":
                facts = {**facts, "ok": failed is None and run.final_call is not None}
                self.facts.append(facts)
                self._local_spans.extend(
                    (c.sent_ns, c.end_ns) for c in run.children if c.role == "worker" and c.sent_ns and c.end_ns
                )
        if failed is not None:
            raise failed

    def report(self) -> dict[str, Any]:
        """The summary's ``hybrid`` section (energy is joined by ``with_energy``)."""
        return hybrid_report(self.hybrid, self.facts, self._local_spans, self.local, self.remote)


def task_and_context(prompt: Prompt) -> tuple[str, str]:
    """The task and its document: the workload's own split, else the prompt text as both."""
    if prompt.task and prompt.context:
        return prompt.task, prompt.context
    text = "\n\n".join(m.content for m in prompt.messages if m.role != "assistant")
    return prompt.task or text, prompt.context or text


def max_in_flight(spans: list[tuple[int, int]]) -> int:
    """The most spans open at one instant (an end at the same stamp as a start does not overlap)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    best = cur = 0
    for _, step in events:
        cur += step
        best = max(best, cur)
    return best


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None, "mean": None}
    arr = np.asarray(values, dtype=float)
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)),
            "max": float(arr.max()), "mean": float(arr.mean())}


def hybrid_report(
    hybrid: Hybrid, facts: list[dict[str, Any]], local_spans: list[tuple[int, int]], local: Side, remote: Side
) -> dict[str, Any]:
    """Per-run hybrid figures from the measured requests' facts (percentiles computed here only)."""
    errors: dict[str, int] = {}
    for f in facts:
        for kind, n in f["protocol_errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    ok = [f for f in facts if f["ok"]]
    jobs_per_round = [n for f in facts for n in f["jobs_per_round"]]
    rounds_hist: dict[str, int] = {}
    for f in ok:
        rounds_hist[str(f["rounds"])] = rounds_hist.get(str(f["rounds"]), 0) + 1

    def side(name: str, s: Side) -> dict[str, Any]:
        calls = sum(f[f"{name}_calls"] for f in facts)
        reported = sum(f[f"{name}_input_reported"] for f in facts)
        out: dict[str, Any] = {
            "model": s.model,
            "calls": calls,
            "failed_calls": sum(f[f"{name}_failed"] for f in facts),
            "calls_per_request": calls / len(facts) if facts else None,
            "input_tokens": sum(f[f"{name}_input_tokens"] for f in facts) if reported else None,
            "output_tokens": sum(f[f"{name}_output_tokens"] for f in facts),
            "busy_s": sum(f[f"{name}_s"] for f in facts),
        }
        if reported and reported < calls:
            out["input_tokens_note"] = f"{calls - reported} calls reported no input count"
        return out

    local_part = side("local", local)
    local_part.update(
        wait_s=sum(f["local_wait_s"] for f in facts),  # summed over calls: several wait at once
        concurrency_limit=local.limit_n,
        max_in_flight=max_in_flight(local_spans),
    )
    remote_part = side("remote", remote)
    cost = hybrid.prices.cost_usd(remote.model, remote_part["input_tokens"] or 0, remote_part["output_tokens"])
    remote_part["price"] = hybrid.prices.describe(remote.model)
    remote_part["cost_usd"] = cost
    return {
        "protocol": hybrid.protocol.describe(),
        "requests": len(facts),
        "completed": len(ok),
        "rounds": {**_stats([f["rounds"] for f in ok]), "histogram": dict(sorted(rounds_hist.items()))},
        "jobs_per_round": _stats([float(n) for n in jobs_per_round]),
        "jobs": {"run": sum(f["jobs_run"] for f in facts), "dropped": sum(f["jobs_dropped"] for f in facts)},
        "protocol_errors": dict(sorted(errors.items())),
        "retries": sum(f["retries"] for f in facts),
        "local": local_part,
        "remote": remote_part,
        "cost_usd_per_request": (cost / len(ok)) if cost is not None and ok else None,
        "time_ms": {
            "local": _stats([f["local_s"] * 1e3 for f in ok]),
            "remote": _stats([f["remote_s"] * 1e3 for f in ok]),
            "overhead": _stats([f["overhead_s"] * 1e3 for f in ok]),
            "local_wait": _stats([f["local_wait_s"] * 1e3 for f in ok]),
            "final_call_ttft": _stats([f["final_call_ttft_s"] * 1e3 for f in ok if f["final_call_ttft_s"] is not None]),
        },
    }


def with_energy(report: dict[str, Any], energy: dict[str, Any] | None, remote_energy: RemoteEnergy) -> dict[str, Any]:
    """Add the energy split: local from the run's meter (as it labels it), remote estimated."""
    completed = report["completed"] or None
    remote = report["remote"]
    joules = remote_energy.joules(remote["input_tokens"] or 0, remote["output_tokens"])
    local_wh = energy.get("wh_window") if energy else None
    local_kind = energy.get("kind") if energy else "not metered"
    report["energy"] = {
        "local": {"wh": local_wh, "wh_per_request": (local_wh / completed) if local_wh is not None and completed
                  else None, "kind": local_kind},
        "remote": {"wh": joules / 3600.0, "wh_per_request": (joules / 3600.0 / completed) if completed else None,
                   "kind": "estimated", **remote_energy.describe(),
                   "input_tokens_counted": remote["input_tokens"] is not None},
    }
    return report
