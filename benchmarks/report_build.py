"""How long `loadbench report --html` takes for a big run, and how big the file is.

Either reports on a run directory you give (e.g. 100,000 requests on the simulator's instant
profile), or first lays out a synthetic one of N requests through the project's own writer
classes (RunWriter, Recorder, build_summary), so the files are exactly what a run writes.
The baseline in the same run is reading the directory alone (load_run and its columns): what any
report must pay before drawing anything. With Chromium on PATH it also times the page's load.

    python benchmarks/report_build.py --requests 100000 [--tokens 16] [--repeat 3]
    python benchmarks/report_build.py --run results/big-run
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from loadbench.contract.record import RequestRecord
from loadbench.metrics.recorder import Recorder
from loadbench.metrics.summary import build_summary
from loadbench.results.frames import load_run
from loadbench.results.html import build_report, write_html
from loadbench.results.run_dir import RunWriter, write_json

MS = 1_000_000


def synthesise(path: Path, n: int, tokens: int, seed: int = 0) -> Path:
    """n requests at 1,000/s from 64 users, lognormal TTFT, ~3 ms per token, 1% failures."""
    rng = np.random.default_rng(seed)
    recorder = Recorder()
    start_ns = time.perf_counter_ns()
    epoch = time.time()

    async def write() -> None:
        writer = RunWriter(path, recorder=recorder, start_ns=start_ns, start_epoch_s=epoch, hlog_interval_s=1e9)
        intended = start_ns + np.cumsum(rng.exponential(1e6, n)).astype(np.int64)
        lag = rng.exponential(0.2 * MS, n).astype(np.int64)
        ttft = (rng.lognormal(np.log(40), 0.5, n) * MS).astype(np.int64)
        outs = rng.integers(max(2, tokens // 2), tokens * 3 // 2 + 1, n)
        fail = rng.random(n) < 0.01
        for i in range(n):
            r = RequestRecord(index=i, request_id=f"bench-{i}", intended_ns=int(intended[i]), user=i % 64)
            r.sent_ns = r.intended_ns + int(lag[i])
            r.target_input_tokens = 64
            r.target_output_tokens = int(outs[i])
            r.input_tokens = 64
            if fail[i]:
                r.status, r.error, r.error_detail, r.http_status = "failed", "server_error", "HTTP 500", 500
                r.end_ns = r.sent_ns + 5 * MS
            else:
                t = r.sent_ns + int(ttft[i])
                for _ in range(int(outs[i])):
                    r.token(t)
                    t += 3 * MS
                r.output_tokens = int(outs[i])
                r.status = "ok"
                r.end_ns = t
            recorder.add(r)
            writer.add(r)
        await writer.close()

    asyncio.run(write())
    summary = build_summary(recorder, scheduled=n)
    summary["scenario"] = "synthetic"
    write_json(path / "summary.json", summary)
    write_json(path / "run.json", {"run_id": "bench", "scenario": {"name": "synthetic"}, "status": "finished",
                                   "stopped_by": "requests", "clock": {"perf_counter_ns": start_ns, "epoch_s": epoch}})
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="an existing run directory (else one is synthesised)")
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--tokens", type=int, default=16, help="mean output tokens of a synthetic request")
    p.add_argument("--repeat", type=int, default=3)
    ns = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="loadbench-report-bench-"))
    run = ns.run
    if run is None:
        t = time.perf_counter()
        run = synthesise(tmp / "run", ns.requests, ns.tokens)
        print(f"synthesised {ns.requests:,} requests in {time.perf_counter() - t:.1f} s")
    size_mb = (run / "requests.jsonl").stat().st_size / 1e6
    read_s, build_s, read_cpu, build_cpu = [], [], [], []
    out = tmp / "report.html"
    for _ in range(ns.repeat):
        t, c = time.perf_counter(), time.process_time()
        data = load_run(run)
        _ = data.columns, data.histograms
        read_s.append(time.perf_counter() - t)
        read_cpu.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        page = build_report([run])
        write_html(page, out)
        build_s.append(time.perf_counter() - t)
        build_cpu.append(time.process_time() - c)
    n = len(load_run(run).records)
    print(f"run: {run} ({n:,} requests, requests.jsonl {size_mb:.1f} MB)")
    # CPU seconds beside wall seconds: on a shared machine the wall clock also counts waiting for a core.
    print(f"{'step':34} {'wall median s':>13} {'wall min s':>10} {'CPU min s':>9}")
    for label, wall, cpu in (("read the directory (baseline)", read_s, read_cpu),
                             ("read + build + write the HTML", build_s, build_cpu)):
        print(f"{label:34} {statistics.median(wall):13.2f} {min(wall):10.2f} {min(cpu):9.2f}")
    print(f"HTML: {out.stat().st_size / 1024:,.0f} KiB, {len(page.charts())} charts")
    from loadbench.results.html.browser import find_chromium, inspect

    if find_chromium():
        check = inspect(out)
        print(f"Chromium: load event after {check.load_ms:.0f} ms, {len(check.console_errors)} console errors, "
              f"{len(check.requests)} requests, page {check.page_size[0]}x{check.page_size[1]} px")


if __name__ == "__main__":
    main()
