"""The two hybrid protocols: Minion (a conversation) and Minions (jobs over chunks, in parallel).

Minion: the remote supervisor never sees the document; the local worker holds all of it in its
system prompt. The supervisor asks a first question; then, for up to ``max_rounds`` exchanges, the
worker answers and the supervisor either gives the final answer or asks again (the last exchange
forces an answer). A request uses 1 + rounds remote calls and ``rounds`` local calls.

Minions: each round the remote writes a job plan as JSON data (how to cut the document, a few
tasks, which chunks each applies to); the harness cuts the document and runs every (task, chunk)
job on the local model, fanned out at once and bounded by ``local_concurrency`` across the run;
answers that found nothing are dropped; the remote reads the rest and decides (final answer, or
what to look for next round), up to ``max_rounds``. A plan's tasks are instructions for the local
model; nothing in a plan is ever executed by the harness.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import loadbench.hybrid.prompts as prompts
from loadbench.contract.errors import ConfigError, ErrorCategory, RequestFailed
from loadbench.contract.prompt import Message, Prompt
from loadbench.hybrid.calls import ProtocolFailed, RequestRun, Side
from loadbench.hybrid.chunking import CHUNKINGS, Chunking


def _positive(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{owner}.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class Minion:
    """The Minion protocol: ``max_rounds`` worker exchanges at most (the last forces an answer).

    ``supervisor_max_tokens`` and ``worker_max_tokens`` cap each call's output; ``reply_chars``
    bounds each text field of a JSON reply (in the schema, so a grammar-held model finishes).
    """

    max_rounds: int = 3
    supervisor_max_tokens: int = 512
    worker_max_tokens: int = 256
    reply_chars: int = 400

    name = "minion"

    def __post_init__(self) -> None:
        for f in ("max_rounds", "supervisor_max_tokens", "worker_max_tokens", "reply_chars"):
            _positive("Minion", f, getattr(self, f))

    @property
    def local_limit(self) -> int | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "max_rounds": self.max_rounds,
                "supervisor_max_tokens": self.supervisor_max_tokens,
                "worker_max_tokens": self.worker_max_tokens, "reply_chars": self.reply_chars}

    async def run(self, run: RequestRun, local: Side, remote: Side, task: str, context: str) -> dict[str, Any]:
        chars = self.reply_chars
        sup: list[Message] = [
            Message("system", prompts.MINION_SUPERVISOR_SYSTEM),
            Message("user", prompts.minion_opening(task, prompts.minion_question_schema(chars))),
        ]
        opening, sup = await _supervise(run, remote, sup, prompts.minion_question_schema(chars),
                                        step="question", round_no=0, max_tokens=self.supervisor_max_tokens)
        question = str(opening.get("message") or "") if opening else ""
        if not question:
            question = f"What does the document say that helps with this task: {task}"
        work: list[Message] = [Message("system", prompts.minion_worker_system(context))]
        rounds = 0
        for round_no in range(1, self.max_rounds + 1):
            rounds = round_no
            work.append(Message("user", question))
            try:
                reply = await run.call(
                    local, _prompt(work, self.worker_max_tokens), step="reply", round_no=round_no
                )
            except RequestFailed as exc:
                raise ProtocolFailed(exc.category, f"local worker call failed: {exc.detail or exc.category.value}") \
                    from None
            work.append(Message("assistant", reply))
            last = round_no == self.max_rounds
            schema = prompts.minion_decision_schema(chars, last=last)
            sup.append(Message("user", prompts.minion_after_reply(reply, round_no, self.max_rounds, schema)))
            decision, sup = await _supervise(run, remote, sup, schema, step="decision", round_no=round_no,
                                             max_tokens=self.supervisor_max_tokens)
            if decision is not None and decision.get("decision") == prompts.FINAL and decision.get("answer"):
                run.deliver(str(decision["answer"]))
                return {"rounds": rounds, "jobs_per_round": [], "dropped": 0}
            if decision is not None and decision.get("decision") == prompts.FINAL:
                run.errors["remote_no_answer"] += 1
            if last:
                break
            question = str((decision or {}).get("message") or "") or (
                "Please look again: quote every passage of the document that bears on the task."
            )
        raise ProtocolFailed(ErrorCategory.PROTOCOL, f"no final answer after {rounds} rounds")


@dataclass(frozen=True, slots=True)
class Minions:
    """The Minions protocol: up to ``max_rounds`` rounds of plan, parallel local jobs, decision.

    ``chunking``: one ``Chunking`` (or its ``by`` name), or several the remote chooses from in its
    plan. ``tasks_per_round`` caps the plan's tasks; ``max_jobs_per_round`` caps the (task, chunk)
    jobs run in a round (the rest are dropped and counted). ``local_concurrency`` bounds local calls
    in flight across the whole run, as the local server's parallel slots do.
    """

    max_rounds: int = 5
    chunking: Any = "section"
    tasks_per_round: int = 3
    max_jobs_per_round: int = 64
    local_concurrency: int = 4
    supervisor_max_tokens: int = 768
    worker_max_tokens: int = 256
    reply_chars: int = 300
    chunkings: tuple[Chunking, ...] = field(init=False, default=())

    name = "minions"

    def __post_init__(self) -> None:
        for f in ("max_rounds", "tasks_per_round", "max_jobs_per_round", "local_concurrency",
                  "supervisor_max_tokens", "worker_max_tokens", "reply_chars"):
            _positive("Minions", f, getattr(self, f))
        given = self.chunking if isinstance(self.chunking, list | tuple) else (self.chunking,)
        ways: list[Chunking] = []
        for item in given:
            if isinstance(item, str):
                if item not in CHUNKINGS:
                    raise ConfigError(f"Minions.chunking {item!r} is unknown; expected one of {', '.join(CHUNKINGS)}"
                                      " or a Chunking(...)")
                item = Chunking(item)  # type: ignore[arg-type]
            if not isinstance(item, Chunking):
                raise ConfigError(f"Minions.chunking must hold chunking names or Chunking values, got {item!r}")
            ways.append(item)
        if not ways or len({w.by for w in ways}) != len(ways):
            raise ConfigError("Minions.chunking needs at least one way to cut the document, each named once")
        object.__setattr__(self, "chunkings", tuple(ways))

    @property
    def local_limit(self) -> int | None:
        return self.local_concurrency

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "max_rounds": self.max_rounds,
            "chunking": [c.describe() for c in self.chunkings], "tasks_per_round": self.tasks_per_round,
            "max_jobs_per_round": self.max_jobs_per_round, "local_concurrency": self.local_concurrency,
            "supervisor_max_tokens": self.supervisor_max_tokens, "worker_max_tokens": self.worker_max_tokens,
            "reply_chars": self.reply_chars,
        }

    async def run(self, run: RequestRun, local: Side, remote: Side, task: str, context: str) -> dict[str, Any]:
        chars = self.reply_chars
        cuts = {c.by: c.split(context) for c in self.chunkings}
        counts = {by: len(chunks) for by, chunks in cuts.items()}
        max_chunk = max(counts.values()) - 1
        job_schema = prompts.minions_job_schema(chars)
        notes: list[str] = []
        jobs_per_round: list[int] = []
        dropped = 0
        job_no = 0
        for round_no in range(1, self.max_rounds + 1):
            last = round_no == self.max_rounds
            plan_schema = prompts.minions_plan_schema(
                chars, tasks=self.tasks_per_round, chunkings=tuple(counts), max_chunk=max_chunk
            )
            plan_messages = [
                Message("system", prompts.MINIONS_SUPERVISOR_SYSTEM),
                Message("user", prompts.minions_plan(task, counts, round_no, self.max_rounds, self.tasks_per_round,
                                                     notes, plan_schema)),
            ]
            plan, _ = await _supervise(run, remote, plan_messages, plan_schema, step="plan", round_no=round_no,
                                       max_tokens=self.supervisor_max_tokens)
            jobs, refused = self.jobs(plan, cuts)
            if len(jobs) > self.max_jobs_per_round:
                refused += len(jobs) - self.max_jobs_per_round
                jobs = jobs[: self.max_jobs_per_round]
            dropped += refused
            jobs_per_round.append(len(jobs))
            first_job = job_no
            job_no += len(jobs)
            results = await asyncio.gather(*(
                self._job(run, local, job_schema, round_no, first_job + i, chunk_id, len(chunks), chunk, instruction)
                for i, (chunk_id, chunks, chunk, instruction) in enumerate(jobs)
            ))
            findings = [r for r in results if r is not None]
            dropped += len(results) - len(findings)
            decision_schema = prompts.minions_decision_schema(chars, last=last)
            decide_messages = [
                Message("system", prompts.MINIONS_SUPERVISOR_SYSTEM),
                Message("user", prompts.minions_decide(task, findings, len(results) - len(findings), round_no,
                                                       self.max_rounds, decision_schema)),
            ]
            decision, _ = await _supervise(run, remote, decide_messages, decision_schema, step="decision",
                                           round_no=round_no, max_tokens=self.supervisor_max_tokens)
            if decision is not None and decision.get("decision") == prompts.FINAL and decision.get("answer"):
                run.deliver(str(decision["answer"]))
                return {"rounds": round_no, "jobs_per_round": jobs_per_round, "dropped": dropped}
            if decision is not None and decision.get("decision") == prompts.FINAL:
                run.errors["remote_no_answer"] += 1
            if last:
                break
            notes.append(str((decision or {}).get("explanation") or "no usable decision"))
        raise ProtocolFailed(ErrorCategory.PROTOCOL, f"no final answer after {self.max_rounds} rounds")

    def jobs(
        self, plan: dict[str, Any] | None, cuts: dict[str, list[str]]
    ) -> tuple[list[tuple[int, list[str], str, str]], int]:
        """The (chunk id, chunks, chunk, instruction) jobs a plan asks for, and how many it asked for
        that cannot run (a chunk id the chosen cut lacks, an empty instruction). The plan is read as
        data: its strings only ever become prompt text."""
        if plan is None:
            return [], 0
        by = plan.get("chunking")
        chunks = cuts.get(by) if isinstance(by, str) else None
        if chunks is None:
            chunks = next(iter(cuts.values()))
        out: list[tuple[int, list[str], str, str]] = []
        refused = 0
        for task in plan.get("tasks") or ():
            if not isinstance(task, dict):
                refused += 1
                continue
            instruction = task.get("instruction")
            if not isinstance(instruction, str) or not instruction.strip():
                refused += 1
                continue
            wanted = task.get("chunks")
            ids = range(len(chunks)) if wanted == "all" or not isinstance(wanted, list) or not wanted else wanted
            seen: set[int] = set()
            for cid in ids:
                if isinstance(cid, bool) or not isinstance(cid, int) or not 0 <= cid < len(chunks) or cid in seen:
                    refused += 1
                    continue
                seen.add(cid)
                out.append((cid, chunks, chunks[cid], instruction.strip()))
        return out, refused

    async def _job(
        self, run: RequestRun, local: Side, schema: dict[str, Any], round_no: int, job: int,
        chunk_id: int, n_chunks: int, chunk: str, instruction: str,
    ) -> dict[str, Any] | None:
        """One local job; its finding, or ``None`` when it found nothing, failed or stayed malformed."""
        messages = [
            Message("system", prompts.WORKER_JOB_SYSTEM),
            Message("user", prompts.minions_job(chunk, chunk_id, n_chunks, instruction, schema)),
        ]
        try:
            answer, _ = await run.ask_json(local, messages, schema, step="job", round_no=round_no, job=job,
                                           max_tokens=self.worker_max_tokens)
        except RequestFailed as exc:
            run.errors[f"local_call_{exc.category.value}"] += 1
            return None
        if answer is None or answer.get("answer") in (None, ""):
            return None
        return {"job": job, "chunk": chunk_id, "task": instruction, "answer": answer.get("answer"),
                "citation": answer.get("citation")}


def _prompt(messages: list[Message], max_tokens: int) -> Prompt:
    return Prompt(messages=tuple(messages), max_output_tokens=max_tokens)


def _final_has_answer(obj: dict[str, Any]) -> str | None:
    if obj.get("decision") == prompts.FINAL and not obj.get("answer"):
        return "decision provide_final_answer needs the answer in `answer`"
    return None


async def _supervise(
    run: RequestRun, remote: Side, messages: list[Message], schema: dict[str, Any], *,
    step: str, round_no: int, max_tokens: int,
) -> tuple[dict[str, Any] | None, list[Message]]:
    """A supervisor call; a failed call fails the request (the protocol cannot go on without it)."""
    rule = _final_has_answer if step == "decision" else None
    try:
        return await run.ask_json(remote, messages, schema, step=step, round_no=round_no, max_tokens=max_tokens,
                                  rule=rule)
    except RequestFailed as exc:
        raise ProtocolFailed(exc.category, f"remote supervisor call failed: {exc.detail or exc.category.value}") \
            from None
