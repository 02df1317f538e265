"""Remote deployments (OpenAI dialect) against the embedded simulator, on both client paths."""

import dataclasses

import pytest

from loadbench.contract.errors import ErrorCategory, RequestFailed, TargetError
from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.deployments import ClientSettings, Remote, Timeouts
from loadbench.sim import FaultPlan, SimConfig, SimProcess

from .conftest import run, send_all, sim_trace
from .servers import closed_port

PROMPTS = [
    Prompt.user("hello there", max_output_tokens=12, ignore_eos=True),
    Prompt.user("a somewhat longer question about the sky and the sea", max_output_tokens=40, ignore_eos=True),
    Prompt.user("short", max_output_tokens=1, ignore_eos=True),
]


def settings(**kw) -> ClientSettings:
    return ClientSettings(pool_size=8, simulated=True, **kw)


def ok(records) -> list[RequestRecord]:
    for r in records:
        if isinstance(r, BaseException):
            raise r
    return records


@pytest.mark.parametrize("client", ["http", "sdk"])
def test_compatible_counts_match_the_simulators_ground_truth(sim, client):
    dep = Remote.compatible(sim.base_url, "sim-model", client=client)
    records = ok(run(send_all(dep, sim.base_url, settings(), PROMPTS, prefix=f"compat-{client}")))
    truth = {t["id"]: t for t in sim_trace(sim)}
    for prompt, rec in zip(PROMPTS, records, strict=True):
        assert rec.output_tokens == prompt.max_output_tokens
        assert len(rec.chunk_ns) == prompt.max_output_tokens  # one token per chunk in the sim
        assert rec.reasoning_chunks == 0 and rec.first_answer_ns == rec.first_token_ns
        assert rec.sent_ns < rec.first_token_ns <= rec.chunk_ns[-1] <= rec.end_ns
        t = truth[rec.request_id]
        assert t["tokens_sent"] == len(rec.chunk_ns) and t["prompt_tokens"] == rec.input_tokens



@pytest.mark.parametrize("reasoning", [False, True])
def test_http_and_sdk_paths_agree(sim, reasoning):
    counts = {}
    for client in ("http", "sdk"):
        for dep in (Remote.deepseek(client=client), Remote.openai(client=client)):
            recs = ok(run(send_all(dep, sim.base_url, settings(reasoning=reasoning), PROMPTS)))
            counts[(client, dep.provider)] = [
                (len(r.chunk_ns), r.reasoning_chunks, r.input_tokens, r.output_tokens, r.reasoning_tokens) for r in recs
            ]
    assert counts[("http", "deepseek")] == counts[("sdk", "deepseek")]
    assert counts[("http", "openai")] == counts[("sdk", "openai")]
    deepseek = counts[("http", "deepseek")]
    openai = counts[("http", "openai")]
    if reasoning:
        # deepseek-reasoner streams its reasoning; OpenAI's reasoning is hidden, only counted.
        assert deepseek[1][1] > 0 and deepseek[1][4] == deepseek[1][1]
        assert openai[1][1] == 0 and openai[1][4] > 0
    else:
        assert all(row[1] == 0 and row[4] in (0, None) for row in deepseek + openai)


def test_reasoning_model_names_and_fields():
    on = ClientSettings(pool_size=1, reasoning=True, simulated=True)
    off = ClientSettings(pool_size=1, simulated=True)
    assert Remote.deepseek().openai_wire(on).model == "deepseek-reasoner"
    assert Remote.deepseek().openai_wire(off).model == "deepseek-chat"
    assert Remote.deepseek("deepseek-chat").openai_wire(on).model == "deepseek-chat"
    wire = Remote.openai("o4-mini").openai_wire(dataclasses.replace(on, simulated=False))
    assert wire.reasoning_effort == "medium" and wire.max_tokens_field == "max_completion_tokens"
    assert wire.send_ignore_eos is False
    assert Remote.openai("gpt-4o-mini").openai_wire(off).reasoning_effort is None
    assert Remote.compatible("http://h:1/v1", "m").openai_wire(off).send_ignore_eos is True


