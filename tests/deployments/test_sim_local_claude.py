"""Local (Ollama dialect) and Remote.claude (Anthropic dialect) against the embedded simulator."""

import pytest
from aiohttp import web

from loadbench.contract.errors import ErrorCategory, RequestFailed, TargetError
from loadbench.contract.prompt import Message, Prompt
from loadbench.deployments import Q3B, ClientSettings, Local, Remote, Timeouts
from loadbench.sim import FaultPlan, SimConfig, SimProcess

from .conftest import run, send_all, sim_trace
from .servers import closed_port, serve

PROMPTS = [
    Prompt.user("hello there", max_output_tokens=12, ignore_eos=True),
    Prompt(
        messages=(Message("system", "be brief"), Message("user", "why is the sky blue?")),
        max_output_tokens=30,
        ignore_eos=True,
    ),
]


def settings(**kw) -> ClientSettings:
    return ClientSettings(pool_size=8, simulated=True, **kw)


def summary(records):
    rows = []
    for r in records:
        if isinstance(r, BaseException):
            raise r
        rows.append((len(r.chunk_ns), r.reasoning_chunks, r.input_tokens, r.output_tokens))
    return rows


@pytest.mark.parametrize("api", ["chat", "generate"])
@pytest.mark.parametrize("reasoning", [False, True])
def test_local_both_client_paths_agree(sim, api, reasoning):
    rows = {}
    for client in ("http", "sdk"):
        dep = Local("llama3.2", quant=Q3B(), api=api, client=client)
        records = run(send_all(dep, sim.base_url, settings(reasoning=reasoning), PROMPTS))
        rows[client] = summary(records)
        for prompt, rec in zip(PROMPTS, records, strict=True):
            assert rec.server["source"] == "ollama"
            assert rec.server["output_tokens"] == rec.output_tokens
            assert rec.server["total_ms"] > 0
            assert rec.sent_ns < rec.first_token_ns <= rec.end_ns
            # num_predict bounds thinking and answer together.
            assert rec.output_tokens == prompt.max_output_tokens == len(rec.chunk_ns)
    assert rows["http"] == rows["sdk"]
    assert all((row[1] > 0) == reasoning for row in rows["http"])


def test_local_request_ids_reach_the_server(sim):
    for client in ("http", "sdk"):
        dep = Local("llama3.2", client=client)
        run(send_all(dep, sim.base_url, settings(), PROMPTS[:1], prefix=f"local-id-{client}"))
    sim_ids = {t["id"] for t in sim_trace(sim)}
    assert {"local-id-http-0", "local-id-sdk-0"} <= sim_ids



def test_local_missing_model_lists_what_the_server_has(sim):
    with pytest.raises(TargetError) as info:
        run(send_all(Local("no-such-model:7b"), sim.base_url, settings(), []))
    message = str(info.value)
    assert "no-such-model:7b" in message and "llama3.2:3b" in message and "\n" not in message


def test_local_pull_fetches_a_missing_model():
    with SimProcess(SimConfig(models=("llama3.2:3b",))) as sim:
        dep = Local("qwen2.5:1.5b", pull=True)
        records = run(send_all(dep, sim.base_url, settings(), PROMPTS[:1]))
        assert summary(records)[0][3] == 12


def test_local_pointed_at_an_openai_only_root(sim):
    url = sim.base_url + "/v1"
    with pytest.raises(TargetError) as info:
        run(send_all(Local("llama3.2"), url, settings(), []))
    assert "answered like an OpenAI-compatible server" in str(info.value)


def test_local_nothing_listening():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(TargetError) as info:
        run(send_all(Local("llama3.2"), url, settings(), []))
    assert str(info.value).startswith(f"{url}: connection refused")


@pytest.mark.parametrize("reasoning", [False, True])
def test_claude_both_client_paths_agree(sim, reasoning):
    rows = {}
    for client in ("http", "sdk"):
        dep = Remote.claude("claude-sim", client=client, thinking_budget_tokens=1024)
        prompts = [Prompt.user("hi", max_output_tokens=1100), Prompt.user("why?", max_output_tokens=20)]
        rows[client] = summary(run(send_all(dep, sim.base_url, settings(reasoning=reasoning), prompts)))
    assert rows["http"] == rows["sdk"]
    if reasoning:
        assert all(row[1] > 0 for row in rows["http"])
        # The thinking budget comes on top of a cap too small to hold it.
        assert rows["http"][1][3] > 20
    else:
        assert [row[3] for row in rows["http"]] == [1100, 20]
        assert all(row[1] == 0 for row in rows["http"])


