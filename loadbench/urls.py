"""Target URLs: the one place the harness joins paths, finds the ``/v1`` API root and redacts URLs.

A target may be given as a server's origin (``http://h:p``) or as its OpenAI-style API root
(``http://h:p/v1``); every caller accepts both, through these functions. Standard library only, so
any part of the package (deployments, workloads, the run's metadata) can use it without loading
a client.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

API_PREFIX = "/v1"


def join_url(base_url: str, path: str) -> str:
    """``base_url`` + ``path`` with exactly one slash between them."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def v1_root(base_url: str) -> str:
    """The ``/v1`` API root: ``http://h:p`` and ``http://h:p/v1`` both give ``http://h:p/v1``."""
    base = base_url.rstrip("/")
    return base if base.endswith(API_PREFIX) else base + API_PREFIX


def v1_url(base_url: str, path: str) -> str:
    """``path`` under the ``/v1`` API root (see ``v1_root``)."""
    return join_url(v1_root(base_url), path)


def server_root(base_url: str) -> str:
    """The server's root, above any ``/v1`` API prefix (where ``/tokenize`` and Anthropic's own
    ``/v1/...`` paths are joined): ``http://h:p/v1`` and ``http://h:p`` both give ``http://h:p``."""
    base = base_url.rstrip("/")
    return base[: -len(API_PREFIX)] if base.endswith(API_PREFIX) else base


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, with no path."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def redact_url(url: str) -> str:
    """``url`` without user:password and query string, which may carry credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
