"""The summary's facts beyond the histograms: server-side figures, answers graded, lengths."""

from __future__ import annotations

import pytest

from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.metrics.facts import RunFacts, ServerTally
from loadbench.metrics.summary import load_summary


def ok(index: int, *, server: dict | None = None, text: list[str] | None = None) -> RequestRecord:
    r = RequestRecord(index=index, request_id=str(index), intended_ns=index + 1, status="ok")
    r.server, r.text = server, text
    r.target_output_tokens = r.output_tokens = 10
    return r


def test_server_figures_are_summarised_by_name_numbers_only() -> None:
    facts = RunFacts()
    for i, (ms, tokens) in enumerate([(10.5, 100), (20.25, 200), (30.0, 300), (40.0, 400)]):
        facts.add(ok(i, server={"prompt_ms": ms, "prompt_tokens": tokens, "done_reason": "stop", "cached": True}), None)
    facts.add(ok(9), None)  # no server view: counted nowhere here
    summary = facts.server_summary()
    assert list(summary) == ["prompt_ms", "prompt_tokens"]  # strings and booleans are not figures
    # Whole values: exact percentiles of the values (interpolated between ranks), no histogram.
    assert summary["prompt_tokens"] == {"mean": 250.0, "p50": 250.0, "p90": 370.0}
    ms = summary["prompt_ms"]
    assert ms["mean"] == pytest.approx((10.5 + 20.25 + 30 + 40) / 4)
    assert ms["p50"] == pytest.approx(20.25, rel=1e-3) and ms["p90"] == pytest.approx(40.0, rel=1e-3)  # histogram
    assert list(facts.indices) == [0, 1, 2, 3, 9]


def test_a_server_tally_leaves_exact_counting_past_its_limit_of_distinct_values() -> None:
    tally = ServerTally()
    assert tally.report() is None
    for v in range(ServerTally._MAX_WHOLE + 1):
        tally.add(v)
    assert tally.whole is None  # too many distinct values to keep: the histogram answers
    report = tally.report()
    assert report["p50"] == pytest.approx(ServerTally._MAX_WHOLE / 2, rel=1e-3)
    assert report["mean"] == pytest.approx(ServerTally._MAX_WHOLE / 2)


def test_accuracy_is_over_the_answers_the_workload_could_grade() -> None:
    seen = []

    def check(prompt: Prompt | None, answer: str) -> bool | None:
        seen.append((prompt, answer))
        return {"yes": True, "no": False}.get(answer)

    facts = RunFacts(check)
    assert facts.accuracy() is None  # nothing checked yet
    prompt = Prompt.user("q")
    for i, text in enumerate([["y", "es"], ["yes"], ["no"], ["maybe"]]):
        facts.add(ok(i, text=text), prompt)
    facts.add(ok(4), prompt)  # text not kept: not checked
    assert seen[0] == (prompt, "yes")  # the streamed pieces joined
    assert facts.accuracy() == {"checked": 3, "correct": 2, "unchecked": 1, "accuracy": pytest.approx(2 / 3)}


def test_accuracy_with_nothing_gradable_has_no_share() -> None:
    facts = RunFacts(lambda prompt, answer: None)
    facts.add(ok(0, text=["?"]), None)
    assert facts.accuracy() == {"checked": 0, "correct": 0, "unchecked": 1, "accuracy": None}


def test_no_check_grades_nothing() -> None:
    facts = RunFacts()
    facts.add(ok(0, text=["yes"]), None)
    assert facts.accuracy() is None


def test_lengths_are_tallied_against_their_targets() -> None:
    facts = RunFacts()
    for i in range(3):
        facts.add(ok(i), None)
    output = facts.lengths.report()["output"]
    assert output["n"] == 3 and output["target_p50"] == 10 and output["rel_error_p90"] == 0


def test_load_summary_rate_is_over_the_scheduling_span() -> None:
    plan = {"type": "Poisson", "rate_per_s": 5.0}
    assert load_summary(plan, 20, 4_000_000_000) == {
        "plan": plan, "scheduled": 20, "scheduling_s": 4.0, "scheduled_per_s": 5.0,
    }  # fmt: skip
    assert load_summary(plan, 0, 0)["scheduled_per_s"] is None  # never scheduled: no rate
