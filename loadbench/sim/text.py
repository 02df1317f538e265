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

__all__ = ["VOCAB_SIZE", "Tokenizer", "WordSource", "count_tokens", "message_text", "token_ids", "tokenize"]

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


class Tokenizer:
    """The simulator's tokenizer with words split into pieces of at most ``piece_chars`` word
    characters (4 by default, as ``tokenize``), plus the tokens a chat template adds: ``chat_tokens``
    per request and ``message_tokens`` per message. A different ``piece_chars`` or template stands
    in for a model whose vocabulary a client's estimate does not know."""

    __slots__ = ("_piece", "chat_tokens", "message_tokens")

    def __init__(self, piece_chars: int = 4, *, chat_tokens: int = 0, message_tokens: int = 0) -> None:
        self._piece = _PIECE if piece_chars == 4 else re.compile(rf" ?\w{{1,{piece_chars}}}| ?[^\w\s]|\s+")
        self.chat_tokens = chat_tokens
        self.message_tokens = message_tokens

    def tokenize(self, text: str) -> list[str]:
        return self._piece.findall(text)

    def count(self, text: str) -> int:
        return len(self._piece.findall(text))

    def chat(self, texts: Iterable[str]) -> int:
        """A chat request's prompt tokens: its messages' texts and the template around them."""
        n = self.chat_tokens
        for t in texts:
            n += self.message_tokens + len(self._piece.findall(t))
        return n


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
