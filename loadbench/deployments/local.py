"""Local deployment: a model served by Ollama on this machine (or a host you name).

``Local("llama3.2")`` with ``quant=Q3B()`` (given here or to the Experiment) resolves to the Ollama
tag ``llama3.2:3b-instruct-q4_K_M`` through the model catalog (see ``models.py``). Opening it asks
the server which models it has (``GET /api/tags``) and either pulls a missing one
(``pull=True``) or stops with a ``TargetError`` listing what the server has.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson

from loadbench.contract.errors import ConfigError, RequestFailed, TargetError
from loadbench.contract.sender import Sender
from loadbench.deployments.base import ClientSettings, Deployment, Dialect
from loadbench.deployments.failures import error_message, preflight_failure, translate
from loadbench.deployments.framing import NdjsonDecoder
from loadbench.deployments.models import DEFAULT_CATALOG, ModelCatalog, Quant, resolve_tag
from loadbench.deployments.sdk import open_ollama_sdk
from loadbench.deployments.transport import HttpSender, HttpTransport, read_limited
from loadbench.deployments.wire.ollama import OllamaWire
from loadbench.params import check_number, named_parameters
from loadbench.urls import join_url, v1_url

DEFAULT_HOST = "http://127.0.0.1:11434"
PULL_TIMEOUT_S = 3600.0


def normalise_host(host: str) -> str:
    """An Ollama host as a base URL: ``0.0.0.0:11434`` → ``http://127.0.0.1:11434``.

    Accepts what ``OLLAMA_HOST`` accepts: a bare host, ``host:port``, or a URL.
    """
    value = host.strip()
    if "://" not in value:
        value = "http://" + value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"Ollama host {host!r} is not a host, host:port or http(s) URL")
    hostname = parts.hostname
    if hostname in ("0.0.0.0", "::"):
        hostname = "127.0.0.1"  # a listen-anywhere address; connect locally
    if ":" in hostname:
        hostname = f"[{hostname}]"
    port = parts.port or (11434 if parts.scheme == "http" and "://" not in host else None)
    netloc = f"{hostname}:{port}" if port else hostname
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{netloc}{path}"


@named_parameters
@dataclass(frozen=True, slots=True)
class Local(Deployment):
    """A model on an Ollama server, spoken to through its native API.

    ``model`` is a family (``"llama3.2"``, resolved with ``quant``) or a full tag
    (``"llama3.2:3b"``). ``host`` defaults to ``OLLAMA_HOST``, else ``http://127.0.0.1:11434``
    (read when the value is made). ``api`` is ``"chat"`` (``/api/chat``) or ``"generate"``.
    ``keep_alive`` keeps the model loaded between requests (Ollama duration: ``"30m"``, seconds,
    ``-1`` forever). ``num_ctx``, ``temperature``, ``seed`` go into Ollama's options. ``think``
    overrides the run's ``reasoning`` setting (``None``: follow it). ``client`` is ``"http"``
    (lean aiohttp) or ``"sdk"`` (the ``ollama`` package). ``pull=True`` pulls a missing model
    when the run opens instead of stopping. ``catalog`` maps families and sizes to tags.
    """

    model: str
    quant: Quant | None = None
    host: str | None = None
    api: str = "chat"
    keep_alive: str | int | None = "30m"
    num_ctx: int | None = None
    temperature: float | None = None
    seed: int | None = None
    think: bool | None = None
    client: str = "http"
    pull: bool = False
    catalog: ModelCatalog = field(default=DEFAULT_CATALOG, repr=False)

    location: ClassVar[str] = "local"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"Local model must be a model family or tag, got {self.model!r}")
        if self.api not in ("chat", "generate"):
            raise ConfigError(f"Local api must be 'chat' or 'generate', got {self.api!r}")
        if self.client not in ("http", "sdk"):
            raise ConfigError(f"Local client must be 'http' or 'sdk', got {self.client!r}")
        if self.num_ctx is not None and (not isinstance(self.num_ctx, int) or self.num_ctx < 1):
            raise ConfigError(f"Local num_ctx must be a positive integer, got {self.num_ctx!r}")
        check_number("Local", "temperature", self.temperature, minimum=0, optional=True)
        check_number("Local", "seed", self.seed, integer=True, optional=True)
        if not isinstance(self.catalog, ModelCatalog):
            raise ConfigError(f"Local catalog must be a ModelCatalog, got {type(self.catalog).__name__}")
        # Validates the model/quant pairing now, so a bad preset fails when the scenario loads.
        resolve_tag(self.model, self.quant, self.catalog)
        host = self.host if self.host is not None else os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
        object.__setattr__(self, "host", normalise_host(host))

    # -- Deployment ---------------------------------------------------------------------------

    @property
    def dialect(self) -> Dialect:
        return "ollama"

    @property
    def model_name(self) -> str:
        return self.tags()[0]

    def tags(self, settings: ClientSettings | None = None) -> tuple[str, ...]:
        """Acceptable tags for this run, preferred first (the run's quant applies when ours is
        unset; both set and different is a ``ConfigError``)."""
        quant = self.quant
        other = settings.quant if settings is not None else None
        if other is not None and quant is not None and other != quant:
            raise ConfigError(
                f"Local({self.model!r}) has quant={quant!r} but the experiment asks for {other!r}; set it in one place"
            )
        return resolve_tag(self.model, quant if quant is not None else other, self.catalog)

    def default_base_url(self) -> str:
        assert self.host is not None
        return self.host

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "local",
            "engine": "ollama",
            "model": self.model,
            "tag": self.model_name,
            "quant": self.quant.describe() if self.quant is not None else None,
            "host": self.host,
            "api": self.api,
            "client": self.client,
            "keep_alive": self.keep_alive,
            "num_ctx": self.num_ctx,
            "temperature": self.temperature,
            "seed": self.seed,
            "think": self.think,
        }

    def wire(self, settings: ClientSettings, tag: str) -> OllamaWire:
        options: dict[str, Any] = {}
        if self.num_ctx is not None:
            options["num_ctx"] = self.num_ctx
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.seed is not None:
            options["seed"] = self.seed
        think = self.think if self.think is not None else settings.reasoning
        return OllamaWire(
            model=tag,
            api=self.api,  # type: ignore[arg-type]
            options=options,
            keep_alive=self.keep_alive,
            think=think,
        )

    def open(self, *, base_url: str, settings: ClientSettings) -> AbstractAsyncContextManager[Sender]:
        return self._open(base_url=base_url, settings=settings)

    @asynccontextmanager
    async def _open(self, *, base_url: str, settings: ClientSettings) -> AsyncIterator[Sender]:
        tags = self.tags(settings)
        async with HttpTransport(settings) as transport:
            tag = await self.preflight(transport, base_url, tags, settings)
            wire = self.wire(settings, tag)
            if self.client == "sdk":
                async with open_ollama_sdk(wire, base_url, settings) as sender:
                    yield sender
                return
            yield HttpSender(transport, wire, base_url)

    async def preflight(
        self,
        transport: HttpTransport,
        base_url: str,
        tags: tuple[str, ...],
        settings: ClientSettings,
    ) -> str:
        """Check the server speaks Ollama and has the model; returns the tag to send.

        Pulls the preferred tag when none is present and ``pull`` is set; otherwise raises a
        ``TargetError`` listing the server's models.
        """
        timeout_s = settings.timeouts.connect_s + 10.0
        try:
            status, body, _ = await transport.get(join_url(base_url, "api/tags"), {}, timeout_s=timeout_s)
        except RequestFailed as exc:
            failure = preflight_failure(base_url, exc)
            if exc.detail == "connection refused":
                failure = TargetError(f"{failure} — is Ollama running (ollama serve)?")
            raise failure from None
        listing = _json(body) if status == 200 else None
        if not (isinstance(listing, dict) and isinstance(listing.get("models"), list)):
            raise TargetError(
                f"{base_url}: GET /api/tags "
                + (f"answered HTTP {status}" if status != 200 else "did not list models")
                + await _openai_hint(transport, base_url, timeout_s)
            )
        served = [
            str(m.get("name") or m.get("model"))
            for m in listing["models"]
            if isinstance(m, dict) and (m.get("name") or m.get("model"))
        ]
        chosen = next((tag for tag in tags if _has(served, tag)), None)
        if chosen is None and self.pull:
            await self._pull(transport, base_url, tags[0])
            chosen = tags[0]
        if chosen is not None:
            think = self.think if self.think is not None else settings.reasoning
            if think:
                await _check_thinking(transport, base_url, chosen, timeout_s)
            return chosen
        have = ", ".join(served) if served else "no models"
        raise TargetError(
            f"{base_url} has no model {tags[0]!r} (pull it with `ollama pull {tags[0]}` "
            f"or Local(..., pull=True)); it has: {have}"
        )

    async def _pull(self, transport: HttpTransport, base_url: str, tag: str) -> None:
        """``POST /api/pull`` streaming progress until ``{"status": "success"}``."""
        url = join_url(base_url, "api/pull")
        body = orjson.dumps({"model": tag, "stream": True})
        decoder = NdjsonDecoder()
        try:
            async with asyncio.timeout(PULL_TIMEOUT_S):
                async with transport.session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    if resp.status >= 300:
                        message = error_message(await read_limited(resp.content, 65536))
                        raise TargetError(f"{base_url}: pulling {tag!r} failed: HTTP {resp.status}: {message}")
                    async for chunk in resp.content.iter_any():
                        for _, line in decoder.feed(chunk):
                            status = _pull_status(tag, base_url, line)
                            if status == "success":
                                return
                    for line in (decoder.close()[1],):
                        if line and _pull_status(tag, base_url, line) == "success":
                            return
        except TargetError:
            raise
        except Exception as exc:
            failed = translate(exc, responded=True)
            raise TargetError(f"{base_url}: pulling {tag!r} failed: {failed.detail}") from None
        raise TargetError(f"{base_url}: pulling {tag!r} ended without success")


async def _check_thinking(transport: HttpTransport, base_url: str, tag: str, timeout_s: float) -> None:
    """Stop early when reasoning is asked of a model without Ollama's ``thinking`` capability
    (every request would fail with HTTP 400). Servers that don't report capabilities pass."""
    try:
        async with asyncio.timeout(timeout_s):
            async with transport.session.post(
                join_url(base_url, "api/show"),
                data=orjson.dumps({"model": tag}),
                headers={"Content-Type": "application/json"},
            ) as resp:
                body = await read_limited(resp.content, 1 << 20) if resp.status == 200 else b""
    except Exception:
        return
    info = _json(body) if body else None
    capabilities = info.get("capabilities") if isinstance(info, dict) else None
    if isinstance(capabilities, list) and "thinking" not in capabilities:
        raise TargetError(
            f"{base_url}: model {tag!r} does not support thinking (capabilities: "
            f"{', '.join(map(str, capabilities))}); run with reasoning=False or pick a thinking "
            "model such as deepseek-r1 or qwen3"
        )


