"""Local's open-time checks against a small Ollama-shaped server (capabilities the sim can't vary)."""

import pytest
from aiohttp import web

from loadbench.contract.errors import TargetError
from loadbench.deployments import ClientSettings, Local

from .conftest import run, send_all
from .servers import serve


def ollama_without_thinking(app: web.Application) -> None:
    async def tags(request):
        return web.json_response({"models": [{"name": "llama3.2:3b", "model": "llama3.2:3b"}]})

    async def show(request):
        return web.json_response({"capabilities": ["completion", "tools"]})

    app.router.add_get("/api/tags", tags)
    app.router.add_post("/api/show", show)


def test_reasoning_on_a_model_that_cannot_think_stops_at_open():
    async def main(reasoning: bool):
        async with serve(ollama_without_thinking) as url:
            settings = ClientSettings(pool_size=1, reasoning=reasoning)
            return await send_all(Local("llama3.2:3b"), url, settings, [])

    assert run(main(False)) == []
    with pytest.raises(TargetError) as info:
        run(main(True))
    assert "does not support thinking" in str(info.value) and "llama3.2:3b" in str(info.value)
