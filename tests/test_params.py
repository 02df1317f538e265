"""Wrong values and wrong keywords in configuration objects: one ConfigError naming the field."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from loadbench import Concurrency, Decode, Local, Poisson, Remote, Scenario, Stop
from loadbench.contract.errors import ConfigError, ScenarioError
from loadbench.deployments import Timeouts
from loadbench.loader import load_scenario


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 0, "5", True, None])
@pytest.mark.parametrize("name", ["connect_s", "first_token_s", "total_s"])
def test_timeouts_refuse_nan_and_non_numbers(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"Timeouts\.{name} must be a finite number > 0, got"):
        Timeouts(**{name: value})


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Remote.openai(max_tokens="lots"), "max_tokens"),
        (lambda: Remote.openai(max_tokens=2.5), "max_tokens"),
        (lambda: Remote.claude(thinking_budget_tokens="big"), "thinking_budget_tokens"),
        (lambda: Remote.compatible("http://127.0.0.1:1", temperature=math.nan), "temperature"),
        (lambda: Remote.deepseek(seed="x"), "seed"),
        (lambda: Remote.compatible("http://127.0.0.1:1", model=3), "model"),
        (lambda: Remote.compatible(8000), "base_url"),
        (lambda: Remote.openai(ignore_eos="yes"), "ignore_eos"),
        (lambda: Local("llama3.2", seed=1.5), "seed"),
    ],
)
def test_deployments_name_the_field_with_the_wrong_type(make, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"\.{field} must be"):
        make()


def test_a_wrong_keyword_names_the_valid_parameters() -> None:
    with pytest.raises(ConfigError) as info:
        Poisson(rate=10)
    assert str(info.value) == (
        "Poisson: unknown parameter 'rate' (did you mean 'rate_per_s'?); "
        "its parameters are rate_per_s, burstiness, max_concurrency"
    )
    with pytest.raises(ConfigError, match=r"^Stop: unknown parameter 'duraton_s' \(did you mean 'duration_s'\?\)"):
        Stop(duraton_s=3)
    with pytest.raises(ConfigError, match=r"^Concurrency: missing 1 required positional argument: 'users'"):
        Concurrency()
    with pytest.raises(ConfigError, match=r"^Remote: unknown parameter 'max_token' \(did you mean 'max_tokens'\?\)"):
        Remote.openai(max_token=5)
    with pytest.raises(ConfigError, match=r"^Scenario: unknown parameter 'loads' \(did you mean 'load'\?\)"):
        Scenario(workload=Decode(), deployment=Local("llama3.2"), loads=Concurrency(1))


def test_a_scenario_file_with_a_wrong_keyword_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text(textwrap.dedent("""
        from loadbench import Decode, Poisson, Remote, Scenario, Stop
        scenario = Scenario(
            workload=Decode(),
            deployment=Remote.compatible("http://127.0.0.1:8000"),
            load=Poisson(rate=10),
            stop=Stop(requests=3),
        )
    """))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}:6: Poisson: unknown parameter 'rate'")
    assert "TypeError" not in message and "__init__" not in message
