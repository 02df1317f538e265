"""Length control: prompts land on their input targets, and calibration gets them there."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
from conftest import OVERHEAD_TOKENS, PER_MESSAGE_TOKENS, finished, served_tokens

from loadbench.contract.errors import ConfigError, TargetError
from loadbench.workloads import (
    Balanced,
    CalibratedEstimate,
    Decode,
    HFTokenizerFile,
    LengthModel,
    MultiTurn,
    Prefill,
    ServerTokenizer,
    TiktokenEncoding,
    TraceReplay,
    auto_counter,
    length_report,
)
from loadbench.workloads.tokens import truncate_by_count

PRESETS = [Prefill(), Balanced(), Decode(), Balanced(multi_turn=MultiTurn())]


def run_stream(workload, counter, oracle, n: int, *, feedback: bool = True, seed: int = 1):
    """Build ``n`` prompts; the "server" counts with ``oracle`` plus the test template. Returns
    per-prompt relative input errors and the records."""
    stream = workload.open(seed=seed, counter=counter)
    errors, records = [], []
    for i in range(n):
        p = next(stream)
        reported = served_tokens(p, oracle)
        rec = finished(p, reported, index=i)
        rec.output_tokens = p.max_output_tokens
        records.append(rec)
        errors.append((reported - p.target_input_tokens) / p.target_input_tokens)
        if feedback:
            stream.observe(p, rec)
    return np.abs(np.array(errors)), records, stream


def test_hf_tokenizer_file_counts_and_cuts_on_token_boundaries(hf_counter: HFTokenizerFile):
    text = "The revenue of Acme in 2023 was 1,234.5 million, up from 987.0."
    n = hf_counter.count(text)
    assert n == len(hf_counter._tok.encode(text, add_special_tokens=False).ids) and n > 10
    head = hf_counter.truncate(text, 5)
    tail = hf_counter.truncate(text, 5, keep="tail")
    assert text.startswith(head) and hf_counter.count(head) == 5
    assert text.endswith(tail) and hf_counter.count(tail) == 5
    assert hf_counter.truncate(text, 1000) == text and hf_counter.truncate(text, 0) == ""


def _id(w) -> str:
    return w.name + ("-multi" if getattr(w, "multi_turn", None) else "")


@pytest.mark.parametrize("workload", PRESETS, ids=_id)
def test_exact_tokenizer_hits_targets_within_5_percent(workload, hf_counter):
    errors, records, stream = run_stream(workload, hf_counter, hf_counter.count, 240)
    after = errors[40:]  # after warm-up has taught the model the template
    assert after.max() <= 0.05, f"worst {after.max():.3f}"
    assert np.median(after) <= 0.01
    coef = stream.model.describe()
    assert abs(coef["overhead_tokens"] + coef["per_message_tokens"] * (2 if workload.name == "balanced" else 1)
               - (OVERHEAD_TOKENS + PER_MESSAGE_TOKENS * (2 if workload.name == "balanced" else 1))) < 1.5
    report = length_report(records[40:])
    assert report["input"]["rel_error_p90"] <= 0.05 and report["input"]["n"] == 200


def test_calibration_converges_from_observed_records(hf_counter):
    """The default estimate knows neither the tokenizer's ratio nor the template: far off
    without feedback, within a few percent once it has seen records."""
    for workload in (Prefill(), Balanced()):
        blind, _, _ = run_stream(workload, None, hf_counter.count, 150, feedback=False)
        taught, _, stream = run_stream(workload, None, hf_counter.count, 150, feedback=True)
        assert np.median(blind) > 0.1, "the estimate alone should be far off for this tokenizer"
        assert np.median(taught[64:]) < 0.03
        assert np.percentile(taught[64:], 90) < 0.05
        assert stream.model.observations == 150
        assert abs(stream.model.describe()["scale"] - 1.0) > 0.2  # it learnt the ratio


def test_length_model_recovers_a_known_template():
    m = LengthModel(exact=False)
    rng = np.random.default_rng(0)
    for _ in range(200):
        msgs = int(rng.integers(1, 8))
        counted = float(rng.integers(50, 2000))
        m.observe(msgs, counted, round(12 + 5 * msgs + 0.8 * counted))
    o, pm, s = m.coefficients()
    assert abs(s - 0.8) < 0.01 and abs(pm - 5) < 0.5 and abs(o - 12) < 3
    assert abs(m.content_budget(1000, 3) - (1000 - 12 - 15) / 0.8) < 10


def test_length_model_with_no_spread_still_predicts_the_observed_size():
    m = LengthModel(exact=False)
    for _ in range(50):
        m.observe(1, 400.0, 530)
    assert abs(m.predict(1, 400.0) - 530) < 1


def test_estimate_counts_words_punctuation_and_line_breaks():
    est = CalibratedEstimate(chars_per_token=4)
    assert est.count("") == 0
    assert est.count("abcd efghi, j.\n\nxy") == 1 + 2 + 1 + 1 + 1 + 1 + 1
    cut = est.truncate("alpha beta gamma delta", 3)
    assert cut == "alpha beta" and est.count(cut) == 3  # "alph" "a" "beta"
    assert est.truncate("alpha beta gamma delta", 2, keep="tail") == "delta"
    fitted = CalibratedEstimate.fit([("internationalization is long", 4)], fitted_from="test")
    assert fitted.chars_per_token >= 8
    with pytest.raises(ConfigError, match="chars_per_token"):
        CalibratedEstimate(chars_per_token=0)


def test_generic_truncate_by_count(hf_counter):
    text = "one two three four five six seven"
    # The longest head (tail) that fits: whitespace next to the cut costs no token here.
    assert truncate_by_count(hf_counter, text, 3) == "one two three "
    assert truncate_by_count(hf_counter, text, 2, "tail") == " six seven"
    assert truncate_by_count(hf_counter, text, 0) == ""


def test_tiktoken_is_never_downloaded():
    # Either tiktoken is missing, or the encoding is not cached here: both refuse, naming why.
    with pytest.raises(ConfigError, match="tiktoken"):
        TiktokenEncoding("loadbench_test_encoding_that_does_not_exist")


def test_server_tokenizer_errors_are_target_errors():
    tok = ServerTokenizer("http://user:secret@127.0.0.1:9/v1", timeout_s=0.5)
    assert tok.url == "http://user:secret@127.0.0.1:9/tokenize"
    with pytest.raises(TargetError) as e:
        tok.count("hello")
    assert "secret" not in str(e.value) and "127.0.0.1:9/tokenize" in str(e.value)
    assert isinstance(auto_counter("http://127.0.0.1:9", timeout_s=0.5), CalibratedEstimate)
    with pytest.raises(ConfigError, match="base_url"):
        ServerTokenizer("localhost:8080")


# -- against the embedded simulator -----------------------------------------------------------------


@pytest.fixture(scope="module")
def sim():
    from loadbench.sim import SimConfig, SimProcess

    with SimProcess(SimConfig(trace=False)) as s:
        yield s


def chat(base_url: str, prompt) -> dict:
    body = {
        "model": "sim",
        "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
        "max_tokens": prompt.max_output_tokens,
        "ignore_eos": prompt.ignore_eos,
        "stream": False,
    }
    req = urllib.request.Request(
        base_url + "/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_server_tokenizer_matches_the_simulator(sim):
    from loadbench.sim.text import count_tokens

    tok = ServerTokenizer(sim.base_url)
    text = "Solve for $x$: $3x + 7 = 22$.\n\nThen  explain\tit, please!"
    assert tok.count(text) == count_tokens(text)
    assert tok.truncate(text, 6) == text[: len(tok.truncate(text, 6))]
    assert tok.count(tok.truncate(text, 6)) == 6
    assert isinstance(auto_counter(sim.base_url), ServerTokenizer)


@pytest.mark.parametrize("workload", [Prefill(), Balanced(), Decode()], ids=lambda w: w.name)
def test_prompts_hit_the_simulators_counts(sim, workload):
    """End to end: a stream sized through the simulator's /tokenize, sent to the simulator, whose
    usage reports the input and output tokens."""
    server = ServerTokenizer(sim.base_url)
    stream = workload.open(seed=5, counter=server)
    calls = server.calls
    assert stream.counter.describe()["fitted_from"] == "server"  # fitted once, at open
    records = []
    for i in range(12):
        p = next(stream)
        usage = chat(sim.base_url, p)["usage"]
        rec = finished(p, usage["prompt_tokens"], index=i)
        rec.output_tokens = usage["completion_tokens"]
        records.append(rec)
        stream.observe(p, rec)
    assert server.calls == calls  # no tokenize round trips per prompt
    report = length_report(records)
    assert report["input"]["n"] == 12
    assert report["input"]["rel_error_p90"] <= 0.05, report
    if workload.ignore_eos:
        assert report["output"]["rel_error_p90"] == 0.0, report


def test_trace_prompts_have_the_trace_lengths(sim, tmp_path):
    path = tmp_path / "trace.jsonl"
    rows = [
        {"timestamp": 0, "input_length": 700, "output_length": 20, "hash_ids": [0, 1]},
        {"timestamp": 5, "input_length": 900, "output_length": 30, "hash_ids": [0, 1, 2]},
        {"timestamp": 9, "input_length": 300, "output_length": 10, "hash_ids": [3]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stream = TraceReplay(path, block_tokens=512).workload().open(seed=0, counter=ServerTokenizer(sim.base_url))
    for row in rows:
        p = next(stream)
        usage = chat(sim.base_url, p)["usage"]
        assert abs(usage["prompt_tokens"] - row["input_length"]) <= 0.05 * row["input_length"]
        assert usage["completion_tokens"] == row["output_length"]