@pytest.mark.parametrize("client", ["http", "sdk"])
@pytest.mark.parametrize(
    ("dialect", "kind", "category"),
    [
        ("anthropic", "529", ErrorCategory.OVERLOADED),
        ("anthropic", "stream_error", ErrorCategory.OVERLOADED),
        ("anthropic", "reset", ErrorCategory.STREAM_RESET),
        ("anthropic", "truncate", ErrorCategory.TRUNCATED),
        ("anthropic", "malformed", ErrorCategory.MALFORMED),
        ("ollama", "500", ErrorCategory.SERVER_ERROR),
        ("ollama", "stream_error", ErrorCategory.STREAM_ERROR),
        ("ollama", "reset", ErrorCategory.STREAM_RESET),
        ("ollama", "truncate", ErrorCategory.TRUNCATED),
        ("ollama", "malformed", ErrorCategory.MALFORMED),
    ],
)
def test_faults_map_to_one_category(dialect, kind, category, client):
    plan = FaultPlan(rates={kind: 1.0}, after_tokens=3)
    dep = Remote.claude("claude-sim", client=client) if dialect == "anthropic" else Local("llama3.2", client=client)
    with SimProcess(SimConfig(faults=plan)) as sim:
        out = run(send_all(dep, sim.base_url, settings(timeouts=Timeouts(total_s=5.0)), PROMPTS[1:]))
    exc = out[0]
    assert isinstance(exc, RequestFailed), exc
    assert exc.category is category, (exc.category, exc.detail)


def test_claude_missing_key(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(TargetError, match="ANTHROPIC_API_KEY"):
        run(send_all(Remote.claude(), url, ClientSettings(pool_size=1), []))


def test_claude_401_names_the_variable(monkeypatch):
    secret = "sk-ant-api03-verysecretvalue123456"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    seen = []

    def routes(app):
        async def models(request):
            seen.append(request.headers.get("x-api-key"))
            body = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
            return web.json_response(body, status=401)

        app.router.add_get("/v1/models", models)

    async def main():
        async with serve(routes) as url:
            await send_all(Remote.claude(base_url=url), url, ClientSettings(pool_size=1), [])

    with pytest.raises(TargetError) as info:
        run(main())
    assert "HTTP 401" in str(info.value) and "ANTHROPIC_API_KEY" in str(info.value)
    assert secret not in str(info.value) and seen == [secret]


@pytest.mark.parametrize(
    "make",
    [
        lambda url: Remote.compatible(url, "sim-model", client="sdk"),
        lambda url: Remote.claude("claude-sim", client="sdk"),
        lambda url: Local("llama3.2:3b", client="sdk"),
        lambda url: Local("llama3.2:3b", client="sdk", api="generate"),
    ],
)
def test_sdk_warm_up_streams_a_canned_answer_in_memory_and_sends_nothing(sim, make):
    """Opening an SDK sender runs one request through the SDK's streaming path against an in-memory
    answer (so its first-use work is done before the run): it parses completely, and the server
    never sees it."""
    from loadbench.deployments import sdk

    dep = make(sim.base_url)
    canned: list = []

    async def opened():
        async with dep.open(base_url=sim.base_url, settings=ClientSettings(pool_size=2, simulated=True)) as sender:
            name = {"openai": "openai", "anthropic": "anthropic", "ollama": "ollama"}[dep.dialect]
            body = {"openai": sdk._OPENAI_CANNED, "anthropic": sdk._ANTHROPIC_CANNED}.get(
                dep.dialect, sdk._OLLAMA_CANNED[getattr(sender.wire, "api", "chat")]
            )
            canned.append(await sdk._canned_stream(sender, name, body))

    run(opened())
    record = canned[0]
    assert record is not None, "the canned stream failed: the SDK's stream shape has changed"
    assert record.first_answer_ns and record.end_ns and record.output_tokens_used >= 1
    assert not any(t["id"] == "warm" for t in sim_trace(sim))
