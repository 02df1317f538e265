"""The HTML report, figures and data frames, on run directories made by real runs on the simulator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from loadbench.contract.errors import LoadbenchError
from loadbench.results import load, load_run, load_study
from loadbench.results.html import build_report, write_figures, write_html
from loadbench.results.html.charts import percentile_curve
from loadbench.results.html.study_report import knee_index, number_in, short_labels
from loadbench.results.html.svg import fmt_number, nines


def _charts(html: str) -> dict[str, str]:
    return dict(re.findall(r'<svg [^>]*data-chart="([^"]+)"[^>]*>(.*?)</svg>', html, flags=re.S))


def _no_external_references(html: str) -> None:
    # Every src/href is an in-page anchor; the only URL-looking strings are the SVG namespace and data.
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert all(r.startswith("#") for r in refs), refs
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(http" not in html


def test_run_report_draws_every_part_of_a_real_run(runs: dict[str, Path], tmp_path: Path) -> None:
    page = build_report([runs["faulty"]])
    html = page.render()
    _no_external_references(html)
    charts = _charts(html)
    for slug in ("dist-ttft", "dist-e2e", "dist-itl", "dist-tpot", "ts-inflight", "ts-rps", "ts-tps", "ts-ttft",
                 "ts-errors", "ts-lag", "timeline", "len-input", "len-output"):
        assert slug in charts, slug
        assert "<path" in charts[slug] or "<rect x" in charts[slug], slug
    summary = orjson.loads((runs["faulty"] / "summary.json").read_bytes())
    # The headline and the facts say what the run was.
    assert f"{summary['requests']['completed']:,} / {summary['requests']['scheduled']:,}" in html
    assert "Constant(rate_per_s=30" in html and "stopped by duration" in html and "gpu-8b" in html
    # From send beside from schedule, and both error categories in the errors-over-time legend.
    assert "from schedule" in charts["dist-ttft"] and "from send" in charts["dist-ttft"]
    for category in summary["requests"]["errors"]:
        assert category in charts["ts-errors"]
    assert "warm-up" in charts["ts-rps"]
    # One timeline bar group per request when they are few: every request id has a tooltip.
    ids = [r["request_id"] for r in map(orjson.loads, (runs["faulty"] / "requests.jsonl").read_bytes().splitlines())]
    assert all(i in charts["timeline"] for i in ids)
    out = write_html(page, tmp_path / "r.html")
    assert out.stat().st_size < 400_000


def test_the_nines_curve_is_the_histograms_percentiles(runs: dict[str, Path]) -> None:
    data = load_run(runs["faulty"])
    hist = data.histograms["ttft_ms"]
    xs, ys = percentile_curve(hist, 1e3, 4.0)
    assert xs[-1] == pytest.approx(np.log10(hist.total_count))
    m = data.summary["metrics"]["ttft_ms"]
    # The curve at p50 and at p90 is the summary's value (to the curve's x resolution: a bracket).
    for p, key in ((50, "p50"), (90, "p90")):
        x = nines(p)
        i = int(np.searchsorted(xs, x))
        assert ys[max(i - 1, 0)] <= m[key] + 1e-9 <= ys[min(i, len(ys) - 1)] + 1e-9
    assert data.percentile("ttft_ms", 99) == pytest.approx(m["p99"])
    # The curve stops at the last percentile the count resolves; the maximum is its own marker.
    assert max(ys) <= m["max"]
    chart = _charts(build_report([runs["faulty"]]).render())["dist-ttft"]
    assert f"from send: max {fmt_number(m['max'])} ms" in chart


def test_load_run_gives_frames_and_histograms_that_agree_with_the_summary(runs: dict[str, Path]) -> None:
    data = load_run(runs["faulty"])
    summary = data.summary
    df = data.requests
    assert len(df) == summary["requests"]["scheduled"]
    assert (df["status"] == "ok").sum() == summary["requests"]["completed"]
    assert df.loc[df["status"] == "failed", "error"].value_counts().to_dict() == summary["requests"]["errors"]
    assert str(df["output_tokens"].dtype) == "Int64" and df["ttft_ms"].dtype == np.float64
    measured_ok = df[(df["phase"] == "measured") & (df["status"] == "ok")]
    assert data.histograms["ttft_ms"].total_count == len(measured_ok) == summary["metrics"]["ttft_ms"]["count"]
    assert np.nanmedian(measured_ok["ttft_ms"]) == pytest.approx(summary["metrics"]["ttft_ms"]["p50"], rel=0.02)
    # Seconds since the anchor: intended <= sent <= first token <= end, for every completed request.
    ok = df[df["status"] == "ok"]
    assert (ok["intended_s"] <= ok["sent_s"]).all() and (ok["sent_s"] < ok["first_token_s"]).all()
    assert (ok["first_token_s"] <= ok["end_s"]).all()
    assert set(data.interval_table["metric"]) >= {"ttft_ms", "e2e_ms", "itl_ms"}
    assert load(runs["faulty"]).name == data.name


def test_hybrid_children_are_their_own_table_and_nest_under_the_parent(runs: dict[str, Path], tmp_path: Path) -> None:
    # Child-call lines as the hybrid deployment writes them (no server here makes them yet).
    import shutil

    run = shutil.copytree(runs["faulty"], tmp_path / "hybrid")
    lines = (run / "requests.jsonl").read_bytes().splitlines()
    parents = [orjson.loads(x) for x in lines]
    first = next(p for p in parents if p["status"] == "ok")
    kids = []
    for k, role in enumerate(("supervisor", "worker", "worker")):
        child = {key: first[key] for key in ("intended_ns", "sent_ns", "first_token_ns", "end_ns", "phase")}
        child.update(request_id=f"{first['request_id']}.{k}", parent=first["request_id"], role=role, round=0,
                     job=None if role == "supervisor" else f"j{k}", status="ok", output_tokens=5, index=k)
        kids.append(orjson.dumps(child))
    first["children"] = 3
    parents[parents.index(first)] = first
    (run / "requests.jsonl").write_bytes(b"\n".join([*map(orjson.dumps, parents), *kids]) + b"\n")
    data = load_run(run)
    assert len(data.requests) == len(parents)  # children never count as requests
    assert list(data.children["parent"]) == [first["request_id"]] * 3
    assert list(data.children["role"]) == ["supervisor", "worker", "worker"]
    timeline = _charts(build_report([run]).render())["timeline"]
    assert "3 child calls nested" in timeline
    # The children's bars come right after their parent's in the drawing order.
    pos = timeline.index(first["request_id"] + ",")
    assert pos < timeline.index(f"{first['request_id']}.0") < timeline.index(f"{first['request_id']}.2")
    assert 'fill="#CC79A7"' in timeline and 'fill="#009E73"' in timeline


def test_a_torn_last_line_is_dropped_and_a_bad_line_elsewhere_is_named(runs: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    run = shutil.copytree(runs["slow"], tmp_path / "torn")
    path = run / "requests.jsonl"
    good = path.read_bytes()
    path.write_bytes(good + b'{"index": 99, "request_')
    assert len(load_run(run).records) == len(good.splitlines())
    path.write_bytes(b"not json\n" + good)
    with pytest.raises(LoadbenchError, match=r"requests.jsonl:1: not a JSON object"):
        load_run(run)
    (run / "summary.json").unlink()
    with pytest.raises(LoadbenchError, match=r"no summary\.json"):
        load_run(run)


def test_study_report_shows_cells_sweep_knee_and_capacity_probes(sweep: Path) -> None:
    study = load_study(sweep)
    assert list(study.cells["id"]) == ["c000", "c001", "c002", "c003"]
    assert study.cells["requests_per_s"].iloc[0] > 0 and np.isnan(study.cells["requests_per_s"].iloc[3])
    assert len(study.probes) == 3
    html = build_report([sweep]).render()
    _no_external_references(html)
    charts = _charts(html)
    for slug in ("bars-ttft", "bars-throughput", "sweep-ttft_ms", "sweep-offered", "capacity", "cells-ttft_ms"):
        assert slug in charts, slug
    assert "target refused" in html  # the failed cell's error
    assert "SLO 200 ms" in charts["sweep-ttft_ms"]
    # The capacity chart marks each probe with its verdict and the answer.
    cap = orjson.loads((sweep / "capacity.json").read_bytes())
    for p in cap["probes"]:
        assert f"probe {p['index']}:" in charts["capacity"] and p["verdict"] in charts["capacity"]
    if cap["answer"]["highest_passing"] is not None:
        assert "highest passing" in charts["capacity"]


def test_knee_and_value_parsing() -> None:
    # Flat, then climbing: the knee is the last point before the climb.
    assert knee_index([1, 2, 3, 4, 5], [10, 11, 12, 40, 200]) == 3
    assert knee_index([1, 2, 3], [1, 2, 3]) is None  # a straight line has no knee
    assert knee_index([1, 2], [1, 9]) is None
    assert number_in("Poisson(rate_per_s=4.5)") == 4.5 and number_in("8") == 8.0 and number_in(3) == 3.0
    assert number_in("fast") is None
    assert short_labels(["Poisson(rate_per_s=2.0)", "Poisson(rate_per_s=12.0)"]) == (
        ["2.0", "12.0"], "Poisson(rate_per_s=…)")
    assert short_labels(["12", "15"]) == (["12", "15"], "")  # never cut inside a number
    assert short_labels(["Local", "Remote"]) == (["Local", "Remote"], "")


def test_runs_side_by_side_overlay_and_table(runs: dict[str, Path]) -> None:
    page = build_report([runs["faulty"], runs["slow"]], labels=["fast", "laptop"])
    html = page.render()
    _no_external_references(html)
    charts = _charts(html)
    for key in ("ttft_ms", "e2e_ms", "itl_ms", "tpot_ms"):
        chart = charts[f"cmp-{key}"]
        assert "fast" in chart and "laptop" in chart
        assert chart.count('<path d="M') >= 2
    assert "laptop vs fast" in html
    # The laptop engine is slower: its TTFT p50 delta is positive and marked worse.
    assert re.search(r'<td class="l">TTFT p50</td>(?:(?!</tr>).)*<td class="worse">\+[\d.]+%</td>', html, flags=re.S)


def test_cli_writes_html_and_figures_and_keeps_the_plain_summary(runs: dict[str, Path], tmp_path: Path,
                                                                 sweep: Path) -> None:
    run = runs["faulty"]
    cmd = [sys.executable, "-m", "loadbench", "report"]
    out = subprocess.run([*cmd, str(run), "--html", str(tmp_path / "a.html"), "--png", str(tmp_path / "figs")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and (tmp_path / "a.html").stat().st_size > 10_000
    svg = sorted(p.name for p in (tmp_path / "figs").glob("*.svg"))
    png = sorted(p.name for p in (tmp_path / "figs").glob("*.png"))
    assert "dist-ttft.svg" in svg and "timeline.svg" in svg and len(png) == len(svg)
    assert (tmp_path / "figs" / "dist-ttft.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(tmp_path / "figs" / "dist-ttft.png") as im:
        assert im.size == (1120, 600)  # 2x the chart's 560 x 300
        colours = im.convert("RGB").getcolors(1_000_000)
        assert colours is not None and len(colours) > 20  # axes, text and curves, not a blank canvas
    # --html with no file: report.html in the run directory.
    assert subprocess.run([*cmd, str(run), "--html"], capture_output=True, timeout=120).returncode == 0
    assert (run / "report.html").exists()
    (run / "report.html").unlink()
    plain = subprocess.run([*cmd, str(run)], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0 and "TTFT" in plain.stdout and "scheduled" in plain.stdout
    side = subprocess.run([*cmd, str(run), str(runs["slow"])], capture_output=True, text=True, timeout=120)
    assert side.returncode == 0 and "TTFT p99" in side.stdout and "--html" in side.stdout
    cells = subprocess.run([*cmd, str(sweep)], capture_output=True, text=True, timeout=120)
    assert cells.returncode == 0 and "c002" in cells.stdout
    bad = subprocess.run([*cmd, str(tmp_path / "nope"), "--html"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a directory" in bad.stderr
    swallowed = subprocess.run([*cmd, "--html", str(run), str(runs["slow"])], capture_output=True, text=True,
                               timeout=120)
    assert swallowed.returncode == 2 and "that is a directory" in swallowed.stderr
    mixed = subprocess.run([*cmd, str(sweep), str(run), "--html"], capture_output=True, text=True, timeout=120)
    assert mixed.returncode == 2 and "study directory is reported on its own" in mixed.stderr


def test_figures_without_resvg_still_write_svg(runs: dict[str, Path], tmp_path: Path) -> None:
    files, why = write_figures(build_report([runs["slow"]]), tmp_path, png=False)
    assert why is None and files and all(f.suffix == ".svg" for f in files)
    assert all(f.read_text().startswith("<svg") for f in files)


def test_a_long_run_gets_a_close_up_of_consecutive_requests_around_the_slowest() -> None:
    from loadbench.results.html.run_report import _close_up_rows

    n = 5000
    intended = np.arange(n) * 0.1  # 500 s of 20 ms requests: bars far narrower than a pixel
    e2e = np.full(n, 20.0)
    e2e[3210] = 900.0
    cols = {"index": np.arange(n), "intended_s": intended, "end_s": intended + e2e / 1e3,
            "e2e_from_schedule_ms": e2e, "request_id": np.array([f"r{i}" for i in range(n)], dtype=object)}
    rows, how = _close_up_rows(cols, 150)
    assert len(rows) == 150 and 3210 in rows.tolist()
    assert np.all(np.diff(rows) == 1)  # consecutive, in intended order
    assert "r3210" in how
    cols["e2e_from_schedule_ms"] = np.full(n, 20_000.0)  # long requests: the overview shows them already
    assert _close_up_rows(cols, 150) is None


def test_a_study_without_cells_csv_still_reports_its_cells(tmp_path: Path) -> None:
    study = {"kind": "study", "name": "matrix", "created": "2026-12-02T00:00:00Z", "base": {},
             "vary": {"deployment": ["Local", "Remote"]}, "repeat": 1,
             "cells": [{"id": "c000", "values": {"deployment": "Local"}, "repeat": 0, "status": "running",
                        "run_dir": "cells/c000", "error": None},
                       {"id": "c001", "values": {"deployment": "Remote"}, "repeat": 0, "status": "failed",
                        "run_dir": "cells/c001", "error": "TargetError: no API key"}]}
    (tmp_path / "study.json").write_bytes(orjson.dumps(study))
    html = build_report([tmp_path]).render()
    assert "c000" in html and "running" in html and "TargetError: no API key" in html
    (tmp_path / "study.json").write_text("[1, 2]")
    with pytest.raises(LoadbenchError, match=r"study\.json: expected an object with a 'cells' list"):
        load_study(tmp_path)


def test_tokens_per_second_by_chunk_arrival_add_up_to_the_output_tokens(runs: dict[str, Path]) -> None:
    from loadbench.results.html.run_report import _token_rate

    data = load_run(runs["faulty"])
    cols = data.columns
    ok = cols["status"] == "ok"
    assert len(data.chunks) >= ok.sum() and data.chunks.offsets_us.size == data.chunks.counts.sum()
    assert all("chunk_offsets_us" not in r for r in data.records)  # packed, not kept per line
    assert sum(1 for _ in data.lines()) == len(data.records)
    edges = np.arange(0.0, float(np.nanmax(cols["end_s"])) + 0.2, 0.1)
    rate = _token_rate(data, edges)
    assert rate.sum() * 0.1 == pytest.approx(float(cols["output_tokens"][ok].sum()))
