"""The Ollama dialect, driven over loopback."""

from __future__ import annotations

import json

from sim_helpers import parse_ndjson, run, with_server

from loadbench.sim import SimConfig
from loadbench.sim.text import count_tokens


def _call(method, path, payload=None, config=None):
    async def body(server, session):
        async with session.request(method, server.base_url + path, json=payload) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), await resp.read()

    return run(with_server(config or SimConfig(), body))


def _chat(n=5, **extra):
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hello there"}],
            "options": {"num_predict": n}}
    body.update(extra)
    return body


DONE_FIELDS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
               "eval_count", "eval_duration")


def test_chat_streams_ndjson_by_default_with_done_record():
    status, ctype, raw = _call("POST", "/api/chat", _chat(5))
    assert status == 200 and ctype.startswith("application/x-ndjson")
    lines = parse_ndjson(raw)
    *tokens, done = lines
    assert len(tokens) == 5
    assert all(not t["done"] and t["message"]["role"] == "assistant" and t["message"]["content"] for t in tokens)
    assert all(t["model"] == "llama3.2" and t["created_at"].endswith("Z") for t in lines)
    assert done["done"] is True and done["done_reason"] == "length"
    assert done["message"]["content"] == ""
    for name in DONE_FIELDS:
        assert isinstance(done[name], int) and done[name] >= 0, name
    assert done["eval_count"] == 5
    assert done["prompt_eval_count"] == count_tokens("hello there")
    assert done["total_duration"] >= done["eval_duration"]
    assert count_tokens("".join(t["message"]["content"] for t in tokens)) == 5


def test_think_streams_thinking_first_and_counts_it():
    _, _, raw = _call("POST", "/api/chat", _chat(9, think=True), SimConfig(reasoning_tokens=4))
    lines = parse_ndjson(raw)
    kinds = ["t" if line["message"].get("thinking") else "a" for line in lines[:-1]]
    assert kinds == ["t"] * 4 + ["a"] * 5
    assert lines[-1]["eval_count"] == 9


def test_generate_and_non_streaming():
    _, _, raw = _call("POST", "/api/generate", {"model": "llama3.2:latest", "prompt": "why", "stream": True,
                                                "options": {"num_predict": 3}})
    lines = parse_ndjson(raw)
    assert [bool(line["response"]) for line in lines] == [True, True, True, False]
    assert lines[-1]["done"] and lines[-1]["eval_count"] == 3
    status, ctype, raw = _call("POST", "/api/chat", _chat(4, stream=False))
    body = json.loads(raw)
    assert ctype.startswith("application/json")
    assert status == 200 and body["done"] is True and body["eval_count"] == 4
    assert count_tokens(body["message"]["content"]) == 4


def test_unknown_model_404_then_pull_adds_it():
    async def body(server, session):
        url = server.base_url
        async with session.post(url + "/api/chat", json={"model": "mystery:7b", "messages": []}) as r:
            missing = (r.status, await r.json())
        async with session.post(url + "/api/pull", json={"model": "mystery:7b"}) as r:
            pulled = parse_ndjson(await r.read())
        async with session.get(url + "/api/tags") as r:
            tags = await r.json()
        async with session.post(url + "/api/chat", json=_chat(2) | {"model": "mystery:7b"}) as r:
            after = r.status
            await r.read()
        async with session.get(url + "/api/version") as r:
            version = await r.json()
        return missing, pulled, tags, after, version

    missing, pulled, tags, after, version = run(with_server(SimConfig(models=("llama3.2:latest",)), body))
    assert missing == (404, {"error": 'model "mystery:7b" not found, try pulling it first'})
    assert pulled[0] == {"status": "pulling manifest"} and pulled[-1] == {"status": "success"}
    assert any("completed" in line for line in pulled)
    names = [m["name"] for m in tags["models"]]
    assert names == ["llama3.2:latest", "mystery:7b"]
    assert tags["models"][1]["details"]["parameter_size"] == "7B"
    assert after == 200
    assert "version" in version


def test_default_tags_list_has_several_models():
    status, _, raw = _call("GET", "/api/tags")
    models = json.loads(raw)["models"]
    assert status == 200 and len(models) >= 3
    assert all({"name", "model", "size", "digest", "details"} <= set(m) for m in models)
