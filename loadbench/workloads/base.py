"""What every workload is, and the prompt stream it opens.

A workload is a frozen value (``Decode()``, ``Prefill(input_tokens=Fixed(2000))``).
``open(seed, counter)`` reads its data once and returns a ``PromptStream``: an infinite iterator
of ``Prompt`` values, byte-identical for the same seed, counter and observations. The scheduler
takes prompts in order (request *i* gets the *i*-th) and, after each finished request, calls
``stream.observe(prompt, record)``; that is how the stream's ``LengthModel`` learns what the
server counts, so later prompts land on their target lengths.

Lengths are right from the first request in one of two ways:

* With a server that tokenizes (``ServerTokenizer``: llama.cpp, vLLM, the simulator), ``open``
  builds the first ``exact_first`` prompts before the load, each measured against the server's
  own count of the whole chat request (template and special tokens included) and rebuilt from
  the same draws, its padding re-cut, until it is within ``tolerance`` of its target. Every
  measurement also trains the length model, so the prompts built after them (during the load,
  with no I/O) are sized by a model fitted on the server's exact counts of real prompts.
* Without one, the model learns from the records' ``input_tokens`` during the warm-up. Until it
  has settled (``settle_window`` observed prompts in a row within 5 %), ``lookahead`` is 0, so
  the scheduler builds each prompt only when it sends it, and no prompt is sized before the
  model has learnt what it could; ``settled_after`` is how many prompts were built by then,
  the warm-up a run needs for its measured requests to be sized by the learnt model.
"""

from __future__ import annotations

import time
import zlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from loadbench.contract.errors import ConfigError
from loadbench.contract.prompt import Message, Prompt
from loadbench.contract.record import RequestRecord
from loadbench.workloads.check import check_answer
from loadbench.workloads.sources import Pool
from loadbench.workloads.tokens import CalibratedEstimate, LengthModel, TokenCounter

__all__ = ["Composer", "PromptStream", "Workload"]

# How many prompts may be out (built, not yet observed) before the oldest are forgotten; well
# above any scheduler's prefetch plus concurrency.
_PENDING_MAX = 1 << 16
# Prompts built from a workload's own composer whose texts a remote tokenizer counts at open,
# to fit the local estimate's ratio on what prompts are really made of.
_CALIBRATION_SAMPLES = 8
# Builds of one prompt while its measured length misses the target by more than the aim.
_ATTEMPTS = 4
# Observed prompts in a row within 5 % after which record-fed calibration counts as settled; and
# the most observations waited for (a server whose counts the model cannot fit must not keep the
# scheduler from building ahead for ever).
SETTLE_WINDOW = 8
_SETTLE_TOLERANCE = 0.05
_SETTLE_MAX = 128

Built = tuple[Prompt, int, float]  # prompt, messages, counted content tokens


@dataclass(frozen=True, slots=True)
class ExactLengths:
    """How ``Workload.open`` uses a tokenizing server before the load: the first ``prompts``
    prompts are each measured with the server's count of the whole chat request and rebuilt
    until within ``aim`` of the target (at most a few builds each), spending at most
    ``budget_s`` seconds; whichever limit comes first ends it (stated in ``describe``)."""

    prompts: int = 64
    budget_s: float = 30.0
    aim: float = 0.02

    def __post_init__(self) -> None:
        n = self.prompts
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"ExactLengths.prompts must be an integer >= 0, got {n!r}")
        b = self.budget_s
        if isinstance(b, bool) or not isinstance(b, int | float) or b <= 0:
            raise ConfigError(f"ExactLengths.budget_s must be a number of seconds > 0, got {b!r}")
        a = self.aim
        if isinstance(a, bool) or not isinstance(a, int | float) or not 0 < a < 0.5:
            raise ConfigError(f"ExactLengths.aim must be a fraction between 0 and 0.5, got {a!r}")


