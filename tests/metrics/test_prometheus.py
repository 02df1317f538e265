"""Scraping a target's Prometheus endpoint during a run."""

from __future__ import annotations

import json
from pathlib import Path

from loadbench import Decode, Experiment, Fixed, Poisson, Remote, Scenario, SimConfig, Stop
from loadbench.metrics.prometheus import metrics_url, parse_exposition

VLLM_STYLE = """\
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="meta-llama/Llama-3.2-3B"} 7.0
vllm:num_requests_waiting{model_name="meta-llama/Llama-3.2-3B"} 2.0
vllm:e2e_request_latency_seconds_bucket{le="0.5",model_name="a b"} 12.0 1700000000000
vllm:gpu_cache_usage_perc{model_name="meta-llama/Llama-3.2-3B"} NaN
garbage line without value
"""

LLAMACPP_STYLE = """\
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 4
llamacpp:tokens_predicted_total 1024
"""


def test_parse_exposition_keeps_labels_and_skips_what_is_not_a_sample() -> None:
    values = parse_exposition(VLLM_STYLE)
    assert values['vllm:num_requests_running{model_name="meta-llama/Llama-3.2-3B"}'] == 7.0
    assert values['vllm:e2e_request_latency_seconds_bucket{le="0.5",model_name="a b"}'] == 12.0
    assert not any("gpu_cache" in k for k in values)  # NaN dropped
    assert len(values) == 3
    assert parse_exposition(LLAMACPP_STYLE) == {
        "llamacpp:requests_processing": 4.0,
        "llamacpp:tokens_predicted_total": 1024.0,
    }


def test_metrics_url_uses_the_targets_origin() -> None:
    assert metrics_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/metrics"
    assert metrics_url("http://h:1/v1", "http://h:2/m") == "http://h:2/m"


def _scenario(tmp_path: Path, scrape: bool | str) -> Scenario:
    return Scenario(
        workload=Decode(input_tokens=Fixed(32), output_tokens=Fixed(48)),
        deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),
        load=Poisson(30),
        stop=Stop(duration_s=2.0),
        target="sim",
        sim=SimConfig(profile="gpu-8b"),
        energy=False,
        scrape_metrics=scrape,
        scrape_interval_s=0.25,
        out_dir=tmp_path / "run",
    )


def test_a_run_keeps_the_targets_metric_series(tmp_path: Path) -> None:
    result = Experiment(_scenario(tmp_path, True)).run()
    info = result.summary["server_metrics"]
    assert info["failed_scrapes"] == 0 and info["scrapes"] >= 5
    lines = [json.loads(x) for x in (result.path / "server_metrics.jsonl").read_text().splitlines()]
    assert len(lines) == info["scrapes"]
    assert [x["t_s"] for x in lines] == sorted(x["t_s"] for x in lines)
    running = [x["values"]["loadbench_sim:num_requests_running"] for x in lines]
    assert max(running) > 0  # load was seen while it ran
    generated = [v for x in lines for k, v in x["values"].items() if "generation_tokens" in k]
    assert generated and generated[-1] >= result.summary["tokens"]["output_total"]


def test_a_missing_metrics_endpoint_is_counted_not_fatal(tmp_path: Path) -> None:
    result = Experiment(_scenario(tmp_path, "http://127.0.0.1:9/metrics")).run()
    info = result.summary["server_metrics"]
    assert info["scrapes"] == 0 and info["failed_scrapes"] >= 2 and info["last_error"]
    assert result.summary["requests"]["completed"] > 0
