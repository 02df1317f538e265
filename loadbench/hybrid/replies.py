"""Reading a model's JSON reply: robust extraction, then a check against the schema asked for.

Models wrap JSON in prose and code fences, or add a second object after the first. ``extract``
takes, in order: the whole text as one JSON object; else the last fenced block that holds one;
else the last balanced ``{...}`` in the text (strings and escapes respected). What it finds is
only ever data: it is checked by ``check`` and read field by field, never evaluated.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n(.*?)```", re.DOTALL)

# Protocol error kinds (the summary counts them under "<side>_<kind>").
UNPARSABLE = "unparsable"  # no JSON object in the reply
SCHEMA = "schema"  # an object, but not of the shape asked for
TRUNCATED = "truncated"  # the reply hit its token limit and its JSON is incomplete


def extract(text: str) -> dict[str, Any] | None:
    """The JSON object a reply carries, or ``None`` (see the module docstring)."""
    stripped = text.strip()
    obj = _load(stripped)
    if obj is not None:
        return obj
    for block in reversed(_FENCE.findall(text)):
        obj = _load(block.strip())
        if obj is not None:
            return obj
    return _last_object(text)


def _load(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _last_object(text: str) -> dict[str, Any] | None:
    """The last top-level balanced object in ``text`` that parses."""
    found: list[tuple[int, int]] = []
    depth, start, in_string, escaped = 0, -1, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            if depth:
                in_string = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                found.append((start, i + 1))
    for a, b in reversed(found):
        obj = _load(text[a:b])
        if obj is not None:
            return obj
    return None


def check(obj: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """Why ``obj`` does not follow ``schema`` (required keys, types, enums, array items), or
    ``None`` when it does. Lengths are not enforced: a long answer is still an answer."""
    return _check(obj, schema, "reply")


def _check(value: Any, schema: dict[str, Any], where: str) -> str | None:
    if "const" in schema:
        return None if value == schema["const"] else f"{where} must be {schema['const']!r}"
    if "enum" in schema:
        return None if value in schema["enum"] else f"{where} must be one of {schema['enum']}, got {value!r}"
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        if any(_check(value, b, where) is None for b in branches):
            return None
        return f"{where} matches none of its allowed shapes"
    kinds = schema.get("type")
    if kinds is None:
        return None
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if not any(_is(value, k) for k in kinds):
        return f"{where} must be {' or '.join(kinds)}, got {type(value).__name__}"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                return f"{where} lacks {key!r}"
        for key, sub in props.items():
            if key in value:
                problem = _check(value[key], sub, f"{where}.{key}")
                if problem:
                    return problem
    elif isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return f"{where} needs at least {schema['minItems']} items"
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                problem = _check(item, items, f"{where}[{i}]")
                if problem:
                    return problem
    return None


def _is(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    return False
