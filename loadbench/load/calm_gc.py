"""Keep the cyclic garbage collector from pausing the event loop while a load runs.

A full collection walks every tracked object the process holds; with a client library, numpy and
a workload's prompts loaded that is tens of thousands of objects and 10-50 ms during which no
request is written and no arrival is stamped. With the interpreter's default thresholds the first
full collection comes about a second into a run (measured: a burst of 32 due at 1.25 s was written
45 ms late, every request of it). ``calm_gc()`` collects once, before the load starts, then freezes
every object alive at that point out of collection and raises the thresholds: cycles made during
the run are still collected, in fewer passes over the young objects only.

Guarantees: the collector's thresholds and frozen set are as they were once the outermost
``calm_gc()`` exits; nested or repeated uses (a scheduler inside an experiment that calmed the
collector already) change nothing and cost nothing. Process-wide by nature: use it around the
load, never deep inside a request.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# Young generation collected after 50,000 net allocations, the middle one after 50 of those, a full
# collection practically never within a run (the frozen objects are out of it anyway).
CALM_THRESHOLDS = (50_000, 50, 1000)

_depth = 0


@contextlib.contextmanager
def calm_gc() -> Iterator[None]:
    """Collect now, then run the body with the start-up objects frozen and raised thresholds."""
    global _depth
    if _depth or gc.get_threshold() == CALM_THRESHOLDS:  # already calm (here or by a caller)
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*CALM_THRESHOLDS)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        gc.set_threshold(*thresholds)
        gc.unfreeze()
