"""The shapes of workload data, shared by the synthetic generators and the real-dataset loaders.

A dataset value (``SyntheticFinance()``, ``FinanceBenchDataset(path=...)``) is frozen
configuration; ``load()`` does whatever I/O it needs once, before the load starts, and returns a
``Pool`` that draws items from a seeded ``numpy.random.Generator`` without further I/O. Three kinds
of item, one per preset:

* ``FinanceItem`` (Prefill): evidence pages from a filing and a question about a figure in them.
* ``ChatThread`` (Balanced): alternating user/assistant turns ending on a user turn.
* ``MathProblem`` (Decode): a problem with a checkable final answer.

Every pool also gives ``filler(rng)``: a page of text of its own kind (another filing page,
another exchange, a worked example), which is what prompts are padded with to reach their target
input length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np

from loadbench.contract.prompt import Message

__all__ = [
    "ChatPool",
    "ChatThread",
    "Dataset",
    "DatasetKind",
    "FinanceItem",
    "MathProblem",
    "Pool",
]

DatasetKind = Literal["finance", "chat", "math"]


@dataclass(frozen=True, slots=True)
class FinanceItem:
    """A question about a filing. ``evidence`` holds the pages the answer is in (in order);
    ``reference`` is the expected answer (a figure, for checking), ``None`` when unknown."""

    company: str
    doc_name: str
    question: str
    evidence: tuple[str, ...]
    reference: str | None
    snippets: tuple[str, ...] = ()  # shorter evidence passages, used when whole pages do not fit


@dataclass(frozen=True, slots=True)
class ChatThread:
    """Alternating ``user``/``assistant`` turns from the first user turn; the last is ``user``
    for a single prompt, and a thread for a multi-turn conversation may continue past it
    (``follow_ups``: later (assistant, user) pairs)."""

    turns: tuple[Message, ...]
    follow_ups: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class MathProblem:
    """A problem, its final answer (as the data writes it) and, when known, a worked solution."""

    problem: str
    answer: str | None
    solution: str | None = None
    subject: str = ""
    level: int | None = None


Item = TypeVar("Item", FinanceItem, ChatThread, MathProblem, covariant=True)


@runtime_checkable
class Pool(Protocol[Item]):
    """Loaded data: draws items and filler pages; no I/O."""

    source: str

    def draw(self, rng: np.random.Generator) -> Item:
        """One item."""
        ...

    def filler(self, rng: np.random.Generator, about: str | None = None) -> str:
        """A page of text of the pool's kind, for padding a prompt to its target length;
        ``about`` names what the prompt is about (a company), which a pool may follow."""
        ...


@runtime_checkable
class ChatPool(Pool[ChatThread], Protocol):
    """A chat pool also gives whole conversations, earlier exchanges and replies."""

    def conversation(self, rng: np.random.Generator, user_turns: int) -> ChatThread:
        """A thread opening on one user turn, with up to ``user_turns - 1`` follow-ups."""
        ...

    def exchange(self, rng: np.random.Generator) -> tuple[str, str]:
        """A (user, assistant) exchange, for history that pads a prompt."""
        ...

    def reply(self, rng: np.random.Generator) -> str:
        """An assistant answer, for sizing the answers a multi-turn history carries."""
        ...


@runtime_checkable
class Dataset(Protocol):
    """A frozen dataset description; ``load`` reads it (once, before the load) into a pool."""

    kind: ClassVar[DatasetKind]

    def load(self) -> Pool[Any]:
        ...

    def describe(self) -> dict[str, Any]:
        ...
