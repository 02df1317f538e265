"""The simulator's configuration: frozen values that cross into the simulator's own process as JSON.

``SimConfig`` holds everything the server needs: the engine's capacity model (``EngineProfile``),
the faults to inject (``FaultPlan``), canned answers (``Responder``), the model list, and the seed.
Every value is validated on construction; a bad one raises ``ConfigError`` naming the field.

The engine profiles in ``PROFILES`` are illustrative: round numbers of the right order for the named
class of hardware, not measurements. Fit your own with the knobs when you need a faithful model.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from loadbench.contract.errors import ConfigError

__all__ = [
    "FAULT_KINDS",
    "PROFILES",
    "EngineProfile",
    "FaultPlan",
    "FaultWindow",
    "Responder",
    "SimConfig",
]

# Fault kinds, by what the client sees:
#   "429" / "500" / "503" / "529"  an HTTP error before any byte of the answer (429 with Retry-After;
#                                  529 is Anthropic's "overloaded")
#   "refuse"        connection reset before any response; by schedule, the listening socket is closed
#                   for the window (connections refused) and open streams are reset, like a restart
#   "reset"         the connection is reset (TCP RST) after ``after_tokens`` tokens
#   "stall"         no bytes for ``stall_s`` after ``after_tokens`` tokens, then the stream resumes
#   "malformed"     one chunk that is not valid for the dialect after ``after_tokens`` tokens
#   "stream_error"  an in-stream error record after ``after_tokens`` tokens, then the stream ends
#   "truncate"      the stream ends cleanly after ``after_tokens`` tokens, without its final record
#   "slow_headers"  the response headers are held back for ``slow_headers_s``
FAULT_KINDS = (
    "429",
    "500",
    "503",
    "529",
    "refuse",
    "reset",
    "stall",
    "malformed",
    "stream_error",
    "truncate",
    "slow_headers",
)


def _check_number(owner: str, name: str, value: Any, *, minimum: float = 0.0, integer: bool = False,
                  positive: bool = False) -> None:
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or (not integer and not math.isfinite(value)):
        raise ConfigError(f"{owner}.{name} must be {kind}, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{owner}.{name} must be > 0, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{owner}.{name} must be >= {minimum:g}, got {value!r}")


@dataclass(frozen=True, slots=True)
class EngineProfile:
    """A continuous-batching engine's capacity, as a small cost model (times in milliseconds).

    One engine step takes ``step_base_ms + step_per_seq_ms * decoding + prefill_per_token_ms *
    prefill_tokens`` where ``decoding`` is the number of sequences producing a token this step and
    ``prefill_tokens`` the prompt tokens scheduled this step (at most ``prefill_chunk_tokens``:
    chunked prefill). Every decoding sequence emits one token per step; a sequence whose prefill
    finishes in a step emits its first token at the end of that step. A waiting request is admitted
    (first come, first served) while fewer than ``slots`` sequences run and its prompt plus its
    output limit fit in the ``kv_cache_tokens`` still unreserved. ``overhead_ms`` is a fixed delay
    before a request joins the queue (API gateway, tokenisation); it costs no engine time.

    So, unloaded: TTFT ≈ overhead + prompt * prefill_per_token (+ one base step per prefill chunk);
    ITL ≈ step_base + step_per_seq * batch. ``default_output_tokens`` is the answer length when the
    request sets no limit; ``eos_after_tokens`` (when set) is where the "model" stops on its own,
    unless the request asks for ``ignore_eos`` or ``min_tokens``. ``jitter_frac`` is the relative
    standard deviation of step times when the config enables jitter.

    Fixed timing: with ``fixed_ttft_ms`` and ``fixed_itl_ms`` both set, the step model is replaced
    by a server of exactly known capacity. Each admitted request holds one of ``slots`` and gets
    its first token ``fixed_ttft_ms`` after admission and each next one ``fixed_itl_ms`` later,
    whatever else runs (the step and prefill costs are ignored; ``overhead_ms``, which holds no
    slot, and the KV limit still apply). A request producing ``n`` tokens holds its slot ``fixed_ttft_ms + (n - 1) *
    fixed_itl_ms``, so the server completes at most ``slots / that`` requests per second.
    """

    name: str = "custom"
    slots: int = 16
    kv_cache_tokens: int = 65_536
    step_base_ms: float = 10.0
    step_per_seq_ms: float = 0.5
    prefill_per_token_ms: float = 0.05
    prefill_chunk_tokens: int = 2048
    default_output_tokens: int = 128
    eos_after_tokens: int | None = None
    overhead_ms: float = 0.0
    jitter_frac: float = 0.05
    fixed_ttft_ms: float | None = None
    fixed_itl_ms: float | None = None

    def __post_init__(self) -> None:
        owner = "EngineProfile"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"{owner}.name must be a non-empty string, got {self.name!r}")
        for name in ("slots", "kv_cache_tokens", "prefill_chunk_tokens", "default_output_tokens"):
            _check_number(owner, name, getattr(self, name), integer=True, positive=True)
        for name in ("step_base_ms", "step_per_seq_ms", "prefill_per_token_ms", "overhead_ms"):
            _check_number(owner, name, getattr(self, name))
        _check_number(owner, "jitter_frac", self.jitter_frac)
        if self.jitter_frac >= 1:
            raise ConfigError(f"{owner}.jitter_frac must be < 1, got {self.jitter_frac!r}")
        if self.eos_after_tokens is not None:
            _check_number(owner, "eos_after_tokens", self.eos_after_tokens, integer=True, positive=True)
        if (self.fixed_ttft_ms is None) != (self.fixed_itl_ms is None):
            raise ConfigError(f"{owner}: fixed timing needs both fixed_ttft_ms and fixed_itl_ms, got "
                              f"{self.fixed_ttft_ms!r} and {self.fixed_itl_ms!r}")
        if self.fixed_ttft_ms is not None:
            _check_number(owner, "fixed_ttft_ms", self.fixed_ttft_ms, positive=True)
            _check_number(owner, "fixed_itl_ms", self.fixed_itl_ms, positive=True)

    @property
    def fixed_timing(self) -> bool:
        """True when requests get fixed per-request times instead of the step model."""
        return self.fixed_ttft_ms is not None

    def capacity_per_s(self, output_tokens: int) -> float | None:
        """Requests/s a fixed-timing server completes when each produces ``output_tokens`` tokens
        (``None`` for the step model, whose capacity depends on the mix in flight)."""
        if self.fixed_ttft_ms is None or self.fixed_itl_ms is None:
            return None
        hold_ms = self.fixed_ttft_ms + (max(1, output_tokens) - 1) * self.fixed_itl_ms
        return self.slots * 1000.0 / hold_ms


#: Illustrative engine profiles (orders of magnitude, not measurements).
PROFILES: dict[str, EngineProfile] = {
    # For tests and the simulator's own ceiling: no modelled cost at all.
    "instant": EngineProfile(
        name="instant", slots=4096, kv_cache_tokens=100_000_000, step_base_ms=0.0,
        step_per_seq_ms=0.0, prefill_per_token_ms=0.0, prefill_chunk_tokens=1_000_000,
        default_output_tokens=16,
    ),
    # A laptop running a small quantised model through llama.cpp / Ollama (4 parallel slots).
    "laptop-1.5b": EngineProfile(
        name="laptop-1.5b", slots=4, kv_cache_tokens=16_384, step_base_ms=12.0,
        step_per_seq_ms=2.0, prefill_per_token_ms=0.5, prefill_chunk_tokens=512,
        default_output_tokens=256,
    ),
    "laptop-3b": EngineProfile(
        name="laptop-3b", slots=4, kv_cache_tokens=16_384, step_base_ms=22.0,
        step_per_seq_ms=3.5, prefill_per_token_ms=1.0, prefill_chunk_tokens=512,
        default_output_tokens=256,
    ),
    "laptop-8b": EngineProfile(
        name="laptop-8b", slots=4, kv_cache_tokens=16_384, step_base_ms=55.0,
        step_per_seq_ms=8.0, prefill_per_token_ms=2.5, prefill_chunk_tokens=512,
        default_output_tokens=256,
    ),
    # A datacentre GPU serving an 8B model with vLLM-style continuous batching.
    "gpu-8b": EngineProfile(
        name="gpu-8b", slots=256, kv_cache_tokens=400_000, step_base_ms=12.0,
        step_per_seq_ms=0.08, prefill_per_token_ms=0.06, prefill_chunk_tokens=2048,
        default_output_tokens=256,
    ),
    # A hosted API: a large fleet (never saturates at harness scale) behind a gateway.
    "remote-api": EngineProfile(
        name="remote-api", slots=100_000, kv_cache_tokens=10**10, step_base_ms=15.0,
        step_per_seq_ms=0.0, prefill_per_token_ms=0.02, prefill_chunk_tokens=8192,
        default_output_tokens=256, overhead_ms=250.0,
    ),
}


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """Inject ``kind`` into requests received between ``start_s`` and ``end_s`` after start-up.

    ``rate`` is the share of those requests hit (1.0: all). For ``kind="refuse"`` the window closes
    the listening socket instead: connections are refused, and open streams are reset at its start.
    """

    start_s: float
    end_s: float
    kind: str
    rate: float = 1.0

    def __post_init__(self) -> None:
        owner = "FaultWindow"
        _check_number(owner, "start_s", self.start_s)
        _check_number(owner, "end_s", self.end_s)
        if self.end_s <= self.start_s:
            raise ConfigError(f"{owner}.end_s must be > start_s, got {self.start_s!r}..{self.end_s!r}")
        if self.kind not in FAULT_KINDS:
            raise ConfigError(f"{owner}.kind must be one of {', '.join(FAULT_KINDS)}; got {self.kind!r}")
        _check_number(owner, "rate", self.rate)
        if self.rate > 1:
            raise ConfigError(f"{owner}.rate must be a probability in [0, 1], got {self.rate!r}")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Which faults the simulator injects, by rate and by schedule.

    ``rates`` maps a fault kind (see ``FAULT_KINDS``) to the probability that a request gets it;
    draws come from the config's seed, in arrival order, and a request gets at most one fault, so
    the rates must sum to at most 1. ``schedule`` holds ``FaultWindow`` values (or
    ``(start_s, end_s, kind[, rate])`` tuples); a window takes precedence over the rates.
    ``after_tokens`` is how many tokens a stream sends before a mid-stream fault strikes;
    ``stall_s`` how long a stall lasts; ``retry_after_s`` the Retry-After of a 429;
    ``slow_headers_s`` how long headers are held back.
    """

    rates: dict[str, float] = field(default_factory=dict)
    schedule: tuple[FaultWindow, ...] = ()
    after_tokens: int = 5
    stall_s: float = 5.0
    retry_after_s: float = 1.0
    slow_headers_s: float = 2.0

    def __post_init__(self) -> None:
        owner = "FaultPlan"
        if not isinstance(self.rates, dict):
            try:
                object.__setattr__(self, "rates", dict(self.rates))
            except (TypeError, ValueError):
                raise ConfigError(f"{owner}.rates must map fault kinds to rates, got {self.rates!r}") from None
        total = 0.0
        for kind, rate in self.rates.items():
            if kind not in FAULT_KINDS:
                raise ConfigError(f"{owner}.rates has unknown fault kind {kind!r}; "
                                  f"expected one of {', '.join(FAULT_KINDS)}")
            _check_number(owner, f"rates[{kind!r}]", rate)
            total += rate
        if total > 1 + 1e-9:
            raise ConfigError(f"{owner}.rates must sum to at most 1 (one fault per request), got {total:g}")
        windows = []
        for item in self.schedule:
            if isinstance(item, FaultWindow):
                windows.append(item)
            elif isinstance(item, dict):
                windows.append(FaultWindow(**item))
            elif isinstance(item, list | tuple) and len(item) in (3, 4):
                windows.append(FaultWindow(*item))
            else:
                raise ConfigError(f"{owner}.schedule entries must be (start_s, end_s, kind[, rate]), "
                                  f"got {item!r}")
        object.__setattr__(self, "schedule", tuple(windows))
        _check_number(owner, "after_tokens", self.after_tokens, integer=True)
        for name in ("stall_s", "retry_after_s", "slow_headers_s"):
            _check_number(owner, name, getattr(self, name))

    @property
    def active(self) -> bool:
        """True when any fault can happen."""
        return any(rate > 0 for rate in self.rates.values()) or bool(self.schedule)


