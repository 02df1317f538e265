"""Closed loop: eight users reading long financial filings on a laptop-class local model.

The seed's Prefill workload (1,000-1,500-token documents, short answers) on Local("llama3.2") with
the Q3B preset, spoken in Ollama's native dialect. Each user sends its next question as soon as the
previous answer ends, so the offered load adapts to the server: the figure to read is throughput
at eight concurrent users. `--target http://127.0.0.1:11434` measures a real Ollama.
"""

from loadbench import Q3B, Concurrency, Local, Prefill, Scenario, SimConfig, Stop

scenario = Scenario(
    workload=Prefill(),
    deployment=Local("llama3.2"),
    quant=Q3B(),
    load=Concurrency(8),
    stop=Stop(duration_s=15.0, warmup_requests=4),
    target="sim",
    sim=SimConfig(profile="laptop-3b", models=("llama3.2:3b-instruct-q4_K_M",)),
)
