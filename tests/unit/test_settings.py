"""pyproject's `[tool.flwr.app.config]` is the one set of run defaults: `FederationSettings`
mirrors it key for key and default for default, and every `*-every` key follows one rule."""

import tomllib
from dataclasses import MISSING, fields
from pathlib import Path
from typing import get_type_hints

import pytest

from zk0.config import ConfigError, FederationSettings, config_key, parse_every

REPO = Path(__file__).resolve().parents[2]
FIELDS = {config_key(f.name): f for f in fields(FederationSettings)}
EVERY_KEYS = sorted(key for key in FIELDS if key.endswith("-every"))


def pyproject_run_config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]


def test_pyproject_and_the_settings_have_the_same_keys():
    config = pyproject_run_config()
    assert sorted(set(config) - set(FIELDS)) == [], "pyproject keys without a FederationSettings field"
    assert sorted(set(FIELDS) - set(config)) == [], "FederationSettings fields without a pyproject key"


def test_every_default_is_pyprojects_value_and_type():
    kinds = get_type_hints(FederationSettings)
    for key, value in pyproject_run_config().items():
        field = FIELDS[key]
        assert field.default is not MISSING, f"'{key}' has no default in FederationSettings"
        assert field.default == value, f"'{key}': FederationSettings says {field.default!r}, pyproject {value!r}"
        assert type(value) is kinds[field.name], f"'{key}' = {value!r} in pyproject is not {kinds[field.name]}"


def test_what_flwr_run_sends_by_default_parses_to_the_defaults():
    assert FederationSettings.from_run_config(pyproject_run_config()) == FederationSettings()


@pytest.mark.parametrize("path", sorted((REPO / "conf").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_run_configs_override_known_keys_only(path):
    overrides = tomllib.loads(path.read_text())
    assert set(overrides) <= set(FIELDS), "flwr run refuses a --run-config key pyproject lacks"
    FederationSettings.from_run_config({**pyproject_run_config(), **overrides})


def test_a_key_the_config_lacks_takes_the_default_and_overrides_win():
    settings = FederationSettings.from_run_config({"proximal-mu": 0.5, "server-eval-datasets": "a, b"})
    assert settings.proximal_mu == 0.5 and settings.eval_datasets == ("a", "b")
    assert settings.batch_size == FederationSettings().batch_size == pyproject_run_config()["batch-size"]


def test_an_unknown_key_is_refused_with_where_the_keys_are():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) batchsize: .*\[tool.flwr.app.config\]"):
        FederationSettings.from_run_config({"batchsize": 4})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("local-steps", "ten", "'local-steps' = 'ten' should be int, like its default 20"),
        ("batch-size", True, "'batch-size' = True should be int"),
        ("lr", "fast", "'lr' = 'fast' should be float"),
        ("resume", 1, "'resume' = 1 should be bool"),
        ("model", 3, "'model' = 3 should be str"),
        ("num-server-rounds", 0, "'num-server-rounds' must be at least 1"),
        ("eval-batches", 0, "'eval-batches' must be at least 1"),
        ("transfer", 16, "'transfer' = 16 should be str"),
        ("transfer", "fp16", "'transfer' = 'fp16' should be one of 'fp32', 'bf16', 'int8-delta': set e.g. transfer ="),
    ],
)
def test_a_bad_value_is_refused_naming_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        FederationSettings.from_run_config({key: value})


@pytest.mark.parametrize("transfer", ["fp32", "bf16", "int8-delta"])
def test_every_transfer_encoding_is_a_valid_setting_and_bf16_is_the_default(transfer):
    assert FederationSettings.from_run_config({"transfer": transfer}).transfer == transfer
    assert FederationSettings().transfer == pyproject_run_config()["transfer"] == "bf16"


def test_a_whole_number_is_a_float_setting_too():
    settings = FederationSettings.from_run_config({"lr": 1, "max-update-norm": 10})
    assert settings.lr == 1.0 and type(settings.lr) is float and type(settings.max_update_norm) is float


def test_the_every_keys_are_the_ones_pyproject_lists():
    assert sorted(k for k in pyproject_run_config() if k.endswith("-every")) == EVERY_KEYS
    assert EVERY_KEYS == ["checkpoint-every", "client-eval-every", "server-eval-every"]


@pytest.mark.parametrize("value", [0, 1, 7])
def test_the_every_rule_takes_a_whole_number_of_rounds(value):
    assert parse_every("x-every", value) == value


@pytest.mark.parametrize("key", EVERY_KEYS)
@pytest.mark.parametrize("value", [0, 3])
def test_every_every_key_is_parsed_by_the_rule(key, value):
    assert getattr(FederationSettings.from_run_config({key: value}), FIELDS[key].name) == value


@pytest.mark.parametrize("key", EVERY_KEYS)
@pytest.mark.parametrize("bad", [-1, 1.5, 2.0, "2", True, None])
def test_a_bad_every_value_is_refused_naming_the_key_and_the_fix(key, bad):
    with pytest.raises(ConfigError) as err:
        FederationSettings.from_run_config({key: bad})
    message = str(err.value)
    assert f"'{key}' = {bad!r} should be a whole number of rounds >= 0 (0 = off)" in message
    assert f"set e.g. {key} = 5 in --run-config" in message
