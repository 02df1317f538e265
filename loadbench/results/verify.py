"""Client against server: compare a run's records with a server-side ground-truth trace.

The embedded simulator writes, per request, when it received it, when it handed the first token
and the last byte to the transport, and how many tokens it sent, on the same monotonic clock as the
client (``perf_counter_ns``: CLOCK_MONOTONIC, shared by every process on one host). Joined by
request id, each pair gives:

* ``request_transit_ms``: client sent → server received (request write, event-loop wake-up);
* ``first_token_delivery_ms``: server wrote the first token → client stamped it;
* ``end_delivery_ms``: server wrote the last byte → client saw the end;
* ``ttft_diff_ms``: client TTFT - server TTFT (received → first token written);
* ``e2e_diff_ms``: client E2E - server E2E (received → last byte written);
* token counts that differ.

A harness that stamps late, parses slowly or queues behind its own work shows up here.

The trace is the run directory's ``sim_trace.jsonl`` (written by runs against a loadbench
simulator), a JSONL file given with ``--trace``, or a running simulator's URL
(``--trace http://127.0.0.1:8000``): its ``/sim/trace`` endpoint is fetched, and only the run's
own requests are kept.
"""

from __future__ import annotations

import argparse
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import orjson

from loadbench.contract.errors import LoadbenchError

SIM_TRACE = "sim_trace.jsonl"
TRACE_PATH = "/sim/trace"
_FETCH_TIMEOUT_S = 10.0


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadbenchError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return _parse_jsonl(data, str(path))


def _parse_jsonl(data: bytes, where: str) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(data.splitlines(), 1):
        if line.strip():
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                raise LoadbenchError(f"{where}:{n}: not a JSON line") from None
    return out


def is_url(value: str | Path) -> bool:
    return isinstance(value, str) and urlsplit(value).scheme in ("http", "https")


def trace_url(url: str) -> str:
    """The trace endpoint for a simulator URL: its origin's ``/sim/trace`` unless a path ending in
    it was given (``http://h:p``, ``http://h:p/v1`` and ``http://h:p/sim/trace`` alike)."""
    parts = urlsplit(url)
    path = parts.path if parts.path.rstrip("/").endswith(TRACE_PATH) else TRACE_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def fetch_trace(url: str, run_id: str | None = None, *, timeout_s: float = _FETCH_TIMEOUT_S) -> list[dict[str, Any]]:
    """A running simulator's ground truth, fetched from ``url`` (see ``trace_url``); with
    ``run_id``, only that run's requests (ids ``<run_id>-N``).

    Raises ``LoadbenchError`` naming the URL when it does not answer with a trace (not a loadbench
    simulator, the trace off, nothing listening).
    """
    endpoint = trace_url(url)
    try:
        # No proxy: the simulator is on this host, and a proxy from the environment would not reach it.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(endpoint, timeout=timeout_s) as resp:
            data = resp.read()
            kind = resp.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        hint = "is this a loadbench simulator with its trace on?"
        raise LoadbenchError(f"{endpoint}: HTTP {exc.code} ({hint})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LoadbenchError(f"{endpoint}: cannot fetch the trace ({reason})") from None
    if kind != "application/x-ndjson":
        raise LoadbenchError(f"{endpoint}: answered {kind}, not a loadbench simulator's JSONL trace")
    rows = _parse_jsonl(data, endpoint)
    if run_id is not None:
        prefix = f"{run_id}-"
        rows = [r for r in rows if str(r.get("id", "")).startswith(prefix)]
    return rows


def _run_id(run_dir: Path) -> str | None:
    try:
        return orjson.loads((run_dir / "run.json").read_bytes()).get("run_id")
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return None


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "mean": None, "p50": None, "p99": None, "max_abs": None}
    arr = np.asarray(values, dtype=float)
    return {
        "count": int(arr.size),
        "mean": float(arr.mean()),
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
        "max_abs": float(np.abs(arr).max()),
    }


