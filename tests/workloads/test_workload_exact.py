"""Lengths right from the first request: measured against a tokenizing server before the load,
or learnt during a warm-up that prefetching cannot outrun when the server has no tokenizer.

The simulator here stands in for a model whose vocabulary the default estimate does not know
(word pieces of at most 3 characters, not 4) with a chat template (8 tokens per request, 4 per
message), so nothing lands on target unless it was measured or learnt.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from loadbench.contract.errors import ConfigError
from loadbench.sim import SimConfig, SimProcess
from loadbench.workloads import (
    Balanced,
    Decode,
    FinanceBenchDataset,
    MathDataset,
    MultiTurn,
    OpenAssistantDataset,
    Prefill,
    ServerTokenizer,
    TraceReplay,
)
from loadbench.workloads.base import SETTLE_WINDOW, ExactLengths

FOREIGN = {"piece_chars": 3, "chat_template_tokens": 8, "message_template_tokens": 4}

PRESETS = [
    Prefill(),
    Balanced(),
    Decode(),
    Balanced(multi_turn=MultiTurn()),
    Prefill(shared_prefix_tokens=300),
    Decode(shared_prefix_tokens=64, shared_prefix_groups=3),
]


def _id(w) -> str:
    extra = "-multi" if getattr(w, "multi_turn", None) else ""
    extra += "-prefix" if getattr(w, "shared_prefix_tokens", 0) else ""
    return w.name + extra


@pytest.fixture(scope="module")
def sim_tok():
    with SimProcess(SimConfig(trace=False, **FOREIGN)) as s:
        yield s


@pytest.fixture(scope="module")
def sim_plain():
    with SimProcess(SimConfig(trace=False, tokenize=False, **FOREIGN)) as s:
        yield s


def served(base_url: str, prompt) -> int:
    """The prompt_tokens the server reports for ``prompt`` sent as a chat request."""
    body = {
        "model": "sim",
        "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
        "max_tokens": 1,
        "stream": False,
    }
    req = urllib.request.Request(
        base_url + "/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["usage"]["prompt_tokens"]


def errors_of(base_url: str, stream, n: int) -> np.ndarray:
    out = []
    for _ in range(n):
        p = next(stream)
        out.append((served(base_url, p) - p.target_input_tokens) / p.target_input_tokens)
    return np.abs(np.array(out))


# -- with a tokenizing server ----------------------------------------------------------------------


@pytest.mark.parametrize("workload", PRESETS, ids=_id)
def test_every_prompt_is_on_target_from_the_first_request(sim_tok, workload):
    server = ServerTokenizer(sim_tok.base_url)
    stream = workload.open(seed=3, counter=server, exact=ExactLengths(prompts=24))
    assert stream.exact["prompts"] == 24 and stream.exact["chat_template"] == "messages"
    assert stream.lookahead is None  # nothing left to learn: the scheduler may build ahead
    calls = server.calls
    errors = errors_of(sim_tok.base_url, stream, 40)
    assert errors[:24].max() <= 0.05, errors[:24]
    # The prompts after the measured ones are sized by the model those measurements fitted.
    assert np.percentile(errors[24:], 90) <= 0.05, errors[24:]
    assert server.calls == calls  # no tokenize round trip once the stream is handed over


def test_without_measurement_the_foreign_tokenizer_is_far_off(sim_tok):
    """The control: the same stream, no server counts and no feedback, misses by far more."""
    errors = errors_of(sim_tok.base_url, Balanced().open(seed=3), 24)
    assert np.median(errors) > 0.15


def _loader_workloads(tmp_path):
    from test_workload_loaders import financebench_rows, math_rows, oasst_rows, write_jsonl

    fb = write_jsonl(tmp_path / "fb.jsonl", financebench_rows())
    oa = write_jsonl(tmp_path / "oasst.jsonl", oasst_rows())
    mt = write_jsonl(tmp_path / "math.jsonl", math_rows())
    return [
        Prefill(dataset=FinanceBenchDataset(path=fb)),
        Balanced(dataset=OpenAssistantDataset(path=oa)),
        Balanced(dataset=OpenAssistantDataset(path=oa), multi_turn=MultiTurn(turns=3, interleave=2)),
        Decode(dataset=MathDataset(path=mt)),
    ]


def test_real_dataset_loaders_are_on_target_from_the_first_request(sim_tok, tmp_path):
    pytest.importorskip("datasets")
    for workload in _loader_workloads(tmp_path):
        stream = workload.open(seed=1, counter=ServerTokenizer(sim_tok.base_url), exact=ExactLengths(prompts=16))
        errors = errors_of(sim_tok.base_url, stream, 16)
        assert errors.max() <= 0.05, (workload.dataset.describe(), errors)


def test_trace_replay_is_on_target_from_the_first_request(sim_tok, tmp_path):
    path = tmp_path / "trace.jsonl"
    rows = [{"timestamp": 10 * i, "input_length": 200 + 150 * (i % 5), "output_length": 8} for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stream = TraceReplay(path).workload().open(seed=0, counter=ServerTokenizer(sim_tok.base_url))
    assert errors_of(sim_tok.base_url, stream, 12).max() <= 0.05


def test_measurement_is_bounded_in_time(sim_tok):
    stream = Prefill().open(
        seed=0, counter=ServerTokenizer(sim_tok.base_url), exact=ExactLengths(prompts=10_000, budget_s=0.3)
    )
    exact = stream.exact
    assert exact["stopped_by"] == "budget" and 0 < exact["prompts"] < 10_000
    assert exact["elapsed_s"] < 3.0


def test_measured_streams_are_deterministic(sim_tok):
    def digest(seed):
        s = Balanced().open(seed=seed, counter=ServerTokenizer(sim_tok.base_url), exact=ExactLengths(prompts=12))
        return [tuple((m.role, m.content) for m in next(s).messages) for _ in range(16)]

    assert digest(4) == digest(4)
    assert digest(4) != digest(5)


def test_count_chat_matches_the_chat_endpoint(sim_tok):
    from loadbench.workloads import Prompt

    tok = ServerTokenizer(sim_tok.base_url)
    prompt = Prompt.user("Hello there, how are you today?")
    assert tok.count_chat([("user", "Hello there, how are you today?")]) == served(sim_tok.base_url, prompt)
    assert tok.describe()["chat_template"] == "messages"


def test_exact_lengths_rejects_bad_values():
    with pytest.raises(ConfigError, match=r"ExactLengths\.prompts"):
        ExactLengths(prompts=-1)
    with pytest.raises(ConfigError, match=r"ExactLengths\.budget_s"):
        ExactLengths(budget_s=0)
    with pytest.raises(ConfigError, match=r"ExactLengths\.aim"):
        ExactLengths(aim=0.9)


# -- without one -----------------------------------------------------------------------------------


def test_the_switched_off_simulator_has_no_tokenizer(sim_plain):
    req = urllib.request.Request(
        sim_plain.base_url + "/tokenize", data=b'{"content": "hi"}', headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 404
    from loadbench.workloads import CalibratedEstimate, auto_counter

    assert isinstance(auto_counter(sim_plain.base_url), CalibratedEstimate)


def _feed(base_url, stream, n, concurrency=1):
    """Requests one after another (``concurrency`` built before each is observed, as in-flight
    requests are); returns (build index, |error|) per request."""
    from conftest import finished

    out, inflight = [], []
    for i in range(n):
        p = next(stream)
        inflight.append((i, p))
        if len(inflight) < concurrency:
            continue
        j, q = inflight.pop(0)
        reported = served(base_url, q)
        stream.observe(q, finished(q, reported, index=j))
        out.append((j, abs(reported - q.target_input_tokens) / q.target_input_tokens))
    return out


@pytest.mark.parametrize("workload", PRESETS[:4], ids=_id)
def test_lengths_settle_during_the_warm_up(sim_plain, workload):
    stream = workload.open(seed=2)
    assert stream.lookahead == 0  # nothing learnt: no prompt may be built ahead
    results = _feed(sim_plain.base_url, stream, 120, concurrency=4)
    assert stream.settled_after is not None and stream.settled_after <= 64, stream.settled_after
    assert stream.lookahead is None
    late = np.array([e for i, e in results if not stream.built_before_settled(i)])
    early = np.array([e for i, e in results[:8]])
    assert np.percentile(late, 90) <= 0.05, late
    assert np.median(early) > np.median(late)  # the warm-up is where the error was


def test_the_scheduler_does_not_build_ahead_of_learning(sim_plain):
    """A run against a server without /tokenize: prompts are built one at a time until lengths
    have settled, so the measured requests after the stated warm-up are on target."""
    from loadbench.deployments.remote import Remote
    from loadbench.experiment import Experiment
    from loadbench.load.plans import Concurrency, Stop
    from loadbench.scenario import Scenario

    notes: list[str] = []

    class Notes:
        def target_ready(self, target, out_dir):
            pass

        def progress(self, progress):
            pass

        def stopping(self, reason):
            pass

        def note(self, text):
            notes.append(text)

    def run(warmup, out):
        scenario = Scenario(
            workload=Balanced(), deployment=Remote.compatible(sim_plain.base_url + "/v1"),
            target=sim_plain.base_url + "/v1", load=Concurrency(users=4),
            stop=Stop(requests=warmup + 32, warmup_requests=warmup), energy=False, out_dir=str(out),
        )
        return Experiment(scenario).run(observer=Notes())

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        short = run(0, Path(tmp) / "short")
        cal = short.summary["lengths"]["calibration"]
        assert cal["mode"] == "records" and cal["measured_sized_before_learnt"] > 0
        assert cal["warnings"] and "lengthen the warm-up" in cal["warnings"][0]
        assert any(n.startswith("warning: measured requests' input tokens") for n in notes)
        needed = cal["warmup_needed_requests"]
        assert needed >= SETTLE_WINDOW + 4
        assert any(f"at least ~{needed} requests" in n for n in notes)

        notes.clear()
        long = run(64, Path(tmp) / "long")
        cal = long.summary["lengths"]["calibration"]
        run_json = json.loads((Path(tmp) / "long" / "run.json").read_text())
        assert run_json["lengths"]["warmup_needed_requests"] == needed
        assert run_json["lengths"]["settled_after"] == cal["settled_after"] <= 64
        assert cal["measured_sized_before_learnt"] == 0 and cal["warnings"] == []
        assert long.summary["lengths"]["input"]["rel_error_p90"] <= 0.05


def test_a_run_with_a_tokenizing_target_states_its_measurement(sim_tok, tmp_path):
    from loadbench.deployments.remote import Remote
    from loadbench.experiment import Experiment
    from loadbench.load.plans import Concurrency, Stop
    from loadbench.scenario import Scenario

    scenario = Scenario(
        workload=Decode(output_tokens=8), deployment=Remote.compatible(sim_tok.base_url + "/v1"),
        target=sim_tok.base_url + "/v1", load=Concurrency(users=2), stop=Stop(requests=24),
        energy=False, out_dir=str(tmp_path / "run"),
    )
    result = Experiment(scenario).run()
    lengths = json.loads((tmp_path / "run" / "run.json").read_text())["lengths"]
    assert lengths["mode"] == "server" and lengths["exact_first"]["prompts"] == 24
    assert lengths["exact_first"]["tokenize_calls"] >= 24
    assert result.summary["lengths"]["input"]["rel_error_p90"] <= 0.05
    assert result.summary["lengths"]["calibration"]["warnings"] == []
