"""One line of requests.jsonl per finished request: the raw stamps plus the derived figures."""

from __future__ import annotations

from typing import Any

from loadbench.contract.record import RequestRecord


def _ms(a: int, b: int) -> float | None:
    return (b - a) / 1e6 if a and b else None


def record_to_json(r: RequestRecord, *, chunk_times: bool = True) -> dict[str, Any]:
    """The JSON object written for ``r``.

    ``*_ns`` stamps are raw ``perf_counter_ns`` values (CLOCK_MONOTONIC: comparable with a server's
    stamps on the same host; run.json holds the anchor that maps them to wall-clock time).
    ``chunk_offsets_us`` are the token-bearing chunk times relative to ``sent_ns``.
    """
    out: dict[str, Any] = {
        "index": r.index,
        "request_id": r.request_id,
        "phase": r.phase,
        "status": r.status,
        "intended_ns": r.intended_ns,
        "sent_ns": r.sent_ns,
        "first_token_ns": r.first_token_ns,
        "first_answer_ns": r.first_answer_ns,
        "end_ns": r.end_ns,
        "dispatch_lag_ms": _ms(r.intended_ns, r.sent_ns),
        "ttft_ms": _ms(r.sent_ns, r.first_token_ns),
        "ttft_from_schedule_ms": _ms(r.intended_ns, r.first_token_ns),
        "time_to_first_answer_ms": _ms(r.sent_ns, r.first_answer_ns),
        "e2e_ms": _ms(r.sent_ns, r.end_ns),
        "e2e_from_schedule_ms": _ms(r.intended_ns, r.end_ns),
        "output_tokens": r.output_tokens_used,
        "output_tokens_reported": r.output_tokens_reported,
        "input_tokens": r.input_tokens,
        "reasoning_tokens": r.reasoning_tokens_used,
        "reasoning_tokens_reported": r.reasoning_tokens is not None,
        "chunks": len(r.chunk_ns),
        "reasoning_chunks": r.reasoning_chunks,
        "target_input_tokens": r.target_input_tokens,
        "target_output_tokens": r.target_output_tokens,
    }
    if r.user >= 0:
        out["user"] = r.user
    out["http_status"] = r.http_status
    if r.written_ns:
        out["written_ns"] = r.written_ns
    if r.headers_ns:
        out["headers_ns"] = r.headers_ns
    if r.error is not None:
        out["error"] = r.error
        out["error_detail"] = r.error_detail
        out["content_type"] = r.content_type
    if r.cancelled_in is not None:
        out["cancelled_in"] = r.cancelled_in
        out["error_detail"] = r.error_detail
    if r.server:
        out["server"] = r.server
    if chunk_times and r.sent_ns:
        sent = r.sent_ns
        out["chunk_offsets_us"] = [(t - sent) // 1000 for t in r.chunk_ns]
    if r.text is not None:
        out["text"] = "".join(r.text)
    if r.parent is not None:
        out.update(parent=r.parent, role=r.role, round=r.round, job=r.job, step=r.step)
    if r.children is not None:
        out["children"] = len(r.children)
    if r.hybrid is not None:
        out["hybrid"] = r.hybrid
    return out


def with_children(batch: list[RequestRecord]) -> list[RequestRecord]:
    """``batch`` with each hybrid request's child calls placed just before it (children are
    written as lines of their own, the timeline of their parent)."""
    if not any(r.children for r in batch):
        return batch
    out: list[RequestRecord] = []
    for r in batch:
        if r.children:
            out.extend(r.children)
        out.append(r)
    return out
