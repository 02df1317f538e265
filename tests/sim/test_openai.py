"""The OpenAI chat-completions dialect, driven over loopback."""

from __future__ import annotations

import json

from sim_helpers import openai_events, openai_payload, run, with_server

from loadbench.sim import SimConfig
from loadbench.sim.text import count_tokens


def _post(payload, *, config=None, path="/v1/chat/completions", headers=None):
    async def body(server, session):
        async with session.post(server.base_url + path, json=payload, headers=headers or {}) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    return run(with_server(config or SimConfig(), body))


def test_stream_event_sequence_and_usage():
    status, headers, raw = _post(openai_payload(7))
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    events = openai_events(raw)
    assert events[-1] == "[DONE]"
    first, *middle, finish, usage_chunk, _ = events
    # The first chunk announces the role with empty content: no token.
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    tokens = [e["choices"][0]["delta"]["content"] for e in middle]
    assert len(tokens) == 7 and all(tokens)
    assert finish["choices"][0]["finish_reason"] == "length"
    assert finish["choices"][0]["delta"] == {}
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["completion_tokens"] == len(tokens) == 7
    assert usage["prompt_tokens"] == count_tokens("hello there")
    assert usage["total_tokens"] == usage["prompt_tokens"] + 7
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0
    # Re-tokenising the answer gives the count the server reported.
    assert count_tokens("".join(tokens)) == 7
    # With include_usage every other chunk carries "usage": null.
    assert all(e["usage"] is None for e in middle)
    assert all(e["id"] == first["id"] and e["object"] == "chat.completion.chunk" for e in events[:-1])


def test_no_usage_chunk_without_include_usage():
    payload = openai_payload(3)
    del payload["stream_options"]
    _, _, raw = _post(payload)
    events = openai_events(raw)
    assert events[-1] == "[DONE]"
    assert all("usage" not in e for e in events[:-1])
    assert len(events) == 1 + 3 + 1 + 1


def test_max_completion_tokens_and_default_length():
    _, _, raw = _post(openai_payload(None, max_completion_tokens=5))
    assert openai_events(raw)[-2]["usage"]["completion_tokens"] == 5
    config = SimConfig()
    _, _, raw = _post(openai_payload(None), config=config)
    usage = openai_events(raw)[-2]["usage"]
    assert usage["completion_tokens"] == config.profile.default_output_tokens
    assert openai_events(raw)[-3]["choices"][0]["finish_reason"] == "stop"


def test_eos_min_tokens_and_ignore_eos():
    profile = SimConfig().profile.__class__(name="eos", step_base_ms=0.0, step_per_seq_ms=0.0,
                                             prefill_per_token_ms=0.0, eos_after_tokens=4)
    config = SimConfig(profile=profile)

    def count(**extra):
        _, _, raw = _post(openai_payload(20, **extra), config=config)
        events = openai_events(raw)
        return events[-2]["usage"]["completion_tokens"], events[-3]["choices"][0]["finish_reason"]

    assert count() == (4, "stop")
    assert count(ignore_eos=True) == (20, "length")
    assert count(min_tokens=9) == (9, "stop")


def test_non_streaming_body():
    status, _, raw = _post(openai_payload(6, stream=False))
    assert status == 200
    body = json.loads(raw)
    assert body["object"] == "chat.completion"
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert count_tokens(message["content"]) == body["usage"]["completion_tokens"] == 6


def test_deepseek_reasoner_streams_reasoning_content_first():
    config = SimConfig(reasoning_tokens=5)
    _, _, raw = _post(openai_payload(12, model="deepseek-reasoner"), config=config)
    events = openai_events(raw)
    deltas = [e["choices"][0]["delta"] for e in events[1:-3]]
    kinds = ["r" if d.get("reasoning_content") else "a" for d in deltas]
    assert kinds == ["r"] * 5 + ["a"] * 7
    usage = events[-2]["usage"]
    assert usage["completion_tokens"] == 12
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 5


def test_reasoning_effort_is_hidden_but_counted():
    config = SimConfig(reasoning_tokens=4)
    _, _, raw = _post(openai_payload(10, model="o3-mini", reasoning_effort="low"), config=config)
    events = openai_events(raw)
    deltas = [e["choices"][0]["delta"] for e in events[1:-3]]
    assert all("reasoning_content" not in d for d in deltas)
    assert len(deltas) == 6
    usage = events[-2]["usage"]
    assert usage["completion_tokens"] == 10
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 4


def test_legacy_completions():
    _, _, raw = _post({"model": "m", "prompt": "once upon", "max_tokens": 4, "stream": True},
                      path="/v1/completions")
    events = openai_events(raw)
    texts = [e["choices"][0]["text"] for e in events[:-2]]
    assert len(texts) == 4 and all(texts)
    assert events[-2]["choices"][0]["finish_reason"] == "length"


def test_bad_requests_use_openai_error_shape():
    status, _, raw = _post({"model": "m", "messages": "nope"})
    assert status == 400
    err = json.loads(raw)["error"]
    assert err["type"] == "invalid_request_error" and "messages" in err["message"]
    status, _, raw = _post(openai_payload(0))
    assert status == 400 and "max_tokens" in json.loads(raw)["error"]["message"]


def test_models_tokenize_health():
    async def body(server, session):
        async with session.get(server.base_url + "/v1/models") as r:
            models = await r.json()
        async with session.post(server.base_url + "/tokenize", json={"content": "Hello, world!"}) as r:
            tokens = await r.json()
        async with session.post(server.base_url + "/tokenize",
                                json={"content": "Hello", "with_pieces": True}) as r:
            pieces = await r.json()
        async with session.get(server.base_url + "/health") as r:
            health = r.status
        return models, tokens, pieces, health

    models, tokens, pieces, health = run(with_server(SimConfig(models=("a:1", "b:2")), body))
    assert [m["id"] for m in models["data"]] == ["a:1", "b:2"]
    assert models["object"] == "list"
    assert len(tokens["tokens"]) == count_tokens("Hello, world!") == 6  # Hell|o|,| worl|d|!
    assert "".join(p["piece"] for p in pieces["tokens"]) == "Hello"
    assert health == 200


def test_a_foreign_tokenizer_and_chat_template():
    """``piece_chars`` and the template tokens change every count the same way: /tokenize of
    text, /tokenize of messages (vLLM's form) and the chat endpoint's usage agree."""
    config = SimConfig(piece_chars=2, chat_template_tokens=5, message_template_tokens=3)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello, world!"}]

    async def body(server, session):
        async with session.post(server.base_url + "/tokenize", json={"content": "Hello, world!"}) as r:
            text = await r.json()
        async with session.post(server.base_url + "/tokenize", json={"messages": messages}) as r:
            chat = await r.json()
        async with session.post(server.base_url + "/v1/chat/completions",
                                json={"model": "m", "messages": messages, "max_tokens": 2}) as r:
            usage = (await r.json())["usage"]
        return text, chat, usage

    text, chat, usage = run(with_server(config, body))
    assert len(text["tokens"]) == 8  # He|ll|o|,| wo|rl|d|!
    expected = 5 + (3 + 5) + (3 + 8)  # template, "Be brief." = Be| br|ie|f|.
    assert chat == {"count": expected} and usage["prompt_tokens"] == expected


def test_tokenize_switched_off_answers_404():
    async def body(server, session):
        async with session.post(server.base_url + "/tokenize", json={"content": "Hello"}) as r:
            return r.status

    assert run(with_server(SimConfig(tokenize=False), body)) == 404
