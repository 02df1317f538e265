"""The engine model: queueing raises TTFT, batch size raises ITL, long prompts raise TTFT.

Comparisons between two loads, with wide margins: no tight timing asserts.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time

from sim_helpers import openai_events, run, with_server

from loadbench.sim import EngineProfile, SimConfig
from loadbench.sim.engine import Engine, Sequence


async def _timed_stream(session, url, n, content="hi"):
    """(ttft_s, [gaps_s]) of one streamed request, stamped on arrival of each token chunk."""
    payload = {"model": "m", "messages": [{"role": "user", "content": content}], "stream": True,
               "max_tokens": n}
    t0 = time.perf_counter()
    stamps = []
    buf = b""
    async with session.post(url + "/v1/chat/completions", json=payload) as resp:
        async for data, _ in resp.content.iter_chunks():
            now = time.perf_counter()
            buf += data
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if b'"content":"' in event and b'"content":""' not in event:
                    stamps.append(now)
    assert len(stamps) == n
    return stamps[0] - t0, [b - a for a, b in itertools.pairwise(stamps)]


def test_ttft_grows_with_queueing():
    profile = EngineProfile(slots=1, step_base_ms=4.0, step_per_seq_ms=0.0, prefill_per_token_ms=0.0)

    async def body(server, session):
        alone, _ = await _timed_stream(session, server.base_url, 10)
        queued = await asyncio.gather(*(_timed_stream(session, server.base_url, 10) for _ in range(4)))
        return alone, sorted(t for t, _ in queued)

    alone, queued = run(with_server(SimConfig(profile=profile), body))
    # One slot: the k-th request waits for k-1 others of ~40 ms each.
    assert queued[-1] > alone + 0.08
    assert statistics.mean(queued) > 2 * alone


def test_itl_grows_with_batch_size():
    profile = EngineProfile(slots=64, step_base_ms=3.0, step_per_seq_ms=1.5, prefill_per_token_ms=0.0)

    async def body(server, session):
        _, single = await _timed_stream(session, server.base_url, 30)
        batch = await asyncio.gather(*(_timed_stream(session, server.base_url, 30) for _ in range(10)))
        return statistics.median(single), statistics.median(g for _, gaps in batch for g in gaps)

    itl_1, itl_10 = run(with_server(SimConfig(profile=profile), body))
    # Model: 4.5 ms alone, 18 ms with 10 decoding.
    assert itl_10 > 2 * itl_1


def test_long_prompt_raises_ttft():
    profile = EngineProfile(slots=4, step_base_ms=2.0, step_per_seq_ms=0.0, prefill_per_token_ms=0.1,
                            prefill_chunk_tokens=256)

    async def body(server, session):
        short, _ = await _timed_stream(session, server.base_url, 3, content="hi")
        long, _ = await _timed_stream(session, server.base_url, 3, content="word " * 1000)
        return short, long

    short, long = run(with_server(SimConfig(profile=profile), body))
    # 1000 prompt tokens at 0.1 ms each, in four chunks with a base step each: ~108 ms.
    assert long > short + 0.06


def test_step_deadlines_do_not_drift():
    profile = EngineProfile(slots=4, step_base_ms=4.0, step_per_seq_ms=0.0, prefill_per_token_ms=0.0)

    async def body(server, session):
        _, gaps = await _timed_stream(session, server.base_url, 51)
        return sum(gaps)

    total = run(with_server(SimConfig(profile=profile), body))
    # 50 steps of 4 ms: absolute deadlines keep the sum near 200 ms whatever each timer's rounding.
    assert 0.15 < total < 0.32


def test_kv_budget_bounds_admission():
    # Each request needs 1 + 40 KV tokens; 60 fit only one at a time despite 8 slots.
    profile = EngineProfile(slots=8, kv_cache_tokens=60, step_base_ms=2.0, step_per_seq_ms=0.0,
                            prefill_per_token_ms=0.0)

    async def engine_run():
        async with Engine(profile) as engine:
            seqs = [Sequence(1, 40) for _ in range(3)]
            for s in seqs:
                engine.submit(s)
            await asyncio.sleep(0.01)
            assert engine.running == 1 and engine.waiting == 2
            assert 0 < engine.kv_usage <= 1
            for s in seqs:
                while await s.take():
                    pass
            return seqs

    seqs = run(engine_run())
    # Served one after another: each admitted after the previous finished.
    for prev, nxt in itertools.pairwise(seqs):
        assert nxt.admitted_ns >= prev.last_ns
    assert all(s.generated == 40 for s in seqs)


def test_slots_bound_admission_and_fifo_order():
    profile = EngineProfile(slots=2, step_base_ms=1.0, step_per_seq_ms=0.0, prefill_per_token_ms=0.0)

    async def engine_run():
        async with Engine(profile) as engine:
            seqs = [Sequence(5, 10) for _ in range(5)]
            for s in seqs:
                engine.submit(s)
            await asyncio.sleep(0.005)
            assert engine.running == 2 and engine.waiting == 3
            await asyncio.gather(*(_drain(s) for s in seqs))
            assert engine.running == engine.waiting == 0 and engine.kv_usage == 0
            return seqs

    seqs = run(engine_run())
    admitted = [s.admitted_ns for s in seqs]
    assert admitted == sorted(admitted)
    assert engine_tokens(seqs) == 50


def test_oversized_request_is_rejected_not_queued_forever():
    profile = EngineProfile(kv_cache_tokens=100, step_base_ms=0.0, step_per_seq_ms=0.0,
                            prefill_per_token_ms=0.0)

    async def body(server, session):
        payload = {"model": "m", "messages": [{"role": "user", "content": "word " * 200}], "max_tokens": 5}
        async with session.post(server.base_url + "/v1/chat/completions", json=payload) as resp:
            return resp.status, await resp.json()

    status, err = run(with_server(SimConfig(profile=profile), body))
    assert status == 400 and "KV cache" in err["error"]["message"]


def test_instant_profile_is_fast_and_exact():
    async def body(server, session):
        payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                   "max_tokens": 200, "stream_options": {"include_usage": True}}
        t0 = time.perf_counter()
        async with session.post(server.base_url + "/v1/chat/completions", json=payload) as resp:
            raw = await resp.read()
        return time.perf_counter() - t0, openai_events(raw)

    elapsed, events = run(with_server(SimConfig(), body))
    assert events[-2]["usage"]["completion_tokens"] == 200
    assert elapsed < 2.0


async def _drain(seq):
    while await seq.take():
        pass


def engine_tokens(seqs):
    return sum(s.generated for s in seqs)


def test_client_hanging_up_frees_its_slot():
    profile = EngineProfile(slots=1, step_base_ms=5.0, step_per_seq_ms=0.0, prefill_per_token_ms=0.0)

    async def body(server, session):
        payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                   "max_tokens": 1000}
        async def read_all():
            async with session.post(server.base_url + "/v1/chat/completions", json=payload) as r:
                await r.read()

        # One decoding, one queued behind it; then both clients hang up.
        tasks = [asyncio.ensure_future(read_all()) for _ in range(2)]
        await asyncio.sleep(0.05)
        busy = (server.engine.running, server.engine.waiting)
        for task in tasks:
            task.cancel()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if server.engine.running == server.engine.waiting == 0:
                break
        return busy, (server.engine.running, server.engine.waiting), server.trace.contents()

    import json

    busy, after, trace = run(with_server(SimConfig(profile=profile), body))
    assert busy == (1, 1)
    assert after == (0, 0)
    records = [json.loads(line) for line in trace.splitlines()]
    assert [r["outcome"] for r in records] == ["client_gone", "client_gone"]
    assert all(r["output_tokens"] < 1000 for r in records)


def test_jitter_is_seeded_and_off_means_constant():
    profile = EngineProfile(step_base_ms=10.0, step_per_seq_ms=1.0, prefill_per_token_ms=0.0, jitter_frac=0.2)

    def steps(seed, jitter):
        engine = Engine(profile, seed=seed, jitter=jitter)
        return [engine.step_ns(4, 0) for _ in range(50)]

    assert steps(1, False) == [14_000_000] * 50
    a, b, c = steps(1, True), steps(1, True), steps(2, True)
    assert a == b and a != c
    assert len(set(a)) > 40
    assert 12_000_000 < statistics.mean(a) < 16_000_000


def test_fixed_timing_gives_each_request_its_ttft_and_itl_whatever_the_batch():
    profile = EngineProfile(slots=2, fixed_ttft_ms=60.0, fixed_itl_ms=10.0)

    async def body(server, session):
        alone = await _timed_stream(session, server.base_url, 8)
        # Four at once on two slots: two are served at once, two wait one full hold (60 + 7 x 10 ms).
        crowd = await asyncio.gather(*(_timed_stream(session, server.base_url, 8) for _ in range(4)))
        return alone, crowd

    (ttft, gaps), crowd = run(with_server(SimConfig(profile=profile), body))
    assert 0.055 < ttft < 0.1
    assert 0.007 < statistics.median(gaps) < 0.015
    ttfts = sorted(t for t, _ in crowd)
    assert ttfts[1] < 0.1  # the first two got a slot at once
    assert 0.17 < ttfts[2] < 0.25  # the next two waited ~130 ms for one
    assert all(0.007 < statistics.median(g) < 0.015 for _, g in crowd)  # ITL does not grow with the batch


def test_fixed_timing_needs_both_times_and_states_its_capacity():
    import pytest

    from loadbench.contract.errors import ConfigError

    with pytest.raises(ConfigError, match="fixed_itl_ms"):
        EngineProfile(fixed_ttft_ms=50.0)
    with pytest.raises(ConfigError, match="fixed_ttft_ms must be > 0"):
        EngineProfile(fixed_ttft_ms=0.0, fixed_itl_ms=5.0)
    profile = EngineProfile(slots=4, fixed_ttft_ms=100.0, fixed_itl_ms=20.0)
    assert abs(profile.capacity_per_s(32) - 4 / 0.72) < 1e-9
    assert EngineProfile().capacity_per_s(32) is None
