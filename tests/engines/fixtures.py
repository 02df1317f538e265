"""Shared pytest fixtures for tests that need a real llama.cpp server.

Use from a test module by binding the fixture into the module's namespace::

    from tests.engines import fixtures

    llama_server = fixtures.llama_server  # (a plain import works too, but trips F811)

    @pytest.mark.llamacpp
    def test_something(llama_server):
        url = llama_server.base_url  # http://127.0.0.1:PORT, OpenAI-compatible

or list ``"tests.engines.fixtures"`` in the root conftest's ``pytest_plugins``.

When no llama-server binary is found (see ``find_llama_server``) the fixture
skips, with the command that builds one; when ``CI=true`` it fails instead,
because CI is expected to have built it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadbench.engines.llamacpp import LlamaServer, find_llama_server

#: Server slots (``-np``) of the shared server: enough for concurrency tests.
LLAMA_SERVER_SLOTS = 4
#: Tokens of KV cache per slot; the total passed as ``-c`` is this times the slots.
LLAMA_SERVER_CTX_PER_SLOT = 2048

_BUILD_HINT = "build it with `python -m loadbench engine build` (about 5-10 minutes)"


def require_llama_server_binary() -> Path:
    """The llama-server binary; skips the test without one, or fails under ``CI=true``."""
    binary = find_llama_server()
    if binary is None:
        message = f"no llama-server binary: {_BUILD_HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true requires it", pytrace=False)
        pytest.skip(message)
    return binary


@pytest.fixture(scope="module")
def llama_server() -> Iterator[LlamaServer]:
    """A running llama-server with the tiny test model, shared by one test module.

    It has ``LLAMA_SERVER_SLOTS`` (4) slots of ``LLAMA_SERVER_CTX_PER_SLOT``
    (2048) tokens each, ``/metrics`` enabled, and is stopped after the module.
    The tiny model never emits an end-of-sequence token, so every request
    generates exactly ``max_tokens`` tokens.
    """
    binary = require_llama_server_binary()
    server = LlamaServer(
        binary=binary,
        n_parallel=LLAMA_SERVER_SLOTS,
        n_ctx=LLAMA_SERVER_SLOTS * LLAMA_SERVER_CTX_PER_SLOT,
    )
    with server:
        yield server
