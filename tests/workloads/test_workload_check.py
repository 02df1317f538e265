"""Answer checking (math and finance), accuracy, and the length report."""

from __future__ import annotations

import pytest
from conftest import finished

from loadbench.workloads import (
    Decode,
    Prefill,
    Prompt,
    accuracy,
    check_answer,
    check_finance,
    check_math,
    length_report,
)
from loadbench.workloads.check import extract_boxed, extract_math_answer, normalize_math


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("so $x = \\boxed{5}$.", "5"),
        ("first \\boxed{1} then \\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\fbox{7}", "7"),
        ("\\boxed 12", "12"),
        ("no box here", None),
    ],
)
def test_extract_boxed(text, want):
    assert extract_boxed(text) == want


def test_extract_answer_falls_back_to_phrases_then_the_last_number():
    assert extract_math_answer("Adding gives 12. Therefore the answer is 15.") == "15"
    assert extract_math_answer("Final answer: $\\frac{1}{2}$") == "\\frac{1}{2}"
    assert extract_math_answer("We get 3 apples, then 4, total 7") == "7"
    assert extract_math_answer("I don't know") is None


@pytest.mark.parametrize(
    ("reference", "answer", "ok"),
    [
        ("5", "The answer is $\\boxed{5}$.", True),
        ("5", "$\\boxed{5.0}$", True),
        ("\\frac{5}{6}", "$\\boxed{\\dfrac{5}{6}}$", True),
        ("\\frac{5}{6}", "$\\boxed{5/6}$", True),
        ("-\\frac{19}{45}", "\\boxed{-\\frac{19}{45}}", True),
        ("\\frac{1}{2}", "\\boxed{0.5}", True),
        ("1000", "\\boxed{1,000}", True),
        ("12", "\\boxed{12\\text{ cm}}", True),
        ("90", "\\boxed{90^\\circ}", True),
        ("x=3", "\\boxed{3}", True),
        ("5", "\\boxed{6}", False),
        ("\\frac{5}{6}", "\\boxed{\\frac{6}{5}}", False),
        ("5", "", False),
        ("(1,2)", "\\boxed{(1, 2)}", True),
    ],
)
def test_check_math(reference, answer, ok):
    assert check_math(reference, answer) is ok


def test_check_math_without_reference_is_unknown():
    assert check_math(None, "\\boxed{5}") is None
    assert normalize_math(" $\\dfrac{3}{4}$. ") == "3/4"


@pytest.mark.parametrize(
    ("reference", "answer", "ok"),
    [
        ("$1,234.5 million", "Revenue was $1,234.5 million.", True),
        ("$1,234.5 million", "It was 1234.5", True),  # unscaled: read in the reference's unit
        ("$1,234.5 million", "About $1.23 billion", True),  # 1,230 within the answer's precision
        ("$1577.00", "$1.6 billion", True),  # FinanceBench style: plain dollars vs a rounded figure
        ("$1577.00", "$1,577 million", True),
        ("$1,234.5 million", "$1,300 million", False),
        ("$1,234.5 million", "$2.5 billion", False),
        ("$4.82 billion", "4,820 million dollars", True),
        ("8.7%", "The margin was 8.7%.", True),
        ("8.7%", "The margin was 9.7%.", False),
        ("8.7%", "It has 8,700 employees.", False),  # a percentage is never rescaled
        ("$(12.0) million", "a loss of -12.0 million", True),
        ("$1,234.5 million", "I could not find it.", False),
        ("$1,234.5 million", None, False),
    ],
)
def test_check_finance(reference, answer, ok):
    assert check_finance(reference, answer) is ok


def test_check_finance_tolerance_and_non_numeric_references():
    assert check_finance("$100.0 million", "$103.0 million", tolerance=0.05) is True
    assert check_finance("$100.0 million", "$103.0 million", tolerance=0.01) is False
    assert check_finance("Yes, the company is capital intensive.", "Yes") is None
    assert check_finance(None, "1") is None


def test_dispatch_by_source_and_accuracy():
    math_p = Prompt.user("q", reference="7", source="synthetic:math")
    fin_p = Prompt.user("q", reference="$10.0 million", source="financebench")
    chat_p = Prompt.user("q", source="oasst1")
    assert check_answer(math_p, "\\boxed{7}") is True
    assert check_answer(fin_p, "10.0") is True
    assert check_answer(chat_p, "hi") is None
    result = accuracy([(math_p, "\\boxed{7}"), (math_p, "\\boxed{8}"), (fin_p, "$10 million"), (chat_p, "x")])
    assert result == {"checked": 3, "correct": 2, "unchecked": 1, "accuracy": 2 / 3}
    assert accuracy([])["accuracy"] is None


def test_workload_check_uses_its_tolerance():
    p = Prompt.user("q", reference="$100.0 million", source="synthetic:finance")
    assert Prefill().check(p, "$103.0 million") is False
    assert Prefill(answer_tolerance=0.05).check(p, "$103.0 million") is True
    assert Decode().check(Prompt.user("q", reference="3", source="math"), "\\boxed{3}") is True


def test_length_report_sets_targets_against_server_counts():
    records = []
    for i, (t_in, r_in, t_out, r_out) in enumerate(
        [(100, 110, 50, 50), (200, 190, 50, 40), (400, 400, 100, 100), (1000, 1100, 10, 10)]
    ):
        p = Prompt.user("x", target_input_tokens=t_in, target_output_tokens=t_out, max_output_tokens=t_out)
        rec = finished(p, r_in, index=i)
        rec.output_tokens = r_out
        records.append(rec)
    # Not counted: a failed request, and one whose server gave no counts.
    p = Prompt.user("x", target_input_tokens=100, target_output_tokens=10)
    records.append(finished(p, 5, index=9, status="failed"))
    records.append(finished(p, None, index=10))
    rep = length_report(records)
    inp, out = rep["input"], rep["output"]
    assert inp["n"] == 4 and inp["unreported"] == 1
    assert inp["target_p50"] == 300 and inp["reported_p50"] == 295
    assert inp["rel_error_p50"] == pytest.approx(0.075)  # errors 0.1, 0.05, 0, 0.1
    assert inp["rel_error_mean_signed"] == pytest.approx((0.1 - 0.05 + 0 + 0.1) / 4)
    assert out["n"] == 4 and out["unreported"] == 1
    assert out["rel_error_p90"] == pytest.approx(0.14)  # errors 0, 0.2, 0, 0 -> p90 by interpolation
    assert length_report([]) == {"input": {"n": 0, "unreported": 0}, "output": {"n": 0, "unreported": 0}}
