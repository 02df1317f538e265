"""Remote.compatible against a real llama.cpp server: tokens, usage and its ``timings``."""

import urllib.request

import orjson
import pytest

from loadbench.deployments import ClientSettings, Remote
from loadbench.workloads.prompt import Prompt
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
