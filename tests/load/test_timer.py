"""The sub-millisecond timer: both mechanisms wake at (never before) their deadlines, in order."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from loadbench.load.timer import PreciseTimer

KINDS = ["thread", *(["timerfd"] if sys.platform.startswith("linux") else [])]


@pytest.mark.parametrize("kind", KINDS)
def test_callbacks_run_at_or_after_their_deadlines_in_deadline_order(kind: str) -> None:
    async def main() -> list[tuple[int, int]]:
        timer = PreciseTimer(force=kind)
        assert timer.kind == kind
        fired: list[tuple[int, int]] = []
        start = time.perf_counter_ns()
        deadlines = [start + ms * 1_000_000 for ms in (9, 2, 5, 5, 1)]
        for d in deadlines:
            timer.call_at(d, lambda d=d: fired.append((d, time.perf_counter_ns())))
        cancelled = timer.call_at(start + 3_000_000, lambda: fired.append((0, 0)))
        cancelled.cancel()
        await asyncio.sleep(0.05)
        timer.close()
        return fired

    fired = asyncio.run(main())
    assert [d for d, _ in fired] == sorted(d for d, _ in fired)
    assert len(fired) == 5
    assert all(at >= d for d, at in fired), "a callback ran before its deadline"


@pytest.mark.parametrize("kind", KINDS)
def test_sleep_until_and_wake_all(kind: str) -> None:
    async def main() -> tuple[int, int, float]:
        timer = PreciseTimer(force=kind)
        deadline = time.perf_counter_ns() + 3_000_000
        await timer.sleep_until(deadline)
        woke = time.perf_counter_ns()
        far = asyncio.ensure_future(timer.sleep_until(time.perf_counter_ns() + 60 * 1_000_000_000))
        await asyncio.sleep(0.01)
        t0 = time.monotonic()
        timer.wake_all()
        await asyncio.wait_for(far, 1.0)
        timer.close()
        return deadline, woke, time.monotonic() - t0

    deadline, woke, wake_all_s = asyncio.run(main())
    assert woke >= deadline
    assert wake_all_s < 1.0


def test_the_loop_sleeps_between_deadlines() -> None:
    """Waiting 200 ms for a deadline costs next to no CPU (no spinning)."""

    async def main() -> float:
        timer = PreciseTimer()
        cpu0 = time.process_time()
        for _ in range(20):
            await timer.sleep_until(time.perf_counter_ns() + 10_000_000)
        timer.close()
        return time.process_time() - cpu0

    assert asyncio.run(main()) < 0.1
