"""SimConfig and friends: validation names the field; JSON round-trips."""

from __future__ import annotations

import pytest

from loadbench.contract.errors import ConfigError
from loadbench.sim import PROFILES, EngineProfile, FaultPlan, FaultWindow, Responder, SimConfig
from loadbench.sim.cli import build_config, parser


def test_json_round_trip_of_a_full_config():
    config = SimConfig(
        profile=PROFILES["laptop-3b"],
        faults=FaultPlan(rates={"reset": 0.25, "429": 0.1}, schedule=((1.0, 2.0, "503"),),
                         after_tokens=3),
        seed=7,
        jitter=True,
        responders=(Responder(r"plan (\w+)", json={"steps": [1, 2]}),
                    Responder(r"echo (?P<word>\w+)", template="you said {word}")),
        trace=True,
        models=("x:1",),
    )
    again = SimConfig.from_json(config.to_json())
    assert again == config
    assert again.faults.schedule == (FaultWindow(1.0, 2.0, "503"),)


def test_config_is_frozen():
    config = SimConfig()
    with pytest.raises(AttributeError):
        config.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: EngineProfile(slots=0), "EngineProfile.slots"),
        (lambda: EngineProfile(step_base_ms=-1), "EngineProfile.step_base_ms"),
        (lambda: EngineProfile(kv_cache_tokens=1.5), "EngineProfile.kv_cache_tokens"),
        (lambda: EngineProfile(jitter_frac=2), "EngineProfile.jitter_frac"),
        (lambda: FaultPlan(rates={"explode": 0.1}), "FaultPlan.rates"),
        (lambda: FaultPlan(rates={"reset": 0.7, "429": 0.5}), "FaultPlan.rates"),
        (lambda: FaultPlan(rates={"reset": -0.1}), "FaultPlan.rates"),
        (lambda: FaultPlan(after_tokens=-1), "FaultPlan.after_tokens"),
        (lambda: FaultPlan(schedule=((2.0, 1.0, "503"),)), "FaultWindow.end_s"),
        (lambda: FaultWindow(0, 1, "nope"), "FaultWindow.kind"),
        (lambda: Responder("(", template="x"), "Responder.pattern"),
        (lambda: Responder("x"), "Responder"),
        (lambda: SimConfig(profile="warp-drive"), "SimConfig.profile"),
        (lambda: SimConfig(port=70000), "SimConfig.port"),
        (lambda: SimConfig(host="0.0.0.0"), "SimConfig.host"),
        (lambda: SimConfig(seed="x"), "SimConfig.seed"),
        (lambda: SimConfig(models=()), "SimConfig.models"),
        (lambda: SimConfig(tokenize="yes"), "SimConfig.tokenize"),
        (lambda: SimConfig(piece_chars=0), "SimConfig.piece_chars"),
        (lambda: SimConfig(piece_chars=17), "SimConfig.piece_chars"),
        (lambda: SimConfig(chat_template_tokens=-1), "SimConfig.chat_template_tokens"),
        (lambda: SimConfig(message_template_tokens=1.5), "SimConfig.message_template_tokens"),
        (lambda: SimConfig.from_json('{"bogus": 1}'), "SimConfig"),
        (lambda: SimConfig.from_json('{"profile": {"slotz": 1}}'), "EngineProfile"),
    ],
)
def test_bad_values_name_the_field(make, field):
    with pytest.raises(ConfigError) as info:
        make()
    assert field in str(info.value)


def test_profile_by_name():
    assert SimConfig(profile="gpu-8b").profile is PROFILES["gpu-8b"]


def test_cli_flags_build_the_config():
    args = parser().parse_args([
        "--port", "0", "--profile", "laptop-3b", "--slots", "2", "--itl-ms", "5",
        "--fault", "reset:0.33", "--fault", "429:0.1", "--fault-after-tokens", "4",
        "--fault-window", "1:2:refuse", "--responder", "hi=>hello", "--no-trace",
    ])
    config = build_config(args)
    assert config.port == 0
    assert config.profile.slots == 2 and config.profile.step_base_ms == 5.0
    assert config.profile.step_per_seq_ms == 0.0
    assert config.profile.prefill_per_token_ms == PROFILES["laptop-3b"].prefill_per_token_ms
    assert config.faults.rates == {"reset": 0.33, "429": 0.1}
    assert config.faults.after_tokens == 4
    assert config.faults.schedule == (FaultWindow(1.0, 2.0, "refuse"),)
    assert config.responders == (Responder("hi", template="hello"),)
    assert config.trace is False


def test_cli_tokenizer_flags():
    config = build_config(parser().parse_args(["--no-tokenize", "--piece-chars", "3", "--chat-template-tokens", "8,4"]))
    assert (config.tokenize, config.piece_chars) == (False, 3)
    assert (config.chat_template_tokens, config.message_template_tokens) == (8, 4)
    assert SimConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match="--chat-template-tokens"):
        build_config(parser().parse_args(["--chat-template-tokens", "a,b"]))


def test_cli_ttft_and_itl_shorthands():
    config = build_config(parser().parse_args(["--ttft-ms", "300", "--itl-ms", "20", "--output-tokens", "64"]))
    assert config.profile.overhead_ms == 280.0 and config.profile.step_base_ms == 20.0
    assert config.profile.default_output_tokens == 64
    assert config.port == 8000  # the CLI's default port


def test_cli_bad_flag_is_config_error():
    with pytest.raises(ConfigError, match="--fault"):
        build_config(parser().parse_args(["--fault", "reset"]))
    with pytest.raises(ConfigError, match=r"FaultPlan\.rates"):
        build_config(parser().parse_args(["--fault", "boom:0.5"]))
