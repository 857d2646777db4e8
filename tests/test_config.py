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


# -- unknown keys, ranges and keys checked at start ---------------------------------------


def _refusal(tmp_path, text: str, environ: dict[str, str] | None = None, **crm_options) -> str:
    """The one-line refusal of a deployment whose crmkit.toml is ``text`` (at CRM start)."""
    from crmkit.app import CRM

    (tmp_path / "crmkit.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        CRM(Config.load(tmp_path, environ=environ or {}), **crm_options)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[security]\nsesion_days = 3\n", "'security.sesion_days'"),
        ("sesion_days = 3\n", "'sesion_days'"),  # outside its section
        ("[securty]\nsession_days = 3\n", "'securty.session_days'"),
    ],
)
def test_a_misspelled_key_is_refused_naming_the_file_and_the_key_meant(tmp_path, text, says):
    message = _refusal(tmp_path, text, load_entry_points=False)
    file = tmp_path / "crmkit.toml"
    assert message == (f"unknown setting {says} in {file}; did you mean 'security.session_days'?")


def test_a_section_no_installed_plugin_declares_is_refused(tmp_path):
    message = _refusal(tmp_path, '[telegram]\ntoken = "x"\n', load_entry_points=False)
    assert message == (
        f"unknown setting 'telegram.token' in {tmp_path / 'crmkit.toml'}; no loaded plugin "
        "has settings [telegram]: install and load the plugin, or remove them"
    )


def test_plugin_settings_are_accepted_and_checked(tmp_path):
    from crmkit.app import CRM

    class Sample:
        crmkit_plugin_name = "sample_settings"

        @staticmethod
        def crmkit_register_settings():
            return [Setting("sample.retries", int, 3, "Retries.", minimum=0)]

    (tmp_path / "crmkit.toml").write_text("[sample]\nretries = 5\n", encoding="utf-8")
    crm = CRM(Config.load(tmp_path, environ={}), plugins=[Sample()], load_entry_points=False)
    assert crm.config["sample.retries"] == 5
    crm.close()
    message = _refusal(
        tmp_path, "[sample]\nretrys = 5\n", plugins=[Sample()], load_entry_points=False
    )
    assert message.endswith("did you mean 'sample.retries'?")
    message = _refusal(
        tmp_path, "[sample]\nretries = -1\n", plugins=[Sample()], load_entry_points=False
    )
    assert message.endswith("must be at least 0, got -1")


def test_settings_of_an_installed_plugin_not_loaded_are_kept(tmp_path):
    """A blocked (or not allowed) plugin keeps its section for when it is loaded again."""
    from crmkit.app import CRM

    (tmp_path / "crmkit.toml").write_text(
        '[plugins]\nblock = ["mail"]\n[mail]\ntimeout_seconds = 30\n', encoding="utf-8"
    )
    crm = CRM(Config.load(tmp_path, environ={}))
    assert "mail" not in crm.pm.infos
    crm.close()


def test_a_misspelled_environment_variable_of_a_known_section_is_refused(tmp_path):
    environ = {"CRMKIT_SECURITY_SESION_DAYS": "3", "CRMKIT_TEST_ANYTHING": "x"}
    message = _refusal(tmp_path, "", environ=environ, load_entry_points=False)
    assert message == (
        "unknown setting variable $CRMKIT_SECURITY_SESION_DAYS; "
        "did you mean $CRMKIT_SECURITY_SESSION_DAYS?"
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "[security]\nsession_days = 0\n",
            "'security.session_days' from {}: must be at least 1, got 0",
        ),
        (
            "[queue]\ntick_seconds = 0\n",
            "'queue.tick_seconds' from {}: must be greater than 0, got 0",
        ),
        (
            "[screening]\nthreshold = 500\n",
            "'screening.threshold' from {}: must be between 1 and 100, got 500",
        ),
        (
            '[channels]\nunknown_sender = "drop"\n',
            "'channels.unknown_sender' from {}: must be one of triage, lead, got 'drop'",
        ),
        (
            '[queue]\nurl = "amqp://broker"\n',
            "'queue.url' from {}: must be empty (the embedded queue) or redis://host:port/db, "
            "got 'amqp://broker'",
        ),
        (
            "[outbox]\nsweep_seconds = 0\n",
            "'outbox.sweep_seconds' from {}: must be at least 1, got 0",
        ),
        (
            "[storage]\nmax_upload_mb = -5\n",
            "'storage.max_upload_mb' from {}: must be at least 1, got -5",
        ),
        (
            '[locale]\ncurrency = "rubles"\n',
            "'locale.currency' from {}: must be an ISO 4217 code of three capital letters such "
            "as RUB, got 'rubles'",
        ),
        (
            '[locale]\nphone_region = "XX"\n',
            "'locale.phone_region' from {}: no phone region 'XX'; give a two-letter country "
            "code such as RU",
        ),
        (
            '[security]\nargon2_profile = "fast"\n',
            "'security.argon2_profile' from {}: no argon2 profile 'fast' (known: CHEAPEST, "
            "PRE_21_2, RFC_9106_HIGH_MEMORY, RFC_9106_LOW_MEMORY)",
        ),
    ],
)
def test_a_value_out_of_range_stops_start_naming_setting_value_and_range(tmp_path, text, says):
    message = _refusal(tmp_path, text, load_entry_points=False)
    assert message == "setting " + says.format(tmp_path / "crmkit.toml")


