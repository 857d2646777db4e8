"""Settings: crmkit.toml, environment overrides, types checked with the key named."""

from __future__ import annotations

import pytest

from crmkit.config import CORE_SETTINGS, Config, Setting, new_config_text
from crmkit.errors import ConfigError


def test_defaults_file_and_environment(tmp_path):
    (tmp_path / "crmkit.toml").write_text(
        '[database]\nurl = "sqlite:///data/crm.db"\n[plugins]\nallow = ["mail"]\n'
    )
    config = Config.load(tmp_path, environ={"CRMKIT_LOCALE_DEFAULT": "en"})
    assert config.database_url == f"sqlite:///{tmp_path / 'data' / 'crm.db'}"
    assert config["plugins.allow"] == ["mail"]
    assert config["locale.default"] == "en"
    assert config["storage.max_upload_mb"] == 25


def test_environment_overrides_file(tmp_path):
    (tmp_path / "crmkit.toml").write_text('[database]\nurl = "sqlite:///a.db"\n')
    config = Config.load(
        tmp_path,
        environ={
            "CRMKIT_DATABASE_URL": "postgresql+psycopg://db/crm",
            "CRMKIT_PLUGINS_ALLOW": "mail, finance",
        },
    )
    assert config.database_url == "postgresql+psycopg://db/crm"
    assert config["plugins.allow"] == ["mail", "finance"]


def test_missing_file_is_one_clear_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        Config.load(tmp_path / "nowhere")
    assert "crmkit init" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_path_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(ConfigError) as info:
        Config.load(tmp_path / "nowhere", environ={})
    assert str(info.value).startswith(f"{tmp_path / 'nowhere'}: no such file or directory;")
    with pytest.raises(ConfigError) as info:
        Config.load(environ={"CRMKIT_CONFIG": str(tmp_path / "gone")})
    assert str(info.value).startswith(f"CRMKIT_CONFIG {tmp_path / 'gone'}: no such file")


def test_bad_toml_names_the_file(tmp_path):
    (tmp_path / "crmkit.toml").write_text("[database\n")
    with pytest.raises(ConfigError, match="crmkit.toml: not valid TOML"):
        Config.load(tmp_path)


def test_wrong_type_names_key_and_origin(tmp_path):
    (tmp_path / "crmkit.toml").write_text('[storage]\nmax_upload_mb = "lots"\n')
    config = Config.load(tmp_path, environ={})
    with pytest.raises(ConfigError, match="'storage.max_upload_mb' from .*crmkit.toml must be int"):
        config.validate()


def test_time_zone_of_the_business(tmp_path):
    (tmp_path / "crmkit.toml").write_text('[locale]\ntimezone = "Asia/Yekaterinburg"\n')
    config = Config.load(tmp_path, environ={})
    assert config.zone.utcoffset(None) is None  # a real zone, not a fixed offset
    assert str(config.zone) == "Asia/Yekaterinburg"
    assert str(Config.from_mapping({}, environ={}).zone) == "Europe/Moscow"


def test_unknown_time_zone_fails_at_start_naming_the_setting(tmp_path):
    (tmp_path / "crmkit.toml").write_text('[locale]\ntimezone = "Moscow"\n')
    config = Config.load(tmp_path, environ={})
    with pytest.raises(
        ConfigError, match="'locale.timezone' from .*crmkit.toml: no time zone 'Moscow'"
    ):
        config.validate()


def test_plugin_settings_get_env_overrides():
    config = Config.from_mapping({}, environ={})
    config.declare(
        [Setting("mail.smtp_port", int, 25, "SMTP port")], environ={"CRMKIT_MAIL_SMTP_PORT": "2525"}
    )
    assert config["mail.smtp_port"] == 2525


def test_new_config_has_a_fresh_secret():
    first, second = new_config_text(), new_config_text()
    assert "secret_key" in first and first != second
    import tomllib

    assert tomllib.loads(first)["database"]["url"].startswith("sqlite:///")


def test_every_core_setting_has_a_description():
    assert all(s.description for s in CORE_SETTINGS)
