"""``loadbench report PATH... [--html [FILE]] [--png DIR]``: the HTML report and figure files.

The plain ``report RUN_DIR`` (one run, no --html/--png) stays the terminal summary, printed by the
CLI itself; everything else comes here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from loadbench.results.frames import is_study_dir

USAGE = """\
loadbench report RUN_DIR                       print the run's summary
loadbench report PATH... --html [FILE] [--png DIR]
  PATH: a run directory, a study directory (study.json), or several run directories side by side.
  --html FILE  one self-contained HTML file (default: PATH/report.html for one path,
               ./report.html for several); opens from disk, fetches nothing, prints cleanly
  --png DIR    every chart as DIR/NAME.svg and DIR/NAME.png (PNG needs the report extra)"""


def wants_figures(argv: list[str]) -> bool:
    """True when the arguments ask for more than the plain summary of one run."""
    flags = ("--html", "--png", "--label", "-h", "--help")
    if any(a == f or a.startswith(f + "=") for a in argv for f in flags):
        return True
    paths = [a for a in argv if not a.startswith("-")]
    return len(paths) != 1 or is_study_dir(Path(paths[0]))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="loadbench report", usage=USAGE,
                                description="Reports for runs, studies, and runs side by side.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--html", nargs="?", const="", metavar="FILE", help="write one self-contained HTML file")
    p.add_argument("--png", metavar="DIR", help="write each chart as SVG and PNG files into DIR")
    p.add_argument("--label", action="append", metavar="NAME",
                   help="a run's name in a side-by-side report (once per path, in order)")
    ns = p.parse_args(argv)
    if ns.html and Path(ns.html).is_dir():
        p.error(f"--html {ns.html}: that is a directory; give the HTML file to write (paths go before --html)")
    if ns.label and len(ns.label) != len(ns.paths):
        p.error(f"--label given {len(ns.label)} times for {len(ns.paths)} paths; give one per path")
    from loadbench.results.html import build_report, write_figures, write_html

    started = time.perf_counter()
    page = build_report(ns.paths, labels=ns.label)
    if ns.html is None and ns.png is None:
        _print_terminal(ns.paths)
        return 0
    if ns.html is not None:
        target = Path(ns.html) if ns.html else (
            Path(ns.paths[0]) / "report.html" if len(ns.paths) == 1 else Path("report.html"))
        out = write_html(page, target)
        print(f"loadbench: wrote {out} ({out.stat().st_size / 1024:,.0f} KiB, {len(page.charts())} charts) "
              f"in {time.perf_counter() - started:.2f} s")
    if ns.png is not None:
        files, why = write_figures(page, ns.png)
        print(f"loadbench: wrote {len(files)} figure files to {ns.png}")
        if why:
            print(f"loadbench: {why}", file=sys.stderr)
    return 0


def _print_terminal(paths: list[str]) -> None:
    """Without --html/--png: a study's cells, or the runs' headline figures, as a terminal table."""
    from rich.console import Console
    from rich.table import Table

    from loadbench.results.html.compare_report import comparison_rows
    from loadbench.results.html.page import cell
    from loadbench.results.html.study_report import cell_table_rows

    console = Console(highlight=False)
    if not console.is_terminal:  # piped: never squeeze columns to 80 characters
        console = Console(highlight=False, width=400)
    if len(paths) == 1 and is_study_dir(Path(paths[0])):
        from loadbench.results.frames import load_study

        header, rows = cell_table_rows(load_study(paths[0]))
    else:
        from loadbench.results.frames import load_run

        header, rows = comparison_rows([load_run(p) for p in paths], None)
    t = Table(box=None, header_style="bold")
    for h in header:
        t.add_column(h, no_wrap=True)
    for r in rows:
        t.add_row(*(cell(v) for v in r))
    console.print(t)
    console.print("(--html FILE for the full report with charts)")
