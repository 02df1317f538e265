"""Fixtures for the workload tests: a tiny deterministic tokenizer and a stand-in server count."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from loadbench.contract.record import RequestRecord
from loadbench.workloads import HFTokenizerFile, Prompt

# The chat template a "server" adds in these tests: per request, and per message.
OVERHEAD_TOKENS = 7
PER_MESSAGE_TOKENS = 4


@pytest.fixture(scope="session")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``tokenizers`` tokenizer.json: words and punctuation runs are one token each,
    digits one token per digit; words outside the small vocabulary map to [UNK]."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["the", "a", "of", "and", "to", "in", "is", "for", "on", "that", "with", "as", "by", "at", "from"]
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="session")
def hf_counter(tokenizer_file: Path) -> HFTokenizerFile:
    return HFTokenizerFile(tokenizer_file)


def served_tokens(prompt: Prompt, count: Callable[[str], int]) -> int:
    """What a server with the test template reports as input tokens for ``prompt``."""
    return OVERHEAD_TOKENS + sum(PER_MESSAGE_TOKENS + count(m.content) for m in prompt.messages)


def finished(prompt: Prompt, input_tokens: int | None, index: int = 0, status: str = "ok") -> RequestRecord:
    """A finished record as a client would leave it."""
    rec = RequestRecord(index=index, request_id=f"t-{index}", intended_ns=1)
    rec.status = status  # type: ignore[assignment]
    rec.input_tokens = input_tokens
    rec.target_input_tokens = prompt.target_input_tokens
    rec.target_output_tokens = prompt.target_output_tokens
    return rec
