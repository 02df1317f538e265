"""Ground truth, Prometheus metrics and canned responders."""

from __future__ import annotations

import asyncio
import json
import re
import time

from sim_helpers import openai_events, openai_payload, parse_ndjson, parse_sse, run, with_server

from loadbench.contract.headers import REQUEST_ID_HEADER
from loadbench.sim import EngineProfile, FaultPlan, Responder, SimConfig, SimProcess
from loadbench.sim.text import tokenize


async def _stream_with_stamps(session, url, rid, n):
    """Client-side (sent_ns, first_token_ns, end_ns, token chunks) for one streamed request."""
    sent = time.perf_counter_ns()
    first = 0
    tokens = 0
    buf = b""
    async with session.post(url + "/v1/chat/completions", json=openai_payload(n),
                            headers={REQUEST_ID_HEADER: rid}) as resp:
        async for data, _ in resp.content.iter_chunks():
            now = time.perf_counter_ns()
            buf += data
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if b'"content":"' in event and b'"content":""' not in event:
                    tokens += 1
                    first = first or now
    return sent, first, time.perf_counter_ns(), tokens


def test_trace_has_every_request_with_consistent_stamps():
    profile = EngineProfile(slots=2, step_base_ms=2.0, step_per_seq_ms=0.5, prefill_per_token_ms=0.0)
    config = SimConfig(profile=profile, faults=FaultPlan(rates={"reset": 0.3}, after_tokens=2), seed=3)

    async def body(server, session):
        async def one(i):
            try:
                return await _stream_with_stamps(session, server.base_url, f"req-{i}", 5 + i % 4)
            except Exception as exc:  # the injected resets
                return type(exc).__name__

        results = await asyncio.gather(*(one(i) for i in range(12)))
        async with session.get(server.base_url + "/sim/trace") as r:
            trace = await r.read()
        return results, [json.loads(line) for line in trace.splitlines()]

    results, records = run(with_server(config, body))
    by_id = {r["id"]: r for r in records}
    assert sorted(by_id) == sorted(f"req-{i}" for i in range(12)) and len(records) == 12
    resets = 0
    for i, result in enumerate(results):
        rec = by_id[f"req-{i}"]
        assert rec["received_ns"] <= rec["admitted_ns"] <= rec["first_token_ns"] <= rec["last_ns"]
        assert rec["prompt_tokens"] > 0 and rec["dialect"] == "openai"
        if isinstance(result, str):
            resets += 1
            assert rec["fault"] == "reset" and rec["tokens_sent"] == 2
            continue
        sent, first, end, tokens = result
        assert rec["outcome"] == "ok" and rec["fault"] is None
        assert rec["tokens_sent"] == rec["output_tokens"] == tokens == 5 + i % 4
        # Same clock on both sides: the server stamps before the client reads, within loopback time.
        assert sent <= rec["received_ns"] and rec["last_ns"] <= end
        assert rec["first_token_ns"] <= first
        assert first - rec["first_token_ns"] < 50_000_000
    assert resets == sum(1 for r in records if r["fault"] == "reset") > 0


def test_trace_file_written_by_child_process():
    with SimProcess(SimConfig()) as sim:
        import urllib.request

        for i in range(3):
            req = urllib.request.Request(
                sim.base_url + "/v1/chat/completions",
                data=json.dumps(openai_payload(2, stream=False)).encode(),
                headers={"Content-Type": "application/json", REQUEST_ID_HEADER: f"p{i}"},
            )
            urllib.request.urlopen(req, timeout=5).read()
        with urllib.request.urlopen(sim.base_url + "/sim/trace", timeout=5) as resp:
            live = [json.loads(line) for line in resp.read().splitlines()]
    assert [r["id"] for r in live] == ["p0", "p1", "p2"]
    assert [r["id"] for r in sim.read_trace()] == ["p0", "p1", "p2"]