def compare(run_dir: str | Path, trace: str | Path | None = None) -> dict[str, Any]:
    """Join requests.jsonl with the trace (a file, a simulator URL, or the run's own
    ``sim_trace.jsonl``) and return per-metric differences (milliseconds)."""
    run_dir = Path(run_dir)
    if not (run_dir / "requests.jsonl").is_file():
        raise LoadbenchError(f"{run_dir}: no requests.jsonl (is this a loadbench run directory?)")
    if trace is not None and is_url(trace):
        trace_name = trace_url(str(trace))
        rows = fetch_trace(str(trace), _run_id(run_dir))
    else:
        trace_path = Path(trace) if trace is not None else run_dir / SIM_TRACE
        trace_name = str(trace_path)
        if not trace_path.is_file():
            raise LoadbenchError(
                f"{trace_path}: no ground-truth trace (runs against a loadbench simulator write {SIM_TRACE}; "
                "pass --trace FILE, or --trace URL for a running simulator)"
            )
        rows = _read_jsonl(trace_path)
    # A hybrid request is no server call of its own (its child calls are, and join like any other).
    client = {r["request_id"]: r for r in _read_jsonl(run_dir / "requests.jsonl") if "children" not in r}
    server = {t["id"]: t for t in rows if "id" in t}

    diffs: dict[str, list[float]] = {
        "request_transit_ms": [],
        "first_token_delivery_ms": [],
        "end_delivery_ms": [],
        "ttft_diff_ms": [],
        "e2e_diff_ms": [],
    }
    token_mismatches = []
    joined = 0
    for rid, c in client.items():
        s = server.get(rid)
        if s is None or c.get("status") != "ok" or s.get("outcome") != "ok":
            continue
        joined += 1
        sent, received = c["sent_ns"], s["received_ns"]
        diffs["request_transit_ms"].append((received - sent) / 1e6)
        if c["first_token_ns"] and s.get("first_token_ns"):
            diffs["first_token_delivery_ms"].append((c["first_token_ns"] - s["first_token_ns"]) / 1e6)
            client_ttft = c["first_token_ns"] - sent
            server_ttft = s["first_token_ns"] - received
            diffs["ttft_diff_ms"].append((client_ttft - server_ttft) / 1e6)
        diffs["end_delivery_ms"].append((c["end_ns"] - s["last_ns"]) / 1e6)
        diffs["e2e_diff_ms"].append(((c["end_ns"] - sent) - (s["last_ns"] - received)) / 1e6)
        if c.get("output_tokens") != s.get("output_tokens"):
            token_mismatches.append(
                {"request_id": rid, "client": c.get("output_tokens"), "server": s.get("output_tokens")}
            )
    return {
        "run_dir": str(run_dir),
        "trace": trace_name,
        "client_requests": len(client),
        "server_requests": len(server),
        "joined_ok": joined,
        "unmatched_client_ids": sum(1 for rid in client if rid not in server),
        "metrics": {name: _stats(values) for name, values in diffs.items()},
        "token_count_mismatches": len(token_mismatches),
        "token_mismatch_examples": token_mismatches[:5],
    }


def main(argv: list[str]) -> int:
    """``loadbench verify RUN_DIR [--trace T] [--max-p99-ms X] [--json]``; exit 1 when over the bound,
    2 (``LoadbenchError``) when no request joins."""
    p = argparse.ArgumentParser(
        prog="loadbench verify",
        description="Compare a run's client-side stamps with a server's ground-truth trace "
        f"(default: RUN_DIR/{SIM_TRACE}, written by runs against the embedded simulator).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument(
        "--trace",
        metavar="FILE|URL",
        help="a ground-truth JSONL trace (the simulator's format), or a running simulator's URL "
        "(e.g. http://127.0.0.1:8000; its /sim/trace is fetched)",
    )
    p.add_argument("--max-p99-ms", type=float, metavar="X", help="exit 1 if |ttft_diff| or |e2e_diff| p99 exceeds X ms")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    ns = p.parse_args(argv)
    result = compare(ns.run_dir, ns.trace)
    if not result["joined_ok"]:
        # Nothing compared proves nothing: a bound cannot pass on no data.
        raise LoadbenchError(
            f"{result['trace']}: no request joined ({result['client_requests']} client records, "
            f"{result['server_requests']} trace records, {result['unmatched_client_ids']} client ids not in the "
            "trace; only requests ok on both sides join): is this the trace of this run?"
        )
    if ns.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    else:
        print(
            f"{result['joined_ok']} requests joined ({result['client_requests']} client, "
            f"{result['server_requests']} server); token count mismatches: {result['token_count_mismatches']}"
        )
        print(f"{'client - server (ms)':<26}{'count':>7}{'mean':>10}{'p50':>10}{'p99':>10}{'max |x|':>10}")
        for name, st in result["metrics"].items():
            if st["count"]:
                print(
                    f"{name:<26}{st['count']:>7}{st['mean']:>10.3f}{st['p50']:>10.3f}{st['p99']:>10.3f}{st['max_abs']:>10.3f}"
                )
    if ns.max_p99_ms is not None:
        for name in ("ttft_diff_ms", "e2e_diff_ms"):
            st = result["metrics"][name]
            if st["count"] and max(abs(st["p99"]), 0) > ns.max_p99_ms:
                return 1
    return 0
