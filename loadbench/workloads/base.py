"""What every workload is, and the prompt stream it opens.

A workload is a frozen value (``Decode()``, ``Prefill(input_tokens=Fixed(2000))``).
``open(seed, counter)`` reads its data once and returns a ``PromptStream``: an infinite iterator
of ``Prompt`` values, byte-identical for the same seed, counter and observations. The scheduler
takes prompts in order (request *i* gets the *i*-th) and, after each finished request, calls
``stream.observe(prompt, record)``; that is how the stream's ``LengthModel`` learns what the
server counts, so later prompts land on their target lengths.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np

from loadbench.errors import ConfigError
from loadbench.metrics.record import RequestRecord
from loadbench.workloads.check import check_answer
from loadbench.workloads.prompt import Message, Prompt
from loadbench.workloads.sources import Pool
from loadbench.workloads.tokens import CalibratedEstimate, LengthModel, TokenCounter

__all__ = ["Composer", "PromptStream", "Workload"]

# How many prompts may be out (built, not yet observed) before the oldest are forgotten; well
# above any scheduler's prefetch plus concurrency.
_PENDING_MAX = 1 << 16
# Texts sampled from a workload's own data to fit a remote tokenizer's ratio at open.
_CALIBRATION_SAMPLES = 16

Built = tuple[Prompt, int, float]  # prompt, messages, counted content tokens


class PromptStream(Iterator[Prompt]):
    """An infinite, deterministic stream of prompts from one workload.

    ``observe(prompt, record)`` feeds a finished request back (O(1); safe on the event loop):
    the server's ``input_tokens`` for a prompt this stream built trains the stream's length
    model. Prompts built after that are sized with the corrected model, so with feedback the
    stream is deterministic given the same observations.
    """

    def __init__(self, *, name: str, compose: Callable[[], Built], model: LengthModel, counter: TokenCounter) -> None:
        self.name = name
        self._compose = compose
        self.model = model
        self.counter = counter
        self._pending: dict[int, tuple[int, float]] = {}
        self.built = 0
        self.observed = 0

    def __iter__(self) -> PromptStream:
        return self

    def __next__(self) -> Prompt:
        prompt, messages, counted = self._compose()
        pending = self._pending
        if len(pending) >= _PENDING_MAX:
            del pending[next(iter(pending))]
        pending[id(prompt)] = (messages, counted)
        self.built += 1
        return prompt

    def observe(self, prompt: Prompt, record: RequestRecord) -> None:
        """Learn from a finished request: its server-reported input tokens, when it has them."""
        entry = self._pending.pop(id(prompt), None)
        if entry is None or record.status != "ok" or not record.input_tokens:
            return
        self.model.observe(entry[0], entry[1], record.input_tokens)
        self.observed += 1

    def describe(self) -> dict[str, Any]:
        """The counter and what calibration has learnt so far (for run.json)."""
        return {
            "workload": self.name,
            "counter": self.counter.describe(),
            "calibration": self.model.describe(),
            "built": self.built,
            "observed": self.observed,
        }


class Workload(ABC):
    """What is sent: a frozen description that opens prompt streams."""

    name: ClassVar[str]

    def open(self, seed: int = 0, counter: TokenCounter | None = None) -> PromptStream:
        """A prompt stream, deterministic for ``seed``. ``counter`` counts tokens (``None``: a
        ``CalibratedEstimate`` that calibrates from observed records); a remote counter
        (``ServerTokenizer``) is used here, once, to fit a local estimate from a sample of this
        workload's own text. Reads the workload's data (and so may raise ``ConfigError``)."""
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ConfigError(f"{self.name}: seed must be an integer >= 0, got {seed!r}")
        if counter is None:
            counter = CalibratedEstimate()
        elif not isinstance(counter, TokenCounter):
            raise ConfigError(
                f"{self.name}: counter must be a TokenCounter (ServerTokenizer, HFTokenizerFile, "
                f"TiktokenEncoding, CalibratedEstimate), got {counter!r}"
            )
        pool = self._load()
        if not counter.local:
            counter = _fit_remote(counter, pool, seed)
        model = LengthModel(exact=counter.exact)
        compose = self._composer(pool=pool, counter=counter, model=model, seed=int(seed))
        return PromptStream(name=self.name, compose=compose, model=model, counter=counter)

    @abstractmethod
    def _load(self) -> Pool[Any]:
        """Read the data (once, before the load)."""

    @abstractmethod
    def _composer(
        self, *, pool: Pool[Any], counter: TokenCounter, model: LengthModel, seed: int
    ) -> Callable[[], Built]:
        """The function building one prompt per call."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-ready description for run.json."""

    def check(self, prompt: Prompt, answer: str | None) -> bool | None:
        """Whether ``answer`` is right for ``prompt``; ``None`` where the data cannot tell."""
        return check_answer(prompt, answer)


