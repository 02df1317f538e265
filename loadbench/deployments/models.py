"""Model selection: size presets (``Q1_5B``, ``Q3B``, ``Q8B``) and the catalog of Ollama tags.

A preset names a parameter size and a quantization level; a ``ModelCatalog`` maps a model family
and a size to real Ollama tags. Resolution (``resolve_tag``):

1. A model that already names a tag (``"llama3.2:3b"``) is used as given; pairing it with a
   preset is a ``ConfigError`` (the two would disagree about which weights to load).
2. A family (``"llama3.2"``) without a preset is sent as is (Ollama picks its ``latest`` tag).
3. A family with a preset is looked up as ``(family, preset.size)``: the entry's template is
   filled with the preset's ``level`` (``"llama3.2:3b-instruct-{level}"`` →
   ``"llama3.2:3b-instruct-q4_K_M"``). An unknown pair is a ``ConfigError`` listing the known
   pairs.

An entry may also name the short tag Ollama publishes for its default quantization (``q4_K_M``),
e.g. ``"llama3.2:3b"``: the same weights under another name. ``Local`` accepts a server that has
either name. The catalog is a plain value: pass your own to ``Local(catalog=...)``, or extend the
default with ``DEFAULT_CATALOG.with_entries({...})``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from loadbench.contract.errors import ConfigError

LEVELS: tuple[str, ...] = ("q4_0", "q4_K_S", "q4_K_M", "q5_0", "q5_K_M", "q6_K", "q8_0", "fp16")
DEFAULT_LEVEL = "q4_K_M"


@dataclass(frozen=True, slots=True)
class Quant:
    """A parameter size and a quantization level (``q4_K_M`` default; ``q8_0``, ``fp16``...)."""

    level: str = DEFAULT_LEVEL
    size: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if type(self) is Quant:
            raise ConfigError("use a size preset: Q1_5B(), Q3B() or Q8B()")
        if self.level not in LEVELS:
            raise ConfigError(
                f"{type(self).__name__} level {self.level!r} is unknown; expected one of {', '.join(LEVELS)}"
            )

    def describe(self) -> dict[str, str]:
        return {"preset": type(self).__name__, "size": self.size, "level": self.level}


@dataclass(frozen=True, slots=True)
class Q1_5B(Quant):
    """About 1.5 billion parameters (qwen2.5:1.5b, deepseek-r1:1.5b)."""

    size: ClassVar[str] = "1.5b"


@dataclass(frozen=True, slots=True)
class Q3B(Quant):
    """About 3 billion parameters (llama3.2:3b, qwen2.5:3b)."""

    size: ClassVar[str] = "3b"


@dataclass(frozen=True, slots=True)
class Q8B(Quant):
    """About 8 billion parameters (llama3.1:8b, qwen3:8b, deepseek-r1:8b)."""

    size: ClassVar[str] = "8b"


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """Ollama tags for one family at one size.

    ``template`` holds ``{level}``; ``default_alias`` is the short tag Ollama publishes for
    ``q4_K_M`` (same weights), or ``None``.
    """

    template: str
    default_alias: str | None = None

    def tags(self, level: str) -> tuple[str, ...]:
        """Acceptable tags for ``level``, preferred first."""
        tag = self.template.format(level=level)
        if level == DEFAULT_LEVEL and self.default_alias:
            return (tag, self.default_alias)
        return (tag,)


class ModelCatalog(Mapping[tuple[str, str], CatalogEntry]):
    """An immutable mapping ``(family, size) → CatalogEntry``.

    Entries may be given as ``CatalogEntry`` or as a template string.
    """

    __slots__ = ("_entries",)

    def __init__(self, entries: Mapping[tuple[str, str], CatalogEntry | str]) -> None:
        checked: dict[tuple[str, str], CatalogEntry] = {}
        for key, entry in entries.items():
            if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key)):
                raise ConfigError(f"ModelCatalog keys must be (family, size) pairs, got {key!r}")
            if isinstance(entry, str):
                entry = CatalogEntry(entry)
            if not isinstance(entry, CatalogEntry) or "{level}" not in entry.template:
                raise ConfigError(
                    f"ModelCatalog entry for {key!r} must be a tag template holding '{{level}}', got {entry!r}"
                )
            checked[key] = entry
        self._entries = MappingProxyType(checked)

    def __getitem__(self, key: tuple[str, str]) -> CatalogEntry:
        return self._entries[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __hash__(self) -> int:
        return hash(frozenset(self._entries.items()))

    def __repr__(self) -> str:
        return f"ModelCatalog({dict(self._entries)!r})"

    def with_entries(self, entries: Mapping[tuple[str, str], CatalogEntry | str]) -> ModelCatalog:
        """A new catalog with ``entries`` added or replaced."""
        return ModelCatalog({**self._entries, **entries})

    def known(self) -> str:
        """The known pairs as ``family@size`` for messages."""
        return ", ".join(f"{family}@{size}" for family, size in sorted(self._entries))

    def tags(self, family: str, quant: Quant) -> tuple[str, ...]:
        """Acceptable tags for ``family`` at ``quant``; ``ConfigError`` for an unknown pair."""
        entry = self._entries.get((family, quant.size))
        if entry is None:
            raise ConfigError(
                f"no {quant.size} model known for family {family!r} ({type(quant).__name__}); "
                f"known: {self.known()}. Pass a full tag (Local('{family}:<tag>')) or "
                "a ModelCatalog with the entry"
            )
        return entry.tags(quant.level)


DEFAULT_CATALOG = ModelCatalog(
    {
        ("llama3.2", "3b"): CatalogEntry("llama3.2:3b-instruct-{level}", "llama3.2:3b"),
        # Llama 3.2 has no 8B; the 8B model of the Llama 3 line is Llama 3.1 8B.
        ("llama3.2", "8b"): CatalogEntry("llama3.1:8b-instruct-{level}", "llama3.1:8b"),
        ("llama3.1", "8b"): CatalogEntry("llama3.1:8b-instruct-{level}", "llama3.1:8b"),
        ("qwen2.5", "1.5b"): CatalogEntry("qwen2.5:1.5b-instruct-{level}", "qwen2.5:1.5b"),
        ("qwen2.5", "3b"): CatalogEntry("qwen2.5:3b-instruct-{level}", "qwen2.5:3b"),
        ("qwen3", "8b"): CatalogEntry("qwen3:8b-{level}", "qwen3:8b"),
        ("deepseek-r1", "1.5b"): CatalogEntry("deepseek-r1:1.5b-qwen-distill-{level}", "deepseek-r1:1.5b"),
        ("deepseek-r1", "8b"): CatalogEntry("deepseek-r1:8b-0528-qwen3-{level}", "deepseek-r1:8b"),
    }
)


def resolve_tag(model: str, quant: Quant | None, catalog: ModelCatalog = DEFAULT_CATALOG) -> tuple[str, ...]:
    """Acceptable Ollama tags for ``model`` under ``quant``, preferred first (rules above)."""
    if quant is not None and not isinstance(quant, Quant):
        raise ConfigError(f"quant must be Q1_5B(), Q3B() or Q8B(), got {quant!r}")
    if ":" in model:
        if quant is not None:
            raise ConfigError(
                f"model {model!r} already names a tag; drop quant={type(quant).__name__}() "
                f"or give the family ({model.split(':', 1)[0]!r})"
            )
        return (model,)
    if quant is None:
        return (model,)
    return catalog.tags(model, quant)
