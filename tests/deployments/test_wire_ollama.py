import orjson
import pytest

from loadbench.contract.errors import ErrorCategory, RequestFailed
from loadbench.contract.prompt import Message, Prompt
from loadbench.deployments.wire.ollama import OllamaWire

from .helpers import run_stream


def ndjson(*objs) -> bytes:
    return b"".join((o if isinstance(o, bytes) else orjson.dumps(o)) + b"\n" for o in objs)


def part(content="", thinking=None, done=False, **extra):
    message = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    return {"model": "llama3.2", "created_at": "2025-01-01T00:00:00Z", "message": message, "done": done, **extra}


DONE = {
    "done_reason": "stop",
    "total_duration": 5_000_000_000,
    "load_duration": 2_000_000,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 130_000_000,
    "eval_count": 4,
    "eval_duration": 400_000_000,
}

CHAT = OllamaWire(model="llama3.2")


def test_chat_stream_and_done_record_durations():
    raw = ndjson(part("The"), part(" sky"), part(" is"), part(" blue"), part("", done=True, **DONE))
    record = run_stream(CHAT, raw, split=13, keep_text=True)
    assert len(record.chunk_ns) == 4 and record.reasoning_chunks == 0
    assert (record.input_tokens, record.output_tokens) == (26, 4)
    assert "".join(record.text) == "The sky is blue"
    assert record.server == {
        "source": "ollama",
        "prompt_tokens": 26,
        "prompt_ms": 130.0,
        "output_tokens": 4,
        "output_ms": 400.0,
        "load_ms": 2.0,
        "total_ms": 5000.0,
        "done_reason": "stop",
    }


def test_thinking_before_content_counts_as_reasoning():
    raw = ndjson(part(thinking="Hmm"), part(thinking=" ok"), part("Yes"), part("", done=True, **DONE))
    record = run_stream(CHAT, raw)
    assert record.reasoning_chunks == 2 and len(record.chunk_ns) == 3
    assert record.first_token_ns < record.first_answer_ns


def test_generate_shape_and_big_context_line():
    wire = OllamaWire(model="m", api="generate")
    final = {"response": "", "done": True, "context": list(range(200_000)), **DONE}
    raw = ndjson({"response": "a", "done": False}, {"response": "", "thinking": "t", "done": False}, final)
    record = run_stream(wire, raw, split=4096)
    assert len(record.chunk_ns) == 2 and record.reasoning_chunks == 1
    assert record.output_tokens == 4


def test_in_stream_error_and_truncation_and_malformed():
    with pytest.raises(RequestFailed) as info:
        run_stream(CHAT, ndjson(part("a"), {"error": "model runner crashed"}))
    assert info.value.category is ErrorCategory.STREAM_ERROR and "crashed" in info.value.detail
    with pytest.raises(RequestFailed) as info:
        run_stream(CHAT, ndjson(part("a"), part("b")))
    assert info.value.category is ErrorCategory.TRUNCATED
    with pytest.raises(RequestFailed) as info:
        run_stream(CHAT, ndjson(part("a")) + b'{"model": "m", "mess')
    assert info.value.category is ErrorCategory.TRUNCATED
    with pytest.raises(RequestFailed) as info:
        run_stream(CHAT, ndjson(part("a"), b"<html>", part("", done=True)))
    assert info.value.category is ErrorCategory.MALFORMED


def test_bodies():
    prompt = Prompt(
        messages=(Message("system", "be brief"), Message("user", "hi")),
        max_output_tokens=32,
        ignore_eos=True,
    )
    chat = OllamaWire(model="m", options={"num_ctx": 4096}, keep_alive="30m", think=False).body(prompt)
    assert chat["messages"][0] == {"role": "system", "content": "be brief"}
    assert chat["options"] == {"num_ctx": 4096, "num_predict": 32}
    assert chat["keep_alive"] == "30m" and chat["think"] is False and chat["stream"] is True
    assert "ignore_eos" not in orjson.dumps(chat).decode()
    gen = OllamaWire(model="m", api="generate").body(prompt)
    assert gen["system"] == "be brief" and gen["prompt"] == "hi" and "think" not in gen
