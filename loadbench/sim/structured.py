"""Structured output: answers that follow the JSON schema a request asks for.

A request asks for a shape in one of three ways, checked in this order: OpenAI's
``response_format`` (``{"type": "json_schema", "json_schema": {"schema": ...}}``, or
``{"type": "json_object"}``), Ollama's ``format`` (a schema, or ``"json"``), or, for a dialect
without such an option (Anthropic), a fenced block marked ``json-schema`` in the prompt text.

The answer is a seeded random instance of the schema (``instance``): enums and ``anyOf``
branches are picked at random, nullable fields are null at ``SimConfig.json_null_rate``, arrays
take a length within ``minItems``/``maxItems``, integers within ``minimum``/``maximum``, strings
are pseudo-words within ``maxLength``. So a client that drives a protocol on JSON replies (a
supervisor deciding, a worker answering) sees every branch its schema allows, in proportions set
by the seed. At ``SimConfig.json_malformed_rate`` the reply is broken instead (cut short, a
missing quote, a trailing comma, prose with no JSON), as a model's free text sometimes is; a
schema that came from the prompt text alone (no enforcement) is sometimes wrapped in a sentence
and a fenced block, as chat models like to answer.
"""

from __future__ import annotations

import random
import re
from typing import Any

import orjson

__all__ = ["SchemaWriter", "requested_schema"]

_FENCED_SCHEMA = re.compile(r"```json-schema\s*\n(.*?)\n```", re.DOTALL)
_ANY_OBJECT: dict[str, Any] = {"type": "object", "properties": {"answer": {"type": "string"}}}
# Deep or wide schemas are cut off here: an instance is bounded whatever the schema says.
_MAX_DEPTH = 8
_DEFAULT_MAX_ITEMS = 4


def requested_schema(body: dict[str, Any], texts: list[str]) -> tuple[dict[str, Any] | None, bool]:
    """The schema a request asks its answer to follow, and whether the API enforces it.

    ``(None, False)`` when it asks for none. ``texts`` are the request's message texts, searched
    (last first) for a fenced ``json-schema`` block when the body names no schema.
    """
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            return (schema if isinstance(schema, dict) else _ANY_OBJECT), True
        if fmt.get("type") == "json_object":
            return _ANY_OBJECT, True
    fmt = body.get("format")
    if isinstance(fmt, dict):
        return fmt, True
    if fmt == "json":
        return _ANY_OBJECT, True
    for text in reversed(texts):
        found = _FENCED_SCHEMA.findall(text)
        if found:
            try:
                schema = orjson.loads(found[-1])
            except orjson.JSONDecodeError:
                return None, False
            return (schema if isinstance(schema, dict) else None), False
    return None, False


class SchemaWriter:
    """Seeded instances of JSON schemas, as reply text (see the module docstring)."""

    def __init__(self, seed: int, words: Any, *, null_rate: float, malformed_rate: float) -> None:
        self._rng = random.Random(seed ^ 0x15ABE1)
        self._words = words
        self.null_rate = null_rate
        self.malformed_rate = malformed_rate
        self.malformed = 0

    def reply(self, schema: dict[str, Any], *, enforced: bool) -> str:
        """The answer text for a request asking for ``schema``."""
        text = orjson.dumps(self.instance(schema)).decode()
        rng = self._rng
        if self.malformed_rate and rng.random() < self.malformed_rate:
            self.malformed += 1
            return self._break(text)
        if not enforced and rng.random() < 0.3:
            return f"Here is the reply.\n```json\n{text}\n```"
        return text

    def _break(self, text: str) -> str:
        rng = self._rng
        kind = rng.randrange(4)
        if kind == 0 and len(text) > 2:  # cut short
            return text[: rng.randint(1, len(text) - 1)]
        if kind == 1 and '"' in text:  # a quote lost
            at = rng.choice([i for i, ch in enumerate(text) if ch == '"'])
            return text[:at] + text[at + 1 :]
        if kind == 2 and text.endswith("}"):  # a trailing comma
            return text[:-1] + ",}"
        return " ".join(p.strip() for p in self._words.pieces(12))  # prose, no JSON at all

    def instance(self, schema: Any, depth: int = 0) -> Any:
        """A random value that follows ``schema`` (the common keywords; others are ignored)."""
        rng = self._rng
        if not isinstance(schema, dict) or depth > _MAX_DEPTH:
            return None
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self.instance(rng.choice(branches), depth + 1)
        kind = schema.get("type", "object" if "properties" in schema else "string")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            if "null" in kind and (not kinds or rng.random() < self.null_rate):
                return None
            kind = rng.choice(kinds)
        if kind == "object":
            props = schema.get("properties")
            if not isinstance(props, dict):
                return {}
            return {name: self.instance(sub, depth + 1) for name, sub in props.items()}
        if kind == "array":
            low = int(schema.get("minItems", 0))
            high = int(schema.get("maxItems", low + _DEFAULT_MAX_ITEMS))
            return [self.instance(schema.get("items", {}), depth + 1) for _ in range(rng.randint(low, max(low, high)))]
        if kind == "integer":
            low = int(schema.get("minimum", 0))
            return rng.randint(low, max(low, int(schema.get("maximum", low + 100))))
        if kind == "number":
            low = float(schema.get("minimum", 0.0))
            return round(rng.uniform(low, float(schema.get("maximum", low + 100.0))), 3)
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema)

    def _string(self, schema: dict[str, Any]) -> str:
        limit = int(schema.get("maxLength", 80))
        low = int(schema.get("minLength", 0))
        text = "".join(self._words.pieces(self._rng.randint(3, 12))).strip()
        if len(text) > limit:
            text = text[:limit].rstrip()
        return text + "x" * max(0, low - len(text))
