"""Counting tokens without a model hub, and the calibration that turns counts into server counts.

A ``TokenCounter`` counts the tokens of a piece of text and cuts text to a token budget. Four
kinds, chosen by what is at hand:

* ``ServerTokenizer(base_url)``: the target's own ``POST /tokenize`` (llama.cpp, vLLM, the
  embedded simulator). Exact, but each count is an HTTP round trip, so a stream never calls it per
  request: ``Workload.open`` tokenizes a sample of the workload's own text once, before the load
  starts, and fits a ``CalibratedEstimate`` from it.
* ``HFTokenizerFile(path)``: a local ``tokenizer.json`` through the ``tokenizers`` package.
* ``TiktokenEncoding(name)``: a tiktoken encoding, only if ``tiktoken`` is installed and the
  encoding is already in its cache (never downloaded).
* ``CalibratedEstimate(chars_per_token)``: an estimate from words, punctuation and line breaks;
  needs nothing.

What a server reports as ``input_tokens`` is more than the content: the chat template adds tokens
per request and per message, and an estimate's ratio is off by some factor. ``LengthModel`` learns
``reported ≈ overhead + per_message * messages + scale * counted`` from the records a stream
observes, and a stream sizes its prompts through it, so lengths converge on the server's own
counts during warm-up whichever counter is used.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from loadbench.contract.errors import ConfigError, TargetError
from loadbench.urls import redact_url, server_root

__all__ = [
    "CalibratedEstimate",
    "HFTokenizerFile",
    "LengthModel",
    "ServerTokenizer",
    "TiktokenEncoding",
    "TokenCounter",
    "auto_counter",
    "truncate_by_count",
]

Keep = Literal["head", "tail"]


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens of text (content only: no chat template, no special tokens).

    ``exact`` is true when counts come from a real tokenizer (the calibration then trusts its
    scale); ``local`` is true when counting does no I/O and is cheap enough to run per prompt.
    """

    exact: bool
    local: bool

    def count(self, text: str) -> int:
        """The number of tokens in ``text``."""
        ...

    def truncate(self, text: str, max_tokens: int, *, keep: Keep = "head") -> str:
        """The longest head (or tail) of ``text`` holding at most ``max_tokens`` tokens."""
        ...

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description."""
        ...


def truncate_by_count(counter: TokenCounter, text: str, max_tokens: int, keep: Keep = "head") -> str:
    """A generic ``truncate`` for counters that can only count: bisect on character positions."""
    if max_tokens <= 0:
        return ""
    if counter.count(text) <= max_tokens:
        return text
    lo, hi = 0, len(text)  # invariant: a cut of lo chars fits, hi chars does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        piece = text[:mid] if keep == "head" else text[len(text) - mid :]
        if counter.count(piece) <= max_tokens:
            lo = mid
        else:
            hi = mid
    return text[:lo] if keep == "head" else text[len(text) - lo :]


# -- the estimate --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _pieces(chars_per_token: int) -> re.Pattern[str]:
    # A word counts one token per `chars_per_token` characters (rounded up); each punctuation mark
    # and each run of line breaks counts one. Tracks real tokenizers across prose, tables, digits
    # and LaTeX far better than a plain characters ratio, and runs in the regex engine.
    return re.compile(rf"\w{{1,{chars_per_token}}}|[^\w\s]|\s*\n\s*")


@dataclass(frozen=True, slots=True)
class CalibratedEstimate:
    """An estimate that needs nothing: a word of *n* characters counts ``ceil(n /
    chars_per_token)`` tokens, a punctuation mark or a line break one.

    The estimate is a starting point: a stream's ``LengthModel`` corrects its scale (and learns the
    chat template's overhead) from the server-reported ``input_tokens`` it observes, so prompts
    converge on their targets after a few dozen warm-up requests. ``fitted_from`` says where
    ``chars_per_token`` came from (``"default"``, or a sample tokenized by the server).
    """

    chars_per_token: int = 4
    fitted_from: str = "default"
    exact: bool = field(default=False, init=False)
    local: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        cpt = self.chars_per_token
        if not isinstance(cpt, int) or isinstance(cpt, bool) or not (1 <= cpt <= 16):
            raise ConfigError(f"CalibratedEstimate.chars_per_token must be an integer from 1 to 16, got {cpt!r}")

    @classmethod
    def fit(cls, samples: Iterable[tuple[str, int]], *, fitted_from: str) -> CalibratedEstimate:
        """The ``chars_per_token`` whose total over ``(text, tokens)`` samples comes closest to
        the tokens counted."""
        samples = list(samples)
        tokens = sum(n for _, n in samples)
        if tokens <= 0:
            raise ConfigError(f"cannot fit a token estimate from {fitted_from}: no tokens counted")
        best = min(
            range(1, 17),
            key=lambda k: abs(sum(len(_pieces(k).findall(t)) for t, _ in samples) - tokens),
        )
        return cls(chars_per_token=best, fitted_from=fitted_from)

    def count(self, text: str) -> int:
        return len(_pieces(self.chars_per_token).findall(text)) if text else 0

    def truncate(self, text: str, max_tokens: int, *, keep: Keep = "head") -> str:
        if max_tokens <= 0:
            return ""
        pieces = _pieces(self.chars_per_token)
        if keep == "head":
            # Walks only as far as the cut: a prompt's last page is cut from a much longer one.
            end = 0
            for seen, match in enumerate(pieces.finditer(text)):
                if seen == max_tokens:
                    return text[:end]
                end = match.end()
            return text
        spans = [m.span() for m in pieces.finditer(text)]
        if len(spans) <= max_tokens:
            return text
        return text[spans[len(spans) - max_tokens][0] :]

    def describe(self) -> dict[str, Any]:
        return {"kind": "estimate", "chars_per_token": self.chars_per_token, "fitted_from": self.fitted_from}


# -- local tokenizers ----------------------------------------------------------------------------


class HFTokenizerFile:
    """A local Hugging Face ``tokenizer.json`` (the ``tokenizers`` package; extra ``datasets``).

    Counting runs in the Rust library (tens of microseconds per prompt) and cuts use the
    tokenizer's character offsets, so a cut lands on a token boundary."""

    exact = True
    local = True

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ConfigError(
                "HFTokenizerFile needs the 'tokenizers' package: pip install 'loadbench[datasets]'"
            ) from e
        try:
            self._tok = Tokenizer.from_file(self.path)
        except Exception as e:  # the library raises plain Exception for missing or bad files
            raise ConfigError(f"HFTokenizerFile: cannot load tokenizer {self.path!r}: {e}") from e

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids) if text else 0

    def truncate(self, text: str, max_tokens: int, *, keep: Keep = "head") -> str:
        if max_tokens <= 0:
            return ""
        enc = self._tok.encode(text, add_special_tokens=False)
        n = len(enc.ids)
        if n <= max_tokens:
            return text
        offsets = enc.offsets
        if keep == "head":
            return text[: offsets[max_tokens - 1][1]]
        return text[offsets[n - max_tokens][0] :]

    def describe(self) -> dict[str, Any]:
        return {"kind": "tokenizer_file", "path": self.path}


