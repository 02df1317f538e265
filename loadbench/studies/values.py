"""The values a study varies: short labels for tables and files, and ``Fields`` for linked changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadbench.contract.errors import ConfigError


class Fields:
    """Several scenario fields that change together, as one value of a study's axis.

    ``vary={"deployment": [Fields("Local", deployment=Local("llama3.2"), sim=SimConfig(profile="laptop-3b")),
    Fields("Remote", deployment=Remote.openai("gpt-4o-mini"), sim=SimConfig(profile="remote-api"))]}``
    moves the deployment and the simulator's profile in step. ``label`` names it in tables and files.
    """

    __slots__ = ("fields", "label")

    def __init__(self, label: str, /, **fields: Any) -> None:
        if not isinstance(label, str) or not label:
            raise ConfigError(f"Fields needs a label as its first argument, got {label!r}")
        if not fields:
            raise ConfigError(f"Fields({label!r}) sets no scenario field")
        self.label = label
        self.fields = dict(fields)

    def __repr__(self) -> str:
        return f"Fields({self.label!r}, {', '.join(self.fields)})"


def label(value: Any) -> str:
    """A short, stable description of one varied value (``"Poisson 4/s"``, ``"8 users"``, ``"on"``)."""
    if isinstance(value, Fields):
        return value.label
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int | str):
        return str(value)
    kind = type(value).__name__
    users = getattr(value, "users", None)
    if kind == "Concurrency" and isinstance(users, int):
        return f"{users} users"
    rate = getattr(value, "rate_per_s", None)
    if isinstance(rate, int | float):
        return f"{kind} {rate:g}/s"
    profile = getattr(value, "profile", None)
    if kind == "SimConfig" and profile is not None:
        return f"sim {profile.name}"
    describe = getattr(value, "describe", None)
    if kind in ("Local", "Remote") and callable(describe):
        info = describe()
        model = info.get("model") or info.get("tag")
        who = kind if kind == "Local" else f"Remote.{info.get('provider')}"
        return f"{who}({model})" if model else who
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
    return kind


def axis_values(axis: str, values: Any) -> list[tuple[str, Any]]:
    """``(label, value)`` pairs of one axis: a list (labelled by ``label``) or a ``{label: value}`` mapping.

    Labels must be unique within an axis, so every cell can be told apart in a table.
    """
    if isinstance(values, Mapping):
        pairs = [(str(k), v) for k, v in values.items()]
    elif isinstance(values, list | tuple):
        pairs = [(label(v), v) for v in values]
    else:
        raise ConfigError(f"vary[{axis!r}] must be a list of values or a {{label: value}} mapping, got {values!r}")
    if not pairs:
        raise ConfigError(f"vary[{axis!r}] is empty")
    seen: dict[str, int] = {}
    for lbl, _ in pairs:
        seen[lbl] = seen.get(lbl, 0) + 1
    dup = [k for k, n in seen.items() if n > 1]
    if dup:
        raise ConfigError(
            f"vary[{axis!r}] has values that read the same ({', '.join(dup)}); give them names with a "
            f"{{label: value}} mapping"
        )
    return pairs
