"""calm_gc: the collector calmed for a run and put back as it was, nesting harmlessly."""

from __future__ import annotations

import gc

from loadbench.load.calm_gc import CALM_THRESHOLDS, calm_gc


def test_thresholds_and_frozen_objects_are_restored() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with calm_gc():
        assert gc.get_threshold() == CALM_THRESHOLDS
        assert gc.get_freeze_count() > frozen
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


def test_nested_use_changes_nothing_until_the_outermost_exits() -> None:
    before = gc.get_threshold()
    with calm_gc():
        frozen = gc.get_freeze_count()
        with calm_gc():
            assert gc.get_threshold() == CALM_THRESHOLDS
            assert gc.get_freeze_count() == frozen
        assert gc.get_threshold() == CALM_THRESHOLDS, "the inner exit kept the outer calm"
        assert gc.get_freeze_count() == frozen
    assert gc.get_threshold() == before


def test_a_caller_that_calmed_the_collector_itself_is_left_alone() -> None:
    before = gc.get_threshold()
    gc.set_threshold(*CALM_THRESHOLDS)
    try:
        with calm_gc():
            pass
        assert gc.get_threshold() == CALM_THRESHOLDS
    finally:
        gc.set_threshold(*before)
