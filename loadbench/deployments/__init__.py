"""Deployments: where requests go (Local on Ollama, Remote providers and compatible servers).

A deployment is a frozen value; ``open(base_url=..., settings=...)`` yields the live ``Sender``.
``wire/`` holds one small module per dialect, ``http.py`` the lean aiohttp client path, ``sdk.py``
the same requests through the official SDKs, ``models.py`` the size presets and tag catalog.
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
