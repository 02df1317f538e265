import orjson
import pytest

from loadbench.contract.errors import ErrorCategory, RequestFailed
from loadbench.contract.prompt import Message, Prompt
from loadbench.deployments.wire.anthropic import AnthropicWire

from .helpers import run_stream


def event(name: str, **data) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


START = event(
    "message_start",
    message={
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-x",
        "stop_reason": None,
        "usage": {"input_tokens": 25, "output_tokens": 1},
    },
)
END = event(
    "message_delta",
    delta={"stop_reason": "end_turn", "stop_sequence": None},
    usage={"output_tokens": 15},
) + event("message_stop")


def text_block(index: int, *pieces: str) -> bytes:
    out = event("content_block_start", index=index, content_block={"type": "text", "text": ""})
    for piece in pieces:
        out += event("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
    return out + event("content_block_stop", index=index)


WIRE = AnthropicWire(model="claude-x")


def test_text_stream_with_ping_and_usage():
    raw = START + event("ping") + text_block(0, "Hello", "", " world") + END
    record = run_stream(WIRE, raw, split=17, keep_text=True)
    assert len(record.chunk_ns) == 2  # the empty text_delta is not a token
    assert (record.input_tokens, record.output_tokens) == (25, 15)
    assert "".join(record.text) == "Hello world"


def test_thinking_block_then_text():
    thinking = (
        event("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""})
        + event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Let"})
        + event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": " me"})
        + event("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "EqQ"})
        + event("content_block_stop", index=0)
    )
    record = run_stream(WIRE, START + thinking + text_block(1, "42") + END)
    assert record.reasoning_chunks == 2 and len(record.chunk_ns) == 3
    assert record.first_token_ns < record.first_answer_ns == record.chunk_ns[-1]


def test_overloaded_error_event_and_other_error():
    raw = START + event("error", error={"type": "overloaded_error", "message": "Overloaded"})
    with pytest.raises(RequestFailed) as info:
        run_stream(WIRE, raw)
    assert info.value.category is ErrorCategory.OVERLOADED
    raw = START + event("error", error={"type": "api_error", "message": "boom"})
    with pytest.raises(RequestFailed) as info:
        run_stream(WIRE, raw)
    assert info.value.category is ErrorCategory.STREAM_ERROR and "boom" in info.value.detail


def test_truncated_without_message_stop_and_malformed():
    with pytest.raises(RequestFailed) as info:
        run_stream(WIRE, START + text_block(0, "a"))
    assert info.value.category is ErrorCategory.TRUNCATED
    with pytest.raises(RequestFailed) as info:
        run_stream(WIRE, START + b"event: content_block_delta\ndata: {oops\n\n" + END)
    assert info.value.category is ErrorCategory.MALFORMED


def test_body_thinking_and_system():
    prompt = Prompt(messages=(Message("system", "sys"), Message("user", "q")), max_output_tokens=100)
    body = AnthropicWire(model="c", thinking_budget_tokens=1024, temperature=0.5).body(prompt)
    assert body["system"] == "sys" and body["messages"] == [{"role": "user", "content": "q"}]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert body["max_tokens"] > 1024 and "temperature" not in body
    plain = AnthropicWire(model="c", default_max_tokens=777).body(Prompt.user("q"))
    assert plain["max_tokens"] == 777 and "thinking" not in plain
