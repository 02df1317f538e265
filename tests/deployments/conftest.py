"""Fixtures for the deployment tests: one simulator per module, and a helper to send prompts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from time import perf_counter_ns

import pytest

from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.deployments import ClientSettings, Deployment
from loadbench.sim import SimConfig, SimProcess


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    with SimProcess(SimConfig()) as process:
        yield process


def new_records(n: int, prefix: str = "r") -> list[RequestRecord]:
    now = perf_counter_ns()
    return [RequestRecord(index=i, request_id=f"{prefix}-{i}", intended_ns=now) for i in range(n)]


async def send_all(
    deployment: Deployment,
    base_url: str,
    settings: ClientSettings,
    prompts: list[Prompt],
    *,
    prefix: str = "r",
    concurrent: bool = False,
) -> list[RequestRecord | BaseException]:
    """Open ``deployment`` and send each prompt; failures come back in place of records."""
    records = new_records(len(prompts), prefix)
    out: list[RequestRecord | BaseException] = list(records)
    async with deployment.open(base_url=base_url, settings=settings) as sender:

        async def one(i: int) -> None:
            records[i].sent_ns = perf_counter_ns()
            try:
                await sender.send(prompts[i], records[i])
            except Exception as exc:
                out[i] = exc

        if concurrent:
            await asyncio.gather(*(one(i) for i in range(len(prompts))))
        else:
            for i in range(len(prompts)):
                await one(i)
    return out


def run(coro):
    return asyncio.run(coro)


def sim_trace(sim: SimProcess) -> list[dict]:
    """The simulator's ground truth so far, from its JSONL endpoint."""
    import urllib.request

    import orjson

    with urllib.request.urlopen(sim.base_url + "/sim/trace", timeout=5) as resp:
        return [orjson.loads(line) for line in resp.read().splitlines() if line.strip()]
