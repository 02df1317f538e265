"""The interface the scheduler calls and deployments implement.

The scheduler is its only caller and decides its shape; it lives in the contract, not in
``loadbench.load``, so a deployment implementing it depends on no box: a client needs to know
nothing about plans, phases or recording. It sends one prompt and stamps one record.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Literal, Protocol

from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord

# Where a sender stamps arrivals, best first: "kernel" when the kernel stamped the bytes as they
# reached the host (a busy event loop does not delay the stamp), "socket" when the event loop
# delivered them off the socket, "reader" when the client's reader (a coroutine, an SDK) handed
# them over, which can be later under load.
Stamping = Literal["kernel", "socket", "reader"]
STAMPING_ORDER: tuple[Stamping, ...] = ("kernel", "socket", "reader")


class Sender(Protocol):
    """Sends prompts to one target over one shared connection pool.

    ``model`` is the model named in its requests, as resolved when the deployment was opened (a
    preset with the run's quant, the server's own first model); ``None`` for a sender that speaks
    to more than one (a hybrid). ``stamping`` says where its arrival stamps are taken.
    """

    @property
    def model(self) -> str | None: ...

    @property
    def stamping(self) -> Stamping: ...

    async def send(self, prompt: Prompt, record: RequestRecord) -> None:
        """Send ``prompt`` and stamp ``record`` as the response streams in.

        Before the call the scheduler has set ``record.sent_ns``; a sender that can see the moment
        the request's bytes reach the transport moves the stamp there (so the client's own
        preparation counts as dispatch lag, not as server latency). The sender calls
        ``record.token(perf_counter_ns(), reasoning=...)`` for each chunk carrying generated text,
        fills the server's token counts and timings when the dialect reports them, and sets
        ``end_ns`` at the last byte. On failure it raises ``loadbench.contract.errors.RequestFailed`` (stamps
        made so far stay). Cancellation propagates as ``asyncio.CancelledError``.
        """
        ...


class GatedSender(Sender, Protocol):
    """A sender that can prepare a request before it is due and write it when told.

    The scheduler calls ``send_gated`` up to a few tens of milliseconds before the request's
    intended time; the sender builds the request and takes its connection, waits for ``gate``,
    then writes the request and stamps ``record.sent_ns`` at that write. Cancellation while
    waiting at the gate must leave nothing sent. Otherwise the contract is ``send``'s.
    """

    async def send_gated(self, prompt: Prompt, record: RequestRecord, gate: Awaitable[None]) -> None: ...
