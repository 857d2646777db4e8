"""A plugin passed to ``make_crm`` (or loaded under another name than its installed entry
point) has its settings section checked like ``crmkit.toml`` checks it: a mistyped key is
refused naming the key and the one it probably meant."""

from __future__ import annotations

import pytest

from crmkit import Setting, hookimpl
from crmkit.errors import ConfigError


class BookingUnderAnotherName:
    """Declares settings in the section of the installed ``booking`` plugin, which this
    application does not load under that name (as a test passing its module would)."""

    @hookimpl
    def crmkit_register_settings(self):
        return [Setting("booking.visits_per_day", int, 10, "Visits a day", minimum=1)]


def test_a_mistyped_key_in_a_loaded_plugins_section_is_refused(make_crm, tmp_path):
    with pytest.raises(ConfigError, match=r"'booking\.visits_per_dya'.*'booking\.visits_per_day'"):
        make_crm(
            [BookingUnderAnotherName()],
            directory=tmp_path / "a",
            settings={"booking": {"visits_per_dya": 3}},
        )
    crm = make_crm(
        [BookingUnderAnotherName()],
        directory=tmp_path / "b",
        settings={"booking": {"visits_per_day": 3}},
    )
    assert crm.config["booking.visits_per_day"] == 3


def test_an_installed_plugin_left_out_keeps_its_section_unchecked(make_crm, tmp_path):
    crm = make_crm(directory=tmp_path, settings={"booking": {"whatever_it_takes": 1}})
    assert crm.config.get("booking.whatever_it_takes") == 1  # kept for when it is loaded
