"""Results: the run directory (written as a run goes, read back), reports, and tables for notebooks.

``load_run(path)``, ``load_study(path)`` and ``load(path)`` read run and study directories into
tables and histograms (see ``loadbench.results.frames``); imported on first use, so writing a run
never pays for them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load", "load_run", "load_study"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from loadbench.results import frames

        return getattr(frames, name)
    raise AttributeError(f"module 'loadbench.results' has no attribute {name!r}")
