"""Every fault kind is produced as specified, by rate and by schedule."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import aiohttp
import pytest
from sim_helpers import openai_events, openai_payload, parse_ndjson, run, with_server

from loadbench.sim import EngineProfile, FaultPlan, FaultWindow, SimConfig


def _config(kind, **plan):
    plan.setdefault("after_tokens", 3)
    return SimConfig(faults=FaultPlan(rates={kind: 1.0}, **plan))


async def _post(session, url, payload, path="/v1/chat/completions"):
    """(status, headers, body bytes, error) — error is the exception type name when reading failed."""
    try:
        async with session.post(url + path, json=payload) as resp:
            try:
                raw = await resp.read()
            except aiohttp.ClientPayloadError as exc:
                return resp.status, resp.headers, b"", type(exc).__name__
            return resp.status, resp.headers, raw, None
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
        return None, None, b"", type(exc).__name__


def _one(config, payload=None, path="/v1/chat/completions"):
    async def body(server, session):
        result = await _post(session, server.base_url, payload or openai_payload(10), path)
        return result, server.trace.contents()

    return run(with_server(config, body))


@pytest.mark.parametrize(("kind", "status"), [("429", 429), ("500", 500), ("503", 503), ("529", 529)])
def test_http_error_faults(kind, status):
    (got, headers, raw, err), trace = _one(_config(kind, retry_after_s=2.5))
    assert got == status and err is None
    body = json.loads(raw)
    assert set(body["error"]) >= {"message", "type", "code"}
    if status in (429, 503, 529):
        assert headers["Retry-After"] == "3"  # rounded up to whole seconds
    rec = json.loads(trace.splitlines()[-1])
    assert rec["fault"] == kind and rec["status"] == status and rec["tokens_sent"] == 0


def test_ollama_error_shape_for_faults():
    payload = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]}
    (status, _, raw, _), _ = _one(_config("500"), payload, "/api/chat")
    assert status == 500 and set(json.loads(raw)) == {"error"}


def test_refuse_by_rate_resets_before_any_response():
    (status, _, _, err), trace = _one(_config("refuse"))
    assert status is None and err in ("ClientOSError", "ServerDisconnectedError")
    assert json.loads(trace.splitlines()[-1])["fault"] == "refuse"


def test_reset_mid_stream_after_k_tokens():
    (status, _, _, err), trace = _one(_config("reset", after_tokens=4))
    assert status == 200 and err == "ClientPayloadError"
    rec = json.loads(trace.splitlines()[-1])
    assert rec["fault"] == "reset" and rec["tokens_sent"] == 4 and rec["outcome"] == "fault"


def test_reset_observed_chunk_by_chunk():
    async def body(server, session):
        got = []
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.post(server.base_url + "/v1/chat/completions", json=openai_payload(10)) as r:
                async for data, _ in r.content.iter_chunks():
                    got.append(data)
        return b"".join(got)

    raw = run(with_server(_config("reset", after_tokens=2), body))
    tokens = [e for e in openai_events(raw) if e["choices"] and e["choices"][0]["delta"].get("content")]
    assert len(tokens) == 2


def test_stall_holds_bytes_then_resumes():
    async def body(server, session):
        stamps = []
        async with session.post(server.base_url + "/v1/chat/completions", json=openai_payload(6)) as r:
            buf = b""
            async for data, _ in r.content.iter_chunks():
                buf += data
                stamps.extend([time.perf_counter()] * data.count(b'"content":"'))
            return stamps, openai_events(buf)

    stamps, events = run(with_server(_config("stall", after_tokens=2, stall_s=0.3), body))
    assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] == 6
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # The role chunk also matches '"content":"' (empty), so token 2 -> 3 is gap index 2.
    assert max(gaps) >= 0.25 and gaps.index(max(gaps)) == 2


def test_malformed_chunk_then_stream_goes_on():
    (status, _, raw, _), _ = _one(_config("malformed", after_tokens=2))
    assert status == 200
    bad = 0
    for block in raw.decode().split("\n\n"):
        data = block.removeprefix("data: ").strip()
        if not data or data == "[DONE]":
            continue
        try:
            json.loads(data)
        except ValueError:
            bad += 1
    assert bad == 1
    assert raw.endswith(b"data: [DONE]\n\n")


def test_stream_error_record():
    (status, _, raw, _), _ = _one(_config("stream_error", after_tokens=2))
    events = openai_events(raw)
    assert status == 200
    assert "error" in events[-1] and "[DONE]" not in events
    assert sum(1 for e in events if "choices" in e and e["choices"][0]["delta"].get("content")) == 2


def test_truncate_ends_cleanly_without_final_record():
    (status, _, raw, err), _trace = _one(_config("truncate", after_tokens=3))
    assert status == 200 and err is None
    events = openai_events(raw)
    assert "[DONE]" not in events and all(e.get("usage") is None for e in events)
    assert len(events) == 1 + 3
    payload = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}],
               "options": {"num_predict": 8}}
    (status, _, raw, err), _ = _one(_config("truncate", after_tokens=3), payload, "/api/chat")
    lines = parse_ndjson(raw)
    assert err is None and len(lines) == 3 and not any(line["done"] for line in lines)


def test_slow_headers():
    async def body(server, session):
        t0 = time.perf_counter()
        async with session.post(server.base_url + "/v1/chat/completions", json=openai_payload(2)) as r:
            headers_s = time.perf_counter() - t0
            await r.read()
        return headers_s

    assert run(with_server(_config("slow_headers", slow_headers_s=0.3), body)) >= 0.28


def test_rates_are_seeded_shares():
    def pattern(seed):
        config = SimConfig(seed=seed, faults=FaultPlan(rates={"429": 0.3, "500": 0.2}))

        async def body(server, session):
            out = []
            for _ in range(60):
                status, _, _, _ = await _post(session, server.base_url, openai_payload(1, stream=False))
                out.append(status)
            return out

        return run(with_server(config, body))

    a, b, c = pattern(1), pattern(1), pattern(2)
    assert a == b and a != c
    assert 8 <= a.count(429) <= 30 and 3 <= a.count(500) <= 22
    assert a.count(200) == 60 - a.count(429) - a.count(500)


def test_schedule_window_then_recovery():
    config = SimConfig(faults=FaultPlan(schedule=(FaultWindow(0.0, 0.3, "503"),)))

    async def body(server, session):
        first, *_ = await _post(session, server.base_url, openai_payload(1, stream=False))
        await asyncio.sleep(0.35)
        later, *_ = await _post(session, server.base_url, openai_payload(1, stream=False))
        return first, later

    assert run(with_server(config, body)) == (503, 200)


def test_refuse_window_refuses_connections_then_serves_again():
    profile = EngineProfile(step_base_ms=20.0, step_per_seq_ms=0.0, prefill_per_token_ms=0.0)
    config = SimConfig(profile=profile, faults=FaultPlan(schedule=((0.15, 0.5, "refuse"),)))

    async def body(server, session):
        # A long stream in flight when the window opens is reset.
        inflight = asyncio.ensure_future(_post(session, server.base_url, openai_payload(40)))
        await asyncio.sleep(0.25)
        try:
            async with aiohttp.ClientSession() as fresh, fresh.get(server.base_url + "/health") as r:
                during = r.status
        except aiohttp.ClientConnectorError as exc:
            during = type(exc).__name__
        await asyncio.sleep(0.4)
        async with aiohttp.ClientSession() as fresh, fresh.get(server.base_url + "/health") as r:
            after = r.status
        return await inflight, during, after

    (status, _, _, err), during, after = run(with_server(config, body))
    assert status == 200 and err == "ClientPayloadError"
    assert during == "ClientConnectorError"
    assert after == 200


def test_non_streaming_faults():
    def post(kind):
        (status, _, raw, err), _ = _one(_config(kind), openai_payload(4, stream=False))
        return status, raw, err

    assert post("reset")[0] is None
    status, raw, _ = post("malformed")
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(raw)
    status, raw, _ = post("truncate")
    assert status == 200 and "usage" not in json.loads(raw)
    assert post("stream_error")[0] == 500
