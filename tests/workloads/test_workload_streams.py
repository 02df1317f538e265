"""Prompt streams: determinism, the presets' shapes, shared prefixes and multi-turn history."""

from __future__ import annotations

import hashlib
import itertools
import json
import re

import numpy as np
import pytest

from loadbench.contract.errors import ConfigError
from loadbench.workloads import (
    Balanced,
    CalibratedEstimate,
    Decode,
    Fixed,
    MathDataset,
    MultiTurn,
    Normal,
    Prefill,
    SyntheticChat,
    SyntheticFinance,
    SyntheticMath,
    Uniform,
    Workload,
)
from loadbench.workloads.check import check_finance, check_math, extract_boxed


def digest(stream, n: int = 200) -> str:
    """A hash of the JSON of the first ``n`` prompts, field by field."""
    h = hashlib.sha256()
    for p in itertools.islice(stream, n):
        h.update(json.dumps({
            "messages": [[m.role, m.content] for m in p.messages],
            "max_output_tokens": p.max_output_tokens, "ignore_eos": p.ignore_eos,
            "target_input_tokens": p.target_input_tokens, "target_output_tokens": p.target_output_tokens,
            "reference": p.reference, "source": p.source,
        }, sort_keys=True).encode())
    return h.hexdigest()


PRESETS = [Prefill(), Balanced(), Decode(), Balanced(multi_turn=MultiTurn()), Prefill(shared_prefix_tokens=64)]


@pytest.mark.parametrize("workload", PRESETS, ids=lambda w: w.name)
def test_same_seed_gives_byte_identical_streams(workload: Workload):
    assert digest(workload.open(seed=7)) == digest(workload.open(seed=7))


@pytest.mark.parametrize("workload", PRESETS, ids=lambda w: w.name)
def test_different_seeds_give_different_streams(workload: Workload):
    assert digest(workload.open(seed=7), 20) != digest(workload.open(seed=8), 20)


def test_equal_workload_values_give_equal_streams_and_presets_differ():
    assert digest(Decode(output_tokens=Uniform(200, 1200)).open(1), 50) == digest(
        Decode(output_tokens=Uniform(200, 1200)).open(1), 50
    )
    # The same seed in another preset is a different stream (the name salts the seed).
    assert digest(Prefill().open(1), 5) != digest(Decode().open(1), 5)


def test_overriding_output_lengths_leaves_content_and_input_lengths_alone():
    a = list(itertools.islice(Decode().open(seed=2), 30))
    b = list(itertools.islice(Decode(output_tokens=Fixed(77)).open(seed=2), 30))
    assert [p.messages for p in a] == [p.messages for p in b]
    assert [p.target_input_tokens for p in a] == [p.target_input_tokens for p in b]
    assert {p.max_output_tokens for p in b} == {77}


def test_preset_defaults_state_their_distributions():
    assert Prefill().describe()["input_tokens"] == {"kind": "uniform", "low": 1000, "high": 1500}
    assert Prefill().output_tokens.describe()["mean"] == 48
    assert Balanced().input_tokens == Balanced().output_tokens  # similar sizes
    assert Decode().output_tokens.describe()["mean"] >= 1000
    for w in (Prefill(), Balanced(), Decode(), Balanced(multi_turn=MultiTurn())):
        d = w.describe()
        assert json.loads(json.dumps(d)) == d
        assert d["name"] == w.name
    assert (Prefill().name, Balanced().name, Decode().name) == ("prefill", "balanced", "decode")


def test_output_targets_follow_the_distribution_and_ignore_eos_defaults():
    for w, eos in ((Prefill(), False), (Balanced(), True), (Decode(), True)):
        prompts = list(itertools.islice(w.open(0), 400))
        outs = np.array([p.max_output_tokens for p in prompts])
        assert all(p.target_output_tokens == p.max_output_tokens for p in prompts)
        assert all(p.ignore_eos is eos for p in prompts)
        d = w.output_tokens
        assert outs.min() >= d.min and outs.max() <= d.max
        assert abs(outs.mean() - d.mean) < 0.1 * d.mean
    assert all(p.ignore_eos is False for p in itertools.islice(Decode(ignore_eos=False).open(0), 10))