# Where tiktoken keeps downloaded encodings, and their public blob names; knowing both lets us
# check the cache without letting tiktoken fetch anything.
_TIKTOKEN_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


def _tiktoken_cache_dir() -> str:
    env = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    return env or os.path.join(tempfile.gettempdir(), "data-gym-cache")


class TiktokenEncoding:
    """A tiktoken encoding (``"cl100k_base"``, ``"o200k_base"``...), used only when ``tiktoken``
    is installed and the encoding is already cached; loadbench never downloads it."""

    exact = True
    local = True

    def __init__(self, name: str) -> None:
        self.name = name
        try:
            import tiktoken
        except ImportError as e:
            raise ConfigError(
                f"TiktokenEncoding({name!r}) needs the 'tiktoken' package, which is not installed"
            ) from e
        blob = _TIKTOKEN_BLOB.format(name=name)
        cached = os.path.join(_tiktoken_cache_dir(), hashlib.sha1(blob.encode()).hexdigest())
        if not os.path.exists(cached):
            raise ConfigError(
                f"TiktokenEncoding({name!r}): the encoding is not in tiktoken's cache "
                f"({_tiktoken_cache_dir()}); loadbench does not download it. Use HFTokenizerFile, "
                "ServerTokenizer or CalibratedEstimate instead"
            )
        self._enc = tiktoken.get_encoding(name)

    def count(self, text: str) -> int:
        return len(self._enc.encode_ordinary(text)) if text else 0

    def truncate(self, text: str, max_tokens: int, *, keep: Keep = "head") -> str:
        if max_tokens <= 0:
            return ""
        ids = self._enc.encode_ordinary(text)
        if len(ids) <= max_tokens:
            return text
        return self._enc.decode(ids[:max_tokens] if keep == "head" else ids[-max_tokens:])

    def describe(self) -> dict[str, Any]:
        return {"kind": "tiktoken", "encoding": self.name}


# -- the target's own tokenizer --------------------------------------------------------------------


