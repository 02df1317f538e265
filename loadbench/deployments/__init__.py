"""Deployments: where requests go (Local on Ollama, Remote providers and compatible servers).

A deployment is a frozen value; ``open(base_url=..., settings=...)`` yields the live ``Sender``.
``wire/`` holds one small module per dialect (the request's shape and the rules that read its
stream); ``framing.py`` the SSE / NDJSON decoders and the interface a dialect implements;
``transport.py`` the lean aiohttp client path, with aiohttp's internals fenced off in
``_aiohttp_hooks.py``; ``sdk.py`` the same requests through the official SDKs, fed to the same
dialect parsers; ``failures.py`` the translation of every foreign error into ``RequestFailed``;
``models.py`` the size presets and tag catalog. URLs are joined in ``loadbench.urls``.
"""

from loadbench.deployments.base import ClientSettings, Deployment, Timeouts
from loadbench.deployments.local import Local
from loadbench.deployments.models import DEFAULT_CATALOG, Q1_5B, Q3B, Q8B, CatalogEntry, ModelCatalog, Quant
from loadbench.deployments.remote import Remote

__all__ = [
    "DEFAULT_CATALOG",
    "Q1_5B",
    "Q3B",
    "Q8B",
    "CatalogEntry",
    "ClientSettings",
    "Deployment",
    "Local",
    "ModelCatalog",
    "Quant",
    "Remote",
    "Timeouts",
]
