"""Trace replay: both public shapes parse, the plan keeps the trace's timing, prompts its lengths."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from loadbench.contract.errors import ConfigError
from loadbench.load.plans import OpenLoopPlan, check_plan
from loadbench.workloads import CalibratedEstimate, TracePlan, TraceReplay

AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51.2059490,879,55
2023-11-16 18:15:51.2059490,91,16
2023-11-16 18:15:53.0000000,2000,1
"""

MOONCAKE = [
    {"timestamp": 0, "input_length": 1100, "output_length": 52, "hash_ids": [46, 47, 48]},
    {"timestamp": 0, "input_length": 600, "output_length": 26, "hash_ids": [46, 47]},
    {"timestamp": 3052, "input_length": 1300, "output_length": 30, "hash_ids": [46, 47, 49]},
    {"timestamp": 10535, "input_length": 200, "output_length": 11, "hash_ids": [50]},
]


@pytest.fixture
def azure(tmp_path):
    p = tmp_path / "AzureLLMInferenceTrace_conv.csv"
    p.write_text(AZURE)
    return p


@pytest.fixture
def mooncake(tmp_path):
    p = tmp_path / "mooncake_trace.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in MOONCAKE))
    return p


def test_azure_csv_parses_into_offsets_and_lengths(azure):
    t = TraceReplay(azure).load()
    assert t.format == "azure" and len(t) == 5
    assert list(t.offsets_ns) == [0, 4_314_579_000, 4_525_359_000, 4_525_359_000, 6_319_410_000]
    assert list(t.input_tokens) == [374, 396, 879, 91, 2000]
    assert list(t.output_tokens) == [44, 109, 55, 16, 1]
    assert t.hash_ids == ()


def test_mooncake_jsonl_parses_milliseconds_and_hash_ids(mooncake):
    t = TraceReplay(mooncake).load()
    assert t.format == "mooncake"
    assert list(t.offsets_ns) == [0, 0, 3_052_000_000, 10_535_000_000]
    assert t.hash_ids[2] == (46, 47, 49)
    assert abs(t.duration_s - 10.535) < 1e-9


def test_plan_is_an_open_loop_plan_with_speedup(mooncake):
    plan = TraceReplay(mooncake, speedup=2.0, max_concurrency=16).plan()
    assert isinstance(plan, OpenLoopPlan)
    check_plan(plan)
    offsets = list(plan.offsets_ns(np.random.default_rng(0)))
    assert offsets == [0, 0, 1_526_000_000, 5_267_500_000]
    assert offsets == sorted(offsets)
    d = plan.describe()
    assert d["plan"] == "Trace" and d["requests"] == 4 and d["max_concurrency"] == 16
    assert abs(d["duration_s"] - 5.2675) < 1e-9
    json.dumps(d)
    assert list(TraceReplay(mooncake, limit=2).plan().offsets_ns(np.random.default_rng(0))) == [0, 0]


def test_unsorted_rows_are_replayed_in_arrival_order(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"timestamp": 500, "input_length": 10, "output_length": 1}\n'
                 '{"timestamp": 100, "input_length": 20, "output_length": 2}\n')
    t = TraceReplay(p).load()
    assert list(t.offsets_ns) == [0, 400_000_000] and list(t.input_tokens) == [20, 10]


def test_workload_prompts_have_the_trace_lengths_in_order(azure):
    est = CalibratedEstimate()
    stream = TraceReplay(azure).workload().open(seed=0)
    prompts = list(itertools.islice(stream, 7))
    assert [p.target_input_tokens for p in prompts] == [374, 396, 879, 91, 2000, 374, 396]  # then starts over
    assert [p.max_output_tokens for p in prompts[:5]] == [44, 109, 55, 16, 1]
    assert all(p.ignore_eos and p.source == "trace:azure" for p in prompts)
    for p in prompts[:5]:
        assert abs(est.count(p.messages[0].content) - p.target_input_tokens) <= 2


def test_hash_ids_become_shared_prefixes(mooncake):
    est = CalibratedEstimate()
    stream = TraceReplay(mooncake, block_tokens=512).workload().open(seed=0)
    a, b, c, d = itertools.islice(stream, 4)
    ta, tb, tc, td = (p.messages[0].content for p in (a, b, c, d))
    blocks_a = ta.split("\n\n")
    # Block 46 + 47 are identical text in a, b and c; block 48 and 49 differ.
    shared = len(_common_prefix(ta, tc))
    assert est.count(ta[:shared]) >= 2 * 512 - 2
    assert ta.startswith(tb)  # b is blocks 46 and the head of 47: a prefix of a
    assert est.count(_common_prefix(ta, td)) < 5
    assert len(blocks_a) >= 3
    for p, want in zip((a, b, c, d), (1100, 600, 1300, 200), strict=True):
        assert abs(est.count(p.messages[0].content) - want) <= 3


def _common_prefix(x: str, y: str) -> str:
    n = 0
    for cx, cy in zip(x, y, strict=False):
        if cx != cy:
            break
        n += 1
    return x[:n]


def test_same_seed_same_trace_prompts(mooncake):
    w = TraceReplay(mooncake).workload()
    assert list(itertools.islice(w.open(3), 4)) == list(itertools.islice(w.open(3), 4))
    assert w.describe()["requests"] == 4 and w.describe()["block_tokens"] == 512
    assert w.check(next(w.open(0)), "anything") is None


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("a,b\n1,2\n", "no time field"),
        ('{"timestamp": 0, "input_length": 5}\n', "no output length field"),
        ('{"timestamp": "soon", "input_length": 5, "output_length": 1}\n', "cannot read time 'soon'"),
        ('{"timestamp": 0, "input_length": -5, "output_length": 1}\n', "input length -5 is negative"),
        ("", "holds no requests"),
    ],
)
def test_bad_traces_name_the_row_and_field(tmp_path, content, needle):
    p = tmp_path / ("t.jsonl" if content.startswith("{") else "t.csv")
    p.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        TraceReplay(p).load()


def test_bad_trace_settings():
    with pytest.raises(ConfigError, match="speedup"):
        TraceReplay("x.csv", speedup=0)
    with pytest.raises(ConfigError, match="format"):
        TraceReplay("x.csv", format="sharegpt")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot read"):
        TraceReplay("/nonexistent/trace.csv").load()
    with pytest.raises(ConfigError, match="non-decreasing"):
        TracePlan(offsets=np.array([5, 1]))
