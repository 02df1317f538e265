"""The simulator's aiohttp app: every dialect's endpoints plus the simulator's own (health,
metrics, tokenizer, trace, config)."""

from __future__ import annotations

from aiohttp import web

from loadbench.sim.anthropic import AnthropicDialect
from loadbench.sim.ollama import OllamaDialect
from loadbench.sim.openai import OpenAIDialect
from loadbench.sim.serving import Simulator
from loadbench.sim.text import message_text, token_ids
from loadbench.sim.toolkit import json_response

__all__ = ["build_app", "render_metrics"]


def build_app(sim: Simulator) -> web.Application:
    """The app serving ``sim``: each dialect's routes, then the simulator's own."""
    app = web.Application(client_max_size=256 * 1024 * 1024)
    for dialect in (OpenAIDialect(sim), AnthropicDialect(sim), OllamaDialect(sim)):
        dialect.install(app)
    OwnRoutes(sim).install(app)
    return app


class OwnRoutes:
    """The simulator's own endpoints: not any dialect's, so their errors are plain ``{"error": ...}``."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def install(self, app: web.Application) -> None:
        app.router.add_get("/health", self.health)
        if self.sim.config.tokenize:
            app.router.add_post("/tokenize", self.tokenize)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/sim/trace", self.trace)
        app.router.add_get("/sim/config", self.config)

    async def health(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def tokenize(self, request: web.Request) -> web.Response:
        """llama.cpp's ``/tokenize`` (``content``; ``with_pieces``), or vLLM's chat form
        (``messages``: the whole request as the chat endpoint counts it, template included)."""
        try:
            body = await request.json()
        except ValueError:
            return json_response({"error": "request body is not valid JSON"}, 400)
        if not isinstance(body, dict):
            return json_response({"error": "the body must be a JSON object"}, 400)
        messages = body.get("messages")
        if messages is not None:
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                return json_response({"error": "messages must be a list of objects"}, 400)
            texts = [message_text(m.get("content")) for m in messages]
            return json_response({"count": self.sim.chat_tokens(texts)})
        content = body.get("content", body.get("prompt"))
        if not isinstance(content, str):
            return json_response({"error": "content must be a string"}, 400)
        pieces = self.sim.tokenizer.tokenize(content)
        ids = token_ids(pieces)
        if body.get("with_pieces"):
            return json_response({"tokens": [{"id": i, "piece": p} for i, p in zip(ids, pieces, strict=True)]})
        return json_response({"tokens": ids})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=render_metrics(self.sim), content_type="text/plain", charset="utf-8")

    async def trace(self, request: web.Request) -> web.Response:
        if self.sim.trace is None:
            return json_response({"error": "the trace is off (SimConfig.trace=False)"}, 404)
        return web.Response(body=self.sim.trace.contents(), content_type="application/x-ndjson")

    async def config(self, request: web.Request) -> web.Response:
        return web.Response(text=self.sim.config.to_json(), content_type="application/json")


def render_metrics(server: Simulator) -> str:
    """Prometheus text exposition of the server's state, named after vLLM's metrics."""
    engine = server.engine
    stats = engine.stats
    p = "loadbench_sim:"
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {p}{name} {help_text}")
        lines.append(f"# TYPE {p}{name} {kind}")
        for labels, value in samples:
            lines.append(f"{p}{name}{labels} {value:g}" if isinstance(value, float) else
                         f"{p}{name}{labels} {value}")

    metric("num_requests_running", "gauge", "Requests in the engine (prefilling or decoding).",
           [("", engine.running)])
    metric("num_requests_waiting", "gauge", "Requests queued for admission.", [("", engine.waiting)])
    metric("kv_cache_usage_perc", "gauge", "Fraction of the KV cache holding tokens (1 = full).",
           [("", round(engine.kv_usage, 6))])
    metric("prompt_tokens_total", "counter", "Prompt tokens prefilled.", [("", stats.prompt_tokens)])
    metric("generation_tokens_total", "counter", "Tokens generated (hidden reasoning included).",
           [("", stats.generation_tokens)])
    outcomes = dict.fromkeys(("ok", "fault", "client_gone", "error"), 0) | server.outcomes
    metric("requests_total", "counter", "Finished requests by outcome.",
           [(f'{{outcome="{k}"}}', v) for k, v in sorted(outcomes.items())])
    metric("faults_total", "counter", "Faults injected by kind.",
           [(f'{{kind="{k}"}}', v) for k, v in sorted(server.fault_counts.items())])
    metric("engine_steps_total", "counter", "Engine steps run.", [("", stats.steps)])
    metric("engine_late_seconds_total", "counter",
           "How far behind its deadlines the step loop woke, summed (the simulator's own health).",
           [("", round(stats.late_ns_total / 1e9, 6))])
    metric("engine_reanchors_total", "counter",
           "Times the step loop fell too far behind and re-anchored its deadlines.",
           [("", stats.reanchors)])
    return "\n".join(lines) + "\n"