class PromptStream(Iterator[Prompt]):
    """An infinite, deterministic stream of prompts from one workload.

    ``observe(prompt, record)`` feeds a finished request back (O(1); safe on the event loop):
    the server's ``input_tokens`` for a prompt this stream built trains the stream's length
    model. Prompts built after that are sized with the corrected model, so with feedback the
    stream is deterministic given the same observations.

    ``lookahead`` tells a scheduler how many prompts it may build ahead of sending them: 0 while
    the model still learns from records, ``None`` (no limit) once it has settled or was fitted on
    the server's exact counts before the load.
    """

    def __init__(
        self,
        *,
        name: str,
        compose: Callable[[], Built],
        model: LengthModel,
        counter: TokenCounter,
        composer: Composer | None = None,
    ) -> None:
        self.name = name
        self._compose = compose
        self._composer = composer
        self.model = model
        self.counter = counter
        self._pending: dict[int, tuple[int, float, int, bool]] = {}  # messages, counted, index, measured
        self._ready: deque[tuple[Built, bool]] = deque()
        self._recent: deque[bool] = deque(maxlen=SETTLE_WINDOW)
        self.built = 0
        self.observed = 0
        self.unreported = 0
        self.settled_after: int | None = None
        self.exact: dict[str, Any] | None = None  # what the pre-load measurement did, when it ran

    def __iter__(self) -> PromptStream:
        return self

    @property
    def lookahead(self) -> int | None:
        """Prompts a scheduler may build ahead: 0 until lengths have been learnt, else no limit."""
        return None if self.settled_after is not None else 0

    def __next__(self) -> Prompt:
        if self._ready:
            (prompt, messages, counted), measured = self._ready.popleft()
        else:
            prompt, messages, counted = self._compose()
            measured = False
        pending = self._pending
        if len(pending) >= _PENDING_MAX:
            del pending[next(iter(pending))]
        pending[id(prompt)] = (messages, counted, self.built, measured)
        self.built += 1
        return prompt

    def observe(self, prompt: Prompt, record: RequestRecord) -> None:
        """Learn from a finished request: its server-reported input tokens, when it has them."""
        entry = self._pending.pop(id(prompt), None)
        if entry is None or record.status != "ok":
            return
        if not record.input_tokens:
            self.unreported += 1
            if self.settled_after is None and self.unreported >= _SETTLE_MAX:
                self.settled_after = self.built  # nothing to learn from: stop holding prompts back
            return
        messages, counted, _index, measured = entry
        if not measured:  # a measured prompt's exact count is in the model already
            self.model.observe(messages, counted, record.input_tokens)
        self.observed += 1
        if self.settled_after is None:
            target = prompt.target_input_tokens
            if target:
                self._recent.append(abs(record.input_tokens - target) <= _SETTLE_TOLERANCE * target)
            if (len(self._recent) == SETTLE_WINDOW and all(self._recent)) or self.observed >= _SETTLE_MAX:
                self.settled_after = self.built

    def built_before_settled(self, prompt_index: int) -> bool:
        """Whether the prompt built ``prompt_index``-th (0-based) was sized before the length model
        had settled."""
        return self.settled_after is None or prompt_index < self.settled_after

    def _measure_first(self, server: Any, plan: ExactLengths) -> None:
        """Build the first ``plan.prompts`` prompts now, each measured by ``server``."""
        c = self._composer
        started = time.perf_counter()
        calls = getattr(server, "calls", 0)
        info: dict[str, Any] = {"planned": plan.prompts, "budget_s": plan.budget_s, "aim": plan.aim}
        if c is None or server.count_chat((("user", "probe"),)) is None:
            info.update(prompts=0, reason="the server cannot count a templated chat request")
            self.exact = info
            return
        c.verify = lambda messages: server.count_chat((m.role, m.content) for m in messages)
        c.aim_error = plan.aim
        stopped = "prompts"
        try:
            for _ in range(plan.prompts):
                if time.perf_counter() - started > plan.budget_s:
                    stopped = "budget"
                    break
                c.last_exact = None
                self._ready.append((self._compose(), c.last_exact is not None))
        finally:
            c.verify = None
        errors = c.measured_errors
        info.update(
            prompts=len(self._ready),
            stopped_by=stopped,
            builds=c.builds,
            tokenize_calls=getattr(server, "calls", 0) - calls,
            elapsed_s=round(time.perf_counter() - started, 3),
            chat_template=getattr(server, "chat_mode", None),
            within_5pct=sum(1 for e in errors if abs(e) <= 0.05),
            worst_error=round(max((abs(e) for e in errors), default=0.0), 4),
        )
        self.exact = info
        if self._ready:
            self.settled_after = 0

    def describe(self) -> dict[str, Any]:
        """The counter and what calibration has learnt so far (for run.json)."""
        out: dict[str, Any] = {
            "workload": self.name,
            "counter": self.counter.describe(),
            "calibration": self.model.describe(),
            "built": self.built,
            "observed": self.observed,
            "mode": "server" if self.exact and self.exact.get("prompts") else "records",
            "settled_after": self.settled_after,
        }
        if self.exact is not None:
            out["exact_first"] = self.exact
        return out


