"""The three workloads of the study: Prefill, Balanced and Decode.

* ``Prefill``: pages of a filing and a question about a figure in them (FinanceBench). Input
  ``Uniform(1000, 1500)``, output ``Normal(48, 16, 16, 128)``.
* ``Balanced``: a conversation ending on a user turn (OpenAssistant prompter turns). Input and
  output ``Normal(384, 128, 128, 1024)``.
* ``Decode``: a short math problem to solve step by step (MATH). Input ``Normal(128, 32, 64,
  256)``, output ``Normal(1024, 256, 256, 2048)``.

(``Normal(mean, sd, min, max)``; the data is synthetic unless a dataset is given.)

Lengths are the server's own token counts. The input is built to its target: Prefill pads the
evidence pages with other pages of filings, Balanced with earlier exchanges of the conversation,
Decode with worked examples ahead of the problem; the last padding piece is cut to the token.
The output is asked for through ``max_output_tokens`` with ``ignore_eos`` (on by default for
Balanced and Decode, so servers that honour it generate exactly the target; Prefill's answers
are short by nature and stop on their own).

Every preset takes ``shared_prefix_tokens`` (a system message of that many tokens, the same for
all prompts of a stream, or one of ``shared_prefix_groups`` such prefixes: prefix-cache
workloads); Balanced takes ``multi_turn=MultiTurn(...)`` for conversations that carry their
history.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, ClassVar

from loadbench.contract.errors import ConfigError
from loadbench.contract.prompt import Message, Prompt
from loadbench.params import named_parameters
from loadbench.workloads.base import Built, Composer, Workload
from loadbench.workloads.check import check_answer
from loadbench.workloads.distributions import Distribution, Normal, Uniform, as_distribution
from loadbench.workloads.sources import ChatThread, Dataset, FinanceItem, MathProblem, Pool
from loadbench.workloads.synthetic import SyntheticChat, SyntheticFinance, SyntheticMath
from loadbench.workloads.tokens import LengthModel, TokenCounter

__all__ = ["Balanced", "Decode", "MultiTurn", "Prefill"]

# The least evidence (counted tokens) a Prefill prompt keeps, however small its target.
_MIN_EVIDENCE = 32
# The least of the last user turn a Balanced prompt keeps.
_MIN_TURN = 16


@dataclass(frozen=True)
class _Preset(Workload):
    input_tokens: Distribution = Uniform(1, 1)
    output_tokens: Distribution = Uniform(1, 1)
    dataset: Dataset | None = None
    ignore_eos: bool = False
    shared_prefix_tokens: int = 0
    shared_prefix_groups: int = 1

    _kind: ClassVar[str] = ""
    _default_dataset: ClassVar[Callable[[], Dataset]]

    def __post_init__(self) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "input_tokens", as_distribution(owner, "input_tokens", self.input_tokens))
        object.__setattr__(self, "output_tokens", as_distribution(owner, "output_tokens", self.output_tokens))
        if self.dataset is None:
            object.__setattr__(self, "dataset", type(self)._default_dataset())
        kind = getattr(self.dataset, "kind", None)
        if not hasattr(self.dataset, "load") or kind != self._kind:
            raise ConfigError(
                f"{owner}.dataset must be a {self._kind} dataset ({self._dataset_names()}), got {self.dataset!r}"
            )
        if not isinstance(self.ignore_eos, bool):
            raise ConfigError(f"{owner}.ignore_eos must be True or False, got {self.ignore_eos!r}")
        n = self.shared_prefix_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"{owner}.shared_prefix_tokens must be an integer >= 0 (tokens), got {n!r}")
        g = self.shared_prefix_groups
        if isinstance(g, bool) or not isinstance(g, int) or g < 1:
            raise ConfigError(f"{owner}.shared_prefix_groups must be an integer >= 1, got {g!r}")

    @classmethod
    def _dataset_names(cls) -> str:
        return {
            "finance": "SyntheticFinance() or FinanceBenchDataset(...)",
            "chat": "SyntheticChat() or OpenAssistantDataset(...)",
            "math": "SyntheticMath() or MathDataset(...)",
        }[cls._kind]

    def _load(self) -> Pool[Any]:
        return self.dataset.load()  # type: ignore[union-attr]

    def _base(self, pool: Pool[Any], counter: TokenCounter, model: LengthModel, seed: int) -> Composer:
        return Composer(
            name=self.name, pool=pool, counter=counter, model=model, seed=seed,
            shared_prefix_tokens=self.shared_prefix_tokens, shared_prefix_groups=self.shared_prefix_groups,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_tokens": self.input_tokens.describe(),
            "output_tokens": self.output_tokens.describe(),
            "dataset": self.dataset.describe(),  # type: ignore[union-attr]
            "ignore_eos": self.ignore_eos,
            "shared_prefix_tokens": self.shared_prefix_tokens,
            "shared_prefix_groups": self.shared_prefix_groups,
        }

    def _prompt(
        self,
        c: Composer,
        messages: list[Message],
        *,
        wanted: int,
        out: int,
        counted: float,
        reference: str | None,
        task: str | None = None,
        context: str | None = None,
    ) -> Built:
        prompt = Prompt(
            task=task,
            context=context,
            messages=tuple(messages),
            max_output_tokens=out,
            ignore_eos=self.ignore_eos,
            target_input_tokens=c.target(wanted, len(messages), counted),
            target_output_tokens=out,
            reference=reference,
            source=c.pool.source,
        )
        return prompt, len(messages), counted


# -- Prefill ---------------------------------------------------------------------------------------


@named_parameters
@dataclass(frozen=True)
class Prefill(_Preset):
    """Long input, short output: pages of a financial filing and a question about a figure."""

    input_tokens: Distribution = Uniform(1000, 1500)
    output_tokens: Distribution = Normal(48, 16, 16, 128)
    dataset: Dataset | None = None
    ignore_eos: bool = False
    answer_tolerance: float = 0.01

    name: ClassVar[str] = "prefill"
    _kind: ClassVar[str] = "finance"
    _default_dataset: ClassVar[Callable[[], Dataset]] = SyntheticFinance

    def __post_init__(self) -> None:
        super().__post_init__()
        t = self.answer_tolerance
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t < 1:
            raise ConfigError(f"Prefill.answer_tolerance must be a fraction from 0 to 1, got {t!r}")

    def check(self, prompt: Prompt, answer: str | None) -> bool | None:
        return check_answer(prompt, answer, finance_tolerance=self.answer_tolerance)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "answer_tolerance": self.answer_tolerance}

    def _composer(
        self, *, pool: Pool[Any], counter: TokenCounter, model: LengthModel, seed: int
    ) -> Callable[[], Built]:
        c = self._base(pool, counter, model, seed)

        def compose() -> Built:
            wanted = self.input_tokens.sample(c.rng_in)
            out = self.output_tokens.sample(c.rng_out)
            item: FinanceItem = pool.draw(c.rng)
            prefix, prefix_n = c.prefix()
            source = f"{item.doc_name} ({item.company})" if item.company else (item.doc_name or "a filing")
            head = f"Below are pages from {source}. Answer the question using only these pages.\n\n"
            tail = f"\n\nQuestion: {item.question}\nAnswer briefly and state the figure."
            n_msgs = 2 if prefix else 1
            overhead, per_msg, scale = model.coefficients()
            fixed = prefix_n + c.count(head) + c.count(tail)
            budget = (c.aim(wanted) - overhead - per_msg * n_msgs) / scale - fixed
            evidence = "\n\n".join(item.evidence)
            ev_n = c.count(evidence)
            if ev_n > budget and item.snippets:
                evidence = "\n\n".join(item.snippets)
                ev_n = c.count(evidence)
            if ev_n > budget:
                evidence = c.cut(evidence, max(budget, _MIN_EVIDENCE))
                ev_n = c.count(evidence)
            pages, used = c.fill(budget - ev_n - c.sep, lambda: pool.filler(c.rng, about=item.company))
            used += c.sep if pages else 0  # the break between the evidence and the other pages
            pages.insert(int(c.rng.integers(len(pages) + 1)), evidence)
            text = head + "\n\n".join(pages) + tail
            messages = ([prefix] if prefix else []) + [Message("user", text)]
            counted = fixed + ev_n + used
            # The same pages as a document apart from the question (form feeds between pages),
            # for deployments that keep the document on one side (a hybrid's local worker).
            return self._prompt(
                c, messages, wanted=wanted, out=out, counted=counted, reference=item.reference,
                task=f"{item.question}\nAnswer briefly and state the figure.", context="\f".join(pages),
            )

        return c.bind(lambda: c.sized(compose))


# -- Decode ----------------------------------------------------------------------------------------

_DECODE_INSTRUCTION = "Solve the following problem step by step. Put your final answer in \\boxed{}.\n\n"


@named_parameters
@dataclass(frozen=True)
class Decode(_Preset):
    """Short input, long output: a math problem to solve step by step."""

    input_tokens: Distribution = Normal(128, 32, 64, 256)
    output_tokens: Distribution = Normal(1024, 256, 256, 2048)
    dataset: Dataset | None = None
    ignore_eos: bool = True

    name: ClassVar[str] = "decode"
    _kind: ClassVar[str] = "math"
    _default_dataset: ClassVar[Callable[[], Dataset]] = SyntheticMath

    def _composer(
        self, *, pool: Pool[Any], counter: TokenCounter, model: LengthModel, seed: int
    ) -> Callable[[], Built]:
        c = self._base(pool, counter, model, seed)
        head_n = c.count(_DECODE_INSTRUCTION)

        def compose() -> Built:
            wanted = self.input_tokens.sample(c.rng_in)
            out = self.output_tokens.sample(c.rng_out)
            prefix, prefix_n = c.prefix()
            n_msgs = 2 if prefix else 1
            overhead, per_msg, scale = model.coefficients()
            budget = (c.aim(wanted) - overhead - per_msg * n_msgs) / scale - prefix_n - head_n
            # Pick a problem that fits: a few draws, the first that fits or else the shortest.
            best: tuple[int, MathProblem, str] | None = None
            for _ in range(8):
                item: MathProblem = pool.draw(c.rng)
                tail = f"Problem: {item.problem}"
                n = c.count(tail)
                if best is None or n < best[0]:
                    best = (n, item, tail)
                if n <= budget:
                    best = (n, item, tail)
                    break
            assert best is not None
            tail_n, item, tail = best
            # Worked examples ahead of the problem pad it to the target.
            examples, used = c.fill(budget - tail_n - c.sep, lambda: pool.filler(c.rng))
            used += c.sep if examples else 0
            body = "\n\n".join([*examples, tail])
            messages = ([prefix] if prefix else []) + [Message("user", _DECODE_INSTRUCTION + body)]
            counted = prefix_n + head_n + tail_n + used
            return self._prompt(c, messages, wanted=wanted, out=out, counted=counted, reference=item.answer)

        return c.bind(lambda: c.sized(compose))


# -- Balanced --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MultiTurn:
    """Conversations that carry their history.

    Each conversation has ``turns`` user turns (a distribution, or a fixed count). Its first prompt
    is sized like a single-turn Balanced prompt; each later prompt repeats the conversation so far,
    adds the previous answer (the data's reply, sized to the previous turn's output target) and
    the next user turn, so inputs grow turn by turn as in a real chat. The history holds the
    data's answers, not the server's, so the stream stays deterministic whatever the timing.
    ``interleave`` conversations run side by side, taking prompts in turn, so consecutive turns of
    one conversation are ``interleave`` requests apart. A later prompt's input target is the
    conversation's size, not a drawn length: the length model's prediction of it, or the server's
    count where prompts are measured before the load."""

    turns: Distribution = Uniform(2, 6)
    interleave: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "turns", as_distribution("MultiTurn", "turns", self.turns))
        n = self.interleave
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"MultiTurn.interleave must be an integer >= 1, got {n!r}")

    def describe(self) -> dict[str, Any]:
        return {"turns": self.turns.describe(), "interleave": self.interleave}


@dataclass(slots=True)
class _Conversation:
    messages: list[Message]
    counted: float
    follow_ups: deque[tuple[str, str]]
    previous_output: int


@named_parameters
@dataclass(frozen=True)
class Balanced(_Preset):
    """Conversation-sized input and output: a chat whose last user turn asks for an answer."""

    input_tokens: Distribution = Normal(384, 128, 128, 1024)
    output_tokens: Distribution = Normal(384, 128, 128, 1024)
    dataset: Dataset | None = None
    ignore_eos: bool = True
    multi_turn: MultiTurn | None = field(default=None)

    name: ClassVar[str] = "balanced"
    _kind: ClassVar[str] = "chat"
    _default_dataset: ClassVar[Callable[[], Dataset]] = SyntheticChat

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.multi_turn is not None and not isinstance(self.multi_turn, MultiTurn):
            raise ConfigError(f"Balanced.multi_turn must be MultiTurn(...) or None, got {self.multi_turn!r}")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "multi_turn": self.multi_turn.describe() if self.multi_turn else None}

    def check(self, prompt: Prompt, answer: str | None) -> bool | None:
        return None  # open-ended conversation: nothing to check against

    def _composer(
        self, *, pool: Pool[Any], counter: TokenCounter, model: LengthModel, seed: int
    ) -> Callable[[], Built]:
        c = self._base(pool, counter, model, seed)
        if self.multi_turn is None:
            return c.bind(lambda: c.sized(lambda: self._single(c, pool.draw(c.rng)))[0])
        return c.bind(self._multi(c, self.multi_turn))

    def _single(self, c: Composer, thread: ChatThread) -> tuple[Built, int]:
        """A prompt ending on ``thread``'s last user turn, padded with earlier exchanges."""
        pool: Any = c.pool
        wanted = self.input_tokens.sample(c.rng_in)
        out = self.output_tokens.sample(c.rng_out)
        prefix, prefix_n = c.prefix()
        overhead, per_msg, scale = c.model.coefficients()
        n_fixed = 2 if prefix else 1
        budget = (c.aim(wanted) - overhead - per_msg * n_fixed) / scale - prefix_n
        final = thread.turns[-1].content
        final_n = c.count(final)
        if final_n > budget:
            final = c.cut(final, max(budget, _MIN_TURN), keep="tail")
            final_n = c.count(final)
        remaining = budget - final_n
        msg_cost = max(0.0, per_msg / scale)
        # The thread's own history first (newest exchange first), then exchanges from elsewhere.
        turns = thread.turns[:-1]
        own = [(turns[i].content, turns[i + 1].content) for i in range(len(turns) - 2, -1, -2)]
        history: deque[tuple[str, str]] = deque()
        counted = prefix_n + final_n
        exchanges: Iterator[tuple[str, str]] = chain(own, (pool.exchange(c.rng) for _ in repeat(None)))
        for _guard, (user, assistant) in zip(range(10_000), exchanges, strict=False):
            nu, na = c.count(user), c.count(assistant)
            if nu + na == 0:
                break
            cost = nu + na + 2 * msg_cost
            if cost <= remaining:
                history.appendleft((user, assistant))
                remaining -= cost
                counted += nu + na
                continue
            room = remaining - 2 * msg_cost
            if room >= 2:
                ru = max(1, int(room * nu / (nu + na)))
                u, a = c.cut(user, ru, keep="tail"), c.cut(assistant, int(room) - ru)
                if u and a:
                    history.appendleft((u, a))
                    counted += c.count(u) + c.count(a)
            elif history and remaining - c.sep >= 1:
                # Too little room for another exchange: lengthen the oldest answer instead.
                extra = c.cut(assistant, remaining - c.sep)
                if extra:
                    u0, a0 = history[0]
                    history[0] = (u0, f"{a0}\n\n{extra}")
                    counted += c.sep + c.count(extra)
            elif remaining - c.sep >= 1:
                # No history, and no room for one: the user's turn opens with earlier context.
                extra = c.cut(user, remaining - c.sep, keep="tail")
                if extra:
                    final = f"{extra}\n\n{final}"
                    counted += c.sep + c.count(extra)
            break
        messages = [prefix] if prefix else []
        for user, assistant in history:
            messages += [Message("user", user), Message("assistant", assistant)]
        messages.append(Message("user", final))
        return self._prompt(c, messages, wanted=wanted, out=out, counted=counted, reference=None), out

    def _multi(self, c: Composer, mt: MultiTurn) -> Callable[[], Built]:
        pool: Any = c.pool
        slots: list[_Conversation | None] = [None] * mt.interleave
        index = 0

        def compose() -> Built:
            nonlocal index
            k = index % mt.interleave
            index += 1
            conv = slots[k]
            if conv is None:
                turns = mt.turns.sample(c.rng)

                def first() -> tuple[Built, int, ChatThread]:
                    thread = pool.conversation(c.rng, turns)
                    return (*self._single(c, thread), thread)

                built, out, thread = c.sized(first)
                prompt, _n, counted = built
                if thread.follow_ups:
                    slots[k] = _Conversation(list(prompt.messages), counted, deque(thread.follow_ups), out)
                return built
            reply, ask = conv.follow_ups.popleft()
            reply = self._sized_reply(c, reply, conv.previous_output)
            conv.messages += [Message("assistant", reply), Message("user", ask)]
            conv.counted += c.count(reply) + c.count(ask)
            out = self.output_tokens.sample(c.rng_out)
            conv.previous_output = out
            if not conv.follow_ups:
                slots[k] = None
            n = len(conv.messages)
            prompt = Prompt(
                messages=tuple(conv.messages),
                max_output_tokens=out,
                ignore_eos=self.ignore_eos,
                target_input_tokens=round(c.model.predict(n, conv.counted)),
                target_output_tokens=out,
                reference=None,
                source=pool.source,
            )
            if c.verify is not None:
                # A later turn's input is the conversation so far, not a length drawn to aim at:
                # its target is that conversation's size, so where the server counts it, its count.
                exact = c.verify(prompt.messages)
                if exact:
                    prompt = dataclasses.replace(prompt, target_input_tokens=exact)
                    c.measured((prompt, n, conv.counted), exact)
            return prompt, n, conv.counted

        return compose

    @staticmethod
    def _sized_reply(c: Composer, reply: str, output_tokens: int) -> str:
        """The reply, cut (or extended with more replies from the data) to ``output_tokens``."""
        want = c.model.to_counted(output_tokens)
        more = getattr(c.pool, "reply", None)
        parts, have = [reply], c.count(reply)
        while have < want and more is not None and len(parts) < 64:
            extra = more(c.rng)
            if not extra:
                break
            parts.append(extra)
            have += c.count(extra) + c.sep
        return c.cut("\n\n".join(parts), want)

