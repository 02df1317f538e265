"""Why orjson is a dependency: the standard library's json beside it on loadbench's two JSON jobs.

Parsing one streamed chunk (every token of every stream goes through this on the hot path) and
serialising one requests.jsonl line (off the hot path, on the writer thread).

    python benchmarks/json_parsers.py
"""

from __future__ import annotations

import json
import timeit

import orjson

CHUNK = (
    b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1795924327,"model":"llama3.2",'
    b'"choices":[{"index":0,"delta":{"content":" the"},"finish_reason":null}]}'
)
RECORD = {
    "index": 1,
    "request_id": "abc-1",
    "phase": "measured",
    "status": "ok",
    "intended_ns": 1,
    "sent_ns": 2,
    "chunk_offsets_us": list(range(0, 256_000, 1000)),
}


def per_call_us(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6


def main() -> None:
    rows = [
        ("parse one SSE chunk", per_call_us(lambda: json.loads(CHUNK), 100_000),
         per_call_us(lambda: orjson.loads(CHUNK), 100_000)),
        ("serialise a 256-chunk record", per_call_us(lambda: json.dumps(RECORD), 10_000),
         per_call_us(lambda: orjson.dumps(RECORD), 10_000)),
    ]
    print(f"{'job':<30}{'json µs':>10}{'orjson µs':>11}{'ratio':>8}")
    for name, std, fast in rows:
        print(f"{name:<30}{std:>10.2f}{fast:>11.2f}{std / fast:>7.1f}x")


if __name__ == "__main__":
    main()
