"""SLO attainment: the share of measured requests that met each service-level objective, and all
of them at once.

An SLO is a limit in milliseconds on one per-request figure (``ttft_ms``, ``tpot_ms``, ``e2e_ms``
and the ``*_from_schedule_ms`` variants), judged on each request as the metrics define it. The
denominator is every measured request, whatever its outcome: a request that failed or was
cancelled met no SLO (a server that answers quickly by failing must not look better). Goodput is
the requests that met every SLO per second of the measured window: attainment x measured requests
/ window. Definitions in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadbench.contract.record import RequestRecord
from loadbench.metrics.recorder import tpot_ns

# Which stamps bound each SLO'd figure (``tpot_ms`` is the recorder's ``tpot_ns``).
_SPANS = {
    "ttft_ms": ("sent_ns", "first_token_ns"),
    "ttft_from_schedule_ms": ("intended_ns", "first_token_ns"),
    "e2e_ms": ("sent_ns", "end_ns"),
    "e2e_from_schedule_ms": ("intended_ns", "end_ns"),
}


def _value_ms(record: RequestRecord, key: str) -> float | None:
    """The request's figure for ``key`` in ms, or ``None`` where it has none (no first token)."""
    if key == "tpot_ms":
        if not record.first_token_ns:
            return None
        tpot = tpot_ns(record)  # the recorder's own definition
        # A request with one token (or no time after it) has no per-token time to exceed: met.
        return 0.0 if tpot is None else tpot / 1e6
    start, end = _SPANS[key]
    a, b = getattr(record, start), getattr(record, end)
    return (b - a) / 1e6 if a and b else None


class SloTally:
    """Counts, per measured request, which SLOs it met. ``add`` is hot-path arithmetic only."""

    def __init__(self, limits_ms: Mapping[str, float]) -> None:
        self.limits_ms = dict(limits_ms)
        self.requests = 0
        self.met = dict.fromkeys(self.limits_ms, 0)
        self.met_all = 0

    def add(self, record: RequestRecord) -> None:
        """Judge one finished measured request (any status)."""
        self.requests += 1
        if record.status != "ok":
            return
        every = True
        for key, limit_ms in self.limits_ms.items():
            value = _value_ms(record, key)
            if value is not None and value <= limit_ms:
                self.met[key] += 1
            else:
                every = False
        if every:
            self.met_all += 1

    def report(self, window_s: float) -> dict[str, Any]:
        """The summary's ``slo`` section: limits, counts met, attainment (0-1) and goodput."""
        n = self.requests

        def share(met: int) -> float | None:
            return met / n if n else None

        return {
            "limits_ms": self.limits_ms,
            "requests": n,
            "met": {**self.met, "all": self.met_all},
            "attainment": {**{k: share(v) for k, v in self.met.items()}, "all": share(self.met_all)},
            "goodput_requests_per_s": self.met_all / window_s if window_s else None,
        }