@dataclass(frozen=True, slots=True)
class Responder:
    """A canned answer: when the last user message matches ``pattern`` (``re.search``), answer with
    ``json`` (serialised compactly) or ``template`` (``str.format`` with the match's groups: ``{0}``
    is the whole match, ``{1}``... the groups, named groups by name). Exactly one of the two.
    The answer is tokenised and streamed like any other; ``max_tokens`` still truncates it.
    """

    pattern: str
    json: Any = None
    template: str | None = None

    def __post_init__(self) -> None:
        owner = "Responder"
        if not isinstance(self.pattern, str):
            raise ConfigError(f"{owner}.pattern must be a regular expression string, got {self.pattern!r}")
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ConfigError(f"{owner}.pattern {self.pattern!r} is not a valid regex: {exc}") from None
        if (self.json is None) == (self.template is None):
            raise ConfigError(f"{owner} for {self.pattern!r} needs exactly one of json= or template=")
        if self.template is not None and (not isinstance(self.template, str) or not self.template):
            raise ConfigError(f"{owner}.template must be a non-empty string, got {self.template!r}")
        if self.json is not None:
            try:
                json.dumps(self.json)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{owner}.json must be JSON-serialisable: {exc}") from None


DEFAULT_MODELS: tuple[str, ...] = (
    "llama3.2:latest",
    "llama3.2:1b",
    "llama3.2:3b",
    "llama3.1:8b",
    "qwen2.5:1.5b",
    "qwen2.5:3b",
    "qwen2.5:7b",
    "deepseek-r1:1.5b",
    "deepseek-r1:8b",
    "qwen3:1.7b",
)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything the simulator process needs; JSON round-trips through ``to_json``/``from_json``.

    ``port`` 0 lets the OS choose. ``models`` is what ``/api/tags`` lists (Ollama endpoints answer
    404 for others; the OpenAI and Anthropic endpoints accept any model name). ``reasoning_tokens``
    is how many reasoning tokens a reasoning request produces before its answer (bounded by the
    request's limits). ``json_null_rate`` is how often a nullable field of a structured answer is
    null (an empty answer), ``json_malformed_rate`` how often a structured answer is broken JSON
    (see ``loadbench.sim.structured``). ``jitter`` enables seeded step-time noise (``profile.jitter_frac``); with it
    off, timings are deterministic up to the host's scheduling. ``trace`` records ground truth;
    ``trace_path`` is where the JSONL goes (``SimProcess`` picks a temporary file when unset).

    The tokenizer: words split into pieces of at most ``piece_chars`` characters (4 by default),
    and chat requests count ``chat_template_tokens`` more per request and
    ``message_template_tokens`` per message, as a real chat template adds. ``tokenize`` serves
    ``POST /tokenize``; off, it answers 404, like an OpenAI-compatible server without one.
    """

    profile: EngineProfile = PROFILES["instant"]
    faults: FaultPlan = FaultPlan()
    seed: int = 0
    jitter: bool = False
    responders: tuple[Responder, ...] = ()
    trace: bool = True
    trace_path: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    models: tuple[str, ...] = DEFAULT_MODELS
    reasoning_tokens: int = 32
    tokenize: bool = True
    piece_chars: int = 4
    chat_template_tokens: int = 0
    message_template_tokens: int = 0
    json_null_rate: float = 0.2
    json_malformed_rate: float = 0.0

    def __post_init__(self) -> None:
        owner = "SimConfig"
        for name in ("json_null_rate", "json_malformed_rate"):
            value = getattr(self, name)
            _check_number(owner, name, value)
            if value > 1:
                raise ConfigError(f"{owner}.{name} must be a probability in [0, 1], got {value!r}")
        if isinstance(self.profile, str):
            if self.profile not in PROFILES:
                raise ConfigError(f"{owner}.profile {self.profile!r} is unknown; "
                                  f"expected one of {', '.join(PROFILES)}")
            object.__setattr__(self, "profile", PROFILES[self.profile])
        if not isinstance(self.profile, EngineProfile):
            raise ConfigError(f"{owner}.profile must be an EngineProfile or a name in PROFILES, "
                              f"got {self.profile!r}")
        if not isinstance(self.faults, FaultPlan):
            raise ConfigError(f"{owner}.faults must be a FaultPlan, got {self.faults!r}")
        _check_number(owner, "seed", self.seed, integer=True)
        if not isinstance(self.jitter, bool):
            raise ConfigError(f"{owner}.jitter must be true or false, got {self.jitter!r}")
        if not isinstance(self.trace, bool):
            raise ConfigError(f"{owner}.trace must be true or false, got {self.trace!r}")
        responders = tuple(self.responders)
        for r in responders:
            if not isinstance(r, Responder):
                raise ConfigError(f"{owner}.responders must hold Responder values, got {r!r}")
        object.__setattr__(self, "responders", responders)
        if self.trace_path is not None and not isinstance(self.trace_path, str):
            object.__setattr__(self, "trace_path", str(self.trace_path))
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(f"{owner}.host must be a loopback address, got {self.host!r}")
        _check_number(owner, "port", self.port, integer=True)
        if self.port > 65535:
            raise ConfigError(f"{owner}.port must be in 0..65535, got {self.port!r}")
        models = (self.models,) if isinstance(self.models, str) else tuple(self.models)
        if not models or not all(isinstance(m, str) and m for m in models):
            raise ConfigError(f"{owner}.models must be a non-empty list of model names, got {self.models!r}")
        object.__setattr__(self, "models", models)
        _check_number(owner, "reasoning_tokens", self.reasoning_tokens, integer=True)
        if not isinstance(self.tokenize, bool):
            raise ConfigError(f"{owner}.tokenize must be true or false, got {self.tokenize!r}")
        _check_number(owner, "piece_chars", self.piece_chars, integer=True, positive=True)
        if self.piece_chars > 16:
            raise ConfigError(f"{owner}.piece_chars must be from 1 to 16, got {self.piece_chars!r}")
        _check_number(owner, "chat_template_tokens", self.chat_template_tokens, integer=True)
        _check_number(owner, "message_template_tokens", self.message_template_tokens, integer=True)

    def with_(self, **changes: Any) -> SimConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_json(self) -> str:
        """This config as a JSON string; ``SimConfig.from_json`` gives back an equal value."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SimConfig:
        """Rebuild a config written by ``to_json``; unknown or wrong fields raise ``ConfigError``."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"SimConfig JSON is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError("SimConfig JSON must be an object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimConfig:
        """Rebuild a config from ``dataclasses.asdict`` output."""
        data = dict(data)
        _reject_unknown("SimConfig", cls, data)
        if isinstance(data.get("profile"), dict):
            _reject_unknown("EngineProfile", EngineProfile, data["profile"])
            data["profile"] = EngineProfile(**data["profile"])
        if isinstance(data.get("faults"), dict):
            faults = dict(data["faults"])
            _reject_unknown("FaultPlan", FaultPlan, faults)
            faults["schedule"] = tuple(
                FaultWindow(**w) if isinstance(w, dict) else w for w in faults.get("schedule", ())
            )
            data["faults"] = FaultPlan(**faults)
        if "responders" in data:
            data["responders"] = tuple(
                Responder(**r) if isinstance(r, dict) else r for r in data["responders"] or ()
            )
        if "models" in data and isinstance(data["models"], list):
            data["models"] = tuple(data["models"])
        return cls(**data)


def _reject_unknown(owner: str, cls: type, data: dict[str, Any]) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{owner} has unknown field(s) {', '.join(unknown)}; "
                          f"expected some of {', '.join(sorted(known))}")
