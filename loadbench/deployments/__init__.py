"""Deployments: where requests go (Local on Ollama, Remote providers and compatible servers).

A deployment is a frozen value; ``open(base_url=..., settings=...)`` yields the live ``Sender``.
"""

from loadbench.deployments.base import ClientSettings, Deployment, Timeouts
from loadbench.deployments.remote import Remote

__all__ = ["ClientSettings", "Deployment", "Remote", "Timeouts"]
