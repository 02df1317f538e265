"""What one request asks for: the value a workload produces and a deployment sends.

Part of the contract (``loadbench.contract``): shared by workloads, deployments and the scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """One request's content and length targets, independent of any wire dialect.

    ``max_output_tokens`` caps the answer (reasoning included, where the API counts it so).
    ``ignore_eos`` asks servers that support it (vLLM, llama.cpp, the simulator) to generate exactly
    ``max_output_tokens``; others ignore it. ``target_*_tokens`` are what the workload aimed for,
    kept so the summary can set them against what the server reports. ``reference`` is the expected
    answer where the data has one (for answer checking); ``source`` names the data it came from.

    ``task`` and ``context`` split the request into a question and the document it is about, for
    deployments that treat them apart (a hybrid keeps the document on the local side); ``None``
    where the workload has no separate document. ``response_schema`` is a JSON schema the answer
    must follow; each dialect asks for it with its own structured-output option (where it has one).
    """

    messages: tuple[Message, ...]
    max_output_tokens: int | None = None
    ignore_eos: bool = False
    target_input_tokens: int | None = None
    target_output_tokens: int | None = None
    reference: str | None = None
    source: str = "synthetic"
    task: str | None = None
    context: str | None = None
    response_schema: dict[str, Any] | None = None

    @classmethod
    def user(cls, text: str, **kw: object) -> Prompt:
        """A single-turn prompt holding one user message."""
        return cls(messages=(Message("user", text),), **kw)  # type: ignore[arg-type]
