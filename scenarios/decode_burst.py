"""Decode burst: short math problems with long step-by-step answers, sent in bursts.

Waves of 32 concurrent requests every 3 s against a GPU-server-class engine: each wave fills the
batch at once, so TTFT shows the prefill queue and inter-token latency the batch size. Runs on the
embedded simulator by default; `--target http://HOST:PORT` measures a real OpenAI-compatible
server (vLLM, llama.cpp, SGLang) with the same requests.
"""

from loadbench import Burst, Decode, Remote, Scenario, SimConfig, Stop, Uniform

scenario = Scenario(
    workload=Decode(input_tokens=Uniform(64, 160), output_tokens=Uniform(200, 400)),
    deployment=Remote.compatible(base_url="http://127.0.0.1:8000"),  # the server's own model
    load=Burst(size=32, every_s=3.0, waves=4),
    stop=Stop(duration_s=12.0, drain_s=30.0),
    target="sim",
    sim=SimConfig(profile="gpu-8b"),
    slo={"ttft_ms": 500, "tpot_ms": 50},
)
