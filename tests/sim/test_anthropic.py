"""The Anthropic Messages dialect, driven over loopback."""

from __future__ import annotations

import json

from sim_helpers import parse_sse, run, with_server

from loadbench.sim import FaultPlan, SimConfig
from loadbench.sim.text import count_tokens


def _post(payload, config=None, path="/v1/messages"):
    async def body(server, session):
        async with session.post(server.base_url + path, json=payload) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    return run(with_server(config or SimConfig(), body))


def _payload(n=6, stream=True, **extra):
    body = {"model": "claude-sim", "max_tokens": n, "stream": stream, "system": "be brief",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]}
    body.update(extra)
    return body


def test_stream_event_sequence_and_usage():
    status, _, raw = _post(_payload(6))
    assert status == 200
    events = parse_sse(raw)
    names = [name for name, _ in events]
    assert names == (["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 6
                     + ["content_block_stop", "message_delta", "message_stop"])
    datas = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for (n, _), d in zip(events, datas, strict=True))
    start = datas[0]["message"]
    assert start["content"] == [] and start["role"] == "assistant"
    assert start["usage"]["input_tokens"] == count_tokens("be brief") + count_tokens("hello there")
    assert datas[1]["content_block"] == {"type": "text", "text": ""}
    texts = [d["delta"]["text"] for d in datas[3:9]]
    assert all(d["delta"]["type"] == "text_delta" and d["index"] == 0 for d in datas[3:9])
    delta = datas[-2]
    assert delta["usage"]["output_tokens"] == len(texts) == 6
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert count_tokens("".join(texts)) == 6


def test_thinking_blocks():
    config = SimConfig(reasoning_tokens=50)
    _, _, raw = _post(_payload(20, thinking={"type": "enabled", "budget_tokens": 3}), config)
    datas = [json.loads(d) for _, d in parse_sse(raw)]
    assert datas[1]["content_block"]["type"] == "thinking"
    deltas = [d for d in datas if d["type"] == "content_block_delta"]
    kinds = [d["delta"]["type"] for d in deltas]
    assert kinds == ["thinking_delta"] * 3 + ["signature_delta"] + ["text_delta"] * 17
    assert [d["index"] for d in deltas] == [0] * 4 + [1] * 17
    starts = [d for d in datas if d["type"] == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["thinking", "text"]
    stops = [d["index"] for d in datas if d["type"] == "content_block_stop"]
    assert stops == [0, 1]
    assert datas[-2]["usage"]["output_tokens"] == 20  # thinking counts as output


def test_non_streaming_message():
    status, _, raw = _post(_payload(4, stream=False, thinking={"type": "enabled", "budget_tokens": 2}),
                           SimConfig(reasoning_tokens=8))
    body = json.loads(raw)
    assert status == 200 and body["type"] == "message"
    assert [c["type"] for c in body["content"]] == ["thinking", "text"]
    assert body["content"][0]["signature"]
    assert body["usage"]["output_tokens"] == 4
    assert count_tokens(body["content"][1]["text"]) == 2


def test_errors_and_overloaded():
    status, _, raw = _post({"model": "c", "messages": [{"role": "user", "content": "x"}]})
    assert status == 400
    err = json.loads(raw)
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in err["error"]["message"]
    status, headers, raw = _post(_payload(3), SimConfig(faults=FaultPlan(rates={"529": 1.0})))
    assert status == 529
    assert json.loads(raw)["error"]["type"] == "overloaded_error"
    assert "retry-after" in {k.lower() for k in headers}
    status, _, raw = _post(_payload(9), SimConfig(faults=FaultPlan(rates={"stream_error": 1.0}, after_tokens=2)))
    events = parse_sse(raw)
    assert status == 200
    assert events[-1][0] == "error"
    assert json.loads(events[-1][1])["error"]["type"] == "overloaded_error"
    assert [n for n, _ in events].count("content_block_delta") == 2
    assert "message_stop" not in [n for n, _ in events]


def test_count_tokens():
    status, _, raw = _post({"model": "c", "messages": [{"role": "user", "content": "hello there"}]},
                           path="/v1/messages/count_tokens")
    assert status == 200 and json.loads(raw) == {"input_tokens": count_tokens("hello there")}
