"""The scheduler against a small in-test sender that sleeps and stamps tokens.

Timing assertions compare orders and relations (intended <= sent, next intended >= previous end),
never absolute latencies, except for generous upper bounds on how long a run may take.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from itertools import islice

import numpy as np
import pytest

from loadbench.contract.errors import ErrorCategory, RequestFailed
from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.load.plans import NS_PER_S, Burst, Concurrency, Constant, Poisson, Stop
from loadbench.load.scheduler import RunTiming, Scheduler


class SleepySender:
    """Waits ``delay_s(record)`` seconds, stamps ``tokens`` chunks, ends; tracks requests in flight."""

    def __init__(
        self,
        delay_s: float | Callable[[RequestRecord], float] = 0.01,
        tokens: int = 3,
        fail: Callable[[RequestRecord], BaseException | None] | None = None,
    ) -> None:
        self._delay = delay_s if callable(delay_s) else (lambda _r: delay_s)
        self._tokens = tokens
        self._fail = fail
        self.active = 0
        self.max_active = 0
        self.calls = 0

    async def send(self, prompt: Prompt, record: RequestRecord) -> None:
        assert record.sent_ns, "the scheduler stamps sent_ns before calling send"
        self.calls += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self._delay(record))
            if self._fail is not None and (exc := self._fail(record)) is not None:
                raise exc
            for _ in range(self._tokens):
                record.token(time.perf_counter_ns())
            record.output_tokens = self._tokens
            record.end_ns = time.perf_counter_ns()
        finally:
            self.active -= 1


def prompts():
    return itertools.repeat(Prompt.user("hello", target_output_tokens=3))


class Run:
    """One scheduler run: the records in arrival order, the timing, and the scheduler."""

    def __init__(self, plan, stop: Stop, sender: SleepySender, *, seed: int = 0,
                 during: Callable[[Scheduler], object] | None = None) -> None:
        self.records: list[RequestRecord] = []
        self.seen_ids: list[str] = []

        def on_record(record: RequestRecord, prompt: Prompt) -> None:
            assert record.status != "pending"
            self.records.append(record)
            self.seen_ids.append(record.request_id)

        self.scheduler = Scheduler(
            plan=plan, stop=stop, sender=sender, prompts=prompts(), on_record=on_record, run_id="t", seed=seed
        )

        async def main() -> RunTiming:
            side = None
            if during is not None:
                side = asyncio.ensure_future(during(self.scheduler))  # type: ignore[arg-type]
            timing = await self.scheduler.run()
            if side is not None:
                await side
            return timing

        t0 = time.monotonic()
        self.timing = asyncio.run(main())
        self.wall_s = time.monotonic() - t0

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r.status == status)

    def by_index(self) -> list[RequestRecord]:
        return sorted(self.records, key=lambda r: r.index)


def check_accounting(run: Run) -> None:
    """scheduled = ok + failed + cancelled, and every record reached on_record exactly once."""
    s = run.scheduler
    assert s.scheduled == run.count("ok") + run.count("failed") + run.count("cancelled")
    assert len(run.records) == s.scheduled
    assert len(set(run.seen_ids)) == len(run.seen_ids)
    assert sorted(r.index for r in run.records) == list(range(s.scheduled))
    assert s.in_flight == 0
    t = run.timing
    assert t.start_ns <= t.scheduling_stopped_ns <= t.end_ns
    for r in run.records:
        assert r.end_ns, r
        if r.sent_ns:
            assert r.sent_ns >= r.intended_ns, "never sent before its intended time"


def expected_offsets(plan, n: int, seed: int = 0) -> list[int]:
    return list(islice(plan.offsets_ns(np.random.default_rng(seed)), n))


# -- open loop ----------------------------------------------------------------------------------


def test_open_loop_stops_after_the_requests_and_intends_exactly_the_plan_offsets() -> None:
    plan = Constant(rate_per_s=200.0)
    run = Run(plan, Stop(requests=25), SleepySender(0.005))
    check_accounting(run)
    assert run.scheduler.scheduled == 25 and run.count("ok") == 25
    assert run.timing.stopped_by == "requests"
    start = run.timing.start_ns
    assert [r.intended_ns - start for r in run.by_index()] == expected_offsets(plan, 25)


def test_open_loop_poisson_intended_times_are_the_seeded_plan_offsets() -> None:
    plan = Poisson(rate_per_s=300.0)
    run = Run(plan, Stop(requests=40), SleepySender(0.002), seed=7)
    check_accounting(run)
    start = run.timing.start_ns
    assert [r.intended_ns - start for r in run.by_index()] == expected_offsets(plan, 40, seed=7)
    assert [r.intended_ns - start for r in run.by_index()] != expected_offsets(plan, 40, seed=8)


def test_open_loop_stops_at_the_duration() -> None:
    run = Run(Constant(rate_per_s=100.0), Stop(duration_s=0.3), SleepySender(0.005))
    check_accounting(run)
    # Offsets 0, 10 ms, ..., 290 ms fall inside 0.3 s; 300 ms does not.
    assert run.scheduler.scheduled == 30
    assert run.timing.stopped_by == "duration"
    start = run.timing.start_ns
    assert all(r.intended_ns - start < 0.3 * NS_PER_S for r in run.records)


def test_open_loop_waits_out_the_duration_when_the_next_request_falls_after_it() -> None:
    run = Run(Constant(rate_per_s=2.0), Stop(duration_s=0.3), SleepySender(0.001))
    check_accounting(run)
    assert run.scheduler.scheduled == 1
    assert run.timing.scheduling_stopped_ns - run.timing.start_ns >= 0.3 * NS_PER_S
    assert run.timing.stopped_by == "duration"


def test_finite_plan_ends_the_run_without_waiting_for_the_duration() -> None:
    run = Run(Burst(size=4, every_s=0.05, waves=3), Stop(duration_s=20), SleepySender(0.01))
    check_accounting(run)
    assert run.scheduler.scheduled == 12
    assert run.timing.stopped_by == "plan"
    assert run.wall_s < 5
    start = run.timing.start_ns
    assert [r.intended_ns - start for r in run.by_index()] == [w * 50_000_000 for w in range(3) for _ in range(4)]


def test_phases_are_stamped_from_the_stop_rule() -> None:
    run = Run(Constant(rate_per_s=500.0), Stop(requests=10, warmup_requests=3), SleepySender(0.001))
    check_accounting(run)
    assert [r.phase for r in run.by_index()] == ["warmup"] * 3 + ["measured"] * 7


def test_max_concurrency_caps_in_flight_and_the_wait_shows_as_dispatch_lag() -> None:
    plan = Constant(rate_per_s=1000.0, max_concurrency=2)
    sender = SleepySender(0.02)
    run = Run(plan, Stop(requests=20), sender)
    check_accounting(run)
    assert run.count("ok") == 20
    assert sender.max_active == 2  # reached, never exceeded
    records = run.by_index()
    # Intended times keep to the plan; the wait for a slot is not hidden by moving them.
    start = run.timing.start_ns
    assert [r.intended_ns - start for r in records] == expected_offsets(plan, 20)
    lags_s = [(r.sent_ns - r.intended_ns) / NS_PER_S for r in records]
    # 2 slots, 20 ms each, a request every 1 ms: request i waits about (i // 2) * 20 ms - i ms.
    assert sum(lags_s[-5:]) / 5 > sum(lags_s[:5]) / 5 + 0.05
    assert max(lags_s) > 0.1


def test_uncapped_open_loop_does_not_wait_for_answers() -> None:
    sender = SleepySender(0.5)
    run = Run(Constant(rate_per_s=200.0), Stop(requests=20), sender)
    check_accounting(run)
    # 20 requests arrive over 95 ms while each takes 500 ms: all are in flight together.
    assert sender.max_active == 20


# -- closed loop --------------------------------------------------------------------------------


def test_closed_loop_never_exceeds_users_and_each_user_waits_for_its_answer() -> None:
    sender = SleepySender(0.01)
    run = Run(Concurrency(3), Stop(requests=30), sender)
    check_accounting(run)
    assert run.scheduler.scheduled == 30 and run.count("ok") == 30
    assert run.timing.stopped_by == "requests"
    assert sender.max_active == 3
    assert {r.user for r in run.records} == {0, 1, 2}
    for user in range(3):
        mine = sorted((r for r in run.records if r.user == user), key=lambda r: r.intended_ns)
        assert len(mine) >= 2
        for prev, nxt in itertools.pairwise(mine):
            assert nxt.intended_ns >= prev.end_ns


def test_closed_loop_think_time_separates_answer_and_next_request() -> None:
    run = Run(Concurrency(2, think_s=0.03), Stop(requests=8), SleepySender(0.005))
    check_accounting(run)
    for user in range(2):
        mine = sorted((r for r in run.records if r.user == user), key=lambda r: r.intended_ns)
        for prev, nxt in itertools.pairwise(mine):
            assert nxt.intended_ns - prev.end_ns >= 0.03 * NS_PER_S
            assert nxt.sent_ns >= nxt.intended_ns


def test_closed_loop_stops_at_the_duration() -> None:
    sender = SleepySender(0.02)
    run = Run(Concurrency(2), Stop(duration_s=0.25), sender)
    check_accounting(run)
    assert run.timing.stopped_by == "duration"
    assert run.count("ok") == run.scheduler.scheduled >= 4
    assert sender.max_active == 2
    start = run.timing.start_ns
    assert all(r.intended_ns - start < 0.25 * NS_PER_S for r in run.records)


# -- failures -----------------------------------------------------------------------------------


def test_request_failed_is_counted_with_its_category_and_the_run_goes_on() -> None:
    def fail(r: RequestRecord) -> BaseException | None:
        if r.index % 3 == 0:
            return RequestFailed(ErrorCategory.RATE_LIMITED, "slow down", http_status=429)
        return None

    run = Run(Constant(rate_per_s=500.0), Stop(requests=12), SleepySender(0.002, fail=fail))
    check_accounting(run)
    failed = [r for r in run.records if r.status == "failed"]
    assert sorted(r.index for r in failed) == [0, 3, 6, 9]
    for r in failed:
        assert (r.error, r.error_detail, r.http_status) == ("rate_limited", "slow down", 429)
    assert run.count("ok") == 8
    assert all(r.error is None for r in run.records if r.status == "ok")


def test_an_unexpected_exception_counts_as_a_client_failure_and_does_not_crash() -> None:
    def fail(r: RequestRecord) -> BaseException | None:
        return ValueError("boom") if r.index in (1, 4) else None

    for plan in (Constant(rate_per_s=500.0), Concurrency(2)):
        run = Run(plan, Stop(requests=8), SleepySender(0.002, fail=fail))
        check_accounting(run)
        failed = sorted((r for r in run.records if r.status == "failed"), key=lambda r: r.index)
        assert [r.index for r in failed] == [1, 4]
        assert all(r.error == "client" for r in failed)
        assert all("ValueError" in r.error_detail and "boom" in r.error_detail for r in failed)
        assert run.count("ok") == 6


# -- stopping -----------------------------------------------------------------------------------


def stop_after(delay_s: float, times: int = 1, between_s: float = 0.05):
    async def during(scheduler: Scheduler) -> None:
        await asyncio.sleep(delay_s)
        for i in range(times):
            if i:
                await asyncio.sleep(between_s)
            scheduler.request_stop()

    return during


def test_stop_lets_in_flight_requests_finish_within_the_drain() -> None:
    run = Run(Constant(rate_per_s=100.0), Stop(duration_s=30, drain_s=10), SleepySender(0.15),
              during=stop_after(0.2))
    check_accounting(run)
    assert run.timing.stopped_by == "signal"
    assert run.scheduler.scheduled >= 5
    assert run.count("ok") == run.scheduler.scheduled  # all drained, none cancelled
    assert run.wall_s < 5


def test_stop_cancels_what_outlives_a_short_drain_and_counts_it() -> None:
    # Even requests are quick, odd ones would take 30 s; the drain is 0.3 s.
    sender = SleepySender(lambda r: 0.005 if r.index % 2 == 0 else 30.0)
    run = Run(Constant(rate_per_s=100.0), Stop(duration_s=60, drain_s=0.3), sender, during=stop_after(0.2))
    check_accounting(run)
    assert run.timing.stopped_by == "signal"
    assert run.wall_s < 5
    cancelled = [r for r in run.records if r.status == "cancelled"]
    assert cancelled and run.count("ok") > 0
    assert all(r.index % 2 == 1 for r in cancelled)
    assert run.count("cancelled") + run.count("ok") == run.scheduler.scheduled


def test_capped_requests_waiting_for_a_slot_are_cancelled_too() -> None:
    plan = Constant(rate_per_s=200.0, max_concurrency=1)
    run = Run(plan, Stop(duration_s=60, drain_s=0.05), SleepySender(30.0), during=stop_after(0.1))
    check_accounting(run)
    assert run.scheduler.scheduled >= 5
    assert run.count("cancelled") == run.scheduler.scheduled
    waiting = [r for r in run.records if not r.sent_ns]
    assert len(waiting) == run.scheduler.scheduled - 1  # only one got a slot


def test_second_stop_cancels_at_once() -> None:
    run = Run(Constant(rate_per_s=100.0), Stop(duration_s=60, drain_s=30), SleepySender(30.0),
              during=stop_after(0.15, times=2))
    check_accounting(run)
    assert run.wall_s < 5  # neither the 30 s drain nor the 30 s requests were waited for
    assert run.scheduler.scheduled >= 3
    assert run.count("cancelled") == run.scheduler.scheduled


@pytest.mark.parametrize("times", [1, 2])
def test_closed_loop_stop_cancels_users_in_flight(times: int) -> None:
    drain_s = 0.05 if times == 1 else 30.0
    run = Run(Concurrency(4), Stop(duration_s=60, drain_s=drain_s), SleepySender(30.0),
              during=stop_after(0.1, times=times))
    check_accounting(run)
    assert run.timing.stopped_by == "signal"
    assert run.wall_s < 5
    assert run.scheduler.scheduled == 4
    assert run.count("cancelled") == 4


def test_stop_during_a_long_gap_is_not_delayed_until_the_next_request() -> None:
    # One request, then the next is 20 s away: the stop must not wait for it.
    run = Run(Constant(rate_per_s=0.05), Stop(duration_s=60), SleepySender(0.001), during=stop_after(0.1))
    check_accounting(run)
    assert run.scheduler.scheduled == 1
    assert run.timing.stopped_by == "signal"
    assert run.wall_s < 5


class CountingSender(SleepySender):
    """Notes how many tasks the loop held when the first request was sent."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.tasks_at_first_send: int | None = None

    async def send(self, prompt: Prompt, record: RequestRecord) -> None:
        if self.tasks_at_first_send is None:
            self.tasks_at_first_send = len(asyncio.all_tasks())
        await super().send(prompt, record)


