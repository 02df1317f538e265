"""Studies: many runs measured the same way, and one answer from them.

* ``Study``: the cross product of varied scenario fields (or explicit cells), each cell a full
  run directory under one study directory, with study.json, cells.csv and resume.
* Sweeps (``sweep``, ``rates``, ``concurrencies``): a study over the load plan, with the knee of
  its latency curve.
* ``CapacitySearch``: the highest load meeting every SLO, bracketed and bisected, each probe
  judged by SLO attainment with a Wilson interval; capacity.json holds the answer and every probe.
"""

from loadbench.studies.capacity import CapacitySearch, SearchResult
from loadbench.studies.knee import knee
from loadbench.studies.study import Overrides, Study, StudyResult
from loadbench.studies.sweep import concurrencies, geometric, linear, rates, sweep
from loadbench.studies.values import Fields

__all__ = [
    "CapacitySearch",
    "Fields",
    "Overrides",
    "SearchResult",
    "Study",
    "StudyResult",
    "concurrencies",
    "geometric",
    "knee",
    "linear",
    "rates",
    "sweep",
]
