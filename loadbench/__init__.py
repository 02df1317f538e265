"""loadbench: measure how language-model deployments behave under load.

The seed's picture, box by box: ``workloads`` (WHAT is sent: Prefill, Balanced, Decode),
``deployments`` (WHERE it goes: Local, Remote; quantization presets Q1_5B, Q3B, Q8B), ``metrics``
(WHAT is measured: TTFT, latency, throughput), ``energy`` (the fourth dependent variable), ``load``
(WHEN requests fire), ``Experiment`` (orchestrates a run), ``results`` (analysis), and ``sim`` (the
embedded inference simulator every scenario can run against).

    from loadbench import Experiment, Prefill, Local, Q3B
    results = Experiment(workload=Prefill(), deployment=Local("llama3.2"), reasoning=False, quant=Q3B()).run()

Names are imported on first use, so ``import loadbench.sim`` (the simulator's own process) and
``python -m loadbench --help`` do not pay for the whole harness.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # the seed's API
    "Experiment": "loadbench.experiment",
    "Scenario": "loadbench.scenario",
    "RunResult": "loadbench.results.run",
    # workloads
    "Prefill": "loadbench.workloads",
    "Balanced": "loadbench.workloads",
    "Decode": "loadbench.workloads",
    "TraceReplay": "loadbench.workloads",
    "Fixed": "loadbench.workloads",
    "Uniform": "loadbench.workloads",
    "Normal": "loadbench.workloads",
    "LogNormal": "loadbench.workloads",
    "Empirical": "loadbench.workloads",
    # deployments and model presets
    "Local": "loadbench.deployments",
    "Remote": "loadbench.deployments",
    "Q1_5B": "loadbench.deployments",
    "Q3B": "loadbench.deployments",
    "Q8B": "loadbench.deployments",
    "ModelCatalog": "loadbench.deployments",
    "Timeouts": "loadbench.deployments",
    # the hybrid deployment and its protocols
    "Hybrid": "loadbench.hybrid",
    "Minion": "loadbench.hybrid",
    "Minions": "loadbench.hybrid",
    "Chunking": "loadbench.hybrid",
    "PriceTable": "loadbench.hybrid",
    "RemoteEnergy": "loadbench.hybrid",
    # load plans and stop rules
    "Concurrency": "loadbench.load.plans",
    "Constant": "loadbench.load.plans",
    "Poisson": "loadbench.load.plans",
    "Gamma": "loadbench.load.plans",
    "Burst": "loadbench.load.plans",
    "Ramp": "loadbench.load.plans",
    "Stop": "loadbench.load.plans",
    # energy and the simulator
    "EnergyConfig": "loadbench.energy",
    "SimConfig": "loadbench.sim",
    "EngineProfile": "loadbench.sim",
    "FaultPlan": "loadbench.sim",
    "FaultWindow": "loadbench.sim",
    "Responder": "loadbench.sim",
    # CI gates
    "Gate": "loadbench.gates",
    # studies, sweeps and capacity search
    "Study": "loadbench.studies",
    "Fields": "loadbench.studies",
    "CapacitySearch": "loadbench.studies",
    "sweep": "loadbench.studies",
    "rates": "loadbench.studies",
    "concurrencies": "loadbench.studies",
    # errors
    "LoadbenchError": "loadbench.contract.errors",
    "ConfigError": "loadbench.contract.errors",
    "ScenarioError": "loadbench.contract.errors",
    "TargetError": "loadbench.contract.errors",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'loadbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
