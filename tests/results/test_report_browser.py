"""The report as a person sees it: opened from disk in headless Chromium, screenshotted, printed.

Checks that the page logs no console error, makes no network request (the DevTools network log is
empty, and with the network namespace removed it draws the very same pixels), and that every chart
is on screen with its data drawn (saturated pixels inside its box, not only grey axes).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from loadbench.results.html import build_report, write_html
from loadbench.results.html.browser import PageCheck, find_chromium, inspect

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it on CI",
)


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


def _saturated(region: np.ndarray) -> int:
    """Pixels with colour in them: axes, grid and text are grey, data marks are not."""
    return int(((region.max(axis=2) - region.min(axis=2)) > 80).sum())


def _check_page(check: PageCheck, html: str) -> None:
    assert check.console_errors == [], check.console_errors
    assert check.requests == [], check.requests
    expected = html.count("data-chart=")
    assert len(check.charts) == expected > 0
    img = _pixels(check.screenshot_png)
    assert img.shape[1] == check.page_size[0] and img.shape[0] == check.page_size[1]
    assert (img < 250).any(axis=2).mean() > 0.02, "the page is (nearly) blank"
    for chart in check.charts:
        assert chart["width"] > 100 and chart["height"] > 60, chart
        if chart["empty"]:
            continue
        x, y = int(chart["x"]), int(chart["y"])
        region = img[y:y + int(chart["height"]), x:x + int(chart["width"])]
        assert region.size and _saturated(region) > 40, f"chart {chart['slug']} shows no data: {chart}"


@pytest.mark.parametrize("kind", ["run", "study", "compare"])
def test_report_in_chromium_draws_every_chart_with_no_error_and_no_request(
    kind: str, runs: dict[str, Path], sweep: Path, tmp_path: Path
) -> None:
    paths = {"run": [runs["faulty"]], "study": [sweep], "compare": [runs["faulty"], runs["slow"]]}[kind]
    path = write_html(build_report(paths), tmp_path / f"{kind}.html")
    html = path.read_text()
    check = inspect(path, pdf=kind == "run")
    _check_page(check, html)
    (tmp_path / f"{kind}.png").write_bytes(check.screenshot_png)
    if kind == "run":
        assert check.pdf.startswith(b"%PDF") and check.pdf.count(b"/Type /Page") >= 2


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -n for a network namespace without interfaces")
def test_with_no_network_at_all_the_report_draws_the_same_pixels(runs: dict[str, Path], tmp_path: Path) -> None:
    path = write_html(build_report([runs["faulty"]]), tmp_path / "run.html")
    online = inspect(path)
    offline = inspect(path, offline=True)
    assert offline.console_errors == [] and offline.requests == []
    assert offline.page_size == online.page_size
    a, b = _pixels(online.screenshot_png), _pixels(offline.screenshot_png)
    assert a.shape == b.shape and int((a != b).any(axis=2).sum()) == 0
