"""Shared helpers for the deployment tests: feed raw response bytes through a dialect parser."""

from __future__ import annotations

from loadbench.contract.record import RequestRecord
from loadbench.deployments.framing import NdjsonDecoder, SseDecoder, end_of_stream


def new_record(*, keep_text: bool = False) -> RequestRecord:
    record = RequestRecord(index=0, request_id="t-0", intended_ns=1, sent_ns=1)
    if keep_text:
        record.text = []
    return record


def run_stream(wire, raw: bytes, *, split: int = 7, keep_text: bool = False) -> RequestRecord:
    """Parse ``raw`` as the HTTP sender does, cut into ``split``-byte reads; raise like it does.

    Each read gets its own increasing timestamp so token stamps can be checked for order.
    """
    record = new_record(keep_text=keep_text)
    parser = wire.parser(record)
    decoder = SseDecoder() if wire.framing == "sse" else NdjsonDecoder()
    now = 1000
    for start in range(0, len(raw), split):
        now += 1
        for event, data in decoder.feed(raw[start : start + split]):
            parser.feed(event, data, now)
    record.end_ns = now
    end_of_stream(decoder, parser, now)
    return record