def _metrics(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_reflect_load_and_outcomes():
    profile = EngineProfile(slots=1, step_base_ms=5.0, step_per_seq_ms=0.0, prefill_per_token_ms=0.0)
    config = SimConfig(profile=profile, faults=FaultPlan(schedule=((0.0, 0.05, "429"),)))

    async def body(server, session):
        async with session.post(server.base_url + "/v1/chat/completions",
                                json=openai_payload(1, stream=False)) as r:
            first = r.status
        await asyncio.sleep(0.06)
        tasks = [asyncio.ensure_future(session.post(server.base_url + "/v1/chat/completions",
                                                    json=openai_payload(10, stream=False)))
                 for _ in range(4)]
        await asyncio.sleep(0.02)
        async with session.get(server.base_url + "/metrics") as r:
            during = await r.text()
            ctype = r.headers["Content-Type"]
        for resp in await asyncio.gather(*tasks):
            await resp.read()
            resp.release()
        async with session.get(server.base_url + "/metrics") as r:
            after = await r.text()
        return first, during, after, ctype

    first, during, after, ctype = run(with_server(config, body))
    assert first == 429 and ctype.startswith("text/plain")
    assert "# TYPE loadbench_sim:num_requests_running gauge" in during
    d, a = _metrics(during), _metrics(after)
    assert d["loadbench_sim:num_requests_running"] == 1
    assert d["loadbench_sim:num_requests_waiting"] == 3
    assert 0 < d["loadbench_sim:kv_cache_usage_perc"] < 1
    assert a["loadbench_sim:num_requests_running"] == a["loadbench_sim:num_requests_waiting"] == 0
    assert a['loadbench_sim:requests_total{outcome="ok"}'] == 4
    assert a['loadbench_sim:requests_total{outcome="fault"}'] == 1
    assert a['loadbench_sim:faults_total{kind="429"}'] == 1
    assert a["loadbench_sim:generation_tokens_total"] == 40
    assert a["loadbench_sim:prompt_tokens_total"] > 0
    assert a["loadbench_sim:engine_steps_total"] >= 40
    for line in after.splitlines():
        assert line.startswith("#") or re.match(r"^loadbench_sim:[a-z_]+(\{[a-z_]+=\"[^\"]*\"\})? [0-9.e+-]+$", line)


RESPONDERS = (
    Responder(r"(?i)decompose the task", json={"subtasks": [{"id": 1, "question": "what is x?"}]}),
    Responder(r"capital of (?P<country>\w+)", template="The capital of {country} is {country}ville."),
)


def test_json_responder_streams_the_json_as_tokens():
    async def body(server, session):
        payload = openai_payload(500, content="Please DECOMPOSE the task into steps")
        async with session.post(server.base_url + "/v1/chat/completions", json=payload) as r:
            return openai_events(await r.read())

    events = run(with_server(SimConfig(responders=RESPONDERS), body))
    pieces = [e["choices"][0]["delta"]["content"] for e in events[1:-3]]
    assert len(pieces) > 5
    assert json.loads("".join(pieces)) == {"subtasks": [{"id": 1, "question": "what is x?"}]}
    assert events[-2]["usage"]["completion_tokens"] == len(pieces)
    assert events[-3]["choices"][0]["finish_reason"] == "stop"


def test_template_responder_in_every_dialect_and_truncation():
    async def body(server, session):
        url = server.base_url
        q = "What is the capital of Freedonia?"
        async with session.post(url + "/v1/chat/completions", json=openai_payload(None, stream=False, content=q)) as r:
            oa = (await r.json())["choices"][0]["message"]["content"]
        async with session.post(url + "/api/chat", json={"model": "llama3.2", "messages": [
                {"role": "user", "content": q}]}) as r:
            ol = "".join(line["message"]["content"] for line in parse_ndjson(await r.read()))
        async with session.post(url + "/v1/messages", json={"model": "c", "max_tokens": 100, "stream": True,
                                                            "messages": [{"role": "user", "content": q}]}) as r:
            an = "".join(json.loads(d)["delta"].get("text", "") for n, d in parse_sse(await r.read())
                         if n == "content_block_delta")
        async with session.post(url + "/v1/chat/completions", json=openai_payload(3, stream=False, content=q)) as r:
            cut = await r.json()
        async with session.post(url + "/v1/chat/completions",
                                json=openai_payload(4, stream=False, content="no match here")) as r:
            other = (await r.json())["choices"][0]["message"]["content"]
        return oa, ol, an, cut, other

    oa, ol, an, cut, other = run(with_server(SimConfig(responders=RESPONDERS), body))
    assert oa == ol == an == "The capital of Freedonia is Freedoniaville."
    assert cut["choices"][0]["message"]["content"] == "".join(tokenize(oa)[:3]) == "The capital"
    assert cut["choices"][0]["finish_reason"] == "length"
    assert "Freedonia" not in other


def test_only_the_last_user_message_is_matched():
    async def body(server, session):
        payload = openai_payload(None, stream=False)
        payload["messages"] = [{"role": "user", "content": "capital of Earth"},
                               {"role": "assistant", "content": "ok"},
                               {"role": "user", "content": "thanks"}]
        async with session.post(server.base_url + "/v1/chat/completions", json=payload) as r:
            return (await r.json())["choices"][0]["message"]["content"]

    assert "Earth" not in run(with_server(SimConfig(responders=RESPONDERS), body))


def test_every_dialect_rejects_through_one_path_traced_only_when_it_would_generate():
    """A bad generating request is answered in its dialect's error shape and traced as an error; a
    bad body on an endpoint that does not generate gets the same shape and no trace record."""
    rejected = [
        ("/v1/chat/completions", {"model": "m", "messages": []}, "openai",
         lambda b: b["error"]["type"] == "invalid_request_error"),
        ("/v1/messages", {"model": "m", "messages": [{"role": "user", "content": "x"}]}, "anthropic",
         lambda b: b["type"] == "error" and b["error"]["message"] == "max_tokens: Field required"),
        ("/api/chat", {"model": "nope", "messages": []}, "ollama",
         lambda b: b == {"error": 'model "nope" not found, try pulling it first'}),
    ]
    untraced = [("/v1/messages/count_tokens", lambda b: b["type"] == "error"),
                ("/api/show", lambda b: set(b) == {"error"})]

    async def body(server, session):
        for path, payload, dialect, shaped in rejected:
            async with session.post(server.base_url + path, json=payload, headers={REQUEST_ID_HEADER: dialect}) as r:
                assert r.status in (400, 404) and shaped(await r.json()), path
        for path, shaped in untraced:
            async with session.post(server.base_url + path, data=b"not json") as r:
                assert r.status == 400 and shaped(await r.json()), path
        async with session.get(server.base_url + "/sim/trace") as r:
            return [json.loads(line) for line in (await r.read()).decode().splitlines() if line]

    records = run(with_server(SimConfig(), body))
    assert [(r["id"], r["dialect"], r["outcome"]) for r in records] == [
        ("openai", "openai", "error"), ("anthropic", "anthropic", "error"), ("ollama", "ollama", "error")
    ]
    assert [r["status"] for r in records] == [400, 400, 404]