def test_prefill_prompt_holds_evidence_question_and_checkable_reference():
    stream = Prefill().open(seed=4)
    for p in itertools.islice(stream, 50):
        assert p.source == "synthetic:finance"
        (msg,) = p.messages
        assert msg.role == "user" and "Question: " in msg.content
        figure = p.reference.removeprefix("$").removesuffix(" million")
        assert figure in msg.content  # the figure is in the evidence table
        assert check_finance(p.reference, f"It was ${figure} million.") is True


def test_decode_prompt_is_a_problem_with_a_checkable_answer():
    stream = Decode().open(seed=4)
    for p in itertools.islice(stream, 50):
        assert p.source == "synthetic:math"
        text = p.messages[-1].content
        assert text.startswith("Solve the following problem step by step")
        assert "\\boxed{}" in text
        last = text.rsplit("Problem: ", 1)[1]
        assert "Solution:" not in last  # the problem itself comes last, unsolved
        assert check_math(p.reference, f"... so the answer is $\\boxed{{{p.reference}}}$.") is True


def test_synthetic_math_answers_match_their_worked_solutions():
    pool = SyntheticMath().load()
    rng = np.random.default_rng(0)
    for _ in range(300):
        item = pool.draw(rng)
        assert extract_boxed(item.solution) == item.answer


