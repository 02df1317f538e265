"""Scenario files: loading one as a fresh module, the errors that name the file and line, and
what the loading leaves behind in sys.path and sys.modules."""

from __future__ import annotations

import contextlib
import sys
import textwrap
from pathlib import Path

import pytest

from loadbench.contract.errors import ScenarioError
from loadbench.load.plans import Constant, Stop
from loadbench.loader import load_scenario
from loadbench.scenario import Scenario

HEADER = """\
from loadbench.deployments import Remote
from loadbench.load.plans import Concurrency, Constant, Stop
from loadbench.scenario import Scenario


class Tiny:
    def open(self, seed, counter):
        return iter(())

    def describe(self):
        return {"workload": "tiny"}


DEPLOYMENT = Remote.compatible(base_url="http://127.0.0.1:9", model="m")
"""
HEADER_LINES = HEADER.count("\n")


def write(path: Path, body: str, header: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((HEADER if header else "") + textwrap.dedent(body), encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 450 + len(str(path)), message
    return message


def test_a_scenario_file_loads_and_its_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = write(tmp_path / "decode_burst.py", """
        scenario = Scenario(workload=Tiny(), deployment=DEPLOYMENT, load=Constant(2.0), stop=Stop(requests=5))
    """)
    s = load_scenario(path)
    assert isinstance(s, Scenario)
    assert s.name == "decode_burst"
    assert s.load == Constant(2.0) and s.stop == Stop(requests=5)
    assert s.workload.describe() == {"workload": "tiny"}


def test_an_explicit_name_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "file.py", """
        scenario = Scenario(workload=Tiny(), deployment=DEPLOYMENT, name="my-run")
    """)
    assert load_scenario(str(path)).name == "my-run"


def test_a_scenario_file_may_define_dataclasses(tmp_path: Path) -> None:
    path = write(tmp_path / "dc.py", """
        from dataclasses import dataclass

        @dataclass(frozen=True)
        class Workload:
            size: int = 3

            def open(self, seed, counter):
                return iter(())

            def describe(self):
                return {"size": self.size}

        scenario = Scenario(workload=Workload(), deployment=DEPLOYMENT)
    """)
    assert load_scenario(path).workload.describe() == {"size": 3}


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.py"
    message = load_error(path)
    assert str(path) in message and "not found" in message


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.py", "x = 1\ny = (\nscenario = = 2\n", header=False)
    message = load_error(path)
    assert message.startswith(f"{path}:")
    assert "syntax error" in message
    line = int(message[len(str(path)) + 1:].split(":")[0])
    assert line in (2, 3)


def test_no_scenario_defined(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.py", "x = 1\n")
    message = load_error(path)
    assert str(path) in message and "scenario" in message


def test_scenario_of_the_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path / "wrong.py", "scenario = {'load': 5}\n")
    message = load_error(path)
    assert "Scenario" in message and "dict" in message


def test_bad_value_is_a_scenario_error_naming_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path / "neg.py", """
        scenario = Scenario(
            workload=Tiny(),
            deployment=DEPLOYMENT,
            load=Constant(rate_per_s=-5),
        )
    """)
    message = load_error(path)
    assert "Constant.rate_per_s" in message and "-5" in message
    line = HEADER_LINES + 5  # textwrap keeps the leading blank line
    assert f"{path}:{line}:" in message, message


def test_unknown_scenario_field_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "typo.py", """
        scenario = Scenario(workload=Tiny(), deployment=DEPLOYMENT, duraton_s=10)
    """)
    message = load_error(path)
    assert "duraton_s" in message
    assert f"{path}:{HEADER_LINES + 2}:" in message


def test_an_exception_in_the_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "boom.py", "x = 1\nraise RuntimeError('no luck')\n", header=False)
    message = load_error(path)
    assert message == f"{path}:2: RuntimeError: no luck"


def test_loading_leaves_sys_path_and_sys_modules_as_they_were(tmp_path: Path) -> None:
    good = write(tmp_path / "good.py", "scenario = Scenario(workload=Tiny(), deployment=DEPLOYMENT)\n")
    bad = write(tmp_path / "bad.py", "scenario = Scenario(workload=Tiny(), deployment=DEPLOYMENT, load=5)\n")
    syntax = write(tmp_path / "syntax.py", "scenario = (\n", header=False)
    load_scenario(good)  # first load may import loadbench modules for the first time
    for path in (good, bad, syntax, good):
        path_before, modules_before = list(sys.path), set(sys.modules)
        with contextlib.suppress(ScenarioError):
            load_scenario(path)
        assert sys.path == path_before, path
        assert set(sys.modules) == modules_before, (path, set(sys.modules) ^ modules_before)


def test_a_scenario_may_import_a_helper_beside_it(tmp_path: Path) -> None:
    write(tmp_path / "helpers_for_scenarios.py", "RATE = 3.5\n", header=False)
    path = write(tmp_path / "uses_helper.py", """
        from helpers_for_scenarios import RATE

        scenario = Scenario(workload=Tiny(), deployment=DEPLOYMENT, load=Constant(RATE))
    """)
    path_before = list(sys.path)
    assert load_scenario(path).load == Constant(3.5)
    assert sys.path == path_before
    assert "helpers_for_scenarios" not in sys.modules


def test_helpers_of_the_same_name_in_two_folders_do_not_mix(tmp_path: Path) -> None:
    # Each folder has its own `common.py`; the second scenario must not get the first one's helper.
    for folder, rate in (("a", 1.0), ("b", 2.0)):
        write(tmp_path / folder / "common.py", f"RATE = {rate}\n", header=False)
        write(tmp_path / folder / "run.py", """
            from common import RATE

            scenario = Scenario(workload=Tiny(), deployment=DEPLOYMENT, load=Constant(RATE))
        """)
    assert load_scenario(tmp_path / "a" / "run.py").load == Constant(1.0)
    assert load_scenario(tmp_path / "b" / "run.py").load == Constant(2.0)
    # And an edited helper is read again on the next load.
    # (a different length, so Python's bytecode cache cannot mistake it for the old one)
    write(tmp_path / "a" / "common.py", "RATE = 9.25\n", header=False)
    assert load_scenario(tmp_path / "a" / "run.py").load == Constant(9.25)


def test_helper_packages_are_dropped_but_other_first_imports_stay(tmp_path: Path) -> None:
    write(tmp_path / "myhelpers" / "__init__.py", "", header=False)
    write(tmp_path / "myhelpers" / "rates.py", "RATE = 4.0\n", header=False)
    path = write(tmp_path / "pkg.py", """
        import colorsys  # a standard module, found outside the scenario's folder
        from myhelpers.rates import RATE

        scenario = Scenario(workload=Tiny(), deployment=DEPLOYMENT, load=Constant(RATE))
    """)
    sys.modules.pop("colorsys", None)
    assert load_scenario(path).load == Constant(4.0)
    assert "myhelpers" not in sys.modules and "myhelpers.rates" not in sys.modules
    assert "colorsys" in sys.modules
