"""Scenario files: run one as a fresh module and return the run, study or capacity search it defines.

A scenario file is a Python file that assigns ``scenario = Scenario(...)``, ``study =
Study(...)`` or ``search = CapacitySearch(...)`` (see ``loadbench.studies``). This module sits
above both ``loadbench.scenario`` and ``loadbench.studies``: it is the one place that knows all
three kinds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import sys
import traceback
import types
from pathlib import Path
from typing import Any

from loadbench.contract.errors import LoadbenchError, ScenarioError
from loadbench.scenario import Scenario
from loadbench.studies import CapacitySearch, Study


def _line_in(path: Path, exc: BaseException) -> int | None:
    """The last line of ``path`` in ``exc``'s traceback, to point the user at their own code."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == path:
            line = frame.lineno
    return line


def _forget_helpers(directory: str, before: set[str]) -> None:
    """Drop the modules a scenario file imported from its own folder.

    Otherwise the next file's ``import common`` would get the previous folder's ``common.py``
    from ``sys.modules``. Only top-level modules found in ``directory`` (and their submodules)
    are dropped; anything else imported for the first time stays, so classes keep one identity.
    """
    new = [m for m in sys.modules if m not in before]
    helpers = set()
    for mod_name in new:
        file = getattr(sys.modules[mod_name], "__file__", None)
        if "." in mod_name or not file:
            continue
        found = Path(file).resolve()
        home = found.parent.parent if found.name == "__init__.py" else found.parent
        if str(home) == directory:
            helpers.add(mod_name)
    for mod_name in new:
        if mod_name.partition(".")[0] in helpers:
            sys.modules.pop(mod_name, None)


def _exec_file(path: Path) -> dict[str, Any]:
    """Run a scenario file as a fresh module and return its namespace.

    The file runs under a unique module name; its directory is on ``sys.path`` only while it runs
    (so it may import helpers beside it); neither the module nor those helpers are left in
    ``sys.modules``. Every problem becomes a ScenarioError naming the file (and line, where there is one).
    """
    if not path.is_file():
        raise ScenarioError(f"{path}: scenario file not found")
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read scenario file ({exc})") from None
    resolved = path.resolve()
    try:
        code = compile(source, str(resolved), "exec")
    except SyntaxError as exc:
        raise ScenarioError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None

    name = "loadbench_scenario_" + hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    module = types.ModuleType(name)
    module.__file__ = str(resolved)
    directory = str(resolved.parent)
    modules_before = set(sys.modules)
    sys.modules[name] = module  # dataclasses defined in the file look their module up here
    sys.path.insert(0, directory)
    try:
        exec(code, module.__dict__)
    except LoadbenchError as exc:
        where = _line_in(resolved, exc)
        raise ScenarioError(f"{path}{f':{where}' if where else ''}: {exc}") from None
    except Exception as exc:
        where = _line_in(resolved, exc)
        raise ScenarioError(f"{path}{f':{where}' if where else ''}: {type(exc).__name__}: {exc}") from None
    finally:
        sys.modules.pop(name, None)
        with contextlib.suppress(ValueError):
            sys.path.remove(directory)
        _forget_helpers(directory, modules_before)
    return module.__dict__


#: What a file may define for ``python -m loadbench FILE.py``: one run, a study, or a capacity search.
DEFINITIONS = ("scenario", "study", "search")
_CLASSES: dict[str, type[Scenario | Study | CapacitySearch]] = {
    "scenario": Scenario, "study": Study, "search": CapacitySearch
}


def load_scenario(path: str | Path) -> Scenario:
    """Run a scenario file and return its ``scenario`` (see ``_exec_file`` for how it runs)."""
    path = Path(path)
    found = load_definition(path)
    if not isinstance(found, Scenario):
        kind = "study" if isinstance(found, Study) else "search"
        raise ScenarioError(f"{path}: defines a `{kind}`, not a `scenario`; run it with `python -m loadbench {path}`")
    return found


def load_definition(path: str | Path) -> Scenario | Study | CapacitySearch:
    """Run a file and return what it defines: its ``scenario`` (a Scenario), ``study`` (a
    ``loadbench.Study``, sweeps included) or ``search`` (a ``loadbench.CapacitySearch``), exactly
    one of them. A name left at its default becomes the file's stem.
    """
    path = Path(path)
    namespace = _exec_file(path)
    present = [n for n in DEFINITIONS if namespace.get(n) is not None]
    if not present:
        raise ScenarioError(
            f"{path}: defines no `scenario` (expected `scenario = Scenario(...)`, `study = Study(...)` "
            "or `search = CapacitySearch(...)`)"
        )
    if len(present) > 1:
        raise ScenarioError(f"{path}: defines {' and '.join(f'`{n}`' for n in present)}; define exactly one")
    kind = present[0]
    value = namespace[kind]
    expected = _CLASSES[kind]
    if not isinstance(value, expected):
        raise ScenarioError(f"{path}: `{kind}` must be a loadbench.{expected.__name__}, got {type(value).__name__}")
    if isinstance(value, Scenario):
        return dataclasses.replace(value, name=path.stem) if value.name == "experiment" else value
    if value.name is None and value.base.name == "experiment":
        return value.with_name(path.stem)
    return value
