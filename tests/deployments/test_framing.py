from loadbench.deployments.framing import NdjsonDecoder, SseDecoder


def feed_all(decoder, raw: bytes, split: int):
    out = []
    for start in range(0, len(raw), split):
        out.extend(decoder.feed(raw[start : start + split]))
    events, tail = decoder.close()
    return out + events, tail


def test_sse_events_split_anywhere_come_out_whole():
    raw = (
        b": keep-alive comment\n\n"
        b'event: message_start\r\ndata: {"a": 1}\r\n\r\n'
        b"data: first line\ndata: second line\n\n"
        b"id: 7\nretry: 100\ndata: [DONE]\n\n"
    )
    for split in (1, 2, 3, 5, 64, len(raw)):
        events, tail = feed_all(SseDecoder(), raw, split)
        assert events == [
            ("message_start", b'{"a": 1}'),
            ("", b"first line\nsecond line"),
            ("", b"[DONE]"),
        ], split
        assert tail == b""


def test_sse_last_event_without_blank_line_or_newline():
    events, tail = feed_all(SseDecoder(), b"data: {}\n\ndata: [DONE]\n", 4)
    assert events == [("", b"{}"), ("", b"[DONE]")]
    events, tail = feed_all(SseDecoder(), b"data: {}\n\ndata: [DO", 4)
    assert events == [("", b"{}")]
    assert tail == b"[DO"


def test_sse_data_without_space_and_empty_data():
    events, _ = feed_all(SseDecoder(), b"data:x\n\ndata:\n\n", 3)
    assert events == [("", b"x"), ("", b"")]


def test_ndjson_lines_and_tail():
    raw = b'{"a":1}\n\n{"b":2}\r\n{"c":'
    out = []
    dec = NdjsonDecoder()
    for start in range(0, len(raw), 3):
        out.extend(dec.feed(raw[start : start + 3]))
    assert [d.strip() for _, d in out] == [b'{"a":1}', b'{"b":2}']
    events, tail = dec.close()
    assert events == [] and tail == b'{"c":'


def test_big_line_is_fine():
    payload = b"x" * (3 << 20)
    events, _ = feed_all(SseDecoder(), b"data: " + payload + b"\n\n", 1 << 16)
    assert events == [("", payload)]


def test_an_over_long_line_fails_the_request_as_malformed():
    import pytest

    from loadbench.contract.errors import ErrorCategory, RequestFailed

    for decoder in (SseDecoder(max_line_bytes=1000), NdjsonDecoder(max_line_bytes=1000)):
        decoder.feed(b'data: {"ok": 1}\n\n' if isinstance(decoder, SseDecoder) else b'{"ok": 1}\n')
        with pytest.raises(RequestFailed) as info:
            for _ in range(20):
                decoder.feed(b"x" * 100)
        assert info.value.category is ErrorCategory.MALFORMED
        assert "1,000 bytes without a newline" in info.value.detail
    # One event made of many data: lines with no blank line between them is bounded too.
    sse = SseDecoder(max_line_bytes=1000)
    with pytest.raises(RequestFailed):
        for _ in range(20):
            sse.feed(b"data: " + b"y" * 90 + b"\n")
    # At the limit is fine, in any split.
    events, _ = feed_all(SseDecoder(max_line_bytes=1000), b"data: " + b"z" * 994 + b"\n\n", 7)
    assert events == [("", b"z" * 994)]

def test_sse_one_event_per_read_matches_line_by_line():
    """The whole-event fast path gives what the line decoder gives, event names included."""
    from loadbench.deployments.framing import SseDecoder

    reads = [b"event: delta\n", b"data: {\"a\": 1}\n\n", b"data: two\n\n", b"data: x\r\n\r\n", b"data: [DONE]\n\n"]
    fast = SseDecoder()
    got = [e for r in reads for e in fast.feed(r)]
    slow = SseDecoder()
    want = [e for r in reads for b in r for e in slow.feed(bytes([b]))]
    assert got == want == [("delta", b'{"a": 1}'), ("", b"two"), ("", b"x"), ("", b"[DONE]")]
