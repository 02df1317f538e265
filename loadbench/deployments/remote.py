"""Remote deployments: hosted APIs (OpenAI, DeepSeek, Claude) and OpenAI-compatible servers.

``Remote`` is a frozen value; ``open()`` resolves the API key (explicit argument, else the
provider's environment variable, read at that edge and nowhere else), checks the target with one
light request, and yields a ``Sender``. The key lives in a field excluded from ``repr`` and
equality and never reaches ``describe()``, error messages or logs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import orjson

from loadbench.contract.errors import ConfigError, RequestFailed, TargetError
from loadbench.contract.sender import Sender
from loadbench.deployments.base import ClientSettings, Deployment, Dialect
from loadbench.deployments.failures import error_message, preflight_failure, redact
from loadbench.deployments.sdk import open_remote_sdk
from loadbench.deployments.transport import HttpSender, HttpTransport
from loadbench.deployments.wire.anthropic import AnthropicWire
from loadbench.deployments.wire.openai import OpenAIWire, is_reasoning_model
from loadbench.params import check_number, named_parameters
from loadbench.urls import join_url, origin, v1_url

Provider = Literal["openai", "deepseek", "anthropic", "compatible"]
Client = Literal["http", "sdk"]

ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True, slots=True)
class _ProviderInfo:
    base_url: str | None
    key_env: str | None
    dialect: Dialect
    model: str | None  # default model with reasoning off
    reasoning_model: str | None  # default model with reasoning on
    extensions: bool  # accepts ignore_eos / min_tokens


_PROVIDERS: dict[str, _ProviderInfo] = {
    "openai": _ProviderInfo("https://api.openai.com/v1", "OPENAI_API_KEY", "openai", "gpt-4o-mini", "o4-mini", False),
    "deepseek": _ProviderInfo(
        "https://api.deepseek.com",
        "DEEPSEEK_API_KEY",
        "openai",
        "deepseek-chat",
        "deepseek-reasoner",
        False,
    ),
    "anthropic": _ProviderInfo(
        "https://api.anthropic.com",
        "ANTHROPIC_API_KEY",
        "anthropic",
        "claude-haiku-4-5",
        "claude-haiku-4-5",
        False,
    ),
    # A server the user runs (vLLM, llama.cpp, SGLang, Ollama's /v1): no default URL or model,
    # and no environment key, so a provider key is never sent to a machine the user didn't name.
    "compatible": _ProviderInfo(None, None, "openai", None, None, True),
}
_ALIASES = {"claude": "anthropic", "openai-compatible": "compatible", "vllm": "compatible"}


@named_parameters
@dataclass(frozen=True, slots=True)
class Remote(Deployment):
    """A model served over HTTP by a provider or an OpenAI-compatible server.

    ``provider`` is ``"openai"``, ``"deepseek"``, ``"claude"``/``"anthropic"`` or
    ``"compatible"``. ``model`` defaults per provider (``reasoning=True`` picks the provider's
    reasoning model: ``o4-mini``, ``deepseek-reasoner``). ``base_url`` defaults to the provider's
    API. ``api_key`` defaults to ``OPENAI_API_KEY`` / ``DEEPSEEK_API_KEY`` / ``ANTHROPIC_API_KEY``
    (none for ``compatible``). With reasoning on, OpenAI gets ``reasoning_effort`` (default
    ``"medium"``) and Claude gets extended thinking with ``thinking_budget_tokens``.
    ``max_tokens`` is the answer cap when a prompt sets none (Anthropic requires one).
    ``ignore_eos``: send the ``ignore_eos``/``min_tokens`` extension; ``None`` means "only to
    servers known to accept it" (compatible servers and the simulator).
    ``client`` picks the transport: ``"http"`` (lean aiohttp) or ``"sdk"`` (official SDKs).
    """

    provider: str
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False, compare=False)
    reasoning_effort: str | None = None
    thinking_budget_tokens: int = 2048
    max_tokens: int = 4096
    temperature: float | None = None
    seed: int | None = None
    ignore_eos: bool | None = None
    client: str = "http"

    location: ClassVar[str] = "remote"

    def __post_init__(self) -> None:
        for name in ("model", "base_url", "reasoning_effort"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"Remote.{name} must be a string (or None), got {value!r}")
        if self.api_key is not None and not isinstance(self.api_key, str):
            raise ConfigError(f"Remote.api_key must be a string (or None), got a {type(self.api_key).__name__}")
        provider = _ALIASES.get(self.provider, self.provider)
        if provider not in _PROVIDERS:
            known = ", ".join(sorted({*_PROVIDERS, *_ALIASES}))
            raise ConfigError(f"Remote provider {self.provider!r} is unknown; expected one of {known}")
        object.__setattr__(self, "provider", provider)
        if provider == "compatible" and not self.base_url:
            raise ConfigError("Remote.compatible needs a base_url")
        if self.client not in ("http", "sdk"):
            raise ConfigError(f"Remote client must be 'http' or 'sdk', got {self.client!r}")
        if self.base_url is not None and urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ConfigError(f"Remote base_url must start with http:// or https://, got {self.base_url!r}")
        check_number("Remote", "max_tokens", self.max_tokens, integer=True, minimum=1)
        check_number("Remote", "thinking_budget_tokens", self.thinking_budget_tokens, integer=True, minimum=1)
        check_number("Remote", "temperature", self.temperature, minimum=0, optional=True)
        check_number("Remote", "seed", self.seed, integer=True, optional=True)
        if self.ignore_eos is not None and not isinstance(self.ignore_eos, bool):
            raise ConfigError(f"Remote.ignore_eos must be True, False or None, got {self.ignore_eos!r}")
        if provider == "anthropic" and self.thinking_budget_tokens < 1024:
            raise ConfigError(
                "Remote.claude thinking_budget_tokens must be >= 1024 (Anthropic's minimum), "
                f"got {self.thinking_budget_tokens!r}"
            )
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("Remote api_key is empty; pass a key or leave it unset to use the environment")

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def openai(
        cls,
        model: str | None = None,
        reasoning_effort: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        **options: Any,
    ) -> Remote:
        """OpenAI's chat completions API (key: ``api_key`` or ``OPENAI_API_KEY``)."""
        return cls("openai", model, base_url, api_key=api_key, reasoning_effort=reasoning_effort, **options)

    @classmethod
    def deepseek(
        cls,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        **options: Any,
    ) -> Remote:
        """DeepSeek's API: ``deepseek-chat``, or ``deepseek-reasoner`` when reasoning is on."""
        return cls("deepseek", model, base_url, api_key=api_key, **options)

    @classmethod
    def claude(
        cls,
        model: str | None = None,
        thinking_budget_tokens: int = 2048,
        api_key: str | None = None,
        base_url: str | None = None,
        **options: Any,
    ) -> Remote:
        """Anthropic's Messages API; reasoning on enables extended thinking with this budget."""
        return cls(
            "anthropic",
            model,
            base_url,
            api_key=api_key,
            thinking_budget_tokens=thinking_budget_tokens,
            **options,
        )

    @classmethod
    def compatible(cls, base_url: str, model: str | None = None, api_key: str | None = None, **options: Any) -> Remote:
        """An OpenAI-compatible server (vLLM, llama.cpp, SGLang, Ollama's /v1) at ``base_url``.

        With no ``model``, the run uses the first model the server lists at ``/v1/models`` (a
        vLLM or llama.cpp server usually serves one), so one scenario works against any of them.
        """
        return cls("compatible", model, base_url, api_key=api_key, **options)

    # -- Deployment ---------------------------------------------------------------------------

    @property
    def dialect(self) -> Dialect:
        return _PROVIDERS[self.provider].dialect

    @property
    def model_name(self) -> str:
        return self.resolved_model(reasoning=False)

    def resolved_model(self, *, reasoning: bool) -> str:
        """The model sent on the wire: the one given, else the provider's default.

        A compatible server with no model given uses the first model it lists; until the run
        opens that is unknown, and this returns ``"(the server's first model)"``.
        """
        if self.model:
            return self.model
        info = _PROVIDERS[self.provider]
        name = info.reasoning_model if reasoning else info.model
        return name or "(the server's first model)"

    def default_base_url(self) -> str:
        if self.base_url:
            return self.base_url
        url = _PROVIDERS[self.provider].base_url
        assert url is not None  # compatible requires a base_url
        return url

    def describe(self) -> dict[str, Any]:
        info = _PROVIDERS[self.provider]
        if self.api_key is not None:
            key_source = "explicit"
        elif info.key_env:
            key_source = f"env {info.key_env}"
        else:
            key_source = "none"
        return {
            "kind": "remote",
            "provider": self.provider,
            "dialect": self.dialect,
            "model": self.model_name,
            "base_url": self.default_base_url(),
            "client": self.client,
            "api_key": key_source,
            "reasoning_effort": self.reasoning_effort,
            "thinking_budget_tokens": (self.thinking_budget_tokens if self.provider == "anthropic" else None),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
        }

    # -- opening ------------------------------------------------------------------------------

    def resolve_key(self, settings: ClientSettings) -> str | None:
        """The API key for this run, or ``None`` where none is needed.

        Raises ``TargetError`` when a provider key is missing and the target is not the
        simulator. The simulator never receives a real key.
        """
        if settings.simulated:
            return None
        if self.api_key is not None:
            return self.api_key
        env = _PROVIDERS[self.provider].key_env
        if env is None:
            return None
        key = os.environ.get(env, "").strip()
        if not key:
            raise TargetError(
                f"Remote {self.provider} ({self.model_name}) needs an API key: set {env} or pass api_key=..."
            )
        return key

    def key_hint(self) -> str:
        """Where the key came from, for error messages (never the key itself)."""
        env = _PROVIDERS[self.provider].key_env
        if self.api_key is not None:
            return "check the api_key given to Remote"
        return f"check {env}" if env else "the server wants an api_key"

    def openai_wire(self, settings: ClientSettings) -> OpenAIWire:
        """The OpenAI-dialect request shape for this run."""
        model = self.resolved_model(reasoning=settings.reasoning)
        effort = self.reasoning_effort
        if effort is None and settings.reasoning and self.provider == "openai":
            effort = "medium"
        reasoning_model = self.provider == "openai" and (is_reasoning_model(model) or effort)
        send_ignore_eos = self.ignore_eos
        if send_ignore_eos is None:
            send_ignore_eos = _PROVIDERS[self.provider].extensions or settings.simulated
        return OpenAIWire(
            model=model,
            max_tokens_field="max_completion_tokens" if reasoning_model else "max_tokens",
            send_ignore_eos=bool(send_ignore_eos),
            reasoning_effort=effort,
            temperature=self.temperature,
            seed=self.seed,
        )

    def wire(self, settings: ClientSettings) -> Any:
        """The request shape for this run, in this deployment's dialect."""
        if self.dialect == "anthropic":
            return AnthropicWire(
                model=self.resolved_model(reasoning=settings.reasoning),
                default_max_tokens=self.max_tokens,
                thinking_budget_tokens=self.thinking_budget_tokens if settings.reasoning else None,
                temperature=self.temperature,
            )
        return self.openai_wire(settings)

    def auth_headers(self, key: str | None) -> dict[str, str]:
        if self.dialect == "anthropic":
            headers = {"anthropic-version": ANTHROPIC_VERSION}
            if key:
                headers["x-api-key"] = key
            return headers
        return {"Authorization": f"Bearer {key}"} if key else {}

    def open(self, *, base_url: str, settings: ClientSettings) -> AbstractAsyncContextManager[Sender]:
        return self._open(base_url=base_url, settings=settings)

    @asynccontextmanager
    async def _open(self, *, base_url: str, settings: ClientSettings) -> AsyncIterator[Sender]:
        key = self.resolve_key(settings)
        if self.client == "sdk":
            async with HttpTransport(settings) as transport:
                chosen = self._with_served_model(await self.preflight(transport, base_url, key, settings), base_url)
            async with open_remote_sdk(chosen.dialect, chosen.wire(settings), base_url, key, settings) as sender:
                yield sender
            return
        async with HttpTransport(settings) as transport:
            chosen = self._with_served_model(await self.preflight(transport, base_url, key, settings), base_url)
            yield HttpSender(transport, chosen.wire(settings), base_url, self.auth_headers(key), secret=key)

    def _with_served_model(self, served: list[str], base_url: str) -> Remote:
        """This deployment, with the server's first model when none was given (compatible only)."""
        if self.model or self.provider != "compatible":
            return self
        if not served:
            raise TargetError(f"{base_url} lists no models; give Remote.compatible a model=")
        return replace(self, model=served[0])

    async def preflight(
        self, transport: HttpTransport, base_url: str, key: str | None, settings: ClientSettings
    ) -> list[str]:
        """One ``GET /v1/models``: the server is there, speaks this dialect, and takes the key.

        Turns each failure into one ``TargetError`` line; for compatible servers also checks the
        model, when one was given, is among those served. Returns the served model ids.
        """
        url = v1_url(base_url, "models")
        timeout_s = settings.timeouts.connect_s + 10.0
        try:
            status, body, content_type = await transport.get(url, self.auth_headers(key), timeout_s=timeout_s)
        except RequestFailed as exc:
            raise preflight_failure(base_url, exc) from None
        if status in (401, 403):
            raise TargetError(f"{base_url}: HTTP {status} — {self.key_hint()}")
        if status == 404 or status == 405:
            hint = await _dialect_hint(transport, base_url, timeout_s)
            raise TargetError(
                f"{base_url}: HTTP {status} for GET {urlsplit(url).path} — not an "
                f"{'Anthropic' if self.dialect == 'anthropic' else 'OpenAI-compatible'} API root" + hint
            )
        if status >= 400:
            message = redact(error_message(body), key)
            raise TargetError(f"{base_url}: HTTP {status} for GET {urlsplit(url).path}: {message}")
        try:
            listing = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise TargetError(
                f"{base_url}: GET {urlsplit(url).path} answered with {content_type or 'no type'}, "
                "not a JSON model list — is this an OpenAI-compatible server?"
            ) from None
        if isinstance(listing, dict) and "models" in listing and "data" not in listing:
            raise TargetError(
                f"{base_url} answered like an Ollama server, not an OpenAI-compatible one "
                f"(use Local(...), or base_url '{origin(base_url)}/v1' for its OpenAI API)"
            )
        if not isinstance(listing, dict) or not isinstance(listing.get("data"), list):
            raise TargetError(f"{base_url}: GET {urlsplit(url).path} did not return an OpenAI-style model list")
        served = [m["id"] for m in listing["data"] if isinstance(m, dict) and isinstance(m.get("id"), str)]
        strict = self.provider == "compatible" and self.model and not settings.simulated
        if strict and served and self.model not in served:
            names = ", ".join(served[:20])
            raise TargetError(
                f"{base_url} does not serve model {self.model!r}; it serves: {names} "
                "(leave model unset to use the server's first model)"
            )
        return served


async def _dialect_hint(transport: HttpTransport, base_url: str, timeout_s: float) -> str:
    """A hint naming the dialect the host does speak, when we can tell (else ``""``)."""
    root = origin(base_url)
    try:
        status, body, _ = await transport.get(join_url(root, "api/tags"), {}, timeout_s=timeout_s)
    except RequestFailed:
        return ""
    if status == 200:
        try:
            listing = orjson.loads(body)
        except orjson.JSONDecodeError:
            return ""
        if isinstance(listing, dict) and isinstance(listing.get("models"), list):
            return (
                f"; {root} answers like an Ollama server (use Local(...), or base_url "
                f"'{root}/v1' for its OpenAI-compatible API)"
            )
    return ""
