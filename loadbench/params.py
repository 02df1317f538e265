"""Checks shared by the configuration value objects (plans, stop rule, timeouts, deployments).

``named_parameters`` turns a wrong keyword or a missing argument into a ``ConfigError`` that
names the class and lists its parameters, instead of Python's ``TypeError`` about ``__init__``:
``Poisson(rate=10)`` says ``Poisson: unknown parameter 'rate' (did you mean 'rate_per_s'?);
its parameters are rate_per_s, burstiness, max_concurrency``.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from typing import Any, TypeVar

from loadbench.contract.errors import ConfigError

T = TypeVar("T", bound=type)

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def named_parameters(cls: T) -> T:
    """Class decorator (outermost, above ``@dataclass``): argument errors become ``ConfigError``.

    The arguments are bound against the signature only when construction raises ``TypeError``,
    so a ``TypeError`` from the class's own checks is told apart from a wrong call.
    """
    init = cls.__init__
    signature = inspect.signature(init)
    names = [n for n, p in list(signature.parameters.items())[1:] if p.kind in _NAMED]

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except TypeError as exc:
            try:
                signature.bind(self, *args, **kwargs)
            except TypeError:
                raise ConfigError(f"{cls.__name__}: {_reason(exc, kwargs, names)}; "
                                  f"its parameters are {', '.join(names)}") from None
            raise

    cls.__init__ = __init__  # type: ignore[misc]
    return cls


def _reason(exc: TypeError, kwargs: dict[str, Any], names: list[str]) -> str:
    unknown = [k for k in kwargs if k not in names]
    if unknown:
        close = difflib.get_close_matches(unknown[0], names, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown parameter {unknown[0]!r}{hint}"
    text = str(exc)
    return text.split("() ", 1)[1] if "() " in text else text


def check_number(
    owner: str,
    name: str,
    value: object,
    *,
    integer: bool = False,
    minimum: float | None = None,
    exclusive: bool = False,
    optional: bool = False,
) -> None:
    """Raise ``ConfigError`` naming ``owner.name`` unless ``value`` is a finite number (an ``int``
    when ``integer``; never a bool) at or above ``minimum`` (above, when ``exclusive``). NaN and
    infinities are refused: a comparison with NaN is always false, so they slip past range checks."""
    if optional and value is None:
        return
    kind: Any = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and isinstance(value, float):
        ok = math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if exclusive else value >= minimum  # type: ignore[operator]
    if not ok:
        what = "an integer" if integer else "a finite number"
        bound = "" if minimum is None else f" {'>' if exclusive else '>='} {minimum:g}"
        also = " (or None)" if optional else ""
        raise ConfigError(f"{owner}.{name} must be {what}{bound}{also}, got {value!r}")
