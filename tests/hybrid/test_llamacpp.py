"""Minions with a real local server: llama-server and its tiny model as the worker, held to the job
schema by the grammar llama-server builds from ``response_format``; the simulator as the remote."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadbench import Chunking, Concurrency, Experiment, Hybrid, Minions, Prefill, Remote, SimConfig, Stop, Uniform
from loadbench.engines.llamacpp import LlamaServer
from tests.engines.fixtures import LLAMA_SERVER_CTX_PER_SLOT, LLAMA_SERVER_SLOTS, require_llama_server_binary

pytestmark = pytest.mark.llamacpp


@pytest.fixture(scope="module")
def llama_server() -> Iterator[LlamaServer]:
    """llama-server with the tiny model and its built-in ChatML template (``--no-jinja``): the
    llama.cpp this project builds fails to set up the schema's grammar on its Jinja chat path with
    this model ("Failed to initialize samplers"), while the built-in template path enforces it."""
    server = LlamaServer(
        binary=require_llama_server_binary(),
        n_parallel=LLAMA_SERVER_SLOTS,
        n_ctx=LLAMA_SERVER_SLOTS * LLAMA_SERVER_CTX_PER_SLOT,
        extra_args=("--no-jinja",),
    )
    with server:
        yield server


def test_minions_with_llama_server_as_the_local_side_has_no_local_protocol_error(
    llama_server: LlamaServer, tmp_path: Path
) -> None:
    protocol = Minions(
        max_rounds=3,
        # small chunks: the tiny model's context is 2,048 tokens per slot
        chunking=Chunking("section", chars=500, overlap_chars=50),
        tasks_per_round=2,
        max_jobs_per_round=8,
        local_concurrency=LLAMA_SERVER_SLOTS,
        worker_max_tokens=400,
        reply_chars=60,
    )
    hybrid = Hybrid(
        local=Remote.compatible(llama_server.base_url),
        remote=Remote.openai("gpt-4o"),
        protocol=protocol,
        local_url="own",
    )
    result = Experiment(
        workload=Prefill(input_tokens=Uniform(400, 600)),
        deployment=hybrid,
        load=Concurrency(2),
        stop=Stop(requests=6, drain_s=300.0),
        target="sim",
        sim=SimConfig(seed=7),
        energy=False,
        out_dir=tmp_path / "run",
    ).run()
    h = result.summary["hybrid"]
    assert result.summary["requests"]["scheduled"] == 6
    assert h["local"]["calls"] > 0 and h["local"]["failed_calls"] == 0
    assert h["local"]["model"].endswith(".gguf")  # the server's own model
    assert not [k for k in h["protocol_errors"] if k.startswith("local_")], h["protocol_errors"]
    assert h["local"]["max_in_flight"] <= LLAMA_SERVER_SLOTS
    workers = [c for c in result.child_records() if c["role"] == "worker"]
    assert workers and all(c["status"] == "ok" and c["output_tokens"] > 0 for c in workers)
    assert all(c["server"]["source"] == "llamacpp" for c in workers)  # llama-server's own timings
