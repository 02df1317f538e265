"""Answer checking, off the hot path: is a model's answer right, where the data says what right is?

* Math (``synthetic:math``, ``math``): the final answer is taken from the last ``\\boxed{...}``,
  else from "the answer is ...", else the last number; both sides are normalised (LaTeX
  fractions, ``\\text``, ``$``, thousands separators, trailing units) and compared as exact
  numbers when both parse, else as strings.
* Finance (``synthetic:finance``, ``financebench``): the reference's first figure (with its scale:
  thousand, million, billion, %) must appear in the answer within a tolerance: a relative one, or
  the precision the answer itself was written to ("$1.6 billion" covers 1,577 million).
* Anything else: ``None`` (not checkable).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from loadbench.contract.prompt import Prompt

__all__ = [
    "accuracy",
    "check_answer",
    "check_finance",
    "check_math",
    "extract_boxed",
    "extract_math_answer",
    "normalize_math",
]

MATH_SOURCES = ("synthetic:math", "math")
FINANCE_SOURCES = ("synthetic:finance", "financebench")


# -- math ------------------------------------------------------------------------------------------


def extract_boxed(text: str) -> str | None:
    """The contents of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        # "\boxed 5" (no braces) appears in some solutions
        m = re.match(r"\\(?:boxed|fbox)\s+([^\s$]+)", text[start:])
        return m.group(1) if m else None
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*:?\s*\$?([^\n$]+?)\$?\s*(?:\.|\n|$)", re.IGNORECASE
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def extract_math_answer(text: str) -> str | None:
    """The final answer in a model's (or a reference solution's) text, or ``None``."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    matches = _ANSWER_IS.findall(text)
    if matches:
        return matches[-1]
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_FRAC_SHORT = re.compile(r"\\[dt]?frac(\d)(\d)")
_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")


def normalize_math(answer: str) -> str:
    """A canonical string for a final answer (spacing, LaTeX wrappers, units removed)."""
    s = answer.strip()
    s = _TEXT.sub(r"\1", s)
    for token in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ ", "$", "^\\circ", "^{\\circ}", "\\%", "%"):
        s = s.replace(token, "")
    s = _FRAC_SHORT.sub(r"\1/\2", s)
    while True:
        t = _FRAC.sub(r"(\1)/(\2)", s)
        if t == s:
            break
        s = t
    s = s.replace("\\dfrac", "").replace("\\tfrac", "")
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    # A trailing word (units: "cm", "dollars", "ways") after a number
    s = re.sub(r"^(-?[\d.,/()]+)[a-zA-Z]+(\^?\d)?$", r"\1", s)
    s = re.sub(r"^([a-z]\s*=)", "", s)  # "x=5"
    # Thousands separators in plain numbers: 1,000 -> 1000 (but keep tuples like (1,2))
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    # (3)/(4) -> 3/4 for simple parts
    s = re.sub(r"\((-?\d+)\)/\((\d+)\)", r"\1/\2", s)
    return s


def _as_number(s: str) -> Fraction | None:
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            return Fraction(num.strip("()")) / Fraction(den.strip("()"))
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def check_math(reference: str | None, answer: str | None) -> bool | None:
    """Whether ``answer`` (a model's text) reaches ``reference`` (a final answer); ``None`` when
    there is no reference."""
    if not reference:
        return None
    if not answer:
        return False
    got = extract_math_answer(answer)
    if got is None:
        return False
    want_s, got_s = normalize_math(reference), normalize_math(got)
    if want_s == got_s:
        return True
    want_n, got_n = _as_number(want_s), _as_number(got_s)
    if want_n is not None and got_n is not None:
        return abs(want_n - got_n) <= abs(want_n) * Fraction(1, 10**6)
    return False


# -- finance ---------------------------------------------------------------------------------------

_SCALES = {
    "thousand": 1e3, "k": 1e3, "million": 1e6, "millions": 1e6, "mm": 1e6, "mn": 1e6, "m": 1e6,
    "billion": 1e9, "billions": 1e9, "bn": 1e9, "b": 1e9, "trillion": 1e12, "t": 1e12,
}
_FIGURE = re.compile(
    r"(?P<neg>\()?(?P<sign>-)?\$?\s?(?P<num>\d[\d,]*(?:\.\d+)?|\.\d+)(?P<close>\))?\s?"
    r"(?P<scale>thousand|millions?|billions?|trillion|mm|mn|bn|[kmbt](?![a-z]))?(?P<pct>\s?%)?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class _Figure:
    value: float  # as written, before the scale
    scale: float  # 1 when no scale word
    decimals: int
    percent: bool

    @property
    def absolute(self) -> float:
        return self.value * self.scale


def _figures(text: str) -> list[_Figure]:
    out = []
    for m in _FIGURE.finditer(text):
        raw = m.group("num").replace(",", "")
        try:
            value = float(raw)
        except ValueError:
            continue
        if (m.group("neg") and m.group("close")) or m.group("sign"):
            value = -value
        scale_word = (m.group("scale") or "").lower()
        decimals = len(raw.split(".")[1]) if "." in raw else 0
        out.append(_Figure(value, _SCALES.get(scale_word, 1.0), decimals, bool(m.group("pct"))))
    return out


def check_finance(reference: str | None, answer: str | None, *, tolerance: float = 0.01) -> bool | None:
    """Whether ``answer`` states the reference's figure within ``tolerance`` (relative) or within
    the precision the answer was written to; ``None`` when the reference holds no figure."""
    if not reference:
        return None
    want = _figures(reference)
    if not want:
        return None
    if not answer:
        return False
    ref = want[0]
    # A reference without a scale word ("$1577.00" for a question asked "in USD millions") is
    # read at every usual scale; one with a scale is exact.
    if ref.scale != 1.0 or ref.percent:
        ref_values = (ref.absolute,)
    else:
        ref_values = tuple(ref.value * k for k in (1.0, 1e3, 1e6, 1e9))
    for got in _figures(answer):
        # An unscaled number in the answer is read in the reference's unit ("1,234.5" for
        # "$1,234.5 million") and also as written.
        scales = (got.scale,) if got.scale != 1.0 else (ref.scale, 1.0)
        for scale in scales:
            value = got.value * scale
            precision = 0.5 * 10 ** (-got.decimals) * scale
            for want_value in ref_values:
                slack = max(tolerance * abs(want_value), precision, 1e-9 * abs(want_value))
                if abs(value - want_value) <= slack:
                    return True
    return False


# -- dispatch and summary --------------------------------------------------------------------------


def check_answer(prompt: Prompt, answer: str | None, *, finance_tolerance: float = 0.01) -> bool | None:
    """Check ``answer`` against ``prompt.reference`` with the checker for the prompt's source;
    ``None`` when the source has no checker or the prompt no reference."""
    if prompt.reference is None:
        return None
    if prompt.source in MATH_SOURCES:
        return check_math(prompt.reference, answer)
    if prompt.source in FINANCE_SOURCES:
        return check_finance(prompt.reference, answer, tolerance=finance_tolerance)
    return None


def accuracy(pairs: Iterable[tuple[Prompt, str | None]], *, finance_tolerance: float = 0.01) -> dict[str, Any]:
    """Check ``(prompt, answer_text)`` pairs: counts of checked, correct and uncheckable answers,
    and the accuracy over the checked ones (``None`` when none could be checked)."""
    checked = correct = unchecked = 0
    for prompt, answer in pairs:
        verdict = check_answer(prompt, answer, finance_tolerance=finance_tolerance)
        if verdict is None:
            unchecked += 1
            continue
        checked += 1
        correct += verdict
    return {
        "checked": checked,
        "correct": correct,
        "unchecked": unchecked,
        "accuracy": correct / checked if checked else None,
    }