def test_many_closed_loop_users_start_sending_before_all_are_made() -> None:
    """Concurrency(100000): the first request goes while most users are still to be created,
    and users past the request limit are never made."""
    sender = CountingSender(delay_s=0.001)
    run = Run(Concurrency(100_000), Stop(requests=20), sender)
    check_accounting(run)
    assert run.count("ok") == 20
    assert sender.tasks_at_first_send is not None and sender.tasks_at_first_send < 1_000
    assert run.timing.stopped_by == "requests"


def test_many_users_each_send_once_and_every_one_is_counted() -> None:
    sender = SleepySender(delay_s=2.0)  # longer than making the users takes, so none comes back early
    run = Run(Concurrency(5_000), Stop(requests=5_000, drain_s=30), sender)
    check_accounting(run)
    assert run.count("ok") == 5_000
    assert sorted({r.user for r in run.records}) == list(range(5_000))
    # Users made late keep the run's start as their intended time: the wait is dispatch lag.
    assert all(r.intended_ns == run.timing.start_ns for r in run.records)


class PhasedSender:
    """Writes the request, gets headers, then streams; hangs at the step ``hang_at`` names."""

    def __init__(self, hang_at: str) -> None:
        self.hang_at = hang_at

    async def send(self, prompt: Prompt, record: RequestRecord) -> None:
        if self.hang_at == "connecting":
            await asyncio.sleep(3600)
        record.sent_ns = record.written_ns = time.perf_counter_ns()
        if self.hang_at == "headers":
            await asyncio.sleep(3600)
        record.headers_ns = time.perf_counter_ns()
        if self.hang_at == "first_token":
            await asyncio.sleep(3600)
        record.token(time.perf_counter_ns())
        await asyncio.sleep(3600)


