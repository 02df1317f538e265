"""run.json says where the client stamped arrivals (``client.stamping``)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from loadbench import Decode, Experiment, Fixed, Remote, SimConfig, Stop


@pytest.mark.parametrize(("client", "stamping"), [("http", "kernel"), ("sdk", "reader")])
def test_run_json_records_the_stamping_path(tmp_path: Path, client: str, stamping: str) -> None:
    if client == "sdk":
        pytest.importorskip("openai")
    result = Experiment(
        workload=Decode(input_tokens=Fixed(16), output_tokens=Fixed(4)),
        deployment=Remote.compatible("http://127.0.0.1:1", "sim-model", client=client),
        target="sim",
        sim=SimConfig(profile="instant"),
        stop=Stop(requests=3),
        out_dir=tmp_path / client,
        energy=False,
    ).run()
    assert result.summary["requests"]["completed"] == 3
    assert result.run["client"] == {"stamping": stamping}
    assert orjson.loads((result.path / "run.json").read_bytes())["client"] == {"stamping": stamping}
