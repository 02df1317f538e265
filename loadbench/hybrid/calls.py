"""The calls one hybrid request makes, each stamped as a child record of its own.

``Side`` is one live deployment (local or remote) with its role, and for the local side the bound
on calls in flight across the whole run (``local_concurrency``: a local server serves only so many
at once). ``RequestRun`` makes one request's calls: it creates each child record (so a cancelled
call is still written), waits for the bound where there is one (the wait is the child's dispatch
lag, ``sent_ns - intended_ns``), sends, reads the JSON reply with one bounded retry, and counts
protocol errors by kind. Nothing a model writes is run: replies are parsed as data and read field
by field.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

import loadbench.hybrid.prompts as prompts
import loadbench.hybrid.replies as replies
from loadbench.contract.errors import ErrorCategory, RequestFailed
from loadbench.contract.prompt import Message, Prompt
from loadbench.contract.record import RequestRecord
from loadbench.contract.sender import Sender


@dataclass(slots=True)
class Side:
    """One deployment of a hybrid, opened: ``name`` "local"/"remote", ``role`` worker/supervisor.

    ``schema_option``: the dialect can be asked for a JSON schema (Ollama ``format``,
    OpenAI-compatible ``response_format``); without it the schema is only in the prompt text.
    ``limit`` bounds this side's calls in flight across the run (``None``: unbounded).
    """

    name: str
    role: str
    sender: Sender
    model: str
    schema_option: bool
    limit: asyncio.Semaphore | None = None
    limit_n: int | None = None
    in_flight: int = 0
    max_in_flight: int = 0


class ProtocolFailed(Exception):
    """A step of the protocol could not go on (a reply still unusable after its retry, or a
    supervisor call that failed); the hybrid request fails with ``category``."""

    def __init__(self, category: ErrorCategory, detail: str) -> None:
        super().__init__(detail)
        self.category = category
        self.detail = detail


@dataclass(slots=True)
class RequestRun:
    """One hybrid request's calls and the facts the summary needs about them."""

    parent: RequestRecord
    keep_text: bool
    children: list[RequestRecord] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    final_call: RequestRecord | None = None
    local_wait_ns: int = 0  # waiting for the local side's bound, summed over calls

    async def call(self, side: Side, prompt: Prompt, *, step: str, round_no: int, job: int | None = None) -> str:
        """Send one call; return its answer text. Raises ``RequestFailed`` when the call fails."""
        parent = self.parent
        child = RequestRecord(
            index=parent.index,
            request_id=f"{parent.request_id}.{len(self.children)}",
            intended_ns=perf_counter_ns(),
            phase=parent.phase,
            text=[],
            parent=parent.request_id,
            role=side.role,
            round=round_no,
            job=job,
            step=step,
        )
        self.children.append(child)
        acquired = False
        try:
            if side.limit is not None:
                await side.limit.acquire()
                acquired = True
                self.local_wait_ns += perf_counter_ns() - child.intended_ns
            side.in_flight += 1
            side.max_in_flight = max(side.max_in_flight, side.in_flight)
            try:
                child.sent_ns = perf_counter_ns()
                await side.sender.send(prompt, child)
                child.status = "ok"
            finally:
                side.in_flight -= 1
        except RequestFailed as exc:
            child.status = "failed"
            child.error = exc.category.value
            child.error_detail = exc.detail or None
            child.http_status = exc.http_status
            raise
        except asyncio.CancelledError:
            child.status = "cancelled"
            raise
        except Exception as exc:  # a client bug: counted on the call, and the request fails with it
            child.status = "failed"
            child.error = ErrorCategory.CLIENT.value
            child.error_detail = f"{type(exc).__name__}: {exc}"
            raise RequestFailed(ErrorCategory.CLIENT, child.error_detail) from exc
        finally:
            if not child.end_ns:
                child.end_ns = perf_counter_ns()
            if acquired:
                side.limit.release()  # type: ignore[union-attr]
            text = "".join(child.text or ())
            if not self.keep_text:
                child.text = None  # read by the protocol, written only when the run keeps answers
        return text

    async def ask_json(
        self,
        side: Side,
        messages: list[Message],
        schema: dict[str, Any],
        *,
        step: str,
        round_no: int,
        max_tokens: int,
        job: int | None = None,
        rule: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> tuple[dict[str, Any] | None, list[Message]]:
        """A call whose reply must be a JSON object following ``schema``, with one retry.

        Returns the object (``None`` when still unusable after the retry: counted as a protocol
        error of kind ``<side>_<kind>``) and the conversation including the reply. ``rule`` checks
        what a schema cannot say (a final decision must carry its answer). The retry shows the
        model its reply and what was wrong with it.
        """
        for attempt in (0, 1):
            prompt = Prompt(
                messages=tuple(messages),
                max_output_tokens=max_tokens,
                response_schema=schema if side.schema_option else None,
            )
            text = await self.call(side, prompt, step=step if not attempt else f"{step}_retry", round_no=round_no,
                                   job=job)
            child = self.children[-1]
            obj = replies.extract(text)
            if obj is None:
                truncated = child.output_tokens_used >= max_tokens
                kind, problem = (replies.TRUNCATED, "it was cut off at the token limit") if truncated else (
                    replies.UNPARSABLE, "it held no JSON object")
            else:
                problem = replies.check(obj, schema)
                if problem is None and rule is not None:
                    problem = rule(obj)
                kind = replies.SCHEMA
                if problem is None:
                    return obj, [*messages, Message("assistant", text)]
            if attempt:
                self.errors[f"{side.name}_{kind}"] += 1
                return None, [*messages, Message("assistant", text)]
            self.retries += 1
            messages = [
                *messages,
                Message("assistant", text),
                Message("user", prompts.RETRY.format(problem=problem)),
            ]
        raise AssertionError("unreachable")

    def deliver(self, answer: str) -> None:
        """The last call made gave the final answer: stamp the parent from it."""
        final = self.children[-1]
        self.final_call = final
        parent = self.parent
        parent.first_token_ns = final.first_token_ns
        parent.first_answer_ns = final.first_answer_ns
        parent.chunk_ns = list(final.chunk_ns)
        parent.reasoning_chunks = final.reasoning_chunks
        parent.output_tokens = final.output_tokens
        parent.reasoning_tokens = final.reasoning_tokens
        if parent.text is not None:
            parent.text.append(answer)

    def facts(self, protocol: str, rounds: int, jobs_per_round: list[int], dropped: int) -> dict[str, Any]:
        """The per-request facts written in the parent's line and read by the summary."""
        parent = self.parent
        end_ns = parent.end_ns or perf_counter_ns()
        spans = {"local": [], "remote": []}  # type: dict[str, list[tuple[int, int]]]
        tokens = {s: {"calls": 0, "failed": 0, "input_tokens": 0, "output_tokens": 0, "input_reported": 0}
                  for s in spans}
        for c in self.children:
            side = "remote" if c.role == "supervisor" else "local"
            t = tokens[side]
            t["calls"] += 1
            t["failed"] += c.status != "ok"
            if c.sent_ns:
                spans[side].append((c.sent_ns, c.end_ns or end_ns))
            t["output_tokens"] += c.output_tokens_used
            if c.input_tokens is not None:
                t["input_tokens"] += c.input_tokens
                t["input_reported"] += 1
        all_spans = spans["local"] + spans["remote"]
        e2e_ns = end_ns - parent.sent_ns if parent.sent_ns else 0
        return {
            "protocol": protocol,
            "rounds": rounds,
            "jobs_per_round": jobs_per_round,
            "jobs_run": sum(jobs_per_round),
            "jobs_dropped": dropped,
            "local_s": union_ns(spans["local"]) / 1e9,
            "remote_s": union_ns(spans["remote"]) / 1e9,
            "local_wait_s": self.local_wait_ns / 1e9,
            "overhead_s": max(0, e2e_ns - union_ns(all_spans)) / 1e9,
            "protocol_errors": dict(self.errors),
            "retries": self.retries,
            "final_step": self.final_call.step if self.final_call is not None else None,
            # the final answer's call alone, from its own send (the request's TTFT runs from its schedule)
            "final_call_ttft_s": (final.first_token_ns - final.sent_ns) / 1e9
            if (final := self.final_call) is not None and final.first_token_ns else None,
            **{f"{side}_{k}": v for side, t in tokens.items() for k, v in t.items()},
        }


def union_ns(spans: list[tuple[int, int]]) -> int:
    """Total time covered by possibly overlapping ``(start, end)`` spans."""
    total, cur_start, cur_end = 0, 0, 0
    for start, end in sorted(spans):
        if end <= start:
            continue
        if start > cur_end:
            total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    return total + (cur_end - cur_start)

