"""A standard HdrHistogram interval log (format 1.3, tagged), readable by hdrh's HistogramLogReader
and by the Java/C HdrHistogram log tools.

Each line is ``Tag=<tag>,<start_s>,<length_s>,<max>,<base64 compressed histogram>`` with start
times relative to the ``#[StartTime: ...]`` header (seconds since the epoch).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TextIO

from hdrh.histogram import HdrHistogram

from loadbench.metrics.hdr import encode


class HlogWriter:
    """Writes interval histograms to an open text file; the caller owns the file."""

    def __init__(self, file: TextIO, *, start_epoch_s: float, comment: str = "") -> None:
        self._file = file
        stamp = datetime.fromtimestamp(start_epoch_s, UTC).isoformat()
        file.write("#[Histogram log format version 1.3]\n")
        if comment:
            file.write(f"#[{comment}]\n")
        file.write(f"#[StartTime: {start_epoch_s:.3f} (seconds since epoch), {stamp}]\n")
        file.write(f"#[BaseTime: {start_epoch_s:.3f} (seconds since epoch)]\n")
        file.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')

    def write_interval(
        self, tag: str, hist: HdrHistogram, *, start_s: float, end_s: float, max_scale: float = 1.0
    ) -> None:
        """One tagged interval; ``start_s``/``end_s`` are seconds since the log's start time.

        Empty histograms are written too, so each tag has a line per interval and gaps in the load
        are visible.
        """
        payload = encode(hist).decode("ascii")
        self._file.write(
            f"Tag={tag},{start_s:.3f},{end_s - start_s:.3f},{hist.get_max_value() / max_scale:.3f},{payload}\n"
        )
