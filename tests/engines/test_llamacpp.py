"""The tiny GGUF model and a real llama.cpp server running it."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from loadbench.engines import llamacpp
from loadbench.engines.llamacpp import LlamaServer, find_llama_server
from loadbench.engines.tiny_gguf import (
    CHAT_TEMPLATE,
    EOS_ID,
    IM_END_ID,
    build_vocab,
    write_tiny_llama_gguf,
)

from . import fixtures
from .fixtures import LLAMA_SERVER_SLOTS

# Registers the shared module-scoped fixture in this module.
llama_server = fixtures.llama_server

gguf = pytest.importorskip("gguf")
aiohttp = pytest.importorskip("aiohttp")

PROMPT = [{"role": "user", "content": "Tell me a story about the load test."}]


# --------------------------------------------------------------------------- helpers


async def _stream_chat(base_url: str, *, max_tokens: int, ignore_eos: bool | None, seed: int = 0) -> dict[str, Any]:
    """One streaming chat completion; returns its parsed chunks and timestamps.

    Keys: ``chunks`` (decoded JSON of every ``data:`` line but ``[DONE]``),
    ``raw`` (the SSE lines as received), ``done`` (whether ``[DONE]`` came),
    ``t_first_s`` / ``t_end_s`` (monotonic clock at the first content chunk and
    at the end of the stream).
    """
    body: dict[str, Any] = {
        "model": "tiny",
        "messages": PROMPT,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 1.0,
        "seed": seed,
    }
    if ignore_eos is not None:
        body["ignore_eos"] = ignore_eos
    chunks: list[dict[str, Any]] = []
    raw: list[str] = []
    done = False
    t_first_s: float | None = None
    timeout = aiohttp.ClientTimeout(total=120)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(f"{base_url}/v1/chat/completions", json=body) as response,
    ):
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        async for line_bytes in response.content:
            line = line_bytes.decode().rstrip("\r\n")
            if not line:
                continue
            raw.append(line)
            assert line.startswith("data: "), line
            payload = line[len("data: ") :]
            if payload == "[DONE]":
                done = True
                continue
            chunk = json.loads(payload)
            chunks.append(chunk)
            if t_first_s is None and any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                t_first_s = time.monotonic()
    return {
        "chunks": chunks,
        "raw": raw,
        "done": done,
        "t_first_s": t_first_s,
        "t_end_s": time.monotonic(),
    }


def _usage(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    usages = [c["usage"] for c in chunks if c.get("usage")]
    assert usages, "no chunk carried usage"
    return usages[-1]


def _finish_reasons(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        choice["finish_reason"]
        for chunk in chunks
        for choice in chunk.get("choices", [])
        if choice.get("finish_reason")
    ]


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()


def _post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


# --------------------------------------------------------------------------- no server


def test_tiny_gguf_reads_back(tmp_path: Path) -> None:
    path = write_tiny_llama_gguf(tmp_path / "tiny.gguf", n_layers=3, n_ctx=2048, seed=7)
    reader = gguf.GGUFReader(path)

    def field(key: str) -> Any:
        return reader.fields[key].contents()

    tokens, _, types = build_vocab()
    assert field("general.architecture") == "llama"
    assert field("llama.block_count") == 3
    assert field("llama.embedding_length") == 64
    assert field("llama.attention.head_count") == 4
    assert field("llama.feed_forward_length") == 128
    assert field("llama.context_length") == 2048
    assert field("tokenizer.ggml.model") == "llama"
    assert field("tokenizer.ggml.tokens") == tokens
    assert field("tokenizer.ggml.token_type") == types
    assert len(field("tokenizer.ggml.scores")) == len(tokens)
    assert field("tokenizer.ggml.eos_token_id") == EOS_ID == tokens.index("</s>")
    assert field("tokenizer.ggml.bos_token_id") == tokens.index("<s>")
    assert field("tokenizer.ggml.add_bos_token") is True
    assert field("tokenizer.chat_template") == CHAT_TEMPLATE
    byte_tokens = [t for t, k in zip(tokens, types, strict=True) if k == gguf.TokenType.BYTE]
    assert byte_tokens == [f"<0x{b:02X}>" for b in range(256)]
    assert len([t for t in tokens if t.startswith("▁")]) > 200

    names = {t.name: t for t in reader.tensors}
    assert len(names) == 3 + 9 * 3
    output = names["output.weight"].data
    assert output.shape == (len(tokens), 64)
    # End-of-generation rows point against the always-positive residual component.
    assert output[EOS_ID, 0] < -100 and output[IM_END_ID, 0] < -100
    assert (output[EOS_ID, 1:] == 0).all()


def test_tiny_gguf_is_deterministic(tmp_path: Path) -> None:
    a = write_tiny_llama_gguf(tmp_path / "a.gguf", seed=3)
    b = write_tiny_llama_gguf(tmp_path / "b.gguf", seed=3)
    c = write_tiny_llama_gguf(tmp_path / "c.gguf", seed=4)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOADBENCH_CACHE", str(tmp_path / "explicit"))
    assert llamacpp.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("LOADBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert llamacpp.cache_dir() == tmp_path / "xdg" / "loadbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert llamacpp.cache_dir() == Path.home() / ".cache" / "loadbench"


def test_env_binary_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("LOADBENCH_LLAMA_SERVER", str(fake))
    assert find_llama_server() == fake
    monkeypatch.setenv("LOADBENCH_LLAMA_SERVER", str(tmp_path / "missing"))
    assert find_llama_server() is None


def test_cli_path_and_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOADBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LOADBENCH_LLAMA_SERVER", str(tmp_path / "missing"))
    assert llamacpp.main(["path"]) == 1
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("LOADBENCH_LLAMA_SERVER", str(fake))
    capsys.readouterr()
    assert llamacpp.main(["path"]) == 0
    assert capsys.readouterr().out.strip() == str(fake)
    assert llamacpp.main(["model"]) == 0
    model = Path(capsys.readouterr().out.strip())
    assert model == tmp_path / "cache" / "models" / llamacpp.TINY_MODEL_NAME
    assert model.stat().st_size > 100_000


def test_start_failure_reports_log_tail(tmp_path: Path) -> None:
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\necho 'fake server: cannot load model' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = LlamaServer(tmp_path / "none.gguf", binary=fake, startup_timeout_s=10)
    with pytest.raises(llamacpp.LlamaServerError, match="cannot load model"):
        server.start()
    server.close()
    server.close()  # idempotent


# --------------------------------------------------------------------------- server


@pytest.mark.llamacpp
def test_stream_ignore_eos_counts_exact_tokens(llama_server: LlamaServer) -> None:
    result = asyncio.run(_stream_chat(llama_server.base_url, max_tokens=64, ignore_eos=True))
    chunks = result["chunks"]
    assert result["done"]
    usage = _usage(chunks)
    assert usage["completion_tokens"] == 64
    assert usage["prompt_tokens"] > 0
    assert _finish_reasons(chunks) == ["length"]
    assert any("timings" in c for c in chunks)
    timings = next(c["timings"] for c in reversed(chunks) if "timings" in c)
    assert timings["predicted_n"] == 64
    assert timings["predicted_per_second"] > 0
    text = "".join(choice["delta"].get("content") or "" for c in chunks for choice in c.get("choices", []))
    assert text.strip()


@pytest.mark.llamacpp
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_model_never_stops_early(llama_server: LlamaServer, seed: int) -> None:
    """Without ignore_eos, the tiny model still generates exactly max_tokens."""
    result = asyncio.run(_stream_chat(llama_server.base_url, max_tokens=200, ignore_eos=None, seed=seed))
    assert _usage(result["chunks"])["completion_tokens"] == 200
    assert _finish_reasons(result["chunks"]) == ["length"]


def _metric_samples(base_url: str) -> dict[str, float]:
    """``/metrics`` as ``{name: value}`` (llama.cpp's metrics carry no labels)."""
    status, content_type, text = _get(f"{base_url}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    return {
        name: float(value)
        for name, value in (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    }


@pytest.mark.llamacpp
def test_parallel_slots_serve_concurrent_streams(llama_server: LlamaServer) -> None:
    n_tokens = 512

    async def run_all() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(
                _stream_chat(llama_server.base_url, max_tokens=n_tokens, ignore_eos=True, seed=i)
                for i in range(LLAMA_SERVER_SLOTS)
            )
        )

    before = _metric_samples(llama_server.base_url)
    results = asyncio.run(run_all())
    after = _metric_samples(llama_server.base_url)
    for result in results:
        assert result["done"]
        assert _usage(result["chunks"])["completion_tokens"] == n_tokens
    # Served side by side, not queued: one llama_decode() call advances several
    # slots, so far fewer decodes than generated tokens (serial would be equal).
    n_decodes = after["llamacpp:n_decode_total"] - before["llamacpp:n_decode_total"]
    n_generated = after["llamacpp:tokens_predicted_total"] - before["llamacpp:tokens_predicted_total"]
    assert n_generated == LLAMA_SERVER_SLOTS * n_tokens
    assert n_decodes < n_generated / 2


@pytest.mark.llamacpp
def test_metrics_are_prometheus_text(llama_server: LlamaServer) -> None:
    asyncio.run(_stream_chat(llama_server.base_url, max_tokens=8, ignore_eos=True))
    _, _, text = _get(f"{llama_server.base_url}/metrics")
    assert "# TYPE llamacpp:prompt_tokens_total counter" in text
    assert "# TYPE llamacpp:requests_processing gauge" in text
    assert _metric_samples(llama_server.base_url)["llamacpp:tokens_predicted_total"] >= 8


@pytest.mark.llamacpp
def test_tokenize_packs_words(llama_server: LlamaServer) -> None:
    text = "the load test of the model server"
    tokens = _post_json(f"{llama_server.base_url}/tokenize", {"content": text})["tokens"]
    assert 0 < len(tokens) < len(text.encode()) / 2
    detok = _post_json(f"{llama_server.base_url}/detokenize", {"tokens": tokens})["content"]
    assert detok.strip() == text