def test_balanced_prompts_alternate_roles_and_end_on_the_user():
    stream = Balanced().open(seed=5)
    for p in itertools.islice(stream, 100):
        roles = [m.role for m in p.messages]
        assert roles[-1] == "user"
        assert roles == ["user", "assistant"] * ((len(roles) - 1) // 2) + ["user"]
        assert p.reference is None and p.source == "synthetic:chat"
    assert Balanced().check(p, "anything") is None


def test_shared_prefix_is_one_system_message_for_all_prompts():
    w = Prefill(shared_prefix_tokens=200)
    prompts = list(itertools.islice(w.open(seed=1), 30))
    assert {p.messages[0].content for p in prompts} == {prompts[0].messages[0].content}
    assert all(p.messages[0].role == "system" for p in prompts)
    assert abs(CalibratedEstimate().count(prompts[0].messages[0].content) - 200) <= 2
    # Groups: several distinct prefixes, each shared by many prompts.
    g = Decode(shared_prefix_tokens=50, shared_prefix_groups=3)
    prefixes = [p.messages[0].content for p in itertools.islice(g.open(seed=1), 60)]
    assert len(set(prefixes)) == 3
    assert min(prefixes.count(x) for x in set(prefixes)) >= 5


def test_multi_turn_conversations_carry_their_history():
    w = Balanced(multi_turn=MultiTurn(turns=Fixed(3), interleave=2))
    prompts = list(itertools.islice(w.open(seed=3), 12))
    # Slots alternate: prompts 0, 2, 4 are one conversation's three turns.
    for start in (0, 1, 6, 7):
        t1, t2, t3 = prompts[start], prompts[start + 2], prompts[start + 4]
        assert t2.messages[: len(t1.messages)] == t1.messages
        assert t3.messages[: len(t2.messages)] == t2.messages
        assert len(t2.messages) == len(t1.messages) + 2 and len(t3.messages) == len(t2.messages) + 2
        assert t2.messages[-2].role == "assistant" and t2.messages[-1].role == "user"
        assert t1.target_input_tokens < t2.target_input_tokens < t3.target_input_tokens
        # The answer carried into turn 2 is sized to turn 1's output target.
        reply = t2.messages[-2].content
        assert abs(CalibratedEstimate().count(reply) - t1.max_output_tokens) <= 2
    # A new conversation starts after three turns.
    assert prompts[6].messages[-1] != prompts[4].messages[-1]
    assert prompts[6].messages[: len(prompts[0].messages)] != prompts[0].messages


def test_stream_describe_and_observe_only_learns_from_its_own_ok_prompts():
    from conftest import finished

    stream = Decode().open(0)
    p = next(stream)
    stream.observe(p, finished(p, None))  # no server count: nothing learnt
    q = next(stream)
    stream.observe(q, finished(q, 500, status="failed"))
    other = next(Decode().open(1))
    stream.observe(other, finished(other, 500))  # not built by this stream
    assert stream.model.observations == 0
    r = next(stream)
    stream.observe(r, finished(r, 321))
    stream.observe(r, finished(r, 321))  # observed twice: counted once
    assert stream.model.observations == 1
    d = stream.describe()
    assert d["built"] == 3 and d["observed"] == 1 and d["counter"]["kind"] == "estimate"
    json.dumps(d)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: Prefill(dataset=SyntheticMath()), r"Prefill.dataset must be a finance dataset"),
        (lambda: Decode(dataset=SyntheticChat()), r"Decode.dataset must be a math dataset"),
        (lambda: Balanced(dataset=SyntheticFinance()), r"Balanced.dataset must be a chat dataset"),
        (lambda: Decode(input_tokens="long"), r"Decode.input_tokens must be"),
        (lambda: Decode(shared_prefix_tokens=-1), r"shared_prefix_tokens"),
        (lambda: Decode(shared_prefix_groups=0), r"shared_prefix_groups"),
        (lambda: Balanced(multi_turn=3), r"Balanced.multi_turn"),
        (lambda: MultiTurn(interleave=0), r"MultiTurn.interleave"),
        (lambda: Prefill(answer_tolerance=2), r"Prefill.answer_tolerance"),
        (lambda: Decode(ignore_eos="yes"), r"Decode.ignore_eos"),
        (lambda: MathDataset(subjects=("topology",)), r"MathDataset.subjects: unknown"),
        (lambda: MathDataset(levels=(0,)), r"MathDataset.levels"),
        (lambda: Decode().open(seed=-1), r"seed"),
        (lambda: Decode().open(seed=0, counter="tiktoken"), r"counter must be a TokenCounter"),
    ],
)
def test_bad_configuration_names_the_field(make, needle):
    with pytest.raises(ConfigError, match=needle):
        make()


def test_integer_lengths_mean_fixed():
    w = Decode(input_tokens=100, output_tokens=300)
    assert w.input_tokens == Fixed(100) and w.output_tokens == Fixed(300)
    p = next(w.open(0))
    assert p.target_input_tokens == 100 and p.max_output_tokens == 300


def test_workloads_are_frozen_values():
    w = Decode()
    with pytest.raises(AttributeError):
        w.ignore_eos = False  # type: ignore[misc]
    assert w == Decode() and hash(w) == hash(Decode())
    assert Decode(output_tokens=Normal(10, 1)) != w


def test_prefill_pads_to_its_target_and_never_drops_the_evidence():
    est = CalibratedEstimate()
    for target in (200, 800, 3000):
        for p in itertools.islice(Prefill(input_tokens=Fixed(target)).open(seed=target), 10):
            n = est.count(p.messages[0].content)
            assert abs(n - target) <= max(2, 0.01 * target)
            assert re.search(r"\| [A-Z][^|]+ \| [\d,.()]+ \| [\d,.()]+ \|", p.messages[0].content)


def test_a_target_below_the_fixed_parts_records_what_was_built():
    est = CalibratedEstimate()
    for w in (Decode(input_tokens=5), Prefill(input_tokens=10), Balanced(input_tokens=3)):
        for p in itertools.islice(w.open(0), 10):
            built = sum(est.count(m.content) for m in p.messages)
            assert p.target_input_tokens == built > {"decode": 5, "prefill": 10, "balanced": 3}[w.name]
