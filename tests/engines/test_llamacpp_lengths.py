"""Input lengths against llama-server's own tokenizer, on a model whose vocabulary no other test
uses (the tiny model's "subword" vocabulary: other pieces, other merges, another size)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from loadbench.engines.llamacpp import LlamaServer, tiny_model_path
from loadbench.engines.tiny_gguf import build_vocab
from loadbench.workloads import Balanced, Decode, MultiTurn, Prefill, ServerTokenizer
from loadbench.workloads.base import ExactLengths

from . import fixtures

pytest.importorskip("gguf")

SLOTS = 2


@pytest.fixture(scope="module")
def subword_server() -> Iterator[LlamaServer]:
    binary = fixtures.require_llama_server_binary()
    with LlamaServer(tiny_model_path("subword"), binary=binary, n_parallel=SLOTS, n_ctx=SLOTS * 4096) as server:
        yield server


def prompt_tokens(base_url: str, prompt) -> int:
    body = {
        "model": "tiny",
        "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
        "max_tokens": 1,
        "stream": False,
    }
    req = urllib.request.Request(
        base_url + "/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())["usage"]["prompt_tokens"]


def test_the_subword_vocabulary_is_unlike_the_default():
    words, _, _ = build_vocab("words")
    sub, _, _ = build_vocab("subword")
    assert len(sub) != len(words)
    normal = set(words[261:]) ^ set(sub[261:])
    assert len(normal) > 500  # most pieces differ, so the merges do too
    assert max(len(p) for p in sub[261:]) <= 4  # "▁" and three letters at most
    with pytest.raises(ValueError, match="vocab"):
        build_vocab("nonsense")


@pytest.mark.llamacpp
def test_count_chat_is_what_the_chat_endpoint_reports(subword_server):
    tok = ServerTokenizer(subword_server.base_url)
    messages = [("system", "You answer briefly."), ("user", "What was the revenue in fiscal 2021?")]
    from loadbench.workloads import Message, Prompt

    prompt = Prompt(messages=tuple(Message(r, c) for r, c in messages))  # type: ignore[arg-type]
    assert tok.count_chat(messages) == prompt_tokens(subword_server.base_url, prompt)
    assert tok.chat_mode == "apply-template"
    # Several characters per token fewer than the default estimate assumes: it would be far off.
    text = messages[1][1]
    assert tok.count(text) > 1.3 * len(text.split())


@pytest.mark.llamacpp
@pytest.mark.parametrize(
    "workload", [Prefill(), Balanced(), Decode(), Balanced(multi_turn=MultiTurn(turns=3, interleave=2))],
    ids=["prefill", "balanced", "decode", "balanced-multi"],
)
def test_every_prompt_is_on_llama_servers_count_from_the_first(subword_server, workload):
    base = subword_server.base_url
    stream = workload.open(seed=0, counter=ServerTokenizer(base), exact=ExactLengths(prompts=24))
    assert stream.exact["prompts"] == 24 and stream.exact["chat_template"] == "apply-template"
    errors = []
    for _ in range(24):
        p = next(stream)
        errors.append(abs(prompt_tokens(base, p) - p.target_input_tokens) / p.target_input_tokens)
    assert max(errors) <= 0.05, np.round(errors, 3)
