"""Shared helpers for the simulator tests: run a server in-process, parse each dialect's stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from loadbench.contract.headers import REQUEST_ID_HEADER
from loadbench.sim import SimConfig
from loadbench.sim.server import SimServer


def run(coro: Awaitable[Any], timeout_s: float = 30.0) -> Any:
    """Run ``coro`` in a fresh event loop, bounded in time."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


async def with_server(config: SimConfig, body: Callable[[SimServer, aiohttp.ClientSession], Awaitable[Any]]) -> Any:
    """Start a ``SimServer`` in this loop and call ``body(server, session)``."""
    async with SimServer(config) as server, aiohttp.ClientSession() as session:
        return await body(server, session)


def parse_sse(raw: bytes) -> list[tuple[str | None, str]]:
    """(event, data) pairs of a server-sent-event body."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        out.append((event, "\n".join(data)))
    return out


def parse_ndjson(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


async def stream_chunks(session: aiohttp.ClientSession, url: str, payload: dict[str, Any],
                        request_id: str | None = None) -> tuple[int, list[tuple[int, bytes]]]:
    """POST and collect (perf_counter_ns, bytes) of each chunk as it arrives."""
    headers = {REQUEST_ID_HEADER: request_id} if request_id else {}
    chunks = []
    async with session.post(url, json=payload, headers=headers) as resp:
        async for data, _ in resp.content.iter_chunks():
            chunks.append((time.perf_counter_ns(), data))
        return resp.status, chunks


def openai_payload(n: int | None = 8, stream: bool = True, content: str = "hello there",
                   **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": content}],
                            "stream": stream}
    if n is not None:
        body["max_tokens"] = n
    if stream:
        body["stream_options"] = {"include_usage": True}
    body.update(extra)
    return body


def openai_events(raw: bytes) -> list[Any]:
    """The JSON objects of an OpenAI SSE stream, with ``"[DONE]"`` kept as a string."""
    return [data if data == "[DONE]" else json.loads(data) for _, data in parse_sse(raw)]