@pytest.mark.parametrize(
    ("hang_at", "phase"),
    [
        ("connecting", "connecting"),
        ("headers", "waiting_first_token"),
        ("first_token", "waiting_first_token"),
        ("stream", "streaming"),
    ],
)
def test_a_cancelled_request_says_what_it_was_waiting_for(hang_at: str, phase: str) -> None:
    run = Run(Concurrency(2), Stop(requests=2, drain_s=0.05), PhasedSender(hang_at))  # type: ignore[arg-type]
    check_accounting(run)
    assert [r.status for r in run.records] == ["cancelled", "cancelled"]
    assert {r.cancelled_in for r in run.records} == {phase}
    assert all(r.error_detail and r.error_detail.startswith("cancelled while") for r in run.records)


def test_requests_waiting_for_a_concurrency_slot_are_cancelled_as_queued() -> None:
    run = Run(Burst(4, max_concurrency=1), Stop(requests=4, drain_s=0.05), PhasedSender("stream"))  # type: ignore[arg-type]
    check_accounting(run)
    assert sorted(r.cancelled_in for r in run.records) == ["queued", "queued", "queued", "streaming"]
# -- requests prepared ahead of their time (GatedSender) ---------------------------------------


class GatedSleepySender(SleepySender):
    """A SleepySender that prepares early: it records when it was called and when its gate opened."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.called_ns: dict[int, int] = {}

    async def send_gated(self, prompt: Prompt, record: RequestRecord, gate) -> None:
        self.called_ns[record.index] = time.perf_counter_ns()
        await gate
        record.sent_ns = time.perf_counter_ns()
        await self.send(prompt, record)


def test_a_gated_sender_gets_requests_ahead_and_sends_none_before_its_time() -> None:
    sender = GatedSleepySender(delay_s=0.001)
    run = Run(Burst(16, every_s=0.1, waves=3), Stop(requests=48), sender)
    check_accounting(run)
    assert run.count("ok") == 48
    early = [r.intended_ns - sender.called_ns[r.index] for r in run.records]
    assert max(early) > 1_000_000, "requests were handed over ahead of their intended time"
    assert all(r.sent_ns >= r.intended_ns for r in run.records)


def test_a_stop_withdraws_prepared_requests_not_yet_due() -> None:
    """Prepared ahead but not due when the stop came: never sent, and not counted as scheduled
    (a run without preparation would never have made them)."""
    sender = GatedSleepySender(delay_s=0.001)

    async def stop_before_the_second_wave(s: Scheduler) -> None:
        # Waves at 0 and 0.1 s: the second is handed over ~25 ms early; stop ~10 ms before it.
        while s.start_ns == 0 or time.perf_counter_ns() < s.start_ns + 90_000_000:
            await asyncio.sleep(0.001)
        s.request_stop()

    run = Run(Burst(8, every_s=0.1, waves=2), Stop(duration_s=5), sender, during=stop_before_the_second_wave)
    check_accounting(run)
    assert run.count("ok") == 8
    assert len(sender.called_ns) > 8, "the second wave was prepared before the stop"
    assert [r.index for r in run.records if r.index >= 8] == []
    assert run.scheduler.scheduled == 8
    assert sender.calls == 8, "a withdrawn prepared request reached the wire"


def test_a_capped_plan_is_not_prepared_ahead() -> None:
    sender = GatedSleepySender(delay_s=0.001)
    run = Run(Burst(4, every_s=0.05, waves=2, max_concurrency=2), Stop(requests=8), sender)
    check_accounting(run)
    assert not sender.called_ns


def test_the_first_wave_gets_a_longer_lead_than_the_rest() -> None:
    """Due at offset 0, a wave is handed over at once, well before the start (it also opens the
    connections); later waves get the ordinary lead."""
    from loadbench.load.scheduler import _LEAD_NS, _START_LEAD_NS

    sender = GatedSleepySender(delay_s=0.001)
    run = Run(Burst(8, every_s=0.2, waves=2), Stop(requests=16), sender)
    check_accounting(run)
    early = {r.index: r.intended_ns - sender.called_ns[r.index] for r in run.records}
    assert max(early[i] for i in range(8)) > (_LEAD_NS + _START_LEAD_NS) // 2
    assert max(early[i] for i in range(8, 16)) <= _LEAD_NS
    assert all(r.sent_ns >= r.intended_ns for r in run.records)


def test_a_run_holds_the_collector_calm_and_restores_it() -> None:
    import gc

    from loadbench.load.calm_gc import CALM_THRESHOLDS

    seen: list[tuple[int, ...]] = []

    class Watching(SleepySender):
        async def send(self, prompt: Prompt, record: RequestRecord) -> None:
            seen.append(gc.get_threshold())
            await super().send(prompt, record)

    before = gc.get_threshold()
    run = Run(Constant(200), Stop(requests=5), Watching(delay_s=0.001))
    check_accounting(run)
    assert seen and all(t == CALM_THRESHOLDS for t in seen)
    assert gc.get_threshold() == before


@pytest.mark.parametrize("gated", [False, True])
def test_requests_cancelled_before_their_task_ever_ran_are_still_accounted(gated: bool) -> None:
    """A burst is spawned in one stretch without yielding, so a stop that comes while it is being
    spawned cancels tasks the loop has not yet run: no line of their coroutine runs. Each must
    still be counted once (cancelled unsent, or withdrawn if it was prepared ahead and not due)."""
    records: list[RequestRecord] = []
    sender = GatedSleepySender(delay_s=0.001) if gated else SleepySender(0.001)
    scheduler: Scheduler

    def on_scheduled(record: RequestRecord) -> None:
        if record.index == 5:  # tasks 0-4 exist but have not run; a second stop cancels them
            scheduler.request_stop()
            scheduler.request_stop()

    scheduler = Scheduler(
        plan=Burst(16, every_s=1.0, waves=1), stop=Stop(duration_s=5), sender=sender, prompts=prompts(),
        on_record=lambda record, prompt: records.append(record), run_id="t", on_scheduled=on_scheduled,
    )
    asyncio.run(scheduler.run())
    assert sender.calls == 0, "no cancelled request reached the sender"
    assert scheduler.in_flight == 0
    assert len(records) == scheduler.scheduled, "every scheduled record reached on_record"
    assert all(r.status == "cancelled" and r.sent_ns == 0 and r.end_ns for r in records)
    # The sixth request was being made as the stops came; the drain cancels it before it runs.
    if gated:  # the five prepared before the stop were not due: withdrawn, as if never scheduled
        assert scheduler.scheduled == 1
    else:
        assert scheduler.scheduled == 6 and {r.cancelled_in for r in records} == {"queued"}
