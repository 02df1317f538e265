"""Remote.compatible against a real llama.cpp server: tokens, usage and its ``timings``."""

import urllib.request

import orjson
import pytest

from loadbench.contract.prompt import Prompt
from loadbench.deployments import ClientSettings, Remote
from tests.engines.fixtures import llama_server  # noqa: F401  (registers the fixture)

from .conftest import run, send_all

pytestmark = pytest.mark.llamacpp


def served_model(base_url: str) -> str:
    with urllib.request.urlopen(base_url + "/v1/models", timeout=10) as resp:
        return orjson.loads(resp.read())["data"][0]["id"]


@pytest.mark.parametrize("client", ["http", "sdk"])
def test_streams_from_llama_server_and_reads_timings(llama_server, client):  # noqa: F811
    url = llama_server.base_url
    dep = Remote.compatible(url + "/v1", served_model(url), client=client)
    prompts = [Prompt.user("Tell me about the sea.", max_output_tokens=8, ignore_eos=True)] * 2
    records = run(send_all(dep, url, ClientSettings(pool_size=2), prompts, concurrent=True))
    for rec in records:
        assert not isinstance(rec, BaseException), rec
        assert rec.output_tokens == 8 and rec.input_tokens and rec.input_tokens > 0
        assert 1 <= len(rec.chunk_ns) <= 8
        server = rec.server
        assert server is not None and server["source"] == "llamacpp"
        assert server["output_tokens"] == 8 and server["output_ms"] > 0
        assert server["prompt_ms"] >= 0 and server["output_tokens_per_s"] > 0


@pytest.mark.llamacpp
def test_a_closed_loop_run_survives_the_servers_dropped_connections(llama_server, tmp_path):  # noqa: F811
    """llama-server closes each connection after a streamed answer without saying so; a run of
    back-to-back requests must still complete every one (the client retries a dead pooled
    connection, then stops reusing connections), with the server's own model and timings."""
    from loadbench import Concurrency, Decode, Experiment, Fixed, Stop

    result = Experiment(
        workload=Decode(input_tokens=Fixed(64), output_tokens=Fixed(32)),
        deployment=Remote.compatible(base_url=llama_server.base_url),
        load=Concurrency(3),
        stop=Stop(requests=24),
        target=llama_server.base_url,
        energy=False,
        out_dir=tmp_path / "run",
    ).run()
    req = result.summary["requests"]
    assert req["completed"] == 24 and req["failed"] == 0, req["errors"]
    assert result.summary["tokens"]["output_count_source"] == "server"
    assert result.summary["tokens"]["output_total"] == 24 * 32
    assert result.summary["server"]["output_tokens"]["p50"] == 32
    assert result.run["target"]["model"].endswith(".gguf")  # the server's own model, picked from /v1/models