class ServerTokenizer:
    """The target's ``POST /tokenize``: ``{"content": text}`` → ``{"tokens": [...]}`` (llama.cpp,
    the simulator); a server that rejects that body gets vLLM's ``{"prompt": text}`` instead, and a
    ``{"count": n}`` answer is read too.

    ``count_chat(messages)`` counts a whole chat request as the server's chat endpoint does, the
    chat template and special tokens included: llama.cpp's ``POST /apply-template`` then
    ``/tokenize`` with ``add_special``, or ``/tokenize`` with ``{"messages": [...]}`` (vLLM, the
    simulator). It answers ``None`` where the server offers neither.

    Synchronous (``urllib``): it is meant for before the load starts. ``Workload.open`` calls it
    while it builds the first prompts, before the scheduler takes any; it is never called on the
    send path (``local`` is false).
    """

    exact = True
    local = False

    def __init__(self, base_url: str, *, path: str = "/tokenize", timeout_s: float = 10.0) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"ServerTokenizer.base_url must be an http(s) URL, got {base_url!r}")
        root = server_root(base_url)  # /tokenize lives at the server root, not under the API prefix
        self.url = root + path
        self.timeout_s = timeout_s
        self._body_key = "content"
        self._root = root
        self._chat_mode: str | None = None  # "apply-template" | "messages" | "none", found on first use
        self.calls = 0

    def _post(self, body: dict[str, Any], url: str | None = None) -> dict[str, Any]:
        req = urllib.request.Request(
            url or self.url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        self.calls += 1
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            return json.loads(resp.read())

    def tokens(self, text: str) -> int:
        """The server's token count for ``text`` (no special tokens)."""
        try:
            try:
                data = self._post(self._request(text))
            except urllib.error.HTTPError as e:
                if self._body_key != "content" or e.code not in (400, 422):
                    raise
                self._body_key = "prompt"
                data = self._post(self._request(text))
        except urllib.error.HTTPError as e:
            raise TargetError(f"{redact_url(self.url)} answered HTTP {e.code} to a tokenize request") from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise TargetError(f"cannot tokenize through {redact_url(self.url)}: {reason}") from e
        if isinstance(data.get("tokens"), list):
            return len(data["tokens"])
        if isinstance(data.get("count"), int):
            return int(data["count"])
        raise TargetError(f"{redact_url(self.url)} answered without 'tokens' or 'count'")

    def _request(self, text: str) -> dict[str, Any]:
        if self._body_key == "content":
            return {"content": text}
        return {"prompt": text, "add_special_tokens": False}

    def count(self, text: str) -> int:
        return self.tokens(text) if text else 0

    def count_chat(self, messages: Iterable[tuple[str, str]]) -> int | None:
        """The server's input tokens for a chat request of ``(role, content)`` messages, its
        template included; ``None`` when the server cannot template (then only content counts)."""
        msgs = [{"role": role, "content": content} for role, content in messages]
        if self._chat_mode is None:
            self._chat_mode = self._find_chat_mode(msgs)
            if self._chat_mode == "none":
                return None
        if self._chat_mode == "none":
            return None
        try:
            return self._chat(msgs, self._chat_mode)
        except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as e:
            reason = getattr(e, "reason", e)
            raise TargetError(f"cannot count a chat request through {redact_url(self._root)}: {reason}") from e

    def _find_chat_mode(self, msgs: list[dict[str, str]]) -> str:
        for mode in ("apply-template", "messages"):
            try:
                if self._chat(msgs, mode) > 0:
                    return mode
            except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
                continue
        return "none"

    def _chat(self, msgs: list[dict[str, str]], mode: str) -> int:
        if mode == "apply-template":
            prompt = self._post({"messages": msgs}, self._root + "/apply-template")["prompt"]
            if not isinstance(prompt, str):
                raise TypeError("apply-template answered without a prompt string")
            data = self._post({"content": prompt, "add_special": True, "parse_special": True})
        else:
            data = self._post({"messages": msgs, "add_generation_prompt": True})
        if isinstance(data.get("count"), int):
            return int(data["count"])
        if isinstance(data.get("tokens"), list):
            return len(data["tokens"])
        raise KeyError("tokens")

    @property
    def chat_mode(self) -> str | None:
        """How ``count_chat`` counts (``"apply-template"``, ``"messages"``, ``"none"``), once known."""
        return self._chat_mode

    def truncate(self, text: str, max_tokens: int, *, keep: Keep = "head") -> str:
        return truncate_by_count(self, text, max_tokens, keep)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "server", "url": redact_url(self.url)}
        if self._chat_mode is not None:
            out["chat_template"] = self._chat_mode
        return out


def auto_counter(base_url: str | None, *, timeout_s: float = 2.0) -> TokenCounter:
    """The target's tokenizer when it serves ``/tokenize``, else a ``CalibratedEstimate``."""
    if base_url:
        server = ServerTokenizer(base_url, timeout_s=timeout_s)
        try:
            if server.count("probe") > 0:
                return server
        except TargetError:
            pass
    return CalibratedEstimate()


# -- calibration ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Prior:
    value: float
    strength: float  # pseudo-observations, in units of the reference spread squared


