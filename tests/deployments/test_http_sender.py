"""The aiohttp client path against small real HTTP servers (the simulator covers the rest)."""

import asyncio
from time import perf_counter_ns

import orjson
import pytest
from aiohttp import web

from loadbench.contract.errors import ErrorCategory, RequestFailed, TargetError
from loadbench.contract.headers import REQUEST_ID_HEADER
from loadbench.contract.prompt import Prompt
from loadbench.contract.record import RequestRecord
from loadbench.deployments import ClientSettings, Remote, Timeouts

from .servers import closed_port, serve

SECRET = "sk-testsecret0123456789abcdef"


def record(i: int = 0) -> RequestRecord:
    return RequestRecord(index=i, request_id=f"r-{i}", intended_ns=perf_counter_ns(), sent_ns=perf_counter_ns())


def models_route(app: web.Application, ids=("m",)) -> None:
    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})

    app.router.add_get("/v1/models", models)


def openai_app(
    seen: list,
    *,
    tokens: int = 5,
    reset_after: int | None = None,
    delay_s: float = 0.0,
    peak: list | None = None,
):
    inflight: list = []
    peak = peak if peak is not None else [0]

    def routes(app: web.Application) -> None:
        models_route(app)

        async def chat(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            seen.append((dict(request.headers), body))
            inflight.append(1)
            peak[0] = max(peak[0], len(inflight))
            await asyncio.sleep(delay_s)
            inflight.pop()
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n')
            for i in range(tokens):
                if reset_after is not None and i == reset_after:
                    request.transport.abort()
                    return resp
                delta = orjson.dumps({"choices": [{"index": 0, "delta": {"content": f"t{i} "}}]})
                await resp.write(b"data: " + delta + b"\n\n")
            usage = {"prompt_tokens": 3, "completion_tokens": tokens}
            await resp.write(b"data: " + orjson.dumps({"choices": [], "usage": usage}) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp

        app.router.add_post("/v1/chat/completions", chat)

    return routes


def test_streams_tokens_sets_request_id_and_key_header():
    seen: list = []

    async def main():
        async with serve(openai_app(seen)) as url:
            dep = Remote.compatible(url + "/v1", "m", api_key=SECRET)
            async with dep.open(base_url=url + "/v1", settings=ClientSettings(pool_size=4)) as sender:
                rec = record()
                await sender.send(Prompt.user("hi", max_output_tokens=5, ignore_eos=True), rec)
                return rec

    rec = asyncio.run(main())
    assert len(rec.chunk_ns) == 5 and rec.output_tokens == 5 and rec.input_tokens == 3
    assert rec.end_ns >= rec.chunk_ns[-1] >= rec.first_token_ns > rec.sent_ns
    headers, body = seen[0]
    assert headers[REQUEST_ID_HEADER] == "r-0"
    assert headers["Authorization"] == f"Bearer {SECRET}"
    assert body["ignore_eos"] is True and body["min_tokens"] == 5 and body["max_tokens"] == 5


def test_concurrency_is_not_capped_by_a_library_default():
    seen: list = []
    peak = [0]
    n = 150  # above aiohttp's default 100-per-host limit

    async def main():
        async with serve(openai_app(seen, tokens=2, delay_s=0.5, peak=peak)) as url:
            dep = Remote.compatible(url, "m")
            async with dep.open(base_url=url, settings=ClientSettings(pool_size=n)) as sender:
                recs = [record(i) for i in range(n)]
                await asyncio.gather(*(sender.send(Prompt.user("x"), r) for r in recs))
                return recs

    recs = asyncio.run(main())
    assert all(len(r.chunk_ns) == 2 for r in recs)
    assert peak[0] == n  # every request was in the server at once


def test_reset_mid_stream_is_stream_reset_and_keeps_stamps():
    async def main():
        async with serve(openai_app([], tokens=5, reset_after=2)) as url:
            dep = Remote.compatible(url, "m")
            async with dep.open(base_url=url, settings=ClientSettings(pool_size=1)) as sender:
                rec = record()
                with pytest.raises(RequestFailed) as info:
                    await sender.send(Prompt.user("x"), rec)
                return rec, info.value

    rec, exc = asyncio.run(main())
    assert exc.category is ErrorCategory.STREAM_RESET
    assert len(rec.chunk_ns) == 2
    assert exc.__cause__ is not None


def test_first_token_deadline():
    async def main():
        async with serve(openai_app([], delay_s=2.0)) as url:
            dep = Remote.compatible(url, "m")
            settings = ClientSettings(pool_size=1, timeouts=Timeouts(first_token_s=0.2))
            async with dep.open(base_url=url, settings=settings) as sender:
                rec = record()
                t0 = perf_counter_ns()
                with pytest.raises(RequestFailed) as info:
                    await sender.send(Prompt.user("x"), rec)
                return info.value, (perf_counter_ns() - t0) / 1e9

    exc, elapsed_s = asyncio.run(main())
    assert exc.category is ErrorCategory.FIRST_TOKEN_TIMEOUT
    assert elapsed_s < 1.0


def test_http_429_maps_with_retry_after_and_no_key_in_detail():
    def routes(app):
        models_route(app)

        async def chat(request):
            body = {"error": {"message": f"Rate limit for key {SECRET}", "type": "rate_limit"}}
            return web.json_response(body, status=429, headers={"Retry-After": "3"})

        app.router.add_post("/v1/chat/completions", chat)

    async def main():
        async with serve(routes) as url:
            dep = Remote.compatible(url, "m", api_key=SECRET)
            async with dep.open(base_url=url, settings=ClientSettings(pool_size=1)) as sender:
                rec = record()
                with pytest.raises(RequestFailed) as info:
                    await sender.send(Prompt.user("x"), rec)
                return rec, info.value

    rec, exc = asyncio.run(main())
    assert exc.category is ErrorCategory.RATE_LIMITED
    assert exc.http_status == 429 and rec.http_status == 429 and exc.retry_after_s == 3.0
    assert "Rate limit" in exc.detail and SECRET not in str(exc)


def test_preflight_connection_refused_is_one_line():
    url = f"http://127.0.0.1:{closed_port()}/v1"

    async def main():
        async with Remote.compatible(url, "m").open(base_url=url, settings=ClientSettings(pool_size=1)):
            pass

    with pytest.raises(TargetError) as info:
        asyncio.run(main())
    assert str(info.value) == f"{url}: connection refused"


def test_preflight_401_names_the_key_variable_not_the_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)

    def routes(app):
        async def models(request):
            return web.json_response({"error": {"message": "Incorrect API key"}}, status=401)

        app.router.add_get("/v1/models", models)

    async def main():
        async with serve(routes) as url:
            dep = Remote.openai("gpt-4o-mini", base_url=url + "/v1")
            async with dep.open(base_url=url + "/v1", settings=ClientSettings(pool_size=1)):
                pass

    with pytest.raises(TargetError) as info:
        asyncio.run(main())
    assert "HTTP 401" in str(info.value) and "OPENAI_API_KEY" in str(info.value)
    assert SECRET not in str(info.value)


def test_missing_key_fails_before_any_request(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    port = closed_port()

    async def main():
        dep = Remote.openai("gpt-4o-mini")
        async with dep.open(base_url=f"http://127.0.0.1:{port}/v1", settings=ClientSettings(pool_size=1)):
            pass

    with pytest.raises(TargetError, match="OPENAI_API_KEY"):
        asyncio.run(main())


def test_key_never_in_repr_or_describe():
    dep = Remote.openai("gpt-4o-mini", api_key=SECRET)
    assert SECRET not in repr(dep)
    assert SECRET not in str(dep.describe())
    assert dep.describe()["api_key"] == "explicit"


def endless_line_app(line_bytes: int):
    """Odd requests get one line of ``line_bytes`` with no newline; even ones a 3-token answer."""
    count = [0]

    def routes(app: web.Application) -> None:
        models_route(app)

        async def chat(request: web.Request) -> web.StreamResponse:
            count[0] += 1
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            if count[0] % 2 == 0:
                for i in range(3):
                    delta = orjson.dumps({"choices": [{"index": 0, "delta": {"content": f"t{i} "}}]})
                    await resp.write(b"data: " + delta + b"\n\n")
                await resp.write(b"data: [DONE]\n\n")
                await resp.write_eof()
                return resp
            piece = b"x" * 65536
            try:
                await resp.write(b"data: ")
                for _ in range(line_bytes // len(piece)):
                    await resp.write(piece)
            except ConnectionError:  # the client gave up on the line, as it should
                pass
            return resp

        app.router.add_post("/v1/chat/completions", chat)

    return routes


@pytest.mark.parametrize("path", ["push", "pull"])
def test_an_endless_line_fails_as_malformed_and_the_next_request_is_served(monkeypatch, path):
    from loadbench.deployments import transport as transport_mod

    monkeypatch.setattr(transport_mod, "DEFAULT_READ_PATH", path)

    async def main():
        async with serve(endless_line_app(64 << 20)) as url:
            dep = Remote.compatible(url, "m")
            async with dep.open(base_url=url, settings=ClientSettings(pool_size=1)) as sender:
                bad = record(0)
                with pytest.raises(RequestFailed) as info:
                    await sender.send(Prompt.user("x"), bad)
                good = record(1)
                await sender.send(Prompt.user("x"), good)
                return info.value, good

    exc, good = asyncio.run(main())
    assert exc.category is ErrorCategory.MALFORMED
    assert "without a newline" in exc.detail
    assert len(good.chunk_ns) == 3
