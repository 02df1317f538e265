"""Gates: pass/fail conditions on a run's figures, for CI (k6's thresholds, Gatling's assertions).

A gate is ``PATH OP NUMBER``: ``"ttft_ms.p99 < 500"``, ``"error_rate < 1%"``,
``"throughput.output_tokens_per_s > 100"``, ``"drift.ttft_ms.p99 < 1.2"``.

* ``PATH`` is a dotted path into summary.json. A metric's name may stand alone for its section
  (``ttft_ms.p99`` is ``metrics.ttft_ms.p99``). Derived figures: ``error_rate`` (measured requests
  that failed / measured requests that finished, ok or failed).
  ``requests.errors.<category>`` is 0 when no request failed that way.
* ``OP`` is one of ``<  <=  >  >=  ==  !=``; ``NUMBER`` a finite number, optionally with ``%``.

Contracts:

* Parsing (``Gate.parse``) and path checking (``check_paths``) raise ``ConfigError`` with the
  expression and what was expected, so a bad gate is bad input before any request is sent. The
  paths a summary will have come from the summary builder itself (a summary of an empty run), so
  this list cannot drift from what a run writes.
* ``evaluate`` reads a finished summary; a figure that was not measured (``None``) fails its gate,
  since a gate must never pass on missing data.
* ``LiveJudge`` decides, during the run, when a gate with ``abort_on_fail`` is already lost. The
  rule: a gate is lost when its final value cannot pass whatever the rest of the run does:

  - a count (``requests.failed``, ``requests.cancelled``, ``requests.errors.*``) or a maximum
    (``<metric>.max``) under ``<``/``<=``: once crossed, since it only grows;
  - ``error_rate`` or a latency percentile under ``<``/``<=``: once the failures (the requests
    above the limit) already exceed the allowed share of the most requests the run can ever
    finish. That bound is known for a request limit, and for an open-loop plan with a duration
    (its arrival times are counted up front); a closed loop stopped only by time has none.

  Anything else (throughput, means, ``>`` gates, drift, the harness) is judged only at the end;
  asking to abort on one of those is a ``ConfigError``, as is asking where no bound exists.
  ``delay_s`` holds off any early verdict for that long after the load starts (a run always
  keeps at least that much data).
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from loadbench.contract.errors import ConfigError, ErrorCategory

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_OPS_TEXT = "< <= > >= == !="

#: Figures derived from the summary rather than stored in it: name -> description.
DERIVED: dict[str, str] = {
    "error_rate": "measured requests failed / measured requests finished (ok or failed)",
}

_GATE = re.compile(r"^\s*(?P<path>[A-Za-z_][A-Za-z0-9_.]*)\s*(?P<op>[<>=!](?:\s*[<>=!])*)\s*(?P<num>.*?)\s*$")

# Figures that only grow during a run (so a crossed "<" limit is final).
_COUNT_PATHS = ("requests.failed", "requests.cancelled")


@dataclass(frozen=True, slots=True)
class Gate:
    """One condition: ``path op limit``. ``expr`` is the text as written (what reports show).

    ``abort_on_fail`` stops the run as soon as the gate is lost (see the module's rule), but not
    before ``delay_s`` seconds of load.
    """

    expr: str
    path: str
    op: str
    limit: float
    abort_on_fail: bool = False
    delay_s: float = 0.0

    @classmethod
    def parse(cls, expr: Any, *, abort_on_fail: bool = False, delay_s: float = 0.0) -> Gate:
        """Parse ``"PATH OP NUMBER"``; ``ConfigError`` names the expression and the bad part."""
        if not isinstance(expr, str) or not expr.strip():
            raise ConfigError(f"gate must be a string such as 'ttft_ms.p99 < 500', got {expr!r}")
        m = _GATE.match(expr)
        if m is None:
            raise ConfigError(f"gate {expr!r}: expected 'PATH OP NUMBER' such as 'ttft_ms.p99 < 500'")
        op = m["op"]
        if op not in OPERATORS:
            raise ConfigError(f"gate {expr!r}: bad operator {op!r}; expected one of {_OPS_TEXT}")
        text = m["num"]
        scale = 1.0
        if text.endswith("%"):
            text, scale = text[:-1].rstrip(), 0.01
        try:
            limit = float(text) * scale
        except ValueError:
            limit = math.nan
        if not text or not math.isfinite(limit):
            raise ConfigError(f"gate {expr!r}: bad number {m['num']!r}; expected a finite number such as 500 or 1%")
        if not isinstance(abort_on_fail, bool):
            raise ConfigError(f"gate {expr!r}: abort_on_fail must be True or False, got {abort_on_fail!r}")
        if isinstance(delay_s, bool) or not isinstance(delay_s, int | float) or not delay_s >= 0:
            raise ConfigError(f"gate {expr!r}: delay_s must be a number of seconds >= 0, got {delay_s!r}")
        return cls(expr.strip(), m["path"], op, limit, abort_on_fail, float(delay_s))

    @classmethod
    def of(cls, value: Any) -> Gate:
        """A ``Gate`` as given, or parsed from its expression string."""
        return value if isinstance(value, Gate) else cls.parse(value)

    def passes(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.limit)

    def describe(self) -> dict[str, Any]:
        return {"expr": self.expr, "abort_on_fail": self.abort_on_fail, "delay_s": self.delay_s}


def normalize(gates: Iterable[Any]) -> tuple[Gate, ...]:
    """A tuple of ``Gate`` from gates and expression strings (a lone string is one gate)."""
    if isinstance(gates, str | Gate):
        gates = [gates]
    try:
        items = list(gates)
    except TypeError:
        raise ConfigError(f"gates must be a list of expressions such as ['ttft_ms.p99 < 500'], got {gates!r}") from None
    return tuple(Gate.of(g) for g in items)


# -- paths ----------------------------------------------------------------------------------------


def resolve_path(path: str, metric_keys: Iterable[str]) -> str:
    """The full summary path: a bare metric name stands for its entry under ``metrics``."""
    head = path.split(".", 1)[0]
    return f"metrics.{path}" if head in set(metric_keys) else path


def leaf_paths(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every leaf of ``summary`` (nested mappings flattened), dotted path -> value."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(leaf_paths(value, path + "."))
        else:
            out[path] = value
    return out


def schema(skeleton: Mapping[str, Any]) -> dict[str, str]:
    """The paths a gate may name, from a summary of an empty run: path -> "number" | "text".

    Error categories are open-ended in a summary (only those seen are listed), so each known one
    is added; derived figures are added too.
    """
    kinds: dict[str, str] = {}
    for path, value in leaf_paths(skeleton).items():
        if isinstance(value, Mapping):
            continue  # an empty section: nothing in it to name
        numeric = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        kinds[path] = "number" if numeric else "text"
    for category in ErrorCategory:
        kinds[f"requests.errors.{category.value}"] = "number"
    for name in DERIVED:
        kinds[name] = "number"
    return kinds


def check_paths(gates: Iterable[Gate], kinds: Mapping[str, str], metric_keys: Iterable[str]) -> None:
    """Raise ``ConfigError`` for the first gate naming a figure the summary will not have."""
    metric_keys = tuple(metric_keys)
    numbers = sorted(p for p, k in kinds.items() if k == "number")
    for gate in gates:
        full = resolve_path(gate.path, metric_keys)
        kind = kinds.get(full)
        if kind == "number":
            continue
        if kind == "text":
            raise ConfigError(f"gate {gate.expr!r}: {gate.path!r} is not a number")
        # A near miss on the full path, or on the short metric form.
        short = [p.removeprefix("metrics.") for p in numbers]
        near = difflib.get_close_matches(gate.path, short + numbers, n=3, cutoff=0.6)
        sections = sorted({p.split(".")[0] for p in numbers if "." in p} | set(metric_keys))
        hint = (
            f"; did you mean {' or '.join(repr(n) for n in dict.fromkeys(near))}?"
            if near
            else f"; a figure is a dotted path into summary.json under one of: {', '.join(sections)}"
        )
        raise ConfigError(f"gate {gate.expr!r}: unknown figure {gate.path!r}{hint}")


# -- evaluation -----------------------------------------------------------------------------------


def derived(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """The derived figures of a summary (``DERIVED``)."""
    by_phase = summary.get("requests", {}).get("by_phase", {}).get("measured", {})
    ok, failed = by_phase.get("ok", 0), by_phase.get("failed", 0)
    return {"error_rate": failed / (ok + failed) if ok + failed else None}


def figure(summary: Mapping[str, Any], path: str, metric_keys: Iterable[str]) -> Any:
    """The value at ``path`` in ``summary`` (after ``resolve_path``); ``None`` when absent."""
    full = resolve_path(path, metric_keys)
    if full in DERIVED:
        return derived(summary)[full]
    node: Any = summary
    for part in full.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return 0 if full.startswith("requests.errors.") else None
        node = node[part]
    return node


def evaluate(
    gates: Iterable[Gate], summary: Mapping[str, Any], metric_keys: Iterable[str], *, aborted_by: str | None = None
) -> list[dict[str, Any]]:
    """One result per gate: expression, figure, value measured, and whether it passed.

    ``aborted_by`` is the expression of the gate that stopped the run early, if one did: that
    gate fails whatever its value at the end, since it was judged lost during the run.
    """
    metric_keys = tuple(metric_keys)
    out = []
    for gate in gates:
        value = figure(summary, gate.path, metric_keys)
        measured = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        passed = measured and gate.passes(float(value)) and gate.expr != aborted_by
        if not measured:
            reason = "not measured"
        elif gate.expr == aborted_by:
            reason = "lost during the run: aborted"
        else:
            reason = None
        out.append(
            {
                "expr": gate.expr,
                "path": resolve_path(gate.path, metric_keys),
                "op": gate.op,
                "limit": gate.limit,
                "value": value if measured else None,
                "passed": bool(passed),
                "reason": reason,
                "aborted_run": gate.expr == aborted_by,
            }
        )
    return out


def describe_result(result: Mapping[str, Any]) -> str:
    """One line for a terminal or a report: ``PASS ttft_ms.p99 < 500 (measured 412.3)``."""
    verdict = "PASS" if result["passed"] else "FAIL"
    value = result["value"]
    shown = "not measured" if value is None else f"measured {format_value(value)}"
    extra = f"; {result['reason']}" if result.get("reason") and value is not None else ""
    return f"{verdict} {result['expr']} ({shown}{extra})"


def format_value(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value)}"
    a = abs(value)
    return f"{value:.4g}" if a < 1 else f"{value:.1f}" if a >= 100 else f"{value:.3g}"


# -- early verdicts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveFigures:
    """What the run knows mid-way, for ``LiveJudge``.

    ``measured_ok``/``measured_failed``: finished measured requests; ``counts``: the growing count
    figures by path; ``over(metric, limit, inclusive)``: how many measured values of ``metric``
    (summary units) are above ``limit`` (``inclusive``: at or above) so far; ``maximum(metric)``:
    the largest so far, or None.
    """

    elapsed_s: float
    measured_ok: int
    measured_failed: int
    counts: Mapping[str, int]
    over: Callable[[str, float, bool], int]
    maximum: Callable[[str], float | None]


_PERCENTILE = re.compile(r"^metrics\.(?P<metric>\w+)\.p(?P<q>\d+(?:_\d+)?)$")
_MAXIMUM = re.compile(r"^metrics\.(?P<metric>\w+)\.max$")


class LiveJudge:
    """Decides, from live figures, whether an ``abort_on_fail`` gate is already lost.

    ``max_finished`` bounds how many requests the run can ever finish (None: no bound known).
    Construction raises ``ConfigError`` for an abort gate that cannot be judged early.
    """

    def __init__(self, gates: Iterable[Gate], metric_keys: Iterable[str], max_finished: int | None) -> None:
        self._metric_keys = tuple(metric_keys)
        self._max = max_finished
        self._checks: list[tuple[Gate, Callable[[LiveFigures], bool]]] = []
        for gate in gates:
            if gate.abort_on_fail:
                self._checks.append((gate, self._check_for(gate)))

    def __bool__(self) -> bool:
        return bool(self._checks)

    def _check_for(self, gate: Gate) -> Callable[[LiveFigures], bool]:
        path = resolve_path(gate.path, self._metric_keys)
        upper = gate.op in ("<", "<=")
        inclusive_fail = gate.op == "<"  # "< t" fails at t; "<= t" only above it
        limit = gate.limit

        def crossed(value: float) -> bool:
            return value >= limit if inclusive_fail else value > limit

        if upper and (path in _COUNT_PATHS or path.startswith("requests.errors.")):
            return lambda f: crossed(f.counts.get(path, 0))
        if upper and (m := _MAXIMUM.match(path)):
            metric = m["metric"]

            def lost_max(f: LiveFigures) -> bool:
                value = f.maximum(metric)
                return value is not None and crossed(value)

            return lost_max
        bounded = upper and (path == "error_rate" or _PERCENTILE.match(path))
        if bounded and self._max is None:
            raise ConfigError(
                f"gate {gate.expr!r}: abort_on_fail needs a bound on the requests the run can finish "
                f"(a request limit, or an open-loop plan with a duration); a closed loop stopped by time has none"
            )
        bound = self._max or 0
        if upper and path == "error_rate":
            # The final rate is at least failed / (everything the run can finish).
            return lambda f: bound > 0 and crossed(f.measured_failed / bound)
        if upper and (m := _PERCENTILE.match(path)):
            metric, q = m["metric"], float(m["q"].replace("_", "."))
            allowed = (1.0 - q / 100.0) * bound  # values above the limit a passing p(q) tolerates
            return lambda f: f.over(metric, limit, inclusive_fail) > allowed
        raise ConfigError(
            f"gate {gate.expr!r}: abort_on_fail works on counts, maxima, error_rate and latency "
            f"percentiles under < or <=; this gate can only be judged at the end of the run"
        )

    def lost(self, figures: LiveFigures) -> Gate | None:
        """The first abort gate lost by now (after its delay), or None."""
        for gate, check in self._checks:
            if figures.elapsed_s >= gate.delay_s and check(figures):
                return gate
        return None