class LengthModel:
    """Predicts a server's ``input_tokens`` from what a stream counted, and learns from records.

    ``reported ≈ overhead + per_message * messages + scale * counted`` where ``counted`` is the
    counter's total over the messages' contents. A ridge fit pulls each coefficient toward its
    prior (overhead 0, per message 0, scale 1) with a strength set by ``exact``: a real tokenizer's
    scale is trusted until much evidence says otherwise; an estimate's is learnt at once. When
    all observed prompts have the same size or message count, the prior decides the slope that
    the data cannot, and predictions near the observed sizes stay right either way.

    ``observe`` is O(1) (a few float additions), fit for the event loop; the 2x2 solve happens
    lazily when the next prompt is sized.
    """

    __slots__ = ("_dirty", "_n", "_priors", "_sx", "_sxx", "_sxy", "_sy", "coef", "counted_ref")

    def __init__(self, *, exact: bool, counted_ref: float = 500.0) -> None:
        self._priors = (
            _Prior(0.0, 0.25),  # per message: ~1 pseudo-observation per 4 tokens of doubt
            _Prior(1.0, 50.0 if exact else 0.5),
        )
        self.counted_ref = counted_ref
        self._n = 0
        self._sx = [0.0, 0.0]
        self._sy = 0.0
        self._sxx = [[0.0, 0.0], [0.0, 0.0]]
        self._sxy = [0.0, 0.0]
        self._dirty = False
        # (overhead, per_message, scale)
        self.coef = (0.0, 0.0, 1.0)

    @property
    def observations(self) -> int:
        return self._n

    def observe(self, messages: int, counted: float, reported: int) -> None:
        """One prompt of ``messages`` messages and ``counted`` content tokens that the server
        reported as ``reported`` input tokens."""
        x0, x1 = float(messages), float(counted)
        self._n += 1
        self._sx[0] += x0
        self._sx[1] += x1
        self._sy += reported
        self._sxx[0][0] += x0 * x0
        self._sxx[0][1] += x0 * x1
        self._sxx[1][1] += x1 * x1
        self._sxy[0] += x0 * reported
        self._sxy[1] += x1 * reported
        self._dirty = True

    def _fit(self) -> None:
        self._dirty = False
        if self._n == 0:
            return
        # A pseudo-observation at the origin (no messages, nothing counted, nothing reported) of
        # weight 1/n: a prior of no overhead that fades as evidence comes. Without it the first
        # observation's whole miss went into the overhead, and the next prompt of another size
        # was off by that much; with it an estimate's ratio is learnt from the first record.
        n = self._n + 1.0 / self._n
        mx = (self._sx[0] / n, self._sx[1] / n)
        my = self._sy / n
        # Centred sums of squares; the intercept then follows from the means.
        a = self._sxx[0][0] - n * mx[0] * mx[0]
        b = self._sxx[0][1] - n * mx[0] * mx[1]
        d = self._sxx[1][1] - n * mx[1] * mx[1]
        e0 = self._sxy[0] - n * mx[0] * my
        e1 = self._sxy[1] - n * mx[1] * my
        # Ridge toward the priors; the counted slope's strength scales with the size of prompts
        # (a reference spread of 20 % of their mean), so it is unit-free.
        ref1 = max(1.0, 0.2 * max(mx[1], 1.0)) ** 2
        l0 = self._priors[0].strength * 1.0
        l1 = self._priors[1].strength * ref1
        a += l0
        d += l1
        e0 += l0 * self._priors[0].value
        e1 += l1 * self._priors[1].value
        det = a * d - b * b
        if det <= 0:
            return
        per_message = (e0 * d - b * e1) / det
        scale = (a * e1 - b * e0) / det
        scale = min(10.0, max(0.1, scale))
        overhead = my - per_message * mx[0] - scale * mx[1]
        self.coef = (overhead, per_message, scale)

    def _current(self) -> tuple[float, float, float]:
        if self._dirty:
            self._fit()
        return self.coef

    def coefficients(self) -> tuple[float, float, float]:
        """``(overhead, per_message, scale)`` as currently fitted."""
        return self._current()

    def predict(self, messages: int, counted: float) -> float:
        """The server's expected ``input_tokens`` for such a prompt."""
        o, m, s = self._current()
        return o + m * messages + s * counted

    def content_budget(self, target_tokens: int, messages: int) -> float:
        """How many counted content tokens make ``target_tokens`` reported input tokens."""
        o, m, s = self._current()
        return (target_tokens - o - m * messages) / s

    def to_counted(self, server_tokens: float) -> float:
        """``server_tokens`` of plain content expressed in the counter's units."""
        return server_tokens / self._current()[2]

    def describe(self) -> dict[str, Any]:
        o, m, s = self._current()
        return {
            "observations": self._n,
            "overhead_tokens": round(o, 3),
            "per_message_tokens": round(m, 3),
            "scale": round(s, 5),
        }
