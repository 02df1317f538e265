"""A tiny, random-weight llama model in GGUF form, made locally for tests.

No model hub is reachable from where the tests run, so the project writes its
own model: a llama-architecture network with seeded random f32 weights and a
SentencePiece-style ("llama") vocabulary with byte fallback. It produces
gibberish, but it loads in llama.cpp, tokenizes text to fewer tokens than bytes,
has a chat template, and — the property load tests rely on — never stops early:
every generation runs to ``max_tokens`` even without ``ignore_eos``.

How it never stops: residual dimension 0 is held constant. The token
embeddings carry ``+1`` in that dimension and no layer writes to it (row 0 of
every attention-output and FFN-down matrix is zero), so after the final RMSNorm
that component is always positive (it equals ``sqrt(n_embd) / ||h||`` times a
positive norm weight). Output rows of the end-of-generation and control tokens
are ``-SUPPRESS_LOGIT * e_0`` and all other rows have a zero in column 0, so
those tokens' logits are hugely negative at every position while the rest of
the logits are unaffected. The same trick keeps out byte tokens that would
make the output invalid UTF-8 or unprintable.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = [
    "BOS_ID",
    "CHAT_TEMPLATE",
    "EOS_ID",
    "IM_END_ID",
    "IM_START_ID",
    "UNK_ID",
    "VOCABS",
    "build_vocab",
    "write_tiny_llama_gguf",
]

UNK_ID = 0
BOS_ID = 1
EOS_ID = 2
IM_START_ID = 3
IM_END_ID = 4
_FIRST_BYTE_ID = 5

# Multiplier of the always-positive residual component in suppressed tokens'
# output rows; other logits are O(10), so these tokens have probability ~0.
SUPPRESS_LOGIT = 1000.0

#: ChatML, in the exact form llama.cpp recognises by name (also renders as Jinja).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Common English words; each becomes a "▁word" piece (with all its prefixes, so
# the SentencePiece bigram merger can reach it) and text made of them
# tokenizes to roughly one token per word.
_WORD_TEXT = """
the of and to in is was that for it with as his on be at by had are from or
this but not have an they which one you were her all she there would their we
him been has when who will more no if out so said what up its about into than
them can only other new some could time these two may then do first any my now
such like our over man me even most made after also did many before must
through back years where much your way well down should because each just
those people how too little state good very make world still own see men work
long get here between both life being under never day same another know while
last might us great old year off come since against go came right used take
three number part world word sound write first water call oil find long
question answer load test bench model server token request latency throughput
energy power time stream first byte response prompt user system assistant
hello world please tell story about data number value result report
"""
_WORDS = _WORD_TEXT.split()

# The "subword" vocabulary's corpus: words of business, everyday and maths text, cut into pieces of
# two and three letters (word-initial ones with the "▁" marker) rather than kept whole, so the
# vocabulary is larger, its merges differ, and text runs at about two to three characters a
# token: unlike the "words" vocabulary and unlike any estimate tuned on either.
_SUBWORD_TEXT = """
revenue income statement balance sheet cash flow operating expense profit margin company fiscal
quarter annual report filing million dollars growth market share customers products services
management discussion analysis risk factors liquidity capital debt interest rates inventory
question answer solve equation problem number value total remainder divisor multiple fraction
triangle rectangle area length width sum sequence terms solution integer real largest smallest
recommend plan travel cooking garden fitness budget write schedule friend weekend morning week
help advice start small simple step first second better faster healthier cheaper thanks please
"""
_SUBWORDS = _SUBWORD_TEXT.split()

#: The vocabularies ``write_tiny_llama_gguf`` can give its model.
VOCABS = ("words", "subword")


def build_vocab(vocab: str = "words") -> tuple[list[str], list[float], list[int]]:
    """Return ``(tokens, scores, token_types)`` of a tiny SPM vocabulary.

    Layout: ids 0..4 are ``<unk>``, ``<s>``, ``</s>``, ``<|im_start|>``,
    ``<|im_end|>``; ids 5..260 are the byte tokens ``<0x00>``..``<0xFF>``;
    the rest are normal pieces, every one of them reachable by merges.
    Scores are higher for longer pieces so the tokenizer prefers them.

    ``vocab`` is ``"words"`` (common English words whole, about one token a word) or
    ``"subword"`` (two- and three-letter pieces of another word list, about two to three
    characters a token).
    """
    if vocab not in VOCABS:
        raise ValueError(f"vocab must be one of {VOCABS}, got {vocab!r}")
    import gguf

    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [
        gguf.TokenType.UNKNOWN,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
    ]
    scores = [0.0] * len(tokens)
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(gguf.TokenType.BYTE)
        scores.append(0.0)

    pieces: dict[str, None] = {}  # insertion-ordered set
    # Single printable characters, so most text never needs byte fallback.
    for ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\"-:;()":
        pieces[ch] = None
    pieces["▁"] = None
    if vocab == "words":
        for word in dict.fromkeys(_WORDS):
            for piece in ("▁" + word, word):
                for end in range(2, len(piece) + 1):
                    pieces[piece[:end]] = None
    else:
        for word in dict.fromkeys(_SUBWORDS):
            for size in (2, 3):
                for start in range(len(word) - size + 1):
                    pieces[word[start : start + size]] = None
                if len(word) >= size:
                    pieces["▁" + word[: size - 1]] = None
                    pieces["▁" + word[:size]] = None
    for piece in pieces:
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
        # Longer merges first; ties broken by order so scores are distinct.
        scores.append(float(len(piece)) - len(tokens) * 1e-4)
    return tokens, scores, [int(t) for t in types]


def _suppressed_ids(tokens: list[str]) -> list[int]:
    """Ids the model must never emit: special/control tokens and the bytes
    outside printable ASCII (they could form invalid UTF-8 or control chars)."""
    ids = [UNK_ID, BOS_ID, EOS_ID, IM_START_ID, IM_END_ID]
    for b in range(256):
        if not (0x20 <= b < 0x7F or b == 0x0A):
            ids.append(_FIRST_BYTE_ID + b)
    assert all(tokens[i].startswith("<") for i in ids)
    return ids


def write_tiny_llama_gguf(
    path: str | os.PathLike[str],
    *,
    n_layers: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_ff: int = 128,
    n_ctx: int = 4096,
    seed: int = 0,
    vocab: str = "words",
) -> Path:
    """Write a tiny random llama GGUF (all tensors f32) to ``path``; return it.

    ``vocab`` picks the tokenizer (see ``build_vocab``); ``"subword"`` gives a model whose
    token counts no test tuned for ``"words"`` would predict.

    ``n_embd`` must be divisible by ``n_head`` and the head size must be even
    (RoPE). ``n_ctx`` is the model's trained context length in tokens. The
    same arguments always produce a byte-identical file. The file is written
    to a temporary name and renamed, so readers never see a partial model.
    """
    import gguf

    if n_embd % n_head or (n_embd // n_head) % 2:
        raise ValueError("n_embd must split into n_head heads of even size")
    path = Path(path)
    tokens, scores, types = build_vocab(vocab)
    n_vocab = len(tokens)
    head_dim = n_embd // n_head
    rng = np.random.default_rng(seed)

    def normal(shape: tuple[int, ...], std: float) -> np.ndarray:
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(tmp, "llama")
    writer.add_name("loadbench-tiny-llama")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)

    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_eot_token_id(IM_END_ID)
    writer.add_unk_token_id(UNK_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(True)
    writer.add_chat_template(CHAT_TEMPLATE)

    # Weights. numpy shapes are (out, in): the transpose of ggml's ne order.
    embd = normal((n_vocab, n_embd), 1.0)
    embd[:, 0] = 1.0  # the constant residual component (see module docstring)
    writer.add_tensor("token_embd.weight", embd)
    proj_std = 1.0 / np.sqrt(n_embd)
    for i in range(n_layers):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", np.ones(n_embd, np.float32))
        writer.add_tensor(f"{blk}.attn_q.weight", normal((n_embd, n_embd), proj_std))
        writer.add_tensor(f"{blk}.attn_k.weight", normal((n_embd, n_embd), proj_std))
        writer.add_tensor(f"{blk}.attn_v.weight", normal((n_embd, n_embd), proj_std))
        attn_out = normal((n_embd, n_embd), proj_std)
        attn_out[0, :] = 0.0  # never write residual dim 0
        writer.add_tensor(f"{blk}.attn_output.weight", attn_out)
        writer.add_tensor(f"{blk}.ffn_norm.weight", np.ones(n_embd, np.float32))
        writer.add_tensor(f"{blk}.ffn_gate.weight", normal((n_ff, n_embd), proj_std))
        writer.add_tensor(f"{blk}.ffn_up.weight", normal((n_ff, n_embd), proj_std))
        down = normal((n_embd, n_ff), 1.0 / np.sqrt(n_ff))
        down[0, :] = 0.0
        writer.add_tensor(f"{blk}.ffn_down.weight", down)
    writer.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    # Logit std ~2: varied but not uniform sampling over the normal tokens.
    output = normal((n_vocab, n_embd), 2.0 / np.sqrt(n_embd))
    output[:, 0] = 0.0
    for token_id in _suppressed_ids(tokens):
        output[token_id, :] = 0.0
        output[token_id, 0] = -SUPPRESS_LOGIT
    writer.add_tensor("output.weight", output)

    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(tmp, path)
    return path
