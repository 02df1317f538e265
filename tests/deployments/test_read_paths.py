"""The three client paths (lean: loadbench's own HTTP/1.1 connections; through aiohttp, push:
parsed inside ``data_received``, and pull: a ``readany`` loop) give the same records and the same
failures, for every dialect."""

import asyncio

import orjson
import pytest
from aiohttp import web

from loadbench.contract.errors import ErrorCategory, RequestFailed
from loadbench.contract.prompt import Prompt
from loadbench.deployments import ClientSettings, Local, Remote, Timeouts
from loadbench.deployments import transport as transport_mod
from loadbench.sim import FaultPlan, SimConfig, SimProcess

from .conftest import run, send_all
from .servers import serve
from .test_http_sender import models_route, record

PATHS = ("lean", "push", "pull")
PROMPTS = [
    Prompt.user("hello there", max_output_tokens=12, ignore_eos=True),
    Prompt.user("a somewhat longer question about the sky and the sea", max_output_tokens=40, ignore_eos=True),
    Prompt.user("short", max_output_tokens=1, ignore_eos=True),
]


@pytest.fixture
def read_path(monkeypatch, request):
    monkeypatch.setattr(transport_mod, "DEFAULT_READ_PATH", request.param)
    return request.param


def facts(records):
    rows = []
    for r in records:
        if isinstance(r, BaseException):
            raise r
        assert r.sent_ns < r.first_token_ns <= r.chunk_ns[-1] <= r.end_ns
        assert r.chunk_ns == sorted(r.chunk_ns)
        rows.append((len(r.chunk_ns), r.reasoning_chunks, r.input_tokens, r.output_tokens, r.reasoning_tokens,
                     bool(r.first_answer_ns), r.server is not None))
    return rows


DIALECTS = {
    "openai": lambda url: Remote.compatible(url, "sim-model"),
    "deepseek": lambda url: Remote.deepseek(),
    "anthropic": lambda url: Remote.claude("claude-sim", thinking_budget_tokens=1024),
    "ollama-chat": lambda url: Local("llama3.2", api="chat"),
    "ollama-generate": lambda url: Local("llama3.2", api="generate"),
}


@pytest.mark.parametrize("reasoning", [False, True])
@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_push_and_pull_give_the_same_records(sim, monkeypatch, dialect, reasoning):
    settings = ClientSettings(pool_size=4, simulated=True, reasoning=reasoning)
    rows = {}
    for path in PATHS:
        monkeypatch.setattr(transport_mod, "DEFAULT_READ_PATH", path)
        dep = DIALECTS[dialect](sim.base_url)
        out = run(send_all(dep, sim.base_url, settings, PROMPTS, prefix=f"{dialect}-{reasoning}-{path}",
                           concurrent=True))
        rows[path] = facts(out)
    assert rows["lean"] == rows["push"] == rows["pull"]
    # Token-bearing chunks were seen: the comparison is not between two empty runs.
    assert rows["push"][0][0] >= 12


@pytest.mark.parametrize("read_path", PATHS, indirect=True)
def test_one_connection_serves_many_requests_in_turn(sim, read_path):
    # A pool of one: each response's pump must let go of the connection before the next request.
    dep = Remote.compatible(sim.base_url, "sim-model")
    prompts = [Prompt.user(f"q{i}", max_output_tokens=3 + i % 5, ignore_eos=True) for i in range(20)]
    out = run(send_all(dep, sim.base_url, ClientSettings(pool_size=1, simulated=True), prompts,
                       prefix=f"turns-{read_path}"))
    assert [row[0] for row in facts(out)] == [3 + i % 5 for i in range(20)]


