"""The official SDKs parse the simulator's streams: a check on the wire formats' fidelity."""

from __future__ import annotations

import pytest
from sim_helpers import run, with_server

from loadbench.sim import SimConfig
from loadbench.sim.text import count_tokens


def test_openai_sdk_stream_with_usage_and_reasoning():
    openai = pytest.importorskip("openai")

    async def body(server, session):
        client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="sim", max_retries=0)
        async with client:
            stream = await client.chat.completions.create(
                model="deepseek-reasoner", messages=[{"role": "user", "content": "hi"}], max_tokens=9,
                stream=True, stream_options={"include_usage": True},
            )
            text, reasoning, usage = [], [], None
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.delta.content:
                        text.append(choice.delta.content)
                    extra = getattr(choice.delta, "reasoning_content", None)
                    if extra:
                        reasoning.append(extra)
            whole = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        return text, reasoning, usage, whole

    text, reasoning, usage, whole = run(with_server(SimConfig(reasoning_tokens=3), body))
    assert len(reasoning) == 3 and len(text) == 6
    assert usage.completion_tokens == 9 and usage.completion_tokens_details.reasoning_tokens == 3
    assert whole.usage.completion_tokens == 4 and count_tokens(whole.choices[0].message.content) == 4


def test_anthropic_sdk_stream_with_thinking():
    anthropic = pytest.importorskip("anthropic")

    async def body(server, session):
        client = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="sim", max_retries=0)
        async with client.messages.stream(
            model="claude-sim", max_tokens=12, messages=[{"role": "user", "content": "hi"}],
            thinking={"type": "enabled", "budget_tokens": 4},
        ) as stream:
            texts = [t async for t in stream.text_stream]
            final = await stream.get_final_message()
        await client.close()
        return texts, final

    texts, final = run(with_server(SimConfig(reasoning_tokens=10), body))
    assert len(texts) == 8
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.usage.output_tokens == 12 and final.stop_reason == "max_tokens"
    assert final.content[0].signature


def test_ollama_sdk_chat_stream_and_tags():
    ollama = pytest.importorskip("ollama")

    async def body(server, session):
        client = ollama.AsyncClient(host=server.base_url)
        parts = []
        async for part in await client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}],
                                            stream=True, think=True, options={"num_predict": 7}):
            parts.append(part)
        listed = await client.list()
        return parts, listed

    parts, listed = run(with_server(SimConfig(reasoning_tokens=2), body))
    assert parts[-1].done and parts[-1].eval_count == 7 and parts[-1].done_reason == "length"
    assert sum(1 for p in parts if p.message.thinking) == 2
    assert sum(1 for p in parts if p.message.content) == 5
    assert any(m.model == "llama3.2:latest" for m in listed.models)
