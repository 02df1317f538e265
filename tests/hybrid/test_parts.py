"""The hybrid's parts: chunking, reply parsing, the price table, the wire options, the job plan as data,
and the simulator's structured answers in every dialect."""

from __future__ import annotations

import itertools
import urllib.request
from pathlib import Path

import orjson
import pytest

from loadbench.contract.errors import ConfigError
from loadbench.contract.prompt import Prompt
from loadbench.deployments.wire.anthropic import AnthropicWire
from loadbench.deployments.wire.ollama import OllamaWire
from loadbench.deployments.wire.openai import OpenAIWire
from loadbench.hybrid import Chunking, Minions, PriceTable
from loadbench.hybrid import prompts as P
from loadbench.hybrid.calls import union_ns
from loadbench.hybrid.deployment import max_in_flight
from loadbench.hybrid.replies import check, extract
from loadbench.sim import SimConfig, SimProcess

DOC = "\n\n".join(f"Paragraph {i}: " + " ".join(f"word{i}_{j}" for j in range(60)) for i in range(30))


def test_sections_are_bounded_overlap_and_cover_the_document() -> None:
    chunks = Chunking("section", chars=1000, overlap_chars=100).split(DOC)
    assert len(chunks) > 5
    assert all(len(c) <= 1000 for c in chunks)
    # every word of the document is in some chunk, and neighbours share text
    assert all(any(w in c for c in chunks) for w in DOC.split())
    assert all(a[-50:].strip() and a[-50:] in b for a, b in itertools.pairwise(chunks))


def test_pages_split_at_form_feeds_and_paragraphs_join_short_blocks() -> None:
    assert Chunking("page").split("one\ftwo\fthree") == ["one", "two", "three"]
    # no form feed: falls back to sections
    assert Chunking("page", chars=1000, overlap_chars=0).split(DOC) == Chunking(
        "section", chars=1000, overlap_chars=0).split(DOC)
    paras = Chunking("paragraph", min_chars=10).split("a\n\nb\n\nlonger paragraph here\n\n\nc")
    assert paras == ["a\n\nb\n\nlonger paragraph here", "c"]
    with pytest.raises(ConfigError, match=r"Chunking\.by"):
        Chunking("chapter")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="overlap_chars"):
        Chunking("section", chars=100, overlap_chars=60)


def test_replies_are_found_in_prose_fences_and_after_other_objects() -> None:
    assert extract('{"a": 1}') == {"a": 1}
    assert extract('Sure.\n```json\n{"a": 2}\n```\nDone.') == {"a": 2}
    assert extract('first {"a": 1} then {"b": "}{"} end') == {"b": "}{"}
    assert extract('{"a": 1, "b": ') is None
    assert extract("no json here") is None
    schema = P.minions_job_schema(100)
    assert check({"explanation": "x", "citation": None, "answer": "42"}, schema) is None
    assert "lacks 'answer'" in check({"explanation": "x", "citation": None}, schema)
    decision = P.minions_decision_schema(100, last=True)
    assert "must be one of" in check({"explanation": "", "decision": "maybe", "answer": "x"}, decision)


