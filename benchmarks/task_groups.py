"""What would anyio's task groups and cancel scopes cost the scheduler? (the evidence for not using it)

The scheduler holds one task per closed-loop user and one per in-flight request, and cancels them
all at a second Ctrl-C or when the drain's deadline passes. This measures those two moves for
``--tasks`` tasks (100,000 by default: a large closed-loop run), each on a fresh uvloop loop, in
three shapes:

* ``callbacks``: what the scheduler does: ``create_task`` plus a done callback that counts the
  task out, then ``task.cancel()`` on each one still running;
* ``asyncio.TaskGroup``: the standard library's task group (Python 3.11), tasks cancelled one by one;
* ``anyio``: ``create_task_group().start_soon`` on the asyncio backend, all cancelled by
  ``cancel_scope.cancel()``.

"spawn" is from the first task made until every task has run one step and ended; "cancel" is from
the cancel until the group has exited, with every task parked on an event (at several sizes, to
show how each grows). It prints the median and the spread (min-max) over ``--repeat`` runs, and
each shape's time against the first. It needs ``anyio`` (not a loadbench dependency; the
``sdk`` extra's clients install it, or ``pip install anyio``) and ``uvloop``.

    python benchmarks/task_groups.py [--tasks 100000] [--cancel-tasks 1000,4000,16000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

try:
    from importlib.metadata import version

    import anyio
    import uvloop

    anyio_version = version("anyio")
except ImportError as exc:  # pragma: no cover - a benchmark's own requirement
    sys.exit(f"task_groups.py needs anyio and uvloop: {exc}")


async def _step() -> None:
    await asyncio.sleep(0)


async def _park(event: asyncio.Event) -> None:
    await event.wait()


# -- spawn: n tasks, each one step ---------------------------------------------------------------


async def spawn_callbacks(n: int) -> float:
    done = asyncio.Event()
    live = n

    def finished(_: asyncio.Task[None]) -> None:
        nonlocal live
        live -= 1
        if live == 0:
            done.set()

    start = time.perf_counter()
    tasks = set()
    for _ in range(n):
        task = asyncio.create_task(_step())
        tasks.add(task)
        task.add_done_callback(finished)
    await done.wait()
    return time.perf_counter() - start


async def spawn_taskgroup(n: int) -> float:
    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(n):
            tg.create_task(_step())
    return time.perf_counter() - start


async def spawn_anyio(n: int) -> float:
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(_step)
    return time.perf_counter() - start


# -- cancel: n parked tasks, all cancelled ---------------------------------------------------------


async def _all_parked() -> None:
    # a few loop turns: every task made before has reached its wait
    for _ in range(3):
        await asyncio.sleep(0)


async def cancel_callbacks(n: int) -> float:
    event = asyncio.Event()
    tasks = [asyncio.create_task(_park(event)) for _ in range(n)]
    await _all_parked()
    start = time.perf_counter()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return time.perf_counter() - start


async def cancel_taskgroup(n: int) -> float:
    event = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(_park(event)) for _ in range(n)]
        await _all_parked()
        start = time.perf_counter()
        for task in tasks:
            task.cancel()
    return time.perf_counter() - start


async def cancel_anyio(n: int) -> float:
    event = asyncio.Event()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(_park, event)
        await _all_parked()
        start = time.perf_counter()
        tg.cancel_scope.cancel()
    return time.perf_counter() - start


CASES: dict[str, dict[str, Callable[[int], Coroutine[Any, Any, float]]]] = {
    "spawn": {"callbacks": spawn_callbacks, "asyncio.TaskGroup": spawn_taskgroup, "anyio": spawn_anyio},
    "cancel": {"callbacks": cancel_callbacks, "asyncio.TaskGroup": cancel_taskgroup, "anyio": cancel_anyio},
}


def measure(case: Callable[[int], Coroutine[Any, Any, float]], n: int) -> float:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(case(n))


def _report(move: str, shape: str, n: int, runs: list[float], baseline_ms: float | None) -> float:
    median_ms = statistics.median(runs) * 1e3
    versus = f"x{median_ms / baseline_ms:.2f}" if baseline_ms else "x1.00"
    print(
        f"  {move:6} {n:>7,} {shape:18} median {median_ms:9.1f} ms  (min {min(runs) * 1e3:8.1f}, "
        f"max {max(runs) * 1e3:8.1f})  {versus:>6}  {median_ms * 1e3 / n:6.2f} µs/task"
    )
    return median_ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=100_000, help="tasks spawned (default 100,000)")
    p.add_argument(
        "--cancel-tasks", default="1000,4000,16000",
        help="parked tasks cancelled, one size after another (anyio's cancel grows faster than linearly: "
        "100,000 takes minutes)",
    )
    p.add_argument("--repeat", type=int, default=5)
    ns = p.parse_args()
    print(f"{ns.repeat} runs each, uvloop {uvloop.__version__}, anyio {anyio_version}, Python {sys.version.split()[0]}")
    sizes = {"spawn": [ns.tasks], "cancel": [int(n) for n in ns.cancel_tasks.split(",")]}
    for move, shapes in CASES.items():
        for n in sizes[move]:
            baseline_ms = None
            for shape, case in shapes.items():
                median_ms = _report(move, shape, n, [measure(case, n) for _ in range(ns.repeat)], baseline_ms)
                baseline_ms = baseline_ms or median_ms


if __name__ == "__main__":
    main()
