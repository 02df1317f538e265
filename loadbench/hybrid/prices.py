"""What remote calls cost, in money and (estimated) energy: two editable tables of assumptions.

``PRICES`` maps a model name to its list price in USD per million input and output tokens, as the
provider's pricing page gave it on the date in the comment beside each group. Prices change: edit
the table, or pass ``Hybrid(prices=PriceTable({...}))`` for one run. A model missing from the table
is reported as unpriced (``cost_usd: null``), never as free. Cached-input discounts and batch
prices are not modelled: every input token is charged at the full rate.

``RemoteEnergy`` is the per-token energy assumed for a remote model, which cannot be metered from
here; its figures are an estimate and are always labelled so, with their stated source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loadbench.contract.errors import ConfigError

#: model -> (USD per 1M input tokens, USD per 1M output tokens)
PRICES: dict[str, tuple[float, float]] = {
    # openai.com/api/pricing, standard tier, as the page listed them in October 2025
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    # api-docs.deepseek.com/quick_start/pricing, cache-miss input, as the page listed them in October 2025
    "deepseek-chat": (0.28, 0.42),
    "deepseek-reasoner": (0.28, 0.42),
    # claude.com/pricing (API), as the page listed them in October 2025
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-3-5-haiku-latest": (0.80, 4.00),
}


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Per-model prices (USD per million input and output tokens); see the module docstring."""

    prices: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(PRICES))

    def __post_init__(self) -> None:
        for model, pair in self.prices.items():
            ok = isinstance(pair, tuple | list) and len(pair) == 2 and all(
                isinstance(p, int | float) and not isinstance(p, bool) and p >= 0 for p in pair
            )
            if not ok:
                raise ConfigError(
                    f"PriceTable[{model!r}] must be (USD per 1M input tokens, USD per 1M output tokens), got {pair!r}"
                )

    def price(self, model: str) -> tuple[float, float] | None:
        """The price of ``model``: its own entry, else the entry its dated or tagged name starts
        with (``gpt-4o-2024-08-06`` is priced as ``gpt-4o``), else ``None`` (unpriced)."""
        if model in self.prices:
            return tuple(self.prices[model])  # type: ignore[return-value]
        best = max((m for m in self.prices if model.startswith(m + "-") or model.startswith(m + "@")),
                   key=len, default=None)
        return tuple(self.prices[best]) if best else None  # type: ignore[return-value]

    def cost_usd(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """What the tokens cost, or ``None`` for an unpriced model."""
        price = self.price(model)
        if price is None:
            return None
        return (input_tokens * price[0] + output_tokens * price[1]) / 1e6

    def describe(self, model: str) -> dict[str, Any]:
        price = self.price(model)
        if price is None:
            return {"model": model, "priced": False}
        return {"model": model, "priced": True, "usd_per_mtok_input": price[0], "usd_per_mtok_output": price[1]}


@dataclass(frozen=True, slots=True)
class RemoteEnergy:
    """The energy assumed per remote token (joules), with where the figure comes from.

    The default is a round order of magnitude for a large model served on datacentre GPUs
    (published per-query estimates for such models work out to roughly 0.1-1 J per generated
    token; prompt tokens cost far less, being processed in parallel). It is an assumption, not a
    measurement: set figures you trust for your provider.
    """

    j_per_input_token: float = 0.05
    j_per_output_token: float = 0.5
    source: str = "assumed order of magnitude for a large model on datacentre GPUs"

    def __post_init__(self) -> None:
        for name in ("j_per_input_token", "j_per_output_token"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"RemoteEnergy.{name} must be joules >= 0, got {value!r}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError("RemoteEnergy.source must say where the figures come from")

    def joules(self, input_tokens: int, output_tokens: int) -> float:
        return input_tokens * self.j_per_input_token + output_tokens * self.j_per_output_token

    def describe(self) -> dict[str, Any]:
        return {"j_per_input_token": self.j_per_input_token, "j_per_output_token": self.j_per_output_token,
                "source": self.source}
