"""The words the protocols send, and the JSON shapes they ask for.

Every structured reply is asked for twice: as the dialect's schema option where the server has one
(a grammar there makes malformed output impossible), and in the prompt text as a fenced
``json-schema`` block, for servers without one. Lengths are bounded in every schema so a model
held to the schema by a grammar always reaches the end of its object.
"""

from __future__ import annotations

from typing import Any

import orjson

FINAL = "provide_final_answer"
MORE = "request_additional_info"


def _text(max_chars: int, *, nullable: bool = False) -> dict[str, Any]:
    return {"type": ["string", "null"] if nullable else "string", "maxLength": max_chars}


def _object(title: str, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": title,
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


def shown(schema: dict[str, Any]) -> str:
    """The schema as the prompt shows it (the fenced block the simulator also reads)."""
    return "```json-schema\n" + orjson.dumps(schema).decode() + "\n```"


def reply_rule(schema: dict[str, Any]) -> str:
    return f"Reply with one JSON object and nothing else. It must follow this schema:\n{shown(schema)}"


RETRY = (
    "That reply could not be used: {problem}. Send the reply again as one JSON object that "
    "follows the schema, with no other text."
)

# -- Minion: one remote supervisor, one local worker holding the whole document ------------------


def minion_question_schema(chars: int) -> dict[str, Any]:
    return _object("first_question", {"message": _text(chars)})


def minion_decision_schema(chars: int, *, last: bool) -> dict[str, Any]:
    return _object(
        "decision",
        {
            "reasoning": _text(chars),
            "decision": {"enum": [FINAL] if last else [FINAL, MORE]},
            "answer": _text(chars, nullable=not last),
            "message": _text(chars, nullable=True),
        },
    )


def minion_worker_system(context: str) -> str:
    return (
        "You have a document that only you can read. A colleague who cannot see it is working on "
        "a task and will ask you about it. Answer each question from the document alone: quote the "
        "lines you rely on, give figures exactly as written, and say plainly when the document "
        "does not hold what is asked. Be brief.\n\n"
        f"<document>\n{context}\n</document>"
    )


MINION_SUPERVISOR_SYSTEM = (
    "You are completing a task about a document you cannot see. A small assistant model has the "
    "whole document and answers your questions about it. It is easily confused by broad or "
    "compound questions, so ask for one specific thing at a time, and check its answers against "
    "each other before relying on them."
)


def minion_opening(task: str, schema: dict[str, Any]) -> str:
    return (
        f"The task:\n{task}\n\nWrite your first question for the assistant, in `message`.\n\n"
        + reply_rule(schema)
    )


def minion_after_reply(reply: str, round_no: int, max_rounds: int, schema: dict[str, Any]) -> str:
    last = round_no >= max_rounds
    if last:
        steer = (
            "This was the last exchange: give your final answer now, as well as the findings allow, "
            "with decision provide_final_answer."
        )
    else:
        steer = (
            "If the findings let you complete the task, give the final answer (decision "
            "provide_final_answer, `answer` set); otherwise ask a follow-up question (decision "
            "request_additional_info, `message` set). Think it through in `reasoning` first."
        )
    return (
        f"The assistant replied (exchange {round_no} of {max_rounds}):\n<reply>\n{reply}\n</reply>\n\n"
        f"{steer}\n\n" + reply_rule(schema)
    )


# -- Minions: the remote plans jobs over chunks, the local model runs them, the remote decides ------


def minions_plan_schema(
    chars: int, *, tasks: int, chunkings: tuple[str, ...], max_chunk: int
) -> dict[str, Any]:
    chunk_ids = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": max_chunk},
                 "maxItems": max_chunk + 1}
    props: dict[str, Any] = {
        "reasoning": _text(chars),
        "chunking": {"enum": list(chunkings)},
        "tasks": {
            "type": "array",
            "minItems": 1,
            "maxItems": tasks,
            "items": _object(
                "task",
                {"instruction": _text(chars), "chunks": {"anyOf": [{"const": "all"}, chunk_ids]}},
            ),
        },
    }
    return _object("job_plan", props)


def minions_job_schema(chars: int) -> dict[str, Any]:
    return _object(
        "job_answer",
        {"explanation": _text(chars), "citation": _text(chars, nullable=True), "answer": _text(chars, nullable=True)},
    )


def minions_decision_schema(chars: int, *, last: bool) -> dict[str, Any]:
    return _object(
        "synthesis",
        {
            "explanation": _text(chars),
            "decision": {"enum": [FINAL] if last else [FINAL, MORE]},
            "answer": _text(chars) if last else _text(chars, nullable=True),
        },
    )


MINIONS_SUPERVISOR_SYSTEM = (
    "You lead a team of small assistant models that read a long document you cannot see. The "
    "document is cut into numbered chunks. You give the team simple jobs: each task is one short, "
    "self-contained instruction that an assistant carries out on one chunk at a time, answering "
    "from that chunk alone (or reporting it found nothing). Good tasks ask for one fact, figure or "
    "passage each; several narrow tasks beat one broad one. You then read their answers and decide."
)


def minions_plan(
    task: str,
    counts: dict[str, int],
    round_no: int,
    max_rounds: int,
    tasks: int,
    notes: list[str],
    schema: dict[str, Any],
) -> str:
    ways = "; ".join(f"by {by}: {n} chunks (ids 0 to {n - 1})" for by, n in counts.items())
    earlier = ""
    if notes:
        earlier = "\n\nWhat earlier rounds found and what is still missing:\n" + "\n".join(
            f"- round {i + 1}: {note}" for i, note in enumerate(notes)
        )
    return (
        f"The task:\n{task}\n\nRound {round_no} of {max_rounds}. The document can be cut {ways}. "
        f"Choose the cut in `chunking`, then give at most {tasks} tasks; each task's `chunks` is "
        f'"all" or a list of chunk ids to run it on.{earlier}\n\n' + reply_rule(schema)
    )


WORKER_JOB_SYSTEM = (
    "You read one chunk of a document and carry out one instruction on it. Use only the chunk. Put "
    "your short reasoning in `explanation`, the exact words you rely on in `citation`, and the "
    "result in `answer`. When the chunk does not hold what is asked, set `answer` and `citation` "
    "to null."
)


def minions_job(chunk: str, chunk_id: int, n_chunks: int, instruction: str, schema: dict[str, Any]) -> str:
    return (
        f"Chunk {chunk_id} of {n_chunks}:\n<chunk>\n{chunk}\n</chunk>\n\nInstruction: {instruction}\n\n"
        + reply_rule(schema)
    )


def minions_decide(
    task: str, findings: list[dict[str, Any]], empty: int, round_no: int, max_rounds: int, schema: dict[str, Any]
) -> str:
    lines = "\n".join(orjson.dumps(f).decode() for f in findings) or "(no job found anything)"
    last = round_no >= max_rounds
    steer = (
        "This is the last round: give your final answer now, as well as the findings allow."
        if last
        else "If the findings let you complete the task, give the final answer (decision "
        "provide_final_answer, `answer` set). Otherwise say in `explanation` what is still missing, "
        "so the next round's jobs can look for it (decision request_additional_info)."
    )
    return (
        f"The task:\n{task}\n\nRound {round_no} of {max_rounds}: the assistants' answers, one per line "
        f"(jobs that found nothing are left out: {empty}):\n{lines}\n\n{steer}\n\n" + reply_rule(schema)
    )
