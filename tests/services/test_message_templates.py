"""Starter message templates shipped by plugins: seeded once, an admin's edits kept."""

from __future__ import annotations

import pytest

from crmkit import hookimpl
from crmkit.errors import NotFound, ValidationFailed
from crmkit.services.message_templates import StarterTemplate, seed_templates
from crmkit.testing import add_user, factories


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


# -- language versions ------------------------------------------------------------------


def _offer_versions(work):
    ru = work.message_templates.create(
        name="Offer", language="ru", subject="Предложение для {{ party.name }}", body="Добрый день!"
    )
    en = work.message_templates.create(
        name="Offer", language="en", subject="An offer for {{ party.name }}", body="Good day!"
    )
    return ru, en


def test_each_client_gets_the_version_in_their_language(make_crm):
    crm = make_crm(settings={"locale.default": "ru"})
    with crm.system() as work:
        ru, en = _offer_versions(work)
        anna = work.parties.create(name="Анна", kind="person", language="ru").id
        john = work.parties.create(name="John", kind="person", language="en").id
        hans = work.parties.create(name="Hans", kind="person", language="de").id
        nobody = work.parties.create(name="Без языка", kind="person").id
    with crm.system() as work:
        templates = work.message_templates
        assert templates.render_for("Offer", party_id=anna).subject == "Предложение для Анна"
        english = templates.render_for(ru.id, party_id=john)  # any version's id names the set
        assert (english.subject, english.body, english.language) == (
            "An offer for John",
            "Good day!",
            "en",
        )
        # no German version: the deployment's language; no language of their own: the same
        assert templates.render_for("Offer", party_id=hans).language == "ru"
        assert templates.render_for(en.id, party_id=nobody).body == "Добрый день!"
        assert templates.version_for("Offer", language="en").id == en.id


def test_without_the_default_language_the_oldest_version_is_used(make_crm):
    crm = make_crm(settings={"locale.default": "ru"})
    with crm.system() as work:
        work.message_templates.create(name="Hello", language="en", body="Hello")
        work.message_templates.create(name="Hello", language="de", body="Hallo")
        party = work.parties.create(name="Kunde", language="fr").id
        assert work.message_templates.render_for("Hello", party_id=party).body == "Hello"
        with pytest.raises(NotFound):
            work.message_templates.render_for("Nonexistent", party_id=party)


def test_the_party_of_a_record_chooses_the_version(make_crm):
    crm = make_crm(settings={"locale.default": "ru"})
    with crm.system() as work:
        _offer_versions(work)
        party = work.parties.create(name="ACME", language="en")
        deal = work.records("deal").create({"title": "Trucks", "party_id": party.id})
        rendered = work.message_templates.render_for("Offer", record=("deal", deal.id))
        assert rendered.subject == "An offer for ACME"


def test_a_party_language_is_checked_and_can_be_cleared(crm):
    with crm.system() as work:
        with pytest.raises(ValidationFailed) as refused:
            work.parties.create(name="Shouting", language="RU")
        assert "language" in refused.value.errors
        party = work.parties.create(name="Quiet", language="pt-br")
        work.parties.update(party.id, {"language": None})
        assert work.parties.get(party.id).language is None
        with pytest.raises(ValidationFailed) as bulk_refused:
            work.parties.bulk_create(
                [{"name": "A", "language": "en"}, {"name": "B", "language": "x"}]
            )
        assert bulk_refused.value.row == 2
        assert "language" in bulk_refused.value.errors


def test_template_languages_are_language_codes(crm):
    with crm.system() as work, pytest.raises(ValidationFailed) as refused:
        work.message_templates.create(name="Bad", language="English", body="x")
    assert "language" in refused.value.errors


def test_templates_see_a_clients_records_but_never_private_columns(crm):
    with crm.system() as work:
        party = work.parties.create(name="ООО «Кедр»")
        deal = work.deals.create(title="Поставка", party_id=party.id)
        file = work.attachments.add("счёт.pdf", b"%PDF", party_id=party.id)
        body = "{{ record.title }}|{{ record.filename }}|{{ record.storage_key }}|{{ record }}"
        template = work.message_templates.create(
            {"name": "all", "channel": "mail", "subject": "x", "body": body}
        )
        deal_text = work.message_templates.render(template.id, record=("deal", deal.id)).body
        assert deal_text.startswith("Поставка||")
        file_text = work.message_templates.render(template.id, record=("attachment", file.id)).body
        assert file_text.startswith("|счёт.pdf||")  # the storage key is not there
        assert file.storage_key not in file_text
        # a user's password hash is not there either
        user = work.users.create(username="ivan", roles=["agent"], password="a long password 1")
        user_text = work.message_templates.render(template.id, record=("user", user.id)).body
        assert "ivan" in user_text and "argon2" not in user_text
        assert user.password_hash and user.password_hash not in user_text


