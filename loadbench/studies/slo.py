"""Service-level objectives over a run's requests, and how well a run attained them.

An SLO is named with the summary's own metric names: ``"ttft_ms.p99": 500`` means "the p99 of
``ttft_ms`` is at most 500 ms", which holds exactly when at least 99% of the requests have a
``ttft_ms`` of at most 500 ms. So each objective is judged per request: its *attainment* is the
share of measured requests that met the limit, and it holds when that share reaches its *target*
(0.99 here). ``"error_rate": 0.01`` is the share of measured requests that failed; it holds when
at most 1% did (a target of 0.99 for "did not fail").

Per-request values come from ``requests.jsonl`` (measured phase only; lines with ``parent`` set are
child calls of a composite request and are skipped): ``ttft_ms``, ``ttft_from_schedule_ms``,
``time_to_first_answer_ms``, ``e2e_ms``, ``e2e_from_schedule_ms``, and ``tpot_ms`` ((end - first
token) / (output tokens - 1)). A request that failed or was cancelled met no latency limit: it
never answered in time. Attainment comes with a Wilson score interval, so a verdict can say
whether the run's requests were enough to tell.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from loadbench.contract.errors import ConfigError

#: Per-request metrics an SLO may name (each is a key of requests.jsonl, or derived from its stamps).
SLO_METRICS = (
    "ttft_ms",
    "ttft_from_schedule_ms",
    "time_to_first_answer_ms",
    "e2e_ms",
    "e2e_from_schedule_ms",
    "tpot_ms",
)
#: Percentile names, as in summary.json's metric sections.
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99, "p99_9": 0.999}


@dataclass(frozen=True, slots=True)
class Objective:
    """One SLO: ``metric`` at most ``limit`` for a share ``target`` of requests (or, for
    ``error_rate``, a failed share of at most ``limit``, i.e. ``target = 1 - limit`` succeeding)."""

    name: str
    metric: str  # a key of SLO_METRICS, or "error_rate"
    limit: float
    target: float

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "limit": self.limit, "target": self.target}


def parse_slo(slo: Mapping[str, Any], where: str = "slo") -> tuple[Objective, ...]:
    """The objectives of an SLO mapping such as ``{"ttft_ms.p99": 500, "error_rate": 0.01}``.

    Raises ConfigError naming the key and what was expected.
    """
    if not isinstance(slo, Mapping) or not slo:
        raise ConfigError(f"{where} must be a non-empty mapping such as {{'ttft_ms.p99': 500}}, got {slo!r}")
    out = []
    for name, limit in slo.items():
        if not isinstance(limit, int | float) or isinstance(limit, bool) or not math.isfinite(limit) or limit < 0:
            raise ConfigError(f"{where}[{name!r}] must be a number >= 0, got {limit!r}")
        if name == "error_rate":
            if limit >= 1:
                raise ConfigError(f"{where}['error_rate'] is a share of requests below 1 (e.g. 0.01), got {limit!r}")
            out.append(Objective(name, "error_rate", float(limit), 1.0 - float(limit)))
            continue
        metric, dot, pct = str(name).rpartition(".")
        if not dot or metric not in SLO_METRICS or pct not in PERCENTILES:
            raise ConfigError(
                f"{where} key {name!r} must be METRIC.PERCENTILE with METRIC one of {', '.join(SLO_METRICS)} "
                f"and PERCENTILE one of {', '.join(PERCENTILES)} (e.g. 'ttft_ms.p99'), or 'error_rate'"
            )
        if limit <= 0:
            raise ConfigError(f"{where}[{name!r}] must be a positive number of ms, got {limit!r}")
        out.append(Objective(name, metric, float(limit), PERCENTILES[pct]))
    return tuple(out)


def z_for(confidence: float) -> float:
    """The two-sided normal quantile for ``confidence`` (0.95 → 1.96)."""
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a share ``successes / n`` (``(0, 1)`` when ``n`` is 0).

    Unlike the normal approximation it stays inside [0, 1] and is honest at the edges: all of 50
    requests meeting a limit gives (0.93, 1.0), not a certainty.
    """
    if n <= 0:
        return 0.0, 1.0
    z = z_for(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)
    hi = 1.0 if successes >= n else min(1.0, centre + half)
    return lo, hi


def requests_needed(target: float, confidence: float = 0.95) -> int:
    """The fewest requests whose Wilson lower bound can reach ``target`` (all of them meeting it).

    n / (n + z²) ≥ target  ⇔  n ≥ z² target / (1 - target): about 35 requests for a p90 at 95%,
    73 for a p95, 381 for a p99. Fewer cannot show the objective met, however good the server.
    """
    if target >= 1:
        return 10**9
    z = z_for(confidence)
    return math.ceil(z * z * target / (1.0 - target))


def _tpot_ms(rec: Mapping[str, Any]) -> float | None:
    n, first, end = rec.get("output_tokens"), rec.get("first_token_ns"), rec.get("end_ns")
    if not n or not first or not end:
        return None
    return (end - first) / (n - 1) / 1e6 if n > 1 else 0.0


@dataclass(frozen=True, slots=True)
class Counts:
    """How many measured requests met one objective, out of how many it is judged on."""

    met: int
    n: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.met + other.met, self.n + other.n)

    @property
    def share(self) -> float | None:
        return self.met / self.n if self.n else None


def count(objectives: Iterable[Objective], records: Iterable[Mapping[str, Any]]) -> dict[str, Counts]:
    """For each objective (by name), the measured requests that met it and those judged.

    Latency objectives judge every measured request (a failed or cancelled one met nothing);
    ``error_rate`` judges requests that ended ok or failed (a cancellation is the harness's doing).
    """
    objectives = tuple(objectives)
    met = dict.fromkeys((o.name for o in objectives), 0)
    judged = dict.fromkeys((o.name for o in objectives), 0)
    for rec in records:
        if rec.get("phase") != "measured" or rec.get("parent") is not None:
            continue
        status = rec.get("status")
        for o in objectives:
            if o.metric == "error_rate":
                if status in ("ok", "failed"):
                    judged[o.name] += 1
                    met[o.name] += status == "ok"
                continue
            judged[o.name] += 1
            if status != "ok":
                continue
            value = _tpot_ms(rec) if o.metric == "tpot_ms" else rec.get(o.metric)
            if value is not None and value <= o.limit:
                met[o.name] += 1
    return {name: Counts(met[name], judged[name]) for name in met}


def limits_attainment(limits_ms: Mapping[str, float], records: Iterable[Mapping[str, Any]]) -> float | None:
    """The share of measured requests meeting every per-request limit of a Scenario's ``slo``
    (``{"ttft_ms": 300, "tpot_ms": 40}``, the goodput definition); ``None`` with no requests."""
    met = n = 0
    for rec in records:
        if rec.get("phase") != "measured" or rec.get("parent") is not None:
            continue
        n += 1
        if rec.get("status") != "ok":
            continue
        ok = True
        for key, limit in limits_ms.items():
            value = _tpot_ms(rec) if key == "tpot_ms" else rec.get(key)
            if value is None or value > limit:
                ok = False
                break
        met += ok
    return met / n if n else None
