"""Self-contained HTML reports and figure files for runs, studies and runs side by side.

    build_report(paths) -> Page        a run, a study, or several runs compared
    page.render() -> str               one HTML file: inline SVG and CSS, no script, nothing fetched
    write_figures(page, directory)     each chart as NAME.svg, and NAME.png when resvg-py is installed
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loadbench.contract.errors import LoadbenchError
from loadbench.results.frames import is_study_dir, load_run, load_study
from loadbench.results.html.page import Page


def _generator() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"loadbench {version('loadbench')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "loadbench"


def build_report(paths: Sequence[str | Path], *, labels: Sequence[str] | None = None) -> Page:
    """The report for one run directory, one study directory, or several run directories."""
    if not paths:
        raise LoadbenchError("report: give a run directory, a study directory, or several run directories")
    dirs = [Path(p) for p in paths]
    for d in dirs:
        if not d.is_dir():
            raise LoadbenchError(f"{d}: not a directory (expected a run or a study directory)")
    studies = [d for d in dirs if is_study_dir(d)]
    if studies:
        if len(dirs) > 1:
            raise LoadbenchError(f"{studies[0]}: a study directory is reported on its own, not beside other paths")
        from loadbench.results.html.study_report import build_study_page

        return build_study_page(load_study(dirs[0]), generator=_generator())
    runs = [load_run(d) for d in dirs]
    if len(runs) == 1:
        from loadbench.results.html.run_report import build_run_page

        return build_run_page(runs[0], generator=_generator())
    from loadbench.results.html.compare_report import build_compare_page

    return build_compare_page(runs, labels=labels, generator=_generator())


def write_html(page: Page, path: str | Path) -> Path:
    """Write the page as one file (parent directories created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page.render(), encoding="utf-8")
    return path


def write_figures(page: Page, directory: str | Path, *, png: bool = True) -> tuple[list[Path], str | None]:
    """Every chart as ``<slug>.svg``, plus ``<slug>.png`` (2x, white) when resvg-py is available.

    Returns the files written and, when PNGs were asked for but cannot be made, the reason.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    render = None
    why = None
    if png:
        try:
            import resvg_py

            render = resvg_py.svg_to_bytes
        except ImportError:
            why = "PNG files need resvg-py (pip install 'loadbench[report]'); wrote SVG only"
    for chart in page.charts():
        svg = chart.svg()
        p = directory / f"{chart.slug}.svg"
        p.write_text(svg, encoding="utf-8")
        written.append(p)
        if render is not None:
            q = directory / f"{chart.slug}.png"
            q.write_bytes(bytes(render(svg_string=svg, zoom=2.0, background="#ffffff")))
            written.append(q)
    return written, why
