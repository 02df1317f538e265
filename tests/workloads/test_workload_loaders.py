"""The real-dataset loaders, on small files the tests write in each dataset's own schema."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from loadbench.contract.errors import ConfigError
from loadbench.workloads import (
    Balanced,
    Decode,
    FinanceBenchDataset,
    Fixed,
    MathDataset,
    MultiTurn,
    OpenAssistantDataset,
    Prefill,
)

datasets = pytest.importorskip("datasets")


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# -- FinanceBench ----------------------------------------------------------------------------------


def financebench_rows() -> list[dict]:
    """Rows in the current PatronusAI/financebench schema (evidence as a list of records)."""
    rows = []
    for i, (company, figure) in enumerate([("3M", "$1577.00"), ("Adobe", "$4.82 billion"), ("3M", "8.7%")]):
        page = (
            f"{company} Corporation and Subsidiaries\nConsolidated Statement of Cash Flows\n"
            f"Purchases of property, plant and equipment (PP&E) {figure} ... page {i}"
        )
        rows.append({
            "financebench_id": f"financebench_id_{i:05d}",
            "company": company,
            "doc_name": f"{company.upper()}_2018_10K",
            "question_type": "metrics-generated",
            "question_reasoning": "Information extraction",
            "domain_question_num": None,
            "question": f"What is the FY2018 capital expenditure amount (in USD millions) for {company}?",
            "answer": figure,
            "justification": "",
            "dataset_subset_label": "OPEN_SOURCE",
            "evidence": [{
                "evidence_text": f"Purchases of property, plant and equipment (PP&E) {figure}",
                "doc_name": f"{company.upper()}_2018_10K",
                "evidence_page_num": 59 + i,
                "evidence_text_full_page": page,
            }],
            "gics_sector": "Industrials",
            "doc_type": "10k",
            "doc_period": 2018,
            "doc_link": "https://example.invalid/doc.pdf",
        })
    return rows


def test_financebench_jsonl_in_the_hub_schema(tmp_path):
    path = write_jsonl(tmp_path / "fb.jsonl", financebench_rows())
    ds = FinanceBenchDataset(path=path, cache_dir=str(tmp_path / "c"))
    pool = ds.load()
    assert pool.source == "financebench" and len(pool.items) == 3
    item = pool.items[0]
    assert item.company == "3M" and item.reference == "$1577.00"
    assert item.evidence[0].startswith("3M Corporation") and "page 0" in item.evidence[0]
    assert item.snippets == ("Purchases of property, plant and equipment (PP&E) $1577.00",)

    w = Prefill(dataset=ds, input_tokens=Fixed(400))
    for p in itertools.islice(w.open(seed=0), 20):
        assert p.source == "financebench" and p.reference in {"$1577.00", "$4.82 billion", "8.7%"}
        text = p.messages[0].content
        assert "Question: What is the FY2018 capital expenditure" in text
        assert p.reference in text  # the evidence page made it in
    assert w.check(p, f"The answer is {p.reference}.") is True
    assert w.describe()["dataset"]["dataset"] == "financebench"


def test_financebench_older_flat_schema_and_parquet(tmp_path):
    rows = [
        {"question": "What was Acme's FY2020 revenue?", "answer": "$2,000 million", "company": "Acme",
         "doc_name": "ACME_2020_10K", "evidence_text": "Total revenue 2,000", "page_number": 12},
        {"question": "No evidence here?", "answer": "x", "company": "Acme", "doc_name": "ACME_2020_10K"},
    ]
    path = tmp_path / "fb.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    pool = FinanceBenchDataset(path=str(path), cache_dir=str(tmp_path / "c")).load()
    assert len(pool.items) == 1  # a row without evidence is skipped
    assert pool.items[0].evidence == ("Total revenue 2,000",)


def test_financebench_saved_dataset_dict_dir(tmp_path):
    d = datasets.DatasetDict({"train": datasets.Dataset.from_list(financebench_rows())})
    d.save_to_disk(str(tmp_path / "saved"))
    pool = FinanceBenchDataset(path=str(tmp_path / "saved")).load()
    assert len(pool.items) == 3
    with pytest.raises(ConfigError, match="has splits \\['train'\\], not 'test'"):
        FinanceBenchDataset(path=str(tmp_path / "saved"), split="test").load()


# -- OpenAssistant ---------------------------------------------------------------------------------


def oasst_rows() -> list[dict]:
    """A message tree in the oasst1 schema, plus rows the filters must drop."""

    def msg(mid, parent, role, text, lang="en", rank=None, deleted=False, review=True):
        return {
            "message_id": mid, "parent_id": parent, "user_id": "u", "created_date": "2023-02-05T14:23:50",
            "text": text, "role": role, "lang": lang, "review_count": 3, "review_result": review,
            "deleted": deleted, "rank": rank, "synthetic": False, "model_name": None,
            "detoxify": None, "message_tree_id": "t1", "tree_state": "ready_for_export",
            "emojis": None, "labels": None,
        }

    return [
        msg("p1", None, "prompter", "How do I keep basil alive on a windowsill?"),
        msg("a1", "p1", "assistant", "Give it at least six hours of sun and water when the top inch is dry.", rank=0),
        msg("a2", "p1", "assistant", "Basil likes warmth.", rank=1),
        msg("p2", "a1", "prompter", "What if my window faces north?"),
        msg("a3", "p2", "assistant", "Use a small grow light for a few hours each evening.", rank=0),
        msg("p3", "a3", "prompter", "Which grow light would you buy?"),
        msg("x1", None, "prompter", "Wie pflege ich Basilikum?", lang="de"),
        msg("x2", None, "prompter", "deleted prompt", deleted=True),
        msg("x3", None, "prompter", "failed review prompt", review=False),
    ]


def test_oasst_prompter_turns_with_their_thread(tmp_path):
    ds = OpenAssistantDataset(path=write_jsonl(tmp_path / "oasst.jsonl", oasst_rows()), cache_dir=str(tmp_path / "c"))
    pool = ds.load()
    assert set(pool._prompters) == {"p1", "p2", "p3"}  # German, deleted and failed review are out
    rng = np.random.default_rng(0)
    finals = {pool.draw(rng).turns[-1].content for _ in range(40)}
    assert finals == {"How do I keep basil alive on a windowsill?", "What if my window faces north?",
                      "Which grow light would you buy?"}
    # p3's thread, in order, best-ranked replies.
    path = pool._path("p3")
    assert [m["message_id"] for m in path] == ["p1", "a1", "p2", "a3", "p3"]

    w = Balanced(dataset=ds, input_tokens=Fixed(120), output_tokens=Fixed(50))
    for p in itertools.islice(w.open(seed=0), 20):
        roles = [m.role for m in p.messages]
        assert roles[-1] == "user" and roles == ["user", "assistant"] * ((len(roles) - 1) // 2) + ["user"]
        assert p.source == "oasst1"
        assert p.messages[-1].content in {
            "How do I keep basil alive on a windowsill?", "What if my window faces north?",
            "Which grow light would you buy?",
        }


def test_oasst_language_filter_and_multi_turn(tmp_path):
    path = write_jsonl(tmp_path / "oasst.jsonl", oasst_rows())
    de = OpenAssistantDataset(path=path, langs=("de",), cache_dir=str(tmp_path / "c")).load()
    assert de._prompters == ("x1",)
    assert OpenAssistantDataset(path=path, langs=None, cache_dir=str(tmp_path / "c")).load()._prompters == (
        "p1", "p2", "p3", "x1",
    )
    with pytest.raises(ConfigError, match="no prompter turns left"):
        OpenAssistantDataset(path=path, langs=("fr",), cache_dir=str(tmp_path / "c")).load()

    en = OpenAssistantDataset(path=path, cache_dir=str(tmp_path / "c"))
    thread = en.load().conversation(np.random.default_rng(0), 5)
    assert thread.turns[0].content == "How do I keep basil alive on a windowsill?"
    assert [u for _, u in thread.follow_ups] == ["What if my window faces north?", "Which grow light would you buy?"]
    assert thread.follow_ups[0][0].startswith("Give it at least six hours")  # rank 0 reply

    w = Balanced(dataset=en, input_tokens=Fixed(60), output_tokens=Fixed(400),
                 multi_turn=MultiTurn(turns=Fixed(3), interleave=1))
    t1, t2, t3 = itertools.islice(w.open(seed=0), 3)
    if t1.messages[-1].content == "How do I keep basil alive on a windowsill?":
        assert t2.messages[-1].content == "What if my window faces north?"
        assert t3.messages[-1].content == "Which grow light would you buy?"
    assert t3.messages[: len(t2.messages)] == t2.messages


# -- MATH ------------------------------------------------------------------------------------------


def math_rows() -> list[dict]:
    return [
        {"problem": "What is $2+3$?", "level": "Level 1", "type": "Prealgebra",
         "solution": "We add: $2+3=\\boxed{5}$."},
        {"problem": "Compute $\\frac{1}{2}+\\frac{1}{3}$.", "level": "Level 2", "type": "Prealgebra",
         "solution": "The sum is $\\boxed{\\frac{5}{6}}$."},
        {"problem": "How many ways to choose 2 of 4?", "level": "Level 3", "type": "Counting & Probability",
         "solution": "$\\binom{4}{2} = \\boxed{6}$."},
        {"problem": "What is the remainder of $2^{10}$ divided by 7?", "level": "Level 5", "type": "Number Theory",
         "solution": "Since $2^3 \\equiv 1$, $2^{10} \\equiv 2$, so the answer is $\\boxed{2}$."},
    ]


def test_math_loader_reads_boxed_answers_and_filters(tmp_path):
    path = write_jsonl(tmp_path / "math.jsonl", math_rows())
    pool = MathDataset(path=path, cache_dir=str(tmp_path / "c")).load()
    assert [(i.answer, i.subject, i.level) for i in pool.items] == [
        ("5", "prealgebra", 1), ("\\frac{5}{6}", "prealgebra", 2),
        ("6", "counting_and_probability", 3), ("2", "number_theory", 5),
    ]
    sub = MathDataset(path=path, subjects=("Counting & Probability", "number_theory"), cache_dir=str(tmp_path / "c"))
    assert sub.subjects == ("counting_and_probability", "number_theory")
    assert [i.answer for i in sub.load().items] == ["6", "2"]
    lvl = MathDataset(path=path, levels=(1, 2), cache_dir=str(tmp_path / "c")).load()
    assert [i.answer for i in lvl.items] == ["5", "\\frac{5}{6}"]
    with pytest.raises(ConfigError, match="no problems match"):
        MathDataset(path=path, subjects=("geometry",), cache_dir=str(tmp_path / "c")).load()

    w = Decode(dataset=MathDataset(path=path, cache_dir=str(tmp_path / "c")))
    for p in itertools.islice(w.open(seed=0), 20):
        assert p.source == "math" and p.reference in {"5", "\\frac{5}{6}", "6", "2"}
        assert p.messages[-1].content.rsplit("Problem: ", 1)[1] in {r["problem"] for r in math_rows()}
    assert w.check(p, f"So we get $\\boxed{{{p.reference}}}$") is True
    assert w.check(p, "So we get $\\boxed{123456}$") is False


# -- errors ----------------------------------------------------------------------------------------


def test_missing_local_path_and_wrong_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        MathDataset(path=str(tmp_path / "nope.jsonl")).load()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match="holds no JSON, JSONL, Parquet or CSV"):
        MathDataset(path=str(tmp_path)).load()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(ConfigError, match="MATH: cannot read"):
        MathDataset(path=str(bad), cache_dir=str(tmp_path / "c")).load()


def test_offline_missing_dataset_says_how_to_point_at_a_local_copy(tmp_path):
    """With the hub off and an empty cache, loading names the dataset and the two ways out.
    Runs in a child process: the offline switches are read when ``datasets`` is imported."""
    code = textwrap.dedent(
        """
        from loadbench.contract.errors import ConfigError
        from loadbench.workloads import FinanceBenchDataset, Prefill
        try:
            Prefill(dataset=FinanceBenchDataset()).open(seed=0)
        except ConfigError as e:
            print("ERROR:", e)
        else:
            print("LOADED")
        """
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"),
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    line = out.stdout.strip()
    assert line.startswith("ERROR:"), out.stdout + out.stderr
    assert "FinanceBench" in line and "PatronusAI/financebench" in line
    assert "offline and not in the Hugging Face cache" in line
    assert "FinanceBenchDataset(path='...')" in line and "HF_DATASETS_OFFLINE=1" in line
