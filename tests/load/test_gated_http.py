"""Requests prepared ahead over real HTTP: the simulator never sees one before its intended time."""

from __future__ import annotations

import asyncio
import itertools

from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.deployments import ClientSettings, Remote
from loadbench.load.plans import Burst, Stop
from loadbench.load.scheduler import Scheduler
from loadbench.sim import SimConfig, SimProcess


def test_a_burst_prepared_ahead_reaches_the_server_at_its_time_not_before() -> None:
    records: list[RequestRecord] = []
    with SimProcess(SimConfig(profile="instant", trace=True)) as sim:

        async def main() -> None:
            deployment = Remote.compatible(base_url=sim.base_url, model="m")
            settings = ClientSettings(pool_size=0, simulated=True)
            async with deployment.open(base_url=sim.base_url, settings=settings) as sender:
                assert callable(getattr(sender, "send_gated", None))
                scheduler = Scheduler(
                    plan=Burst(16, every_s=0.2, waves=3),
                    stop=Stop(requests=48, drain_s=10),
                    sender=sender,
                    prompts=itertools.repeat(Prompt.user("hi", max_output_tokens=4)),
                    on_record=lambda r, p: records.append(r),
                    run_id="gated",
                )
                await scheduler.run()

        asyncio.run(main())
    truth = {t["id"]: t for t in sim.read_trace()}
    assert len(records) == 48 and all(r.status == "ok" for r in records)
    for r in records:
        assert r.sent_ns >= r.intended_ns
        # Not a byte of the request (headers included) reached the server before its time.
        assert truth[r.request_id]["received_ns"] >= r.intended_ns