def test_the_range_of_an_environment_value_names_the_variable(tmp_path):
    message = _refusal(tmp_path, "", environ={"CRMKIT_SECURITY_SESSION_DAYS": "0"})
    assert message == (
        "setting 'security.session_days' from $CRMKIT_SECURITY_SESSION_DAYS: must be at "
        "least 1, got 0"
    )


def test_a_bad_secrets_key_stops_start_without_showing_it(tmp_path):
    from crmkit.sealing import new_key

    good = new_key()
    message = _refusal(
        tmp_path, f'[security]\nsecrets_key = "{good}, not-a-key"\n', load_entry_points=False
    )
    assert message.startswith(
        f"setting 'security.secrets_key' from {tmp_path / 'crmkit.toml'}: key 2 is not a "
        "Fernet key (32 url-safe base64-encoded bytes)"
    )
    assert "not-a-key" not in message and good not in message
    from crmkit.app import CRM

    (tmp_path / "crmkit.toml").write_text(f'[security]\nsecrets_key = "{good}"\n')
    crm = CRM(Config.load(tmp_path, environ={}), load_entry_points=False)
    assert crm.sealing.open(crm.sealing.seal("pw")) == "pw"
    crm.close()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "[outbox]\nretry_base_seconds = 7200\n",
            "settings 'outbox.retry_base_seconds' and 'outbox.retry_max_seconds' disagree: "
            "'outbox.retry_base_seconds' (7200 from {file}) must be at most "
            "'outbox.retry_max_seconds' (3600 by default)",
        ),
        (
            "[outbox]\nretry_base_seconds = 60\nretry_max_seconds = 30\n",
            "settings 'outbox.retry_base_seconds' and 'outbox.retry_max_seconds' disagree: "
            "'outbox.retry_base_seconds' (60 from {file}) must be at most "
            "'outbox.retry_max_seconds' (30 from {file})",
        ),
        (
            '[booking]\nday_start = "21:00"\n',
            "settings 'booking.day_start' and 'booking.day_end' disagree: 'booking.day_start' "
            "(21:00 from {file}) must be before 'booking.day_end' (20:00 by default)",
        ),
        (
            '[booking]\nday_start = "10:00"\nday_end = "10:00"\n',
            "settings 'booking.day_start' and 'booking.day_end' disagree: 'booking.day_start' "
            "(10:00 from {file}) must be before 'booking.day_end' (10:00 from {file})",
        ),
    ],
)
def test_two_settings_that_contradict_each_other_stop_start_naming_both(tmp_path, text, says):
    import crmkit_booking.plugin

    message = _refusal(tmp_path, text, plugins=[crmkit_booking.plugin], load_entry_points=False)
    assert message == says.format(file=tmp_path / "crmkit.toml")


def test_a_contradiction_from_the_environment_names_the_variable(tmp_path):
    environ = {"CRMKIT_OUTBOX_RETRY_MAX_SECONDS": "5"}
    message = _refusal(tmp_path, "", environ=environ, load_entry_points=False)
    assert message.endswith(
        "'outbox.retry_base_seconds' (10 by default) must be at most "
        "'outbox.retry_max_seconds' (5 from $CRMKIT_OUTBOX_RETRY_MAX_SECONDS)"
    )


def test_settings_that_agree_start(tmp_path):
    import crmkit_booking.plugin

    from crmkit.app import CRM

    (tmp_path / "crmkit.toml").write_text(
        "[outbox]\nretry_base_seconds = 30\nretry_max_seconds = 30\n"
        '[booking]\nday_start = "08:00"\nday_end = "23:30"\n',
        encoding="utf-8",
    )
    crm = CRM(
        Config.load(tmp_path, environ={}),
        plugins=[crmkit_booking.plugin],
        load_entry_points=False,
    )
    assert crm.config["booking.day_start"] == "08:00"
    crm.close()


def test_a_default_language_without_catalogs_stops_start_naming_the_ones_there(tmp_path):
    message = _refusal(tmp_path, '[locale]\ndefault = "de"\n', load_entry_points=False)
    assert message == (
        f"setting 'locale.default' from {tmp_path / 'crmkit.toml'}: no catalogs for "
        "language 'de'; available: en, ru"
    )
    message = _refusal(tmp_path, "", environ={"CRMKIT_LOCALE_DEFAULT": "EN"})
    assert message == (
        "setting 'locale.default' from $CRMKIT_LOCALE_DEFAULT: no catalogs for language "
        "'EN'; available: en, ru"
    )


def test_every_range_is_stated_in_the_settings_reference():
    """The reference tells the allowed values of every core setting that has bounds."""
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "reference" / "settings.md").read_text()
    sections = dict((block.split("\n", 1)[0].strip(), block) for block in text.split("\n### ")[1:])
    for setting in CORE_SETTINGS:
        if setting.minimum is None and setting.above is None and not setting.choices:
            continue
        section = sections[setting.name].lower()
        stated = ("at least", "greater than", "between", "one of")
        assert any(word in section for word in stated), setting.name
