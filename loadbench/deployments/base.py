"""What every deployment is: a frozen description of where requests go and how they are spoken.

A deployment value (``Local("llama3.2")``, ``Remote.openai("gpt-4o-mini")``) holds no connection.
``open()`` turns it into a live ``Sender`` for one run, bound to a base URL (its own endpoint, the
embedded simulator, or a URL the user gave) and to the run's ``ClientSettings``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any, ClassVar, Literal

from loadbench.contract.record import RequestRecord
from loadbench.contract.sender import Sender
from loadbench.params import check_number, named_parameters

Location = Literal["local", "remote", "hybrid"]
Dialect = Literal["openai", "ollama", "anthropic"]


@named_parameters
@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-request deadlines in seconds, measured from ``sent``.

    ``connect_s`` bounds opening a connection; ``first_token_s`` bounds the wait for the first
    token-bearing chunk (headers included); ``total_s`` bounds the whole request.
    """

    connect_s: float = 10.0
    first_token_s: float = 120.0
    total_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("connect_s", "first_token_s", "total_s"):
            check_number("Timeouts", name, getattr(self, name), minimum=0, exclusive=True)


def deadlines(record: RequestRecord, timeouts: Timeouts) -> tuple[float, float]:
    """``(first_token_at, total_at)`` on the running loop's clock, anchored at ``record.sent_ns``
    (stamped now if the caller has not)."""
    if not record.sent_ns:
        record.sent_ns = perf_counter_ns()
    sent_loop_s = asyncio.get_running_loop().time() - (perf_counter_ns() - record.sent_ns) / 1e9
    total_at = sent_loop_s + timeouts.total_s
    return min(sent_loop_s + timeouts.first_token_s, total_at), total_at


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Run-wide settings a deployment's client needs, decided once before the first request.

    ``pool_size`` is the most requests the run can have in flight; the connection pool is sized to
    it (never a library default, which would silently cap concurrency). 0 means unbounded (an
    open-loop plan without ``max_concurrency``). ``simulated`` is true when
    the target is the embedded simulator, which needs no credentials. ``keep_text`` asks the client
    to collect answer text into ``record.text`` (answer checking).
    """

    pool_size: int
    timeouts: Timeouts = Timeouts()
    reasoning: bool = False
    quant: Any = None
    simulated: bool = False
    keep_text: bool = False


class Deployment(ABC):
    """Where requests go. Subclasses are frozen dataclasses; ``open`` makes the live client."""

    location: ClassVar[Location]

    @property
    @abstractmethod
    def dialect(self) -> Dialect:
        """The wire dialect this deployment speaks (the simulator serves all of them)."""

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The model name sent on the wire, after presets are applied."""

    @abstractmethod
    def default_base_url(self) -> str:
        """The deployment's own endpoint when no other target is given."""

    @abstractmethod
    def open(self, *, base_url: str, settings: ClientSettings) -> AbstractAsyncContextManager[Sender]:
        """A context manager yielding a ``Sender`` bound to ``base_url``.

        Entering it validates what can be validated before load starts (credentials present, the
        server reachable and speaking this dialect, the model available) and raises ``TargetError``
        with one clear, secret-free sentence otherwise. Leaving it closes the connection pool.
        """

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for ``run.json``; never includes credentials."""
