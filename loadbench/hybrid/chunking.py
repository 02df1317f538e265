"""Cutting a context document into the chunks local jobs read (done by the harness, never a model).

Three ways, named by ``Chunking.by``:

* ``"section"``: windows of about ``chars`` characters, each starting ``overlap_chars`` before the
  previous one ended, so a fact on a boundary is whole in at least one chunk. A window ends at the
  last paragraph break, else line break, else space in its final quarter, so words stay whole.
* ``"page"``: the document's own pages, split at form feeds (``\\f``, the page break text
  extracted from a PDF keeps); a document without one falls back to sections. A page longer than
  ``4 * chars`` is cut into sections itself.
* ``"paragraph"``: blocks separated by blank lines; neighbours shorter than ``min_chars`` are joined
  so a list of one-line paragraphs does not become a job per line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from loadbench.contract.errors import ConfigError

By = Literal["section", "page", "paragraph"]
CHUNKINGS: tuple[str, ...] = ("section", "page", "paragraph")

_PARAGRAPH_BREAK = re.compile(r"\n(?:[ \t]*\n)+")


@dataclass(frozen=True, slots=True)
class Chunking:
    """How a context is cut: ``by`` section (``chars`` long, ``overlap_chars`` shared with the
    previous chunk), page, or paragraph (joined up to ``min_chars``)."""

    by: By = "section"
    chars: int = 3000
    overlap_chars: int = 200
    min_chars: int = 400

    def __post_init__(self) -> None:
        if self.by not in CHUNKINGS:
            raise ConfigError(f"Chunking.by must be one of {', '.join(CHUNKINGS)}, got {self.by!r}")
        for name in ("chars", "min_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Chunking.{name} must be a positive number of characters, got {value!r}")
        overlap = self.overlap_chars
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < self.chars // 2:
            raise ConfigError(
                f"Chunking.overlap_chars must be from 0 to under half of chars ({self.chars}), got {overlap!r}"
            )

    def describe(self) -> dict[str, Any]:
        return {"by": self.by, "chars": self.chars, "overlap_chars": self.overlap_chars, "min_chars": self.min_chars}

    def split(self, text: str) -> list[str]:
        """The chunks of ``text``, in order, none empty (an empty text gives one empty chunk)."""
        if not text.strip():
            return [text]
        if self.by == "page":
            pages = [p for p in text.split("\f") if p.strip()]
            if len(pages) <= 1 and "\f" not in text:
                return sections(text, self.chars, self.overlap_chars)
            out: list[str] = []
            for page in pages:
                out.extend(sections(page, self.chars, self.overlap_chars) if len(page) > 4 * self.chars else [page])
            return out
        if self.by == "paragraph":
            return paragraphs(text, self.min_chars)
        return sections(text, self.chars, self.overlap_chars)


def sections(text: str, chars: int, overlap_chars: int) -> list[str]:
    """Windows of about ``chars`` characters overlapping by ``overlap_chars`` (see the module)."""
    out: list[str] = []
    start, n = 0, len(text)
    while start < n:
        end = min(n, start + chars)
        if end < n:
            floor = start + (3 * chars) // 4
            for sep in ("\n\n", "\n", " "):
                at = text.rfind(sep, floor, end)
                if at > start:
                    end = at + len(sep)
                    break
        piece = text[start:end]
        if piece.strip():
            out.append(piece)
        if end >= n:
            break
        start = max(start + 1, end - overlap_chars)
    return out or [text]


def paragraphs(text: str, min_chars: int) -> list[str]:
    """Blank-line separated blocks, short neighbours joined up to ``min_chars``."""
    out: list[str] = []
    for block in _PARAGRAPH_BREAK.split(text):
        if not block.strip():
            continue
        if out and len(out[-1]) < min_chars:
            out[-1] = out[-1] + "\n\n" + block
        else:
            out.append(block)
    return out or [text]
