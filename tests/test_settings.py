"""Settings: every number is checked against its range and every yes/no against its words, so a
bad value is a clear error naming the setting, never a silent misbehaviour
(``max_file_bytes = -1`` used to skip every file)."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from objlib.cli import cli
from objlib.errors import ConfigError
from objlib.settings import RANGES, Settings


def config(home, text: str) -> None:
    (home / "config.toml").write_text(text, encoding="utf-8")


def numeric_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(Settings)
            if f.type in ("int", "float", int, float)]


def test_every_numeric_setting_has_a_range_and_the_defaults_are_in_it(home):
    assert sorted(RANGES) == sorted(numeric_fields())
    defaults = Settings.load(home)
    for name, allowed in RANGES.items():
        assert getattr(defaults, name) in allowed, name


def just_outside(allowed) -> float:
    return allowed.low if allowed.low_open else allowed.low - 1


@pytest.mark.parametrize("name", sorted(RANGES))
def test_a_value_below_the_range_is_refused_naming_setting_value_and_range(home, name):
    bad = just_outside(RANGES[name])
    value = int(bad) if isinstance(getattr(Settings(home=home), name), int) else float(bad)
    config(home, f"{name} = {value!r}\n")

    with pytest.raises(ConfigError) as caught:
        Settings.load(home)

    message = str(caught.value)
    assert f"setting {name}" in message and f"= {value!r}" in message
    assert f"allowed: {RANGES[name]}" in message


@pytest.mark.parametrize("line, allowed", [
    ("max_file_bytes = -1", "allowed: >= 1"),
    ("breaker_ratio = 1.5", "allowed: (0, 1]"),
    ("max_delete_percent = 150.0", "allowed: (0, 100]"),
    ("max_delete_percent = 0", "allowed: (0, 100]"),
    ("poll_timeout_s = 0", "allowed: > 0"),
    ("rate_limit_per_minute = -1", "allowed: >= 0; 0 = unlimited"),
    ("poll_timeout_s = nan", "allowed: > 0"),
    ("request_timeout_s = inf", "allowed: > 0"),
])
def test_out_of_range_values_from_config_toml(home, line, allowed):
    config(home, line + "\n")
    with pytest.raises(ConfigError, match="out of range") as caught:
        Settings.load(home)
    assert allowed in str(caught.value)


@pytest.mark.parametrize("line", [
    "rate_limit_per_minute = 0", "reconcile_every_minutes = 0", "max_delete = 0",
    "breaker_ratio = 1.0", "max_delete_percent = 100", "poll_first_delay_s = 0",
    "backoff_base_s = 0", "max_file_bytes = 1",
])
def test_the_edges_of_each_range_are_accepted(home, line):
    config(home, line + "\n")
    name, value = (part.strip() for part in line.split("="))
    assert getattr(Settings.load(home), name) == float(value)


def test_an_out_of_range_variable_names_the_variable(home, monkeypatch):
    monkeypatch.setenv("OBJLIB_MAX_DELETE_PERCENT", "0")
    with pytest.raises(ConfigError, match=r"max_delete_percent \(OBJLIB_MAX_DELETE_PERCENT\) "
                                          r"= 0\.0 is out of range"):
        Settings.load(home)


def test_an_out_of_range_override_is_refused_too(home):
    with pytest.raises(ConfigError, match="max_attempts"):
        Settings.load(home, max_attempts=0)


@pytest.mark.parametrize("line, message", [
    ("max_attempts = 2.5", "not a whole number"),
    ("max_attempts = true", "not a number"),
    ("lease_s = false", "not a number"),
    ('max_delete = "many"', "cannot use 'many'"),
])
def test_a_number_setting_takes_numbers_only(home, line, message):
    config(home, line + "\n")
    with pytest.raises(ConfigError, match=message):
        Settings.load(home)


def test_a_whole_float_is_a_count(home):
    config(home, "max_attempts = 3.0\n")
    settings = Settings.load(home)
    assert settings.max_attempts == 3 and type(settings.max_attempts) is int


@pytest.mark.parametrize("word, expected", [
    ("1", True), ("true", True), ("Yes", True), (" on ", True),
    ("0", False), ("false", False), ("no", False), ("OFF", False),
])
def test_yes_no_words_from_a_variable(home, monkeypatch, word, expected):
    monkeypatch.setenv("OBJLIB_LOG_JSON", word)
    assert Settings.load(home).log_json is expected


def test_a_bool_setting_given_another_word_is_an_error_not_false(home, monkeypatch):
    monkeypatch.setenv("OBJLIB_LOG_JSON", "maybe")
    with pytest.raises(ConfigError, match="'log_json': 'maybe' is not a yes/no value"):
        Settings.load(home)
    monkeypatch.delenv("OBJLIB_LOG_JSON")
    config(home, 'log_json = "maybe"\n')
    with pytest.raises(ConfigError, match="not a yes/no value"):
        Settings.load(home)


def test_a_bad_setting_is_a_clean_cli_error_and_nothing_is_scanned(home, tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    (library / "a.txt").write_text("words\n", encoding="utf-8")
    config(home, "max_file_bytes = -1\n")

    result = CliRunner().invoke(cli, ["scan", str(library)])

    assert result.exit_code == 1
    assert "setting max_file_bytes = -1 is out of range; allowed: >= 1" in result.output
    assert "Traceback" not in result.output
    assert not (home / "library.db").exists()
