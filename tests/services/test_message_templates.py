"""Starter message templates shipped by plugins: seeded once, an admin's edits kept."""

from __future__ import annotations

import pytest

from crmkit import hookimpl
from crmkit.services.message_templates import StarterTemplate, seed_templates


class Starters:
    crmkit_plugin_name = "starters"

    @hookimpl
    def crmkit_register_message_templates(self):
        return [
            StarterTemplate(
                "Первое предложение", "Предложение для {{ party.name }}", "Добрый день!"
            )
        ]


def test_starter_templates_are_seeded_once_and_edits_survive(make_crm):
    crm = make_crm(plugins=[Starters()])
    with crm.system() as work:
        [template] = work.message_templates.list()
        assert template.subject == "Предложение для {{ party.name }}"
        work.message_templates.update(template.id, body="Здравствуйте!")
        party = work.parties.create(name="ООО «Кедр»")
        assert work.message_templates.render(template.id, party_id=party.id).subject == (
            "Предложение для ООО «Кедр»"
        )
    crm.sync_access()  # crmkit db upgrade does this again
    with crm.system() as work:
        [template] = work.message_templates.list()
        assert template.body == "Здравствуйте!"


def test_a_starter_template_that_does_not_compile_is_named(crm):
    broken = StarterTemplate("Сломанный", body="{% if %}")
    with (
        crm.session_factory() as session,
        pytest.raises(ValueError, match="starter template 'Сломанный'.*body"),
    ):
        seed_templates(session, [broken])