def _pull_status(tag: str, base_url: str, line: bytes) -> str:
    obj = _json(line)
    if isinstance(obj, dict):
        if obj.get("error"):
            raise TargetError(f"{base_url}: pulling {tag!r} failed: {str(obj['error'])[:200]}")
        return str(obj.get("status", ""))
    return ""


def _has(served: list[str], tag: str) -> bool:
    if tag in served:
        return True
    if ":" not in tag:
        return f"{tag}:latest" in served
    return tag.endswith(":latest") and tag[: -len(":latest")] in served


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


async def _openai_hint(transport: HttpTransport, base_url: str, timeout_s: float) -> str:
    """``" — ... answered like an OpenAI-compatible server"`` when it does, else ``" — not an
    Ollama server"``."""
    try:
        status, body, _ = await transport.get(v1_url(base_url, "models"), {}, timeout_s=timeout_s)
    except RequestFailed:
        return " — not an Ollama server"
    listing = _json(body) if status in (200, 401, 403) else None
    if status in (401, 403) or (isinstance(listing, dict) and isinstance(listing.get("data"), list)):
        return (
            f" — {base_url} answered like an OpenAI-compatible server, not an Ollama one "
            f"(use Remote.compatible('{base_url}', ...))"
        )
    return " — not an Ollama server"
