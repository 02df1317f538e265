"""Presets, the tag catalog and Local's configuration (no server needed)."""

import pytest

from loadbench.contract.errors import ConfigError
from loadbench.deployments import (
    DEFAULT_CATALOG,
    Q1_5B,
    Q3B,
    Q8B,
    ClientSettings,
    Local,
    ModelCatalog,
    Remote,
)
from loadbench.deployments.local import normalise_host
from loadbench.deployments.models import resolve_tag


def test_seed_api_quant_on_local_or_from_the_experiment():
    assert Local("llama3.2", quant=Q3B()).model_name == "llama3.2:3b-instruct-q4_K_M"
    from_experiment = Local("llama3.2").tags(ClientSettings(pool_size=1, quant=Q3B()))
    assert from_experiment == ("llama3.2:3b-instruct-q4_K_M", "llama3.2:3b")
    assert Local("llama3.2").model_name == "llama3.2"


def test_presets_and_levels():
    assert resolve_tag("llama3.2", Q8B()) == ("llama3.1:8b-instruct-q4_K_M", "llama3.1:8b")
    assert resolve_tag("qwen2.5", Q1_5B("q8_0")) == ("qwen2.5:1.5b-instruct-q8_0",)
    assert resolve_tag("deepseek-r1", Q1_5B())[0] == "deepseek-r1:1.5b-qwen-distill-q4_K_M"
    assert resolve_tag("llama3.2", Q3B("fp16")) == ("llama3.2:3b-instruct-fp16",)
    assert Q3B() != Q8B() and Q3B() == Q3B("q4_K_M")
    with pytest.raises(ConfigError, match="q3_bogus"):
        Q3B("q3_bogus")


def test_unknown_family_size_lists_known_pairs():
    with pytest.raises(ConfigError) as info:
        Local("llama3.2", quant=Q1_5B())
    assert "llama3.2" in str(info.value) and "qwen2.5@1.5b" in str(info.value)


def test_full_tag_with_a_preset_is_ambiguous():
    assert Local("llama3.2:1b").model_name == "llama3.2:1b"
    with pytest.raises(ConfigError, match="already names a tag"):
        Local("llama3.2:1b", quant=Q3B())


def test_quant_in_two_places_must_agree():
    local = Local("llama3.2", quant=Q3B())
    assert local.tags(ClientSettings(pool_size=1, quant=Q3B()))[0].startswith("llama3.2:3b")
    with pytest.raises(ConfigError, match="set it in one place"):
        local.tags(ClientSettings(pool_size=1, quant=Q8B()))


def test_catalog_is_a_user_value():
    catalog = DEFAULT_CATALOG.with_entries({("phi3", "3b"): "phi3:3.8b-mini-instruct-4k-{level}"})
    assert Local("phi3", quant=Q3B(), catalog=catalog).model_name == "phi3:3.8b-mini-instruct-4k-q4_K_M"
    assert ("phi3", "3b") not in DEFAULT_CATALOG
    with pytest.raises(ConfigError, match="level"):
        ModelCatalog({("x", "3b"): "x:3b"})


def test_host_from_argument_env_or_default(monkeypatch):
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert Local("m").host == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:11500")
    assert Local("m").host == "http://127.0.0.1:11500"
    assert Local("m", host="http://gpu-box:8080").host == "http://gpu-box:8080"
    assert normalise_host("gpu-box") == "http://gpu-box:11434"
    assert normalise_host("https://ollama.example") == "https://ollama.example"
    with pytest.raises(ConfigError):
        normalise_host("ftp://x")


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="api"):
        Local("m", api="completions")
    with pytest.raises(ConfigError, match="client"):
        Remote.openai("gpt-4o-mini", client="curl")
    with pytest.raises(ConfigError, match="provider"):
        Remote("mistral", "m")
    with pytest.raises(ConfigError, match="base_url"):
        Remote("compatible")
    with pytest.raises(ConfigError, match="thinking_budget_tokens"):
        Remote.claude(thinking_budget_tokens=10)


def test_remote_provider_spellings():
    assert Remote("claude").provider == "anthropic" and Remote("claude").dialect == "anthropic"
    assert Remote("openai", "gpt-4o").model_name == "gpt-4o"
    assert Remote.deepseek().default_base_url() == "https://api.deepseek.com"
