"""Synthetic stand-ins for the three datasets: same shapes, nothing from outside, deterministic.

* ``SyntheticFinance``: filings of made-up companies (statement tables and prose) and a question
  about one figure; the reference is that figure, so answers can be checked.
* ``SyntheticChat``: multi-turn chats on everyday topics (a user asks, an assistant answers).
* ``SyntheticMath``: short problems (equations, arithmetic word problems, gcd, remainders,
  combinations, fractions, roots) with exact answers and worked solutions.

Every draw takes a ``numpy.random.Generator`` and uses nothing else, so the same seed gives the
same text byte for byte. Text is assembled from templates with a batch of random numbers per
paragraph (a numpy call per word would cost more than the rest of the prompt).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from loadbench.contract.prompt import Message
from loadbench.workloads.sources import ChatThread, FinanceItem, MathProblem

__all__ = ["SyntheticChat", "SyntheticFinance", "SyntheticMath"]


class _Picks:
    """Random choices from one batch of random integers (cheap per pick, reproducible)."""

    __slots__ = ("_i", "_rng", "_vals")

    def __init__(self, rng: np.random.Generator, n: int = 256) -> None:
        self._rng = rng
        self._vals = rng.integers(0, 1 << 30, size=n).tolist()
        self._i = 0

    def _next(self) -> int:
        if self._i >= len(self._vals):
            self._vals = self._rng.integers(0, 1 << 30, size=len(self._vals)).tolist()
            self._i = 0
        v = self._vals[self._i]
        self._i += 1
        return v

    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[self._next() % len(seq)]

    def int(self, low: int, high: int) -> int:
        """An integer in [low, high]."""
        return low + self._next() % (high - low + 1)

    def unit(self) -> float:
        return self._next() / (1 << 30)


def _fill(template: str, picks: _Picks, slots: dict[str, Sequence[str]], **fixed: str) -> str:
    """``template`` with each ``{slot}`` replaced by a fixed value or a random pick."""
    values = dict(fixed)
    for name, options in slots.items():
        if "{" + name + "}" in template and name not in values:
            values[name] = picks.pick(options)
    return template.format(**values)


# -- finance ---------------------------------------------------------------------------------------

_CO_FIRST = (
    "Alder", "Brightwater", "Cobalt", "Dunmore", "Evergreen", "Falcon", "Granite", "Harbor",
    "Ironwood", "Juniper", "Keystone", "Lakeshore", "Meridian", "Northgate", "Oakridge", "Pinnacle",
    "Quarry", "Redstone", "Summit", "Tidewater", "Union", "Vantage", "Westbrook", "Yellowtail", "Zenith",
)
_CO_SECOND = (
    "Industries", "Holdings", "Corporation", "Systems", "Group", "Technologies", "Brands", "Energy",
    "Logistics", "Health",
)
_DOC_TYPES = ("10-K", "10-K", "10-K", "10-Q", "8-K")

# (key, label in tables, label in questions, statement)
_METRICS = (
    ("revenue", "Total net revenue", "total net revenue", "income"),
    ("cogs", "Cost of revenue", "cost of revenue", "income"),
    ("gross", "Gross profit", "gross profit", "income"),
    ("sga", "Selling, general and administrative", "selling, general and administrative expense", "income"),
    ("rnd", "Research and development", "research and development expense", "income"),
    ("opinc", "Operating income", "operating income", "income"),
    ("netinc", "Net income", "net income", "income"),
    ("cash", "Cash and cash equivalents", "cash and cash equivalents", "balance"),
    ("assets", "Total assets", "total assets", "balance"),
    ("liabilities", "Total liabilities", "total liabilities", "balance"),
    ("ltdebt", "Long-term debt", "long-term debt", "balance"),
    ("cfo", "Net cash provided by operating activities", "cash from operations", "cashflow"),
    ("capex", "Purchases of property and equipment", "capital expenditure", "cashflow"),
    ("dividends", "Dividends paid", "dividends paid", "cashflow"),
)
_STATEMENTS = {
    "income": "Consolidated Statements of Operations",
    "balance": "Consolidated Balance Sheets",
    "cashflow": "Consolidated Statements of Cash Flows",
}
_QUESTIONS = (
    "What was {company}'s {label} in fiscal year {year}? Give the figure in USD millions.",
    "According to the filing, how much was {company}'s {label} for FY{year}, in millions of US dollars?",
    "Using the statements provided, what {label} did {company} report for fiscal {year} (USD millions)?",
    "What is the FY{year} {label} of {company}? Answer with the dollar amount in millions.",
)
_FIN_SLOTS: dict[str, Sequence[str]] = {
    "noun": (
        "pricing", "supply chain", "customer demand", "working capital", "inventory levels",
        "distribution network", "product portfolio", "labor costs", "interest rates",
        "foreign currency exposure", "regulatory environment", "market share", "capital allocation",
        "operating margin", "digital platform", "service revenue", "backlog", "order volume",
        "manufacturing capacity", "cost structure", "credit facility", "tax position",
        "pension obligations", "lease commitments", "raw material costs", "cybersecurity program",
    ),
    "noun2": (
        "results of operations", "financial condition", "cash flows", "liquidity", "profitability",
        "competitive position", "growth strategy", "reputation", "debt covenants", "credit ratings",
    ),
    "adj": (
        "higher", "lower", "sustained", "volatile", "moderate", "significant", "unfavorable",
        "favorable", "persistent", "seasonal", "incremental", "uncertain",
    ),
    "verb": (
        "expand", "optimize", "streamline", "invest in", "reassess", "diversify", "strengthen",
        "rationalize", "modernize", "monitor",
    ),
    "region": (
        "North America", "Europe", "the Asia-Pacific region", "Latin America", "the Middle East",
        "domestic markets", "international markets",
    ),
    "period": ("the next twelve months", "the coming fiscal year", "the long term", "recent quarters"),
    "section": (
        "Risk Factors", "Management's Discussion and Analysis", "Business Overview",
        "Legal Proceedings", "Liquidity and Capital Resources", "Critical Accounting Estimates",
        "Market Risk", "Segment Information",
    ),
}
_FIN_SENTENCES = (
    "During the year, {company} continued to {verb} its {noun} in response to {adj} demand in {region}.",
    "Management believes that {adj} {noun} may affect our {noun2} over {period}.",
    "Changes in {noun} could materially and adversely affect our {noun2}.",
    "We manage {noun} through a combination of internal controls and periodic reviews by the audit committee.",
    "The change in {noun} was primarily driven by {adj} volumes in {region} and higher {noun} costs.",
    "Our ability to {verb} our {noun} depends on factors outside our control, including conditions in {region}.",
    "We expect {adj} pressure on {noun} to continue over {period}.",
    "There can be no assurance that efforts to {verb} our {noun} will succeed or that they will improve our {noun2}.",
    "In {region}, {noun} remained {adj} compared with the prior year.",
    "We regularly evaluate our {noun} and may {verb} it as business conditions change.",
    "Any failure to {verb} our {noun} effectively could harm our {noun2}.",
    "The Company's {noun} is reviewed each quarter against internal targets and industry benchmarks.",
)


def _money(x: float) -> str:
    return f"({abs(x):,.1f})" if x < 0 else f"{x:,.1f}"


@dataclass(frozen=True, slots=True)
class SyntheticFinance:
    """Generated filings with a question about one figure; the reference is the figure in USD
    millions (``"$1,234.5 million"``)."""

    kind: ClassVar[str] = "finance"

    def load(self) -> _FinancePool:
        return _FinancePool()

    def describe(self) -> dict[str, Any]:
        return {"dataset": "synthetic-finance"}


class _FinancePool:
    source = "synthetic:finance"

    def draw(self, rng: np.random.Generator) -> FinanceItem:
        p = _Picks(rng)
        company = f"{p.pick(_CO_FIRST)} {p.pick(_CO_SECOND)}"
        year = p.int(2015, 2024)
        figures = _figures(p)
        key, _table_label, label, statement = p.pick(_METRICS)
        question = p.pick(_QUESTIONS).format(company=company, label=label, year=year)
        value = figures[key][0]
        page = _statement_page(company, year, statement, figures)
        row = next(line for line in page.splitlines() if line.startswith(f"| {_table_label} |"))
        snippet = f"{_STATEMENTS[statement]} (in millions of USD), fiscal {year}\n{row}"
        doc = f"{company.split()[0].upper()}_{year}_{p.pick(_DOC_TYPES)}"
        return FinanceItem(
            company=company,
            doc_name=doc,
            question=question,
            evidence=(page,),
            reference=f"${value:,.1f} million",
            snippets=(snippet,),
        )

    def filler(self, rng: np.random.Generator, about: str | None = None) -> str:
        p = _Picks(rng)
        company = about or f"{p.pick(_CO_FIRST)} {p.pick(_CO_SECOND)}"
        heading = p.pick(_FIN_SLOTS["section"])
        sentences = [
            _fill(p.pick(_FIN_SENTENCES), p, _FIN_SLOTS, company=company) for _ in range(p.int(5, 9))
        ]
        return f"{heading}\n\n" + " ".join(sentences)


def _figures(p: _Picks) -> dict[str, tuple[float, float]]:
    """Consistent statements for two years: (current, prior) in USD millions."""
    out: dict[str, tuple[float, float]] = {}
    revenue = round(200 + p.unit() * 40_000, 1)
    growth = 0.8 + p.unit() * 0.4
    for i, rev in enumerate((revenue, round(revenue / growth, 1))):
        cogs = round(rev * (0.40 + p.unit() * 0.35), 1)
        gross = round(rev - cogs, 1)
        sga = round(rev * (0.08 + p.unit() * 0.12), 1)
        rnd = round(rev * p.unit() * 0.10, 1)
        opinc = round(gross - sga - rnd, 1)
        netinc = round(opinc * (0.55 + p.unit() * 0.3), 1)
        assets = round(rev * (0.9 + p.unit() * 1.5), 1)
        liabilities = round(assets * (0.3 + p.unit() * 0.5), 1)
        row = {
            "revenue": rev, "cogs": cogs, "gross": gross, "sga": sga, "rnd": rnd, "opinc": opinc,
            "netinc": netinc, "cash": round(assets * (0.03 + p.unit() * 0.15), 1), "assets": assets,
            "liabilities": liabilities, "ltdebt": round(liabilities * (0.2 + p.unit() * 0.5), 1),
            "cfo": round(netinc * (0.9 + p.unit() * 0.6), 1),
            "capex": round(rev * (0.02 + p.unit() * 0.08), 1),
            "dividends": round(max(0.0, netinc) * p.unit() * 0.4, 1),
        }
        for k, v in row.items():
            cur, prior = out.get(k, (0.0, 0.0))
            out[k] = (v, prior) if i == 0 else (cur, v)
    return out


def _statement_page(company: str, year: int, statement: str, figures: dict[str, tuple[float, float]]) -> str:
    lines = [
        f"{company}",
        f"{_STATEMENTS[statement]}",
        "(in millions of USD; fiscal years ended December 31)",
        "",
        f"| Line item | {year} | {year - 1} |",
        "| --- | ---: | ---: |",
    ]
    for key, table_label, _label, st in _METRICS:
        if st == statement:
            cur, prior = figures[key]
            lines.append(f"| {table_label} | {_money(cur)} | {_money(prior)} |")
    lines += [
        "",
        "The accompanying notes are an integral part of these consolidated financial statements.",
    ]
    return "\n".join(lines)


# -- chat ------------------------------------------------------------------------------------------

_TOPICS: dict[str, dict[str, Sequence[str]]] = {
    "cooking": {
        "thing": ("sourdough bread", "a vegetable curry", "homemade pasta", "a weeknight stir-fry",
                  "chocolate chip cookies", "a slow-cooked stew", "roast chicken", "a lentil soup"),
        "goal": ("make it healthier", "cook it faster", "feed six people", "keep it vegetarian",
                 "use fewer dishes", "prepare it a day ahead"),
    },
    "travel": {
        "thing": ("a week in Portugal", "a road trip along the coast", "a weekend in Kyoto",
                  "a hiking trip in the Alps", "a family visit to Mexico City", "a rail trip through Italy"),
        "goal": ("keep the budget low", "avoid the crowds", "travel with a toddler",
                 "see the main sights in a short time", "eat like a local", "pack only a carry-on"),
    },
    "programming": {
        "thing": ("a Python script that parses logs", "a REST API in Go", "a React form",
                  "a SQL query over two large tables", "a bash backup script", "unit tests for a parser"),
        "goal": ("make it faster", "make it easier to read", "handle errors properly",
                 "avoid race conditions", "reduce memory use", "make it testable"),
    },
    "fitness": {
        "thing": ("a beginner running plan", "a home workout routine", "strength training twice a week",
                  "training for a 10k", "stretching after long days at a desk", "a cycling habit"),
        "goal": ("avoid injuries", "stay consistent", "fit it into a busy schedule",
                 "see progress in two months", "train without equipment", "recover better"),
    },
    "finance": {
        "thing": ("a monthly budget", "an emergency fund", "paying off a car loan",
                  "saving for a house deposit", "a retirement account", "splitting bills with roommates"),
        "goal": ("stop overspending", "save more each month", "understand the trade-offs",
                 "plan for irregular income", "keep track without spreadsheets", "reduce fees"),
    },
    "gardening": {
        "thing": ("tomatoes on a balcony", "a small herb garden", "a vegetable bed in shade",
                  "roses that keep getting aphids", "a compost heap", "indoor succulents"),
        "goal": ("get a bigger harvest", "use less water", "avoid pesticides",
                 "keep it alive over winter", "spend less time weeding", "start from seed"),
    },
    "writing": {
        "thing": ("a cover letter", "a short story opening", "a wedding speech",
                  "a product description", "a blog post about remote work", "a grant proposal summary"),
        "goal": ("make it more concise", "sound more confident", "hook the reader early",
                 "keep a friendly tone", "fit it into 300 words", "avoid clichés"),
    },
}
_TOPIC_NAMES = tuple(_TOPICS)
_CHAT_OPENERS = (
    "Hi!", "Hello,", "Quick question.", "Hey there.", "I need some advice.", "Can you help me?", "",
)
_CHAT_CONTEXT = (
    "I have been working on {thing} for a few weeks now and I want to {goal}.",
    "Right now I am planning {thing}, and my main concern is how to {goal}.",
    "A friend suggested I look into {thing}, but I am not sure where to start.",
    "I tried {thing} last month and it did not go as well as I hoped.",
    "My schedule is tight, so anything that helps me {goal} would be great.",
    "I have read a few guides about {thing}, but they contradict each other.",
    "Ideally I would like to {goal} without spending a lot of money.",
    "For context, I am a complete beginner when it comes to {thing}.",
)
_CHAT_ASKS = (
    "What would you recommend for {thing} if I want to {goal}?",
    "Can you give me a step-by-step plan for {thing}?",
    "What are the most common mistakes people make with {thing}?",
    "How should I approach {thing} so that I can {goal}?",
    "Could you compare a few options for {thing} and tell me which one you would pick?",
    "What should I do first, and what can wait until later?",
)
_CHAT_FOLLOW = (
    "Thanks, that helps. Could you go into more detail on the second point?",
    "That makes sense. What if I only have half the time you assumed?",
    "Interesting. How would this change if I wanted to {goal}?",
    "Can you summarise that as a short checklist?",
    "Good ideas. Which of these would you drop first if I had to simplify?",
    "What would be a realistic timeline for all of this?",
)
_REPLY_OPEN = (
    "Great question! Here is how I would approach {thing}.",
    "Sure. There are a few things worth considering with {thing}.",
    "Happy to help. The short answer is that it depends on your priorities, but here is a plan.",
    "Good news: this is very doable. Let me break it down.",
)
_REPLY_POINTS = (
    "Start small: pick one change you can keep up for two weeks before adding anything else.",
    "Write down what you are doing now, so you can tell later whether a change actually helped.",
    "If you want to {goal}, focus on the steps that matter most and skip the rest for now.",
    "Set aside a fixed time each week for {thing}; consistency beats intensity.",
    "Avoid buying special equipment until you know you will stick with it.",
    "Ask someone with experience to look at your first attempt; a second opinion saves time.",
    "Expect the first attempt to be rough. The second one is usually much better.",
    "Keep notes on what worked and what did not, and adjust one thing at a time.",
    "Plan for setbacks: decide in advance what you will do when a week goes badly.",
    "Look for free resources first; libraries and community groups are underrated.",
)
_REPLY_CLOSE = (
    "Let me know how it goes, and feel free to ask follow-up questions.",
    "If you tell me more about your constraints, I can make this more specific.",
    "I hope this helps, and good luck with {thing}!",
    "Would you like me to turn this into a weekly schedule?",
)


@dataclass(frozen=True, slots=True)
class SyntheticChat:
    """Generated chats: a user describes a situation and asks; the assistant answers with a
    short plan; follow-up questions continue the thread."""

    kind: ClassVar[str] = "chat"

    def load(self) -> _ChatPool:
        return _ChatPool()

    def describe(self) -> dict[str, Any]:
        return {"dataset": "synthetic-chat"}


class _ChatPool:
    source = "synthetic:chat"

    @staticmethod
    def _slots(p: _Picks) -> dict[str, Sequence[str]]:
        return _TOPICS[p.pick(_TOPIC_NAMES)]

    def _user(self, p: _Picks, slots: dict[str, Sequence[str]], thing: str, goal: str) -> str:
        parts = [p.pick(_CHAT_OPENERS)]
        for _ in range(p.int(1, 3)):
            parts.append(_fill(p.pick(_CHAT_CONTEXT), p, slots, thing=thing, goal=goal))
        parts.append(_fill(p.pick(_CHAT_ASKS), p, slots, thing=thing, goal=goal))
        return " ".join(x for x in parts if x)

    def _reply(self, p: _Picks, thing: str, goal: str, points: int | None = None) -> str:
        lines = [p.pick(_REPLY_OPEN).format(thing=thing, goal=goal), ""]
        for i in range(points or p.int(3, 6)):
            lines.append(f"{i + 1}. " + p.pick(_REPLY_POINTS).format(thing=thing, goal=goal))
        lines += ["", p.pick(_REPLY_CLOSE).format(thing=thing, goal=goal)]
        return "\n".join(lines)

    def draw(self, rng: np.random.Generator) -> ChatThread:
        return self.conversation(rng, 1)

    def conversation(self, rng: np.random.Generator, user_turns: int) -> ChatThread:
        """A thread whose first user turn is the prompt, with ``user_turns - 1`` follow-ups."""
        p = _Picks(rng)
        slots = self._slots(p)
        thing, goal = p.pick(slots["thing"]), p.pick(slots["goal"])
        first = self._user(p, slots, thing, goal)
        follow = []
        for _ in range(max(0, user_turns - 1)):
            reply = self._reply(p, thing, goal)
            ask = _fill(p.pick(_CHAT_FOLLOW), p, slots, thing=thing, goal=goal)
            follow.append((reply, ask))
        return ChatThread(turns=(Message("user", first),), follow_ups=tuple(follow))

    def exchange(self, rng: np.random.Generator) -> tuple[str, str]:
        """An earlier (user, assistant) exchange, for history that pads a prompt."""
        p = _Picks(rng)
        slots = self._slots(p)
        thing, goal = p.pick(slots["thing"]), p.pick(slots["goal"])
        return self._user(p, slots, thing, goal), self._reply(p, thing, goal)

    def reply(self, rng: np.random.Generator) -> str:
        """An assistant answer of natural length (joined to reach a longer target)."""
        p = _Picks(rng)
        slots = self._slots(p)
        return self._reply(p, p.pick(slots["thing"]), p.pick(slots["goal"]), points=p.int(4, 8))

    def filler(self, rng: np.random.Generator, about: str | None = None) -> str:
        user, assistant = self.exchange(rng)
        return f"{user}\n\n{assistant}"


# -- math ------------------------------------------------------------------------------------------

_NAMES = ("Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam")
_ITEMS = ("pencils", "apples", "stickers", "marbles", "books", "cookies", "bottles", "tickets")


def _frac_tex(f: Fraction) -> str:
    if f.denominator == 1:
        return str(f.numerator)
    sign = "-" if f < 0 else ""
    return f"{sign}\\frac{{{abs(f.numerator)}}}{{{f.denominator}}}"


def _linear(p: _Picks) -> tuple[str, str, str, str]:
    x = p.int(-20, 30)
    a = p.pick((2, 3, 4, 5, 6, 7, 8, 9, 11, 12))
    b = p.int(-50, 50)
    c = a * x + b
    sign = "+" if b >= 0 else "-"
    problem = f"Solve for $x$: ${a}x {sign} {abs(b)} = {c}$."
    sol = (f"Subtract {b} from both sides to get ${a}x = {c - b}$. "
           f"Divide both sides by {a}: $x = {x}$. So the answer is $\\boxed{{{x}}}$.")
    return problem, str(x), sol, "algebra"


def _word(p: _Picks) -> tuple[str, str, str, str]:
    name, item = p.pick(_NAMES), p.pick(_ITEMS)
    boxes, per, given = p.int(3, 15), p.int(4, 24), p.int(1, 20)
    total = boxes * per - given
    problem = (f"{name} buys {boxes} boxes of {item} with {per} {item} in each box, then gives "
               f"{given} {item} to a friend. How many {item} does {name} have left?")
    sol = (f"{name} buys ${boxes} \\times {per} = {boxes * per}$ {item}. After giving away {given}, "
           f"{name} has ${boxes * per} - {given} = {total}$. The answer is $\\boxed{{{total}}}$.")
    return problem, str(total), sol, "prealgebra"


def _gcd(p: _Picks) -> tuple[str, str, str, str]:
    g = p.pick((2, 3, 4, 5, 6, 7, 8, 9, 12, 14, 15, 18))
    m, n = p.int(2, 30), p.int(2, 30)
    while math.gcd(m, n) != 1:
        n += 1
    a, b = g * m, g * n
    if p.int(0, 1):
        ans = g
        problem = f"What is the greatest common divisor of {a} and {b}?"
        sol = (f"We have ${a} = {g} \\cdot {m}$ and ${b} = {g} \\cdot {n}$ with $\\gcd({m}, {n}) = 1$, "
               f"so the answer is $\\boxed{{{g}}}$.")
    else:
        ans = a * b // g
        problem = f"What is the least common multiple of {a} and {b}?"
        sol = f"$\\gcd({a}, {b}) = {g}$, so $\\operatorname{{lcm}} = {a} \\cdot {b} / {g} = \\boxed{{{ans}}}$."
    return problem, str(ans), sol, "number_theory"


def _remainder(p: _Picks) -> tuple[str, str, str, str]:
    base, exp, mod = p.int(2, 19), p.int(5, 60), p.pick((5, 7, 9, 11, 13))
    ans = pow(base, exp, mod)
    problem = f"What is the remainder when ${base}^{{{exp}}}$ is divided by {mod}?"
    sol = (f"Reduce the powers of {base} modulo {mod} and look for the cycle; "
           f"${base}^{{{exp}}} \\equiv {ans} \\pmod{{{mod}}}$, so the remainder is $\\boxed{{{ans}}}$.")
    return problem, str(ans), sol, "number_theory"


def _choose(p: _Picks) -> tuple[str, str, str, str]:
    n = p.int(5, 16)
    k = p.int(2, min(6, n - 1))
    ans = math.comb(n, k)
    problem = f"In how many ways can a committee of {k} people be chosen from a group of {n} people?"
    sol = f"Order does not matter, so the count is $\\binom{{{n}}}{{{k}}} = \\boxed{{{ans}}}$."
    return problem, str(ans), sol, "counting_and_probability"


def _fractions(p: _Picks) -> tuple[str, str, str, str]:
    a, b = Fraction(p.int(1, 9), p.int(2, 12)), Fraction(p.int(1, 9), p.int(2, 12))
    op = p.pick(("+", "-"))
    ans = a + b if op == "+" else a - b
    problem = f"Compute ${_frac_tex(a)} {op} {_frac_tex(b)}$. Express your answer as a common fraction in lowest terms."
    sol = (f"Use the common denominator {ans.denominator if ans.denominator > 1 else (a.denominator * b.denominator)}; "
           f"the result simplifies to $\\boxed{{{_frac_tex(ans)}}}$.")
    return problem, _frac_tex(ans), sol, "prealgebra"


def _roots(p: _Picks) -> tuple[str, str, str, str]:
    r1, r2 = p.int(-12, 12), p.int(-12, 12)
    b, c = -(r1 + r2), r1 * r2
    poly = "x^2" + (f" + {b}x" if b > 0 else f" - {-b}x" if b < 0 else "")
    poly += f" + {c}" if c > 0 else f" - {-c}" if c < 0 else ""
    ans = max(r1, r2)
    problem = f"What is the largest real solution of ${poly} = 0$?"
    sol = (f"The polynomial factors as $(x - {r1})(x - {r2})$, so the roots are {r1} and {r2}; "
           f"the largest is $\\boxed{{{ans}}}$.")
    return problem, str(ans), sol, "algebra"


def _geometry(p: _Picks) -> tuple[str, str, str, str]:
    w, h = p.int(3, 40), p.int(3, 40)
    if p.int(0, 1):
        problem = f"A rectangle has width {w} cm and length {h} cm. What is its area, in square centimeters?"
        ans = w * h
        sol = f"Area is width times length: ${w} \\times {h} = \\boxed{{{ans}}}$."
    else:
        problem = f"A right triangle has legs of length {2 * w} and {2 * h}. What is its area?"
        ans = 2 * w * h
        sol = f"The area is $\\frac{{1}}{{2}} \\cdot {2 * w} \\cdot {2 * h} = \\boxed{{{ans}}}$."
    return problem, str(ans), sol, "geometry"


def _series(p: _Picks) -> tuple[str, str, str, str]:
    a, d, n = p.int(1, 20), p.int(1, 9), p.int(5, 40)
    ans = n * (2 * a + (n - 1) * d) // 2
    problem = f"What is the sum of the first {n} terms of the arithmetic sequence {a}, {a + d}, {a + 2 * d}, ...?"
    sol = (f"The last term is ${a} + {n - 1} \\cdot {d} = {a + (n - 1) * d}$, so the sum is "
           f"$\\frac{{{n}({a} + {a + (n - 1) * d})}}{{2}} = \\boxed{{{ans}}}$.")
    return problem, str(ans), sol, "algebra"


_MATH_KINDS = (_linear, _word, _gcd, _remainder, _choose, _fractions, _roots, _geometry, _series)


@dataclass(frozen=True, slots=True)
class SyntheticMath:
    """Generated competition-style problems with exact answers (integers or reduced fractions)."""

    kind: ClassVar[str] = "math"

    def load(self) -> _MathPool:
        return _MathPool()

    def describe(self) -> dict[str, Any]:
        return {"dataset": "synthetic-math"}


class _MathPool:
    source = "synthetic:math"

    def draw(self, rng: np.random.Generator) -> MathProblem:
        p = _Picks(rng, 32)
        problem, answer, solution, subject = p.pick(_MATH_KINDS)(p)
        return MathProblem(problem=problem, answer=answer, solution=solution, subject=subject, level=p.int(1, 3))

    def filler(self, rng: np.random.Generator, about: str | None = None) -> str:
        item = self.draw(rng)
        return f"Problem: {item.problem}\nSolution: {item.solution}"