def test_prices_prefix_match_and_unpriced_is_none_not_zero() -> None:
    table = PriceTable()
    assert table.cost_usd("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.5)
    assert table.price("gpt-4o-2024-08-06") == table.price("gpt-4o")
    assert table.price("gpt-4o-mini") != table.price("gpt-4o")
    assert table.cost_usd("my-own-model", 10, 10) is None
    with pytest.raises(ConfigError, match="PriceTable"):
        PriceTable({"m": (1.0,)})  # type: ignore[dict-item]


def test_union_and_in_flight_of_spans() -> None:
    assert union_ns([(0, 10), (5, 20), (30, 40)]) == 30
    assert max_in_flight([(0, 10), (5, 20), (10, 15), (30, 40)]) == 2


def test_each_dialect_asks_for_the_schema_its_own_way() -> None:
    schema = P.minions_job_schema(50)
    prompt = Prompt.user("x", max_output_tokens=10)
    prompt = Prompt(messages=prompt.messages, max_output_tokens=10, response_schema=schema)
    openai = OpenAIWire(model="m").body(prompt)
    assert openai["response_format"] == {"type": "json_schema", "json_schema": {"name": "job_answer", "schema": schema}}
    assert OllamaWire(model="m").body(prompt)["format"] == schema
    anthropic = AnthropicWire(model="m", default_max_tokens=10).body(prompt)
    assert "format" not in anthropic and "response_format" not in anthropic


def test_a_job_plan_holding_python_is_read_as_data_and_none_of_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"
    plan = {
        "chunking": "section",
        "code": code,
        "tasks": [
            {"instruction": code, "chunks": [0, 1]},
            {"instruction": "find the revenue", "chunks": f"[i for i in range(3)] or {code}"},
            {"instruction": "exec(" + repr(code) + ")", "chunks": "all"},
            {"instruction": "", "chunks": "all"},
            "not a task",
        ],
    }
    cuts = {"section": ["c0", "c1", "c2"]}
    jobs, refused = Minions().jobs(plan, cuts)
    # The code strings are instructions for the local model (prompt text), nothing more: the
    # first task runs on chunks 0 and 1, the string "chunks" means every chunk, the third task all.
    assert [(cid, text) for cid, _, _, text in jobs][:2] == [(0, code), (1, code)]
    assert len(jobs) == 2 + 3 + 3 and refused == 2
    assert not marker.exists()


@pytest.fixture(scope="module")
def sim() -> SimProcess:
    with SimProcess(SimConfig(json_null_rate=0.5)) as process:
        yield process


def _post(url: str, body: dict) -> bytes:
    req = urllib.request.Request(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read()


def test_the_simulator_answers_the_schema_asked_for_in_every_dialect(sim: SimProcess) -> None:
    schema = P.minions_plan_schema(80, tasks=4, chunkings=("section", "page"), max_chunk=5)
    shown = f"Plan.\n{P.reply_rule(schema)}"
    seen_all, seen_list = False, False
    for i in range(20):
        body = {"model": "m", "messages": [{"role": "user", "content": f"plan {i}"}], "max_tokens": 800,
                "response_format": {"type": "json_schema", "json_schema": {"name": "job_plan", "schema": schema}}}
        reply = orjson.loads(_post(sim.base_url + "/v1/chat/completions", body))["choices"][0]["message"]["content"]
        plan = orjson.loads(reply)
        assert check(plan, schema) is None, plan
        assert 1 <= len(plan["tasks"]) <= 4 and plan["chunking"] in ("section", "page")
        for task in plan["tasks"]:
            seen_all |= task["chunks"] == "all"
            seen_list |= isinstance(task["chunks"], list) and all(0 <= c <= 5 for c in task["chunks"])
    assert seen_all and seen_list
    job = P.minions_job_schema(80)
    answers = []
    for i in range(20):
        body = {"model": "llama3.2:latest", "stream": False, "format": job,
                "messages": [{"role": "user", "content": f"job {i}"}]}
        answers.append(orjson.loads(orjson.loads(_post(sim.base_url + "/api/chat", body))["message"]["content"]))
    assert all(check(a, job) is None for a in answers)
    assert any(a["answer"] is None for a in answers) and any(a["answer"] for a in answers)  # empty answers too
    # Anthropic: the schema only in the prompt text; the reply is parsed robustly.
    decision = P.minions_decision_schema(80, last=False)
    body = {"model": "claude-haiku-4-5", "max_tokens": 800,
            "messages": [{"role": "user", "content": f"Decide.\n{P.reply_rule(decision)}"}]}
    for _ in range(5):
        text = orjson.loads(_post(sim.base_url + "/v1/messages", body))["content"][0]["text"]
        assert check(extract(text), decision) is None
    assert "json-schema" in shown


def test_the_simulators_malformed_json_rate() -> None:
    schema = P.minions_job_schema(80)
    with SimProcess(SimConfig(json_malformed_rate=1.0)) as sim:
        bad = 0
        for i in range(10):
            body = {"model": "m", "messages": [{"role": "user", "content": f"j {i}"}], "max_tokens": 500,
                    "response_format": {"type": "json_schema", "json_schema": {"name": "j", "schema": schema}}}
            text = orjson.loads(_post(sim.base_url + "/v1/chat/completions", body))["choices"][0]["message"]["content"]
            obj = extract(text)
            bad += obj is None or check(obj, schema) is not None
        assert bad == 10
    with pytest.raises(ConfigError, match="json_malformed_rate"):
        SimConfig(json_malformed_rate=1.5)


def test_prefill_prompts_carry_their_question_and_pages_apart() -> None:
    from loadbench import Prefill

    prompt = next(iter(Prefill().open(seed=0, counter=None)))
    assert prompt.task and prompt.task.startswith(prompt.task.split("\n")[0])
    assert prompt.task.split("\n")[0] in prompt.messages[-1].content
    pages = prompt.context.split("\f")
    assert len(pages) > 1 and all(page in prompt.messages[-1].content for page in pages)