@pytest.mark.parametrize(
    ("body", "limit"),
    [
        ("{{ 'x' * 300000000 }}", "it makes a value longer than 200000 characters"),
        ("{{ 9 ** 999999 }}", "it makes a number longer than 1000 digits"),
        (
            "{% set n = namespace(s='x' * 1000) %}{% for i in range(30) %}"
            "{% set n.s = n.s ~ n.s %}{% endfor %}",
            "it makes a value longer than 200000 characters",
        ),
        ("{{ 'x'|center(1000000000) }}", "it makes a value longer than 200000 characters"),
        ("{{ '{:>1000000000}'.format(1) }}", "it makes a value longer than 200000 characters"),
        (
            "{% for i in range(10000) %}{{ 'x' * 100 }}{% endfor %}",
            "the text it makes is longer than 200000 characters",
        ),
        ("{{ range(100000)|list|length }}", "range() of more than 10000 numbers"),
        (
            "{% for i in range(5000) %}{% for j in range(5000) %}{% endfor %}{% endfor %}",
            "its loops turn more than 1000000 times",
        ),
    ],
)
def test_a_template_past_a_limit_fails_naming_the_template(crm, body, limit):
    with crm.system() as work:
        template = work.message_templates.create(name="Акция", subject="Тема", body=body)
        with pytest.raises(ValidationFailed) as refused:
            work.message_templates.render(template.id)
    assert refused.value.field == "body"
    assert f"template “Акция”: {limit}" in str(refused.value)


def test_ordinary_templates_are_within_the_limits(crm):
    with crm.system() as work:
        party = work.parties.create(name="ООО «Кедр»")
        rendered = work.message_templates.render(
            {
                "subject": "{{ party.name ~ '!' }}",
                "body": "{{ '-' * 20 }} {{ 2 ** 10 }} {{ '%05d' % 42 }}"
                " {{ 'a b'|replace('a', 'c') }}"
                " {% for i in range(3) %}{{ i }}{% endfor %} {{ [1, 2]|join(', ') }}"
                " {{ '{:>4}'.format(7) }} {{ '89161234567'|replace('8', '+7', 1) }}",
            },
            party_id=party.id,
        )
    assert rendered.subject == "ООО «Кедр»!"
    assert rendered.body == "-" * 20 + " 1024 00042 c b 012 1, 2    7 +79161234567"


def test_a_template_filled_by_a_user_gives_no_hidden_organisation(crm):
    """Boris fills a template for a person he owns who works at Anna's organisation: the
    person's ``organisation_id`` (as the client and as the record) is blank, as the API
    gives it as ``null``; for his own person's organisation, and for the system, it is
    there."""
    anna = add_user(crm, "anna", ["agent"])
    boris = add_user(crm, "boris", ["agent"])
    with crm.acting_as(anna) as work:
        hidden = factories.organisation(work, name="ООО «Тайна»").id
    with crm.system() as work:
        person = work.parties.create(
            {"kind": "person", "name": "Пётр", "organisation_id": hidden, "owner_id": boris.id}
        ).id
    with crm.acting_as(boris) as work:
        his = factories.organisation(work, name="ИП Борисов").id
        own = work.parties.create({"kind": "person", "name": "Свой", "organisation_id": his}).id
    text = {
        "subject": "{{ party.name }}",
        "body": "{{ party.organisation_id }}|{{ record.organisation_id }}",
    }
    with crm.acting_as(boris) as work:
        filled = work.message_templates.render(text, party_id=person, record=("party", person))
        assert (filled.subject, filled.body) == ("Пётр", "|")
        filled = work.message_templates.render(text, party_id=own, record=("party", own))
        assert filled.body == f"{his}|{his}"
    with crm.system() as work:
        filled = work.message_templates.render(text, party_id=person, record=("party", person))
        assert filled.body == f"{hidden}|{hidden}"
