"""The per-request record: the facts one request produced, stamped on the hot path.

Part of the contract (``loadbench.contract``) because three boxes share it: the scheduler creates
a record, a deployment's client stamps it while the stream arrives, and the recorder reads it once
the request is over. Every stamp is ``time.perf_counter_ns()``; zero means
"did not happen".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Phase = Literal["warmup", "measured", "cooldown"]
Status = Literal["pending", "ok", "failed", "cancelled"]


@dataclass(slots=True, eq=False)
class RequestRecord:
    """One request, from the plan's intended send time to the last byte.

    Stamps (ns, ``perf_counter_ns``): ``intended_ns`` is when the load plan wanted the request sent
    (open loop) or when its user became free (closed loop); ``sent_ns`` when it was handed to the
    transport (the client moves it to the moment the request's bytes are written, where it can see
    that); ``written_ns`` that moment, 0 while the request has not been written (connecting, or
    waiting for a connection); ``headers_ns`` when the response headers arrived;
    ``first_token_ns`` the first chunk carrying any generated text, reasoning included;
    ``first_answer_ns`` the first chunk carrying answer text; ``end_ns`` the last byte.
    ``chunk_ns`` holds the stamp of every token-bearing chunk, in order.

    Token counts: ``output_tokens``/``input_tokens``/``reasoning_tokens`` are the server's own
    counts, ``None`` when the server gave none; ``output_tokens_used`` falls back to counting
    chunks and ``output_tokens_reported`` says which.
    """

    index: int
    request_id: str
    intended_ns: int
    phase: Phase = "measured"
    user: int = -1
    sent_ns: int = 0
    written_ns: int = 0
    headers_ns: int = 0
    first_token_ns: int = 0
    first_answer_ns: int = 0
    end_ns: int = 0
    chunk_ns: list[int] = field(default_factory=list)
    reasoning_chunks: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    target_input_tokens: int | None = None
    target_output_tokens: int | None = None
    status: Status = "pending"
    error: str | None = None
    error_detail: str | None = None
    http_status: int | None = None
    # The response's media type (``text/event-stream``; no parameters), once headers arrived.
    content_type: str | None = None
    # For a cancelled request, what it was doing when cancelled (see ``cancelled_phase``).
    cancelled_in: str | None = None
    # Server-side view where the dialect reports one (Ollama's done record, llama.cpp's timings),
    # normalised by the client to *_ms floats and *_tokens ints.
    server: dict[str, Any] | None = None
    # Answer text, kept only when the run checks answers (decided once when the record is made,
    # so clients test ``is not None`` instead of reading configuration per chunk).
    text: list[str] | None = None
    # Hybrid deployments: a request made of calls to two deployments. A child call (one local or
    # remote call made on a scheduled request's behalf) names its ``parent`` request id, its
    # ``role`` ("supervisor" remote, "worker" local), protocol ``round``, ``job`` (or None) and
    # ``step``; it is written to requests.jsonl beside its parent and never counted as scheduled.
    # The parent holds its ``children`` and the per-request protocol facts in ``hybrid``.
    parent: str | None = None
    role: str | None = None
    round: int | None = None
    job: int | None = None
    step: str | None = None
    children: list[RequestRecord] | None = None
    hybrid: dict[str, Any] | None = None

    def token(self, now_ns: int, *, reasoning: bool = False) -> None:
        """Stamp one chunk that carried generated text (answer, or reasoning when ``reasoning``)."""
        self.chunk_ns.append(now_ns)
        if not self.first_token_ns:
            self.first_token_ns = now_ns
        if reasoning:
            self.reasoning_chunks += 1
        elif not self.first_answer_ns:
            self.first_answer_ns = now_ns

    def cancelled_phase(self) -> str:
        """What the request was waiting for, from its stamps: ``"queued"`` (never sent: waiting for
        a concurrency slot), ``"connecting"`` (sent but its bytes not yet written: opening or
        waiting for a connection), ``"waiting_first_token"`` (written, no token yet; ``headers_ns``
        says whether the headers came) or ``"streaming"`` (tokens arriving, no end yet)."""
        if self.first_token_ns:
            return "streaming"
        if self.written_ns:
            return "waiting_first_token"
        return "connecting" if self.sent_ns else "queued"

    @property
    def output_tokens_reported(self) -> bool:
        """True when ``output_tokens`` came from the server rather than from counting chunks."""
        return self.output_tokens is not None

    @property
    def reasoning_tokens_used(self) -> int:
        """Reasoning tokens: the server's count, else the reasoning chunks streamed (Ollama's done
        record and Anthropic's usage fold thinking into the output count)."""
        return self.reasoning_tokens if self.reasoning_tokens is not None else self.reasoning_chunks

    @property
    def output_tokens_used(self) -> int:
        """The output token count the metrics use: the server's, else the token-bearing chunks."""
        return self.output_tokens if self.output_tokens is not None else len(self.chunk_ns)