@pytest.mark.parametrize("read_path", PATHS, indirect=True)
@pytest.mark.parametrize(
    ("kind", "category"),
    [
        ("reset", ErrorCategory.STREAM_RESET),
        ("malformed", ErrorCategory.MALFORMED),
        ("stream_error", ErrorCategory.STREAM_ERROR),
        ("truncate", ErrorCategory.TRUNCATED),
        ("stall", ErrorCategory.TOTAL_TIMEOUT),
    ],
)
def test_mid_stream_faults_on_every_path(read_path, kind, category):
    plan = FaultPlan(rates={kind: 1.0}, after_tokens=3, stall_s=3.0)
    timeouts = Timeouts(first_token_s=1.0, total_s=1.5)
    settings = ClientSettings(pool_size=2, simulated=True, timeouts=timeouts)
    with SimProcess(SimConfig(faults=plan)) as sim:
        for dep in (Remote.compatible(sim.base_url, "m"), Remote.claude("claude-sim"), Local("llama3.2")):
            out = run(send_all(dep, sim.base_url, settings, PROMPTS[1:2], prefix=f"{kind}-{read_path}"))
            exc = out[0]
            expected = category
            if kind == "stream_error" and dep.dialect == "anthropic":
                expected = ErrorCategory.OVERLOADED  # the simulator's Anthropic error event is overloaded_error
            assert isinstance(exc, RequestFailed), exc
            assert exc.category is expected, (dep, exc.category, exc.detail)


def odd_stream_app(body_lines: list[bytes], *, pause_s: float = 0.0):
    def routes(app: web.Application) -> None:
        async def chat(request: web.Request) -> web.StreamResponse:
            await request.read()
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for line in body_lines:
                await resp.write(line)
                await asyncio.sleep(pause_s)
            await resp.write_eof()
            return resp

        models_route(app)
        app.router.add_post("/v1/chat/completions", chat)

    return routes


def send_one(url: str, **settings_kw):
    async def main():
        dep = Remote.compatible(url, "m")
        settings = ClientSettings(pool_size=1, **settings_kw)
        async with dep.open(base_url=url, settings=settings) as sender:
            rec = record()
            try:
                await asyncio.wait_for(sender.send(Prompt.user("x"), rec), 10)
            except RequestFailed as exc:
                return rec, exc
            return rec, None

    return main()


def delta(text: str) -> bytes:
    return b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}) + b"\n\n"


@pytest.mark.parametrize("read_path", PATHS, indirect=True)
def test_a_parser_bug_fails_the_request_instead_of_hanging(read_path):
    # ``choices`` holding a number makes the OpenAI parser raise AttributeError: on the push path
    # that happens inside data_received and must still reach the sender as one RequestFailed.
    lines = [delta("a"), b'data: {"choices": [1]}\n\n', delta("b"), b"data: [DONE]\n\n"]

    async def main():
        async with serve(odd_stream_app(lines, pause_s=0.01)) as url:
            return await send_one(url)

    rec, exc = asyncio.run(main())
    assert exc is not None and exc.category is ErrorCategory.CLIENT, exc
    assert "AttributeError" in (exc.detail or "")
    assert len(rec.chunk_ns) == 1


@pytest.mark.parametrize("read_path", PATHS, indirect=True)
@pytest.mark.parametrize("split", [1, 7, 1000])
def test_events_split_across_reads_are_stamped_once_each(read_path, split):
    # The same body written in pieces of ``split`` bytes: framing must not depend on where reads end.
    body = b"".join([b": ping\n\n", delta("he"), b"event: message\r\n" + delta("llo")[:-2] + b"\r\n\r\n",
                     delta(""), delta(" you"), b"data: [DONE]\n\n"])
    pieces = [body[i:i + split] for i in range(0, len(body), split)]

    async def main():
        async with serve(odd_stream_app(pieces)) as url:
            return await send_one(url)

    rec, exc = asyncio.run(main())
    assert exc is None, exc
    assert len(rec.chunk_ns) == 3


@pytest.mark.parametrize("read_path", PATHS, indirect=True)
def test_first_token_deadline_moves_to_total_once_a_token_arrives(read_path):
    # Tokens 0.3 s apart with a 0.5 s first-token deadline: the stream outlives that deadline and
    # must finish, since the first token moved the deadline to the 5 s total.
    lines = [delta("a"), delta("b"), delta("c"), b"data: [DONE]\n\n"]

    async def main():
        async with serve(odd_stream_app(lines, pause_s=0.3)) as url:
            return await send_one(url, timeouts=Timeouts(first_token_s=0.5, total_s=5.0))

    rec, exc = asyncio.run(main())
    assert exc is None, exc
    assert len(rec.chunk_ns) == 3
    assert (rec.end_ns - rec.sent_ns) / 1e9 > 0.5


def test_unknown_read_path_is_refused():
    with pytest.raises(ValueError, match="read_path"):
        transport_mod.HttpTransport(ClientSettings(pool_size=1), read_path="poll")  # type: ignore[arg-type]