class Workload(ABC):
    """What is sent: a frozen description that opens prompt streams."""

    name: ClassVar[str]

    def open(
        self, seed: int = 0, counter: TokenCounter | None = None, *, exact: ExactLengths | None = None
    ) -> PromptStream:
        """A prompt stream, deterministic for ``seed``. ``counter`` counts tokens (``None``: a
        ``CalibratedEstimate`` that calibrates from observed records). A remote counter
        (``ServerTokenizer``) is used here, before the load: to fit a local estimate on the
        texts of a few of this workload's prompts, then (``exact``, default ``ExactLengths()``) to
        build the first prompts measured against the server's count of the templated request.
        Reads the workload's data (and so may raise ``ConfigError``)."""
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
        server = None
        if not counter.local:
            server = counter
            counter = self._fit_remote(server, pool, int(seed))
        model = LengthModel(exact=counter.exact)
        compose = self._composer(pool=pool, counter=counter, model=model, seed=int(seed))
        stream = PromptStream(
            name=self.name, compose=compose, model=model, counter=counter, composer=getattr(compose, "composer", None)
        )
        if server is not None and hasattr(server, "count_chat"):
            plan = exact if exact is not None else ExactLengths()
            if plan.prompts:
                stream._measure_first(server, plan)
        return stream

    def _fit_remote(self, server: TokenCounter, pool: Pool[Any], seed: int) -> CalibratedEstimate:
        """A local estimate fitted on the server's counts of this workload's own prompt texts
        (built from a seed no measured stream uses), not on filler alone."""
        samples: list[tuple[str, int]] = []
        probe = self._composer(
            pool=pool, counter=CalibratedEstimate(), model=LengthModel(exact=False), seed=seed ^ 0x5A3C_CA11
        )
        for _ in range(_CALIBRATION_SAMPLES):
            prompt = probe()[0]
            text = "\n\n".join(m.content for m in prompt.messages)
            if text:
                samples.append((text, server.count(text)))
        fitted_from = server.describe().get("kind", "server")
        if not samples:
            return _fit_filler(server, pool, seed)
        return CalibratedEstimate.fit(samples, fitted_from=fitted_from)

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


def _fit_filler(counter: TokenCounter, pool: Pool[Any], seed: int) -> CalibratedEstimate:
    rng = np.random.default_rng([seed, 0xCA11])
    samples = []
    for _ in range(_CALIBRATION_SAMPLES):
        text = pool.filler(rng)
        if text:
            samples.append((text, counter.count(text)))
    return CalibratedEstimate.fit(samples, fitted_from=counter.describe().get("kind", "server"))


class _Bound:
    """A composer's build function that also names its composer (for the pre-load measurement)."""

    __slots__ = ("build", "composer")

    def __init__(self, composer: Composer, build: Callable[[], Built]) -> None:
        self.composer = composer
        self.build = build

    def __call__(self) -> Built:
        return self.build()


