"""The dialect modules and the framing are pure: importing them loads no HTTP client."""

import subprocess
import sys
from pathlib import Path

import pytest

import loadbench

# Every package of loadbench is stood in for by an empty one, so each module is imported with
# its own imports only (a package's __init__ imports much more, aiohttp included).
_PROBE = """
import pathlib, sys, types
root = pathlib.Path(sys.argv[1])
for init in root.rglob("__init__.py"):
    name = ".".join(("loadbench", *init.parent.relative_to(root).parts))
    package = types.ModuleType(name)
    package.__path__ = [str(init.parent)]
    sys.modules[name] = package
import importlib
importlib.import_module(sys.argv[2])
print("aiohttp" in sys.modules)
"""

PURE = [
    "loadbench.deployments.wire.openai",
    "loadbench.deployments.wire.anthropic",
    "loadbench.deployments.wire.ollama",
    "loadbench.deployments.framing",
    "loadbench.urls",
]


def loads_aiohttp(module: str) -> bool:
    root = Path(loadbench.__file__).parent
    out = subprocess.run([sys.executable, "-c", _PROBE, str(root), module], capture_output=True, text=True,
                         check=True, timeout=60)
    return out.stdout.strip() == "True"


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_does_not_import_aiohttp(module):
    assert not loads_aiohttp(module)


def test_the_probe_sees_aiohttp_where_it_is_imported():
    assert loads_aiohttp("loadbench.deployments.transport")