def _fit_remote(counter: TokenCounter, pool: Pool[Any], seed: int) -> TokenCounter:
    rng = np.random.default_rng([seed, 0xCA11])
    samples = []
    for _ in range(_CALIBRATION_SAMPLES):
        text = pool.filler(rng)
        if text:
            samples.append((text, counter.count(text)))
    return CalibratedEstimate.fit(samples, fitted_from=counter.describe().get("kind", "server"))


class Composer:
    """Shared machinery for building prompts to a length: seeded generators, the counter, the
    length model, and the shared prefixes.

    Three independent generators (input lengths, output lengths, content) are spawned from the
    seed, so overriding one distribution leaves the other lengths and the content unchanged.
    """

    def __init__(
        self,
        *,
        name: str,
        pool: Pool[Any],
        counter: TokenCounter,
        model: LengthModel,
        seed: int,
        shared_prefix_tokens: int = 0,
        shared_prefix_groups: int = 1,
    ) -> None:
        self.pool = pool
        self.counter = counter
        self.model = model
        seq = np.random.SeedSequence([seed, zlib.crc32(name.encode())])
        self.rng_in, self.rng_out, self.rng, rng_prefix = (np.random.default_rng(s) for s in seq.spawn(4))
        self.sep = counter.count("\n\n")
        self.prefixes: tuple[tuple[Message, int], ...] = ()
        if shared_prefix_tokens:
            self.prefixes = tuple(
                self._prefix(rng_prefix, shared_prefix_tokens) for _ in range(shared_prefix_groups)
            )

    def count(self, text: str) -> int:
        return self.counter.count(text)

    def cut(self, text: str, tokens: float, keep: str = "head") -> str:
        n = int(tokens)
        return self.counter.truncate(text, n, keep=keep) if n > 0 else ""  # type: ignore[arg-type]

    def _prefix(self, rng: np.random.Generator, tokens: int) -> tuple[Message, int]:
        # Fixed for the life of the stream (calibration must not change a cached prefix).
        want = self.model.to_counted(tokens)
        parts, have = [], 0
        while have < want:
            page = self.pool.filler(rng)
            if not page:
                break
            parts.append(page)
            have += self.count(page) + self.sep
        text = self.cut("\n\n".join(parts), want)
        return Message("system", text), self.count(text)

    def prefix(self) -> tuple[Message | None, int]:
        """A shared prefix message (and its counted tokens), or ``(None, 0)``."""
        if not self.prefixes:
            return None, 0
        if len(self.prefixes) == 1:
            return self.prefixes[0]
        return self.prefixes[int(self.rng.integers(len(self.prefixes)))]

    def fill(self, budget: float, page: Callable[[], str], *, limit: int = 10_000) -> tuple[list[str], float]:
        """Pages from ``page()``, to be joined by blank lines, the last one cut, filling ``budget``
        counted tokens (the separators between them included); returns the pages and the tokens
        they use."""
        pages: list[str] = []
        used = 0.0
        sep = self.sep
        while len(pages) < limit:
            join = sep if pages else 0
            if budget - used - join < 1:
                break
            text = page()
            if not text:
                break
            n = self.count(text)
            if used + join + n <= budget:
                pages.append(text)
                used += join + n
                continue
            piece = self.cut(text, budget - used - join)
            if piece:
                pages.append(piece)
                used += join + self.count(piece)
            break
        return pages, used

    def target(self, wanted: int, messages: int, counted: float) -> int:
        """The input target to record: ``wanted``, unless the fixed parts alone overshoot it."""
        predicted = self.model.predict(messages, counted)
        return max(wanted, round(predicted)) if predicted > wanted * 1.02 else wanted
