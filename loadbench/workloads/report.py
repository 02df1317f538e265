"""How close the workload's length targets came to what the server counted.

``length_report(records)`` sets each finished request's ``target_input_tokens`` and
``target_output_tokens`` against the server-reported ``input_tokens`` and ``output_tokens`` and
summarises both sides (p50, p90) and the relative error per request (``|reported - target| /
target``: p50, p90, and the signed mean, which shows a systematic bias). Requests without a
target or without a server count are counted, not guessed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from loadbench.metrics.record import RequestRecord

__all__ = ["length_report"]


def _side(pairs: list[tuple[int, int]], missing: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(pairs), "unreported": missing}
    if not pairs:
        return out
    target = np.array([t for t, _ in pairs], dtype=np.float64)
    reported = np.array([r for _, r in pairs], dtype=np.float64)
    rel = (reported - target) / target
    out.update(
        target_p50=float(np.percentile(target, 50)),
        target_p90=float(np.percentile(target, 90)),
        reported_p50=float(np.percentile(reported, 50)),
        reported_p90=float(np.percentile(reported, 90)),
        rel_error_p50=float(np.percentile(np.abs(rel), 50)),
        rel_error_p90=float(np.percentile(np.abs(rel), 90)),
        rel_error_mean_signed=float(rel.mean()),
    )
    return out


def length_report(records: Iterable[RequestRecord]) -> dict[str, Any]:
    """Target vs server-reported token counts over the ``ok`` records, for input and output."""
    inputs: list[tuple[int, int]] = []
    outputs: list[tuple[int, int]] = []
    missing_in = missing_out = 0
    for r in records:
        if r.status != "ok":
            continue
        if r.target_input_tokens:
            if r.input_tokens is None:
                missing_in += 1
            else:
                inputs.append((r.target_input_tokens, r.input_tokens))
        if r.target_output_tokens:
            if r.output_tokens is None:
                missing_out += 1
            else:
                outputs.append((r.target_output_tokens, r.output_tokens))
    return {"input": _side(inputs, missing_in), "output": _side(outputs, missing_out)}
