"""The simulator's tokenizer and its answer text.

The tokenizer is deliberately simple and deterministic, so a workload can count tokens exactly as
the simulator does (``POST /tokenize``) without a model vocabulary: text splits into pieces of at
most four word characters, with one leading space attached (``" hell"``, ``"o"``), single
punctuation marks (with an optional leading space), and runs of other whitespace. Every character
belongs to exactly one piece, so joining the pieces gives back the text. A piece's id is a stable
hash of its bytes.

Generated answers are pseudo-words of one to four letters, each written with a leading space, so
every generated piece is exactly one token and re-tokenising an answer gives its token count.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterable
from typing import Any

__all__ = ["VOCAB_SIZE", "WordSource", "count_tokens", "message_text", "token_ids", "tokenize"]

_PIECE = re.compile(r" ?\w{1,4}| ?[^\w\s]|\s+")
VOCAB_SIZE = 32_000
_FIRST_ID = 256  # ids below are left for "special" tokens, as in real vocabularies

_SYLLABLES = (
    "ka", "lo", "mi", "ne", "ru", "ta", "vo", "si", "de", "po", "an", "el", "or", "ul", "is",
    "ba", "co", "fi", "gu", "he", "ja", "ke", "ly", "mo", "nu", "pe", "qi", "ro", "su", "te",
)


def tokenize(text: str) -> list[str]:
    """The pieces of ``text``, in order; ``"".join(tokenize(t)) == t``."""
    return _PIECE.findall(text)


def count_tokens(text: str) -> int:
    """How many tokens ``text`` is."""
    return len(_PIECE.findall(text))


def token_ids(pieces: Iterable[str]) -> list[int]:
    """Stable ids for pieces (a hash into the vocabulary, identical across processes and runs)."""
    span = VOCAB_SIZE - _FIRST_ID
    return [_FIRST_ID + zlib.crc32(p.encode()) % span for p in pieces]


def message_text(content: Any) -> str:
    """The text of a chat message's content: a string, or a list of parts (OpenAI ``{"type":
    "text", "text": ...}``, Anthropic text blocks); non-text parts count as nothing."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
        return "".join(out)
    return ""


class WordSource:
    """Deterministic pseudo-words: the same seed gives the same sequence of one-token pieces."""

    __slots__ = ("_rng", "_words")

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        rng = random.Random(seed ^ 0x5EED)
        words = set()
        while len(words) < 512:
            w = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 2)))
            words.add(w[: rng.randint(1, 4)] if len(w) > 4 else w)
        self._words = tuple(" " + w for w in sorted(words))

    def pieces(self, n: int) -> list[str]:
        """The next ``n`` answer pieces, each exactly one token."""
        choice = self._rng.choice
        words = self._words
        return [choice(words) for _ in range(n)]
