"""The embedded inference simulator: the default target, and every test's server.

A real HTTP server on loopback that speaks the OpenAI (and DeepSeek / vLLM / llama.cpp),
Anthropic and Ollama dialects, backed by a continuous-batching capacity model (``EngineProfile``),
with injectable faults (``FaultPlan``), canned answers (``Responder``) and a ground-truth trace of
every request. Run it in a child process with ``SimProcess``, in the current event loop with
``SimServer``, or from the shell with ``python -m loadbench.sim``.

It imports nothing from the client side of loadbench except the wire constants and the errors.
"""

from loadbench.sim.config import (
    FAULT_KINDS,
    PROFILES,
    EngineProfile,
    FaultPlan,
    FaultWindow,
    Responder,
    SimConfig,
)
from loadbench.sim.process import SimProcess

__all__ = [
    "FAULT_KINDS",
    "PROFILES",
    "EngineProfile",
    "FaultPlan",
    "FaultWindow",
    "Responder",
    "SimConfig",
    "SimProcess",
    "SimServer",
]


def __getattr__(name: str):  # SimServer pulls in aiohttp; load it only when asked for
    if name == "SimServer":
        from loadbench.sim.server import SimServer

        return SimServer
    raise AttributeError(f"module 'loadbench.sim' has no attribute {name!r}")
