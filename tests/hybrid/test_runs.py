"""Hybrid runs end to end on the simulator: both protocols, every dialect, the child records, the
summary's ``hybrid`` section, a fan-out bounded by ``local_concurrency``, a remote that answers
broken JSON, and a remote whose job plan holds Python."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from loadbench import (
    Balanced,
    Concurrency,
    EngineProfile,
    Experiment,
    Fixed,
    Hybrid,
    Local,
    Minion,
    Minions,
    Prefill,
    Remote,
    Responder,
    SimConfig,
    Stop,
    Uniform,
)
from loadbench.contract.errors import ConfigError
from loadbench.hybrid.deployment import max_in_flight
from loadbench.results.run import RunResult

# Calls take a few milliseconds, so concurrent ones overlap in time as they would on a real server.
QUICK = EngineProfile(name="quick", slots=64, step_base_ms=0.5, step_per_seq_ms=0.0, prefill_per_token_ms=0.001,
                      default_output_tokens=16)


def run(tmp_path: Path, deployment: Hybrid, *, requests: int = 24, users: int = 4, workload=None,
        sim: SimConfig | None = None, name: str = "run") -> RunResult:
    return Experiment(
        workload=workload or Prefill(),
        deployment=deployment,
        load=Concurrency(users),
        stop=Stop(requests=requests),
        target="sim",
        sim=sim or SimConfig(profile=QUICK),
        energy=False,
        check_answers=True,
        out_dir=tmp_path / name,
    ).run()


def children_by_parent(result: RunResult) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for c in result.child_records():
        out.setdefault(c["parent"], []).append(c)
    return out


def check_accounting(result: RunResult, requests: int) -> None:
    s = result.summary
    req = s["requests"]
    assert req["scheduled"] == requests == req["completed"] + req["failed"] + req["cancelled"]
    parents = list(result.records())
    assert len(parents) == requests
    # children are lines of their own, never counted in the top-level figures
    kids = children_by_parent(result)
    assert sum(len(v) for v in kids.values()) == s["hybrid"]["local"]["calls"] + s["hybrid"]["remote"]["calls"]
    assert s["metrics"]["e2e_ms"]["count"] == s["requests"]["measured_completed"]
    for p in parents:
        assert p["children"] == len(kids.get(p["request_id"], []))
        for c in kids.get(p["request_id"], []):
            assert c["role"] in ("supervisor", "worker") and c["round"] is not None
            assert p["sent_ns"] <= c["intended_ns"] <= c["end_ns"] <= p["end_ns"]


@pytest.mark.parametrize(
    "local,remote",
    [
        (Local("llama3.2"), Remote.openai("gpt-4o")),
        (Remote.compatible("http://127.0.0.1:9", model="small"), Remote.claude("claude-sonnet-4-5")),
        (Local("llama3.2"), Remote.deepseek()),
    ],
    ids=["ollama+openai", "compatible+anthropic", "ollama+deepseek"],
)
def test_minion_runs_over_several_rounds_in_every_dialect(tmp_path: Path, local, remote) -> None:
    # The supervisor always asks again after the first exchange; after the second its decision is
    # the simulator's random pick, so some requests end in round 2 and some are forced to end in 3.
    # (With every decision left to chance, no request reaching round 3 happened in about one run
    # in ten: the picks come from one generator, in whatever order the requests arrive.)
    more = {"reasoning": "not yet", "decision": "request_additional_info", "answer": None,
            "message": "Which section says it?"}
    remote_sim = SimConfig(profile=QUICK, responders=(Responder(r"exchange 1 of 3\)", json=more),))
    result = run(tmp_path, Hybrid(local, remote, Minion(max_rounds=3), remote_sim=remote_sim), requests=24)
    check_accounting(result, 24)
    h = result.summary["hybrid"]
    assert h["protocol"]["name"] == "minion" and h["completed"] >= 20
    histogram = h["rounds"]["histogram"]
    assert h["rounds"]["max"] == 3 and "1" not in histogram, histogram
    assert histogram.get("2", 0) >= 1 and histogram.get("3", 0) >= 1, histogram
    for parent in result.records():
        facts = parent["hybrid"]
        kids = children_by_parent(result)[parent["request_id"]]
        steps = Counter(c["step"] for c in kids)  # a retry is a step of its own: "<step>_retry"
        # 1 opening question, then per round one worker reply and one decision
        assert steps["question"] == 1 and steps["reply"] == facts["rounds"] == steps["decision"]
        if parent["status"] == "ok":
            final = kids[-1]
            assert final["role"] == "supervisor" and final["step"].startswith("decision")
            # the hybrid request's TTFT is that of the call that delivered the final answer
            assert parent["first_token_ns"] == final["first_token_ns"]
            assert parent["text"]
    assert h["remote"]["cost_usd"] is not None and h["cost_usd_per_request"] > 0
    assert h["local"]["output_tokens"] > 0 and h["remote"]["input_tokens"] > 0


def test_minions_fans_jobs_out_bounded_by_local_concurrency(tmp_path: Path) -> None:
    workload = Prefill(input_tokens=Uniform(5000, 6000))
    protocol = Minions(max_rounds=5, tasks_per_round=4, max_jobs_per_round=40, local_concurrency=6)
    result = run(tmp_path, Hybrid(Local("llama3.2"), Remote.openai("gpt-4o"), protocol), requests=16, users=2,
                 workload=workload)
    check_accounting(result, 16)
    h = result.summary["hybrid"]
    assert h["rounds"]["max"] >= 3 and h["jobs_per_round"]["max"] >= 16
    assert h["jobs"]["run"] > 0 and h["jobs"]["dropped"] > 0  # some jobs answered nothing
    workers = [c for c in result.child_records() if c["role"] == "worker"]
    spans = [(c["sent_ns"], c["end_ns"]) for c in workers]
    # the bound holds across the whole run, and jobs did overlap up to it
    assert 2 <= max_in_flight(spans) <= 6 == h["local"]["concurrency_limit"]
    assert h["local"]["max_in_flight"] == max_in_flight(spans)
    big = Counter((c["parent"], c["round"]) for c in workers if c["step"] == "job")
    (parent, round_no), n = big.most_common(1)[0]
    assert n >= 16
    round_spans = [(c["sent_ns"], c["end_ns"]) for c in workers if c["parent"] == parent and c["round"] == round_no]
    assert max_in_flight(round_spans) >= 2
    assert h["local"]["wait_s"] > 0  # jobs queued for the bound, and the wait is recorded
    # the calls are what the server saw: each joins its ground truth; the hybrid requests are not calls
    from loadbench.results.verify import compare

    joined = compare(result.path)
    kids = [c for c in result.child_records() if c["status"] == "ok"]
    assert joined["client_requests"] == len(list(result.child_records())) and joined["joined_ok"] == len(kids)


def test_a_remote_answering_broken_json_a_fifth_of_the_time_is_survived_and_counted(tmp_path: Path) -> None:
    remote_sim = SimConfig(profile=QUICK, json_malformed_rate=0.2, seed=3)
    hybrid = Hybrid(Local("llama3.2"), Remote.openai("gpt-4o-mini"), Minions(tasks_per_round=2), remote_sim=remote_sim)
    result = run(tmp_path, hybrid, requests=30, users=4)
    check_accounting(result, 30)
    h = result.summary["hybrid"]
    assert h["retries"] > 0
    assert set(h["protocol_errors"]) <= {"remote_unparsable", "remote_schema", "remote_truncated"}
    assert sum(h["protocol_errors"].values()) > 0  # some stayed broken after the retry
    assert h["completed"] >= 20
    for name in ("run.json", "summary.json", "requests.jsonl", "metrics.hlog"):
        assert (result.path / name).is_file()
    errors = result.summary["requests"]["errors"]
    assert set(errors) <= {"protocol"}


def test_a_plan_holding_python_runs_none_of_it(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('pwned')"
    plan = {"reasoning": code, "chunking": "section", "code": code,
            "tasks": [{"instruction": code, "chunks": "all"},
                      {"instruction": "exec(" + repr(code) + ")", "chunks": f"eval({code!r})"}]}
    decision = {"explanation": "done", "decision": "provide_final_answer", "answer": "42"}
    remote_sim = SimConfig(profile=QUICK, responders=(
        Responder(r"Choose the cut in", json=plan),
        Responder(r"the assistants' answers", json=decision),
    ))
    hybrid = Hybrid(Local("llama3.2"), Remote.openai("gpt-4o"), Minions(), remote_sim=remote_sim)
    result = run(tmp_path, hybrid, requests=4, users=2)
    check_accounting(result, 4)
    assert not marker.exists()
    assert result.summary["hybrid"]["completed"] == 4
    assert all(p["text"] == "42" for p in result.records())
    jobs = [c for c in result.child_records() if c["step"] == "job"]
    assert jobs  # the code went to the local model as instruction text, every chunk, both tasks


def test_every_workload_works_with_the_prompt_as_task_and_context(tmp_path: Path) -> None:
    hybrid = Hybrid(Local("llama3.2"), Remote.openai("gpt-4o"), Minions(max_rounds=2))
    result = run(tmp_path, hybrid, requests=6, workload=Balanced(input_tokens=Fixed(300), output_tokens=Fixed(32)))
    check_accounting(result, 6)


def test_unpriced_remote_model_is_reported_unpriced(tmp_path: Path) -> None:
    hybrid = Hybrid(Local("llama3.2"), Remote.openai("house-model-7"), Minion())
    h = run(tmp_path, hybrid, requests=4).summary["hybrid"]
    assert h["remote"]["price"] == {"model": "house-model-7", "priced": False}
    assert h["remote"]["cost_usd"] is None and h["cost_usd_per_request"] is None
    assert h["energy"]["remote"]["kind"] == "estimated" and h["energy"]["remote"]["wh"] > 0


def test_bad_hybrid_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"Hybrid\.local"):
        Hybrid("llama", Remote.openai())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"Hybrid\.protocol"):
        Hybrid(Local("llama3.2"), Remote.openai(), protocol="minions")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"Minions\.chunking"):
        Minions(chunking="chapter")
    with pytest.raises(ConfigError, match=r"Minions\.local_concurrency"):
        Minions(local_concurrency=0)
    with pytest.raises(ConfigError, match=r"Hybrid\.remote_url"):
        Hybrid(Local("llama3.2"), Remote.openai(), remote_url="ftp://x")


def test_the_supervisor_may_choose_the_cut_when_given_several(tmp_path: Path) -> None:
    protocol = Minions(max_rounds=2, chunking=("section", "paragraph", "page"))
    result = run(tmp_path, Hybrid(Local("llama3.2"), Remote.openai("gpt-4o"), protocol), requests=6)
    check_accounting(result, 6)
    assert [c["by"] for c in result.summary["hybrid"]["protocol"]["chunking"]] == ["section", "paragraph", "page"]
    assert result.summary["hybrid"]["jobs"]["run"] > 0
