import orjson
import pytest

from loadbench.contract.errors import ErrorCategory, RequestFailed
from loadbench.contract.prompt import Prompt
from loadbench.deployments.wire.openai import OpenAIWire

from .helpers import run_stream


def sse(*objs) -> bytes:
    out = b""
    for obj in objs:
        data = obj if isinstance(obj, bytes) else orjson.dumps(obj)
        out += b"data: " + data + b"\n\n"
    return out


def chunk(delta=None, finish=None, usage=None, choices=True, **extra):
    obj = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    obj["choices"] = [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}] if choices else []
    obj["usage"] = usage
    obj.update(extra)
    return obj


WIRE = OpenAIWire(model="m")


def test_role_chunk_is_not_a_token_and_usage_only_chunk_counts():
    raw = sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, finish="stop"),
        chunk(choices=False, usage={"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}),
        b"[DONE]",
    )
    record = run_stream(WIRE, raw, keep_text=True)
    assert len(record.chunk_ns) == 2
    assert record.first_token_ns == record.first_answer_ns == record.chunk_ns[0]
    assert record.chunk_ns[0] < record.chunk_ns[1]
    assert record.input_tokens == 12 and record.output_tokens == 2
    assert record.reasoning_tokens is None
    assert "".join(record.text) == "Hello"


def test_reasoning_before_content_deepseek_shape():
    raw = sse(
        chunk({"role": "assistant", "content": None, "reasoning_content": ""}),
        chunk({"content": None, "reasoning_content": "Let me"}),
        chunk({"content": None, "reasoning_content": " think"}),
        chunk({"content": "42", "reasoning_content": None}),
        chunk(
            {},
            finish="stop",
            usage={
                "prompt_tokens": 5,
                "completion_tokens": 9,
                "completion_tokens_details": {"reasoning_tokens": 6},
            },
        ),
        b"[DONE]",
    )
    record = run_stream(WIRE, raw, split=11, keep_text=True)
    assert len(record.chunk_ns) == 3
    assert record.reasoning_chunks == 2
    assert record.first_token_ns < record.first_answer_ns == record.chunk_ns[2]
    assert (record.output_tokens, record.reasoning_tokens) == (9, 6)
    assert record.text == ["42"]


def test_vllm_reasoning_field_and_llamacpp_timings():
    timings = {
        "prompt_n": 17,
        "prompt_ms": 12.5,
        "prompt_per_token_ms": 0.7,
        "prompt_per_second": 1360.0,
        "predicted_n": 3,
        "predicted_ms": 30.0,
        "predicted_per_token_ms": 10.0,
        "predicted_per_second": 100.0,
    }
    raw = sse(
        chunk({"reasoning": "hmm"}),
        chunk({"content": "a"}),
        chunk({"content": "b"}, finish="length", timings=timings),
        b"[DONE]",
    )
    record = run_stream(WIRE, raw)
    assert record.reasoning_chunks == 1 and len(record.chunk_ns) == 3
    assert record.output_tokens is None and record.output_tokens_used == 3
    assert record.server == {
        "source": "llamacpp",
        "prompt_tokens": 17,
        "prompt_ms": 12.5,
        "output_tokens": 3,
        "output_ms": 30.0,
        "output_tokens_per_s": 100.0,
    }


def test_in_stream_error_event():
    raw = sse(chunk({"content": "a"}), {"error": {"message": "engine died", "type": "InternalError"}})
    with pytest.raises(RequestFailed) as info:
        run_stream(WIRE, raw)
    assert info.value.category is ErrorCategory.STREAM_ERROR
    assert "engine died" in info.value.detail


def test_truncated_stream_without_done():
    raw = sse(chunk({"content": "a"}), chunk({"content": "b"}))
    with pytest.raises(RequestFailed) as info:
        run_stream(WIRE, raw)
    assert info.value.category is ErrorCategory.TRUNCATED


def test_stream_cut_mid_line_is_truncated_not_malformed():
    raw = sse(chunk({"content": "a"})) + b'data: {"id": "c1", "choi'
    with pytest.raises(RequestFailed) as info:
        run_stream(WIRE, raw)
    assert info.value.category is ErrorCategory.TRUNCATED


def test_malformed_chunk():
    raw = sse(chunk({"content": "a"}), b"{not json", b"[DONE]")
    with pytest.raises(RequestFailed) as info:
        run_stream(WIRE, raw)
    assert info.value.category is ErrorCategory.MALFORMED


def test_body_fields():
    prompt = Prompt.user("hi", max_output_tokens=64, ignore_eos=True)
    body = OpenAIWire(model="m").body(prompt)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 64 and body["ignore_eos"] is True and body["min_tokens"] == 64
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    strict = OpenAIWire(
        model="o4-mini",
        max_tokens_field="max_completion_tokens",
        send_ignore_eos=False,
        reasoning_effort="medium",
    ).body(prompt)
    assert strict["max_completion_tokens"] == 64 and "max_tokens" not in strict
    assert "ignore_eos" not in strict and "min_tokens" not in strict
    assert strict["reasoning_effort"] == "medium"


def test_a_reader_without_the_terminator_ends_at_the_finish_or_the_usage_chunk():
    from loadbench.contract.record import RequestRecord

    def parsers():
        return [WIRE.parser(RequestRecord(index=0, request_id="r", intended_ns=0), terminator=t) for t in (True, False)]

    with_done, without = parsers()
    for p in (with_done, without):
        p.feed_object("", chunk({"content": "hi"}), 1)
        p.feed_object("", chunk({}, finish="stop"), 2)
    assert (with_done.done, without.done) == (False, True)  # [DONE] still to come on the wire
    with_done.feed("", b"[DONE]", 3)
    assert with_done.done

    _, usage_only = parsers()
    usage_only.feed_object("", chunk(choices=False, usage={"prompt_tokens": 1, "completion_tokens": 1}), 1)
    assert usage_only.done and usage_only.record.output_tokens == 1


def test_feed_and_feed_object_apply_the_same_rules():
    from loadbench.contract.record import RequestRecord

    events = [chunk({"role": "assistant"}), chunk({"reasoning_content": "hm"}), chunk({"content": "a"}),
              chunk({}, finish="stop"), chunk(choices=False, usage={"prompt_tokens": 3, "completion_tokens": 2})]
    records = [RequestRecord(index=0, request_id="r", intended_ns=0) for _ in range(2)]
    by_bytes, by_object = (WIRE.parser(r) for r in records)
    for i, event in enumerate(events):
        by_bytes.feed("", orjson.dumps(event), i + 1)
        by_object.feed_object("", event, i + 1)
    a, b = records
    assert (a.chunk_ns, a.reasoning_chunks, a.input_tokens, a.output_tokens) == (
        b.chunk_ns, b.reasoning_chunks, b.input_tokens, b.output_tokens)
    assert a.chunk_ns == [2, 3] and a.reasoning_chunks == 1