@pytest.mark.parametrize("client", ["http", "sdk"])
@pytest.mark.parametrize(
    ("kind", "category"),
    [
        ("429", ErrorCategory.RATE_LIMITED),
        ("500", ErrorCategory.SERVER_ERROR),
        ("503", ErrorCategory.UNAVAILABLE),
        ("529", ErrorCategory.OVERLOADED),
        ("reset", ErrorCategory.STREAM_RESET),
        ("malformed", ErrorCategory.MALFORMED),
        ("stream_error", ErrorCategory.STREAM_ERROR),
        ("truncate", ErrorCategory.TRUNCATED),
        ("slow_headers", ErrorCategory.FIRST_TOKEN_TIMEOUT),
        ("stall", ErrorCategory.TOTAL_TIMEOUT),
    ],
)
def test_faults_map_to_one_category(kind, category, client):
    plan = FaultPlan(rates={kind: 1.0}, after_tokens=3, stall_s=3.0, slow_headers_s=3.0)
    timeouts = Timeouts(first_token_s=1.0, total_s=1.5)
    with SimProcess(SimConfig(faults=plan)) as sim:
        dep = Remote.compatible(sim.base_url, "m", client=client)
        out = run(send_all(dep, sim.base_url, settings(timeouts=timeouts), PROMPTS[1:2]))
    exc = out[0]
    assert isinstance(exc, RequestFailed), exc
    assert exc.category is category, (exc.category, exc.detail)
    if kind == "429":
        assert exc.http_status == 429 and exc.retry_after_s is not None
    if kind in ("reset", "stall", "truncate"):
        assert exc.__cause__ is not None or kind == "truncate"


@pytest.mark.parametrize("client", ["http", "sdk"])
def test_server_gone_after_open_is_a_connect_failure(client):
    async def main():
        sim = SimProcess(SimConfig())
        sim.start()
        url = sim.base_url
        dep = Remote.compatible(url, "m", client=client)
        from .conftest import new_records

        async with dep.open(base_url=url, settings=settings()) as sender:
            sim.close()
            rec = new_records(1)[0]
            with pytest.raises(RequestFailed) as info:
                await sender.send(PROMPTS[0], rec)
            return info.value

    exc = run(main())
    assert exc.category is ErrorCategory.CONNECT, exc.detail


def test_wrong_base_url_nothing_listening():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with pytest.raises(TargetError) as info:
        run(send_all(Remote.compatible(url, "m"), url, settings(), []))
    assert str(info.value) == f"{url}: connection refused"


def test_compatible_pointed_at_an_ollama_only_path(sim):
    url = sim.base_url + "/api"
    with pytest.raises(TargetError) as info:
        run(send_all(Remote.compatible(url, "m"), url, settings(), []))
    message = str(info.value)
    assert "\n" not in message and "not an OpenAI-compatible API root" in message
    assert "Ollama" in message


def test_compatible_model_not_served_lists_models(sim):
    # Outside simulated mode the model list is checked; the simulator lists its models.
    dep = Remote.compatible(sim.base_url, "no-such-model")
    real = ClientSettings(pool_size=1)
    with pytest.raises(TargetError) as info:
        run(send_all(dep, sim.base_url, real, []))
    assert "no-such-model" in str(info.value) and "serves:" in str(info.value)


@pytest.mark.parametrize(
    ("make", "client"),
    [
        (lambda url: Remote.compatible(url, "sim-model", client="sdk"), "openai-sdk"),
        (lambda url: Remote.claude("claude-sim", client="sdk"), "anthropic-sdk"),
        (lambda url: Remote.compatible(url, "sim-model"), "http"),
    ],
)
def test_sent_is_stamped_at_the_write_on_both_paths(sim, make, client):
    """``sent`` moves from the caller's stamp to the write; the server received the bytes after it;
    the headers came between the write and the first token."""
    records = ok(run(send_all(make(sim.base_url), sim.base_url, settings(), PROMPTS[:2], prefix=f"stamp-{client}")))
    truth = {t["id"]: t for t in sim_trace(sim)}
    for rec in records:
        assert rec.written_ns and rec.sent_ns == rec.written_ns
        assert rec.intended_ns <= rec.sent_ns <= truth[rec.request_id]["received_ns"]
        assert rec.sent_ns < rec.headers_ns <= rec.first_token_ns
        assert truth[rec.request_id]["first_token_ns"] <= rec.first_token_ns


def test_sdk_client_is_warmed_before_the_first_request(sim):
    """Opening the SDK sender builds its lazily made resources and opens a pooled connection, so
    the first request finds both ready (the SDK's resources are cached on the client)."""
    dep = Remote.compatible(sim.base_url, "sim-model", client="sdk")

    async def opened():
        async with dep.open(base_url=sim.base_url, settings=settings()) as sender:
            built = "chat" in vars(sender.client)  # functools.cached_property stores it here
            pool = sender.client._client._transport._pool
            return built, len(pool.connections)

    built, connections = run(opened())
    assert built
    assert connections == 1