class Composer:
    """Shared machinery for building prompts to a length: seeded generators, the counter, the
    length model, and the shared prefixes.

    Three independent generators (input lengths, output lengths, content) are spawned from the
    seed, so overriding one distribution leaves the other lengths and the content unchanged.

    ``sized(build)`` is where exact lengths happen: while ``verify`` is set (only before the load,
    by ``PromptStream``), each prompt is measured with it and, when it misses its target by more
    than ``aim_error``, rebuilt from the same draws (the generators' states are restored) with the
    budget moved by the miss, converted through this prompt's own measured tokens per counted
    token. Builds read ``aim(wanted)`` instead of ``wanted`` for their budget.
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
        self.verify: Callable[[tuple[Message, ...]], int | None] | None = None
        self.aim_error = 0.02
        self.aim_offset = 0.0
        self.builds = 0
        self.last_exact: int | None = None
        self.measured_errors: list[float] = []
        self.prefixes: tuple[tuple[Message, int], ...] = ()
        if shared_prefix_tokens:
            self.prefixes = tuple(
                self._prefix(rng_prefix, shared_prefix_tokens) for _ in range(shared_prefix_groups)
            )

    def count(self, text: str) -> int:
        return self.counter.count(text)

    def bind(self, build: Callable[[], Built]) -> Callable[[], Built]:
        """``build``, named with this composer, as ``Workload._composer`` returns it."""
        return _Bound(self, build)

    def aim(self, wanted: float) -> float:
        """The server tokens a build sizes for: ``wanted``, moved while a miss is corrected."""
        return wanted + self.aim_offset

    def _state(self) -> tuple[dict[str, Any], ...]:
        return tuple(r.bit_generator.state for r in (self.rng_in, self.rng_out, self.rng))

    def _restore(self, state: tuple[dict[str, Any], ...]) -> None:
        for r, st in zip((self.rng_in, self.rng_out, self.rng), state, strict=True):
            r.bit_generator.state = st

    def sized(self, build: Callable[[], Any]) -> Any:
        """``build()`` (a ``Built``, or a tuple whose first item is one); measured and rebuilt
        while ``verify`` is set. ``build`` must draw only from this composer's generators."""
        self.builds += 1
        verify = self.verify
        self.last_exact = None
        if verify is None:
            return build()
        state = self._state()
        tried: list[tuple[float, float, Any, int]] = []  # |miss|, offset, result, exact
        offset = 0.0
        for attempt in range(_ATTEMPTS):
            self.aim_offset = offset
            try:
                result = build()
            finally:
                self.aim_offset = 0.0
            prompt, _messages, counted = result[0] if isinstance(result[0], tuple) else result
            exact = verify(prompt.messages)
            target = prompt.target_input_tokens
            if exact is None or not target:
                return result
            miss = exact - target
            tried.append((abs(miss), offset, result, exact))
            if abs(miss) <= self.aim_error * target or attempt == _ATTEMPTS - 1:
                break
            # Server tokens per counted token of this very prompt: the slope between two builds of
            # it (secant), or on the first retry its overall ratio (the template's few tokens
            # included); either is better than a model fitted on few prompts.
            if len(tried) >= 2:
                prev = tried[-2]
                prev_counted = (prev[2][0] if isinstance(prev[2][0], tuple) else prev[2])[2]
                slope = (exact - prev[3]) / (counted - prev_counted) if counted != prev_counted else 0.0
            else:
                slope = 0.0
            if slope <= 0:
                slope = exact / counted if counted > 0 else 1.0
            slope = min(20.0, max(0.05, slope))
            offset -= miss * self.model.coefficients()[2] / slope
            self._restore(state)
            self.builds += 1
        best = min(tried, key=lambda t: t[0])
        if best is not tried[-1]:  # a later build was worse: the best one again, from the same draws
            self._restore(state)
            self.aim_offset = best[1]
            try:
                result = build()
            finally:
                self.aim_offset = 0.0
            self.builds += 1
        # Every build measured is an exact count of a real prompt: all of them teach the model.
        for _, _, other, n in tried:
            if other is not best[2]:
                self.measured(other[0] if isinstance(other[0], tuple) else other, n, final=False)
        self.measured(result[0] if isinstance(result[0], tuple) else result, best[3])
        return result

    def measured(self, built: Built, exact: int | None = None, *, final: bool = True) -> None:
        """Record the server's exact count of a built prompt (measuring it now when ``exact`` is
        not given and ``verify`` is set): it trains the length model; ``final`` marks the build
        that is kept (its error is what ``measured_errors`` reports)."""
        prompt, messages, counted = built
        if exact is None:
            if self.verify is None:
                return
            exact = self.verify(prompt.messages)
            if exact is None:
                return
        self.model.observe(messages, counted, exact)
        if not final:
            return
        self.last_exact = exact
        if prompt.target_input_tokens:
            self.measured_errors.append((exact - prompt.target_input_tokens) / prompt.target_input_tokens)

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
        # Against the aim, not ``wanted``: a build moved up to correct a miss is not an overshoot.
        return max(wanted, round(predicted)) if predicted > self.aim(wanted) * 1.02 else wanted
