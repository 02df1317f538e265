"""Reports for CI: a JUnit XML file (one test case per gate) and a Markdown job summary.

JUnit (read by GitHub, GitLab, Jenkins, Buildkite test reporters):

* one ``<testcase>`` per gate, named by its expression; a failed gate is a ``<failure>`` whose
  message holds the measured value and the limit; a gate that stopped the run early says so;
* one ``<testcase name="run">`` that is an ``<error>`` when the run itself failed (bad input, a
  crash, interrupted, no request completed), so "the tool or the target broke" reads differently
  from "the system is too slow". When the run never started, that error is the only test case.

The Markdown summary is what ``$GITHUB_STEP_SUMMARY`` receives: the gates as a table, then one
line of headline figures.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadbench.gates import format_value


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What the CI reports say about one invocation.

    ``error`` is None when the run completed (whatever its gates); otherwise ``error_kind``
    ("bad_input", "crash", "interrupted", "no_completed") and a one-line ``error``.
    """

    scenario: str
    summary: Mapping[str, Any] | None = None
    run: Mapping[str, Any] | None = None
    run_dir: str | None = None
    error_kind: str | None = None
    error: str | None = None


def _gate_message(result: Mapping[str, Any]) -> str:
    value = result["value"]
    measured = "not measured" if value is None else f"measured {format_value(value)}"
    text = f"{result['expr']}: {measured}, limit {result['op']} {format_value(result['limit'])}"
    if result.get("aborted_run"):
        text += "; the gate was lost during the run, which was stopped early (abort_on_fail)"
    return text


def junit_xml(outcome: RunOutcome) -> bytes:
    """The JUnit XML document for ``outcome``."""
    summary = outcome.summary or {}
    gates: Sequence[Mapping[str, Any]] = summary.get("gates") or []
    duration = summary.get("run_duration_s") or 0.0
    suite_name = f"loadbench.{outcome.scenario}"
    failures = sum(1 for g in gates if not g["passed"])
    errors = 1 if outcome.error_kind else 0
    root = ET.Element("testsuites", name="loadbench")
    suite = ET.SubElement(
        root,
        "testsuite",
        name=suite_name,
        tests=str(len(gates) + 1),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=f"{duration:.3f}",
        timestamp=datetime.now(UTC).replace(microsecond=0).isoformat(),
    )
    props = ET.SubElement(suite, "properties")
    if outcome.run_dir:
        ET.SubElement(props, "property", name="run_dir", value=str(outcome.run_dir))
    if outcome.run:
        ET.SubElement(props, "property", name="status", value=str(outcome.run.get("status")))
        ET.SubElement(props, "property", name="stopped_by", value=str(outcome.run.get("stopped_by")))
    run_case = ET.SubElement(suite, "testcase", classname=suite_name, name="run", time=f"{duration:.3f}")
    if outcome.error_kind:
        err = ET.SubElement(run_case, "error", type=outcome.error_kind, message=outcome.error or outcome.error_kind)
        err.text = outcome.error or outcome.error_kind
    elif summary:
        req = summary.get("requests", {})
        out = ET.SubElement(run_case, "system-out")
        out.text = (
            f"scheduled {req.get('scheduled')}, completed {req.get('completed')}, failed {req.get('failed')}, "
            f"cancelled {req.get('cancelled')}; stopped by {summary.get('stopped_by')}"
        )
    for g in gates:
        case = ET.SubElement(suite, "testcase", classname=suite_name, name=g["expr"], time="0")
        if not g["passed"]:
            message = _gate_message(g)
            fail = ET.SubElement(case, "failure", type="gate", message=message)
            fail.text = message
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _gate_message(g)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


def write_junit(path: str | Path, outcome: RunOutcome) -> Path:
    """Write ``junit_xml(outcome)`` to ``path`` (parent folders made as needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(junit_xml(outcome))
    return path


def _fmt(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{format_value(value)}{unit}"


def markdown_summary(outcome: RunOutcome) -> str:
    """A Markdown job summary: a verdict heading, the gates as a table, headline figures."""
    summary = outcome.summary or {}
    gates: Sequence[Mapping[str, Any]] = summary.get("gates") or []
    failed = [g for g in gates if not g["passed"]]
    if outcome.error_kind:
        verdict = f"run error ({outcome.error_kind})"
    elif failed:
        verdict = f"{len(failed)} of {len(gates)} gates failed"
    elif gates:
        verdict = f"all {len(gates)} gates passed"
    else:
        verdict = "finished"
    lines = [f"### loadbench `{outcome.scenario}`: {verdict}", ""]
    if outcome.error:
        lines += [f"> {outcome.error}", ""]
    if gates:
        lines += ["| | Gate | Measured |", "|---|---|---|"]
        for g in gates:
            mark = "✅" if g["passed"] else "❌"
            note = " (stopped the run)" if g.get("aborted_run") else ""
            lines.append(f"| {mark} | `{g['expr']}` | {_fmt(g['value'])}{note} |")
        lines.append("")
    if summary.get("requests"):
        req = summary["requests"]
        ttft = summary.get("metrics", {}).get("ttft_ms", {})
        tput = summary.get("throughput", {})
        lines.append(
            f"Requests {req['scheduled']} scheduled, {req['completed']} completed, {req['failed']} failed · "
            f"TTFT p50/p99 {_fmt(ttft.get('p50'))}/{_fmt(ttft.get('p99'), ' ms')} · "
            f"{_fmt(tput.get('output_tokens_per_s'))} output tok/s · stopped by {summary.get('stopped_by')}"
        )
        drift = summary.get("drift") or {}
        harness = summary.get("harness") or {}
        if drift.get("first") and drift["first"].get("start_s") is not None:
            lines.append(
                f"Drift (last / first {format_value(drift['window_s'])} s window): TTFT p99 "
                f"{_fmt(drift['ttft_ms']['p99'])}x, throughput {_fmt(drift['throughput']['output_tokens_per_s'])}x, "
                f"error rate {_fmt(drift['error_rate'])} (change) · "
                f"harness RSS growth {_fmt(harness.get('rss_growth_mb'), ' MB')}"
            )
    if outcome.run_dir:
        lines.append(f"Results: `{outcome.run_dir}`")
    return "\n".join(lines) + "\n"


def append_step_summary(path: str | Path, outcome: RunOutcome) -> None:
    """Append ``markdown_summary(outcome)`` to ``path`` (``$GITHUB_STEP_SUMMARY``)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(markdown_summary(outcome) + "\n")
