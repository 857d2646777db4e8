"""Custom fields: definitions, validation, filtering and sorting in SQL."""

from __future__ import annotations

import pytest

from crmkit import hookimpl
from crmkit.errors import ValidationFailed
from crmkit.services.custom_fields import StarterField, seed_fields
from crmkit.testing import factories


@pytest.fixture
def fields(crm):
    with crm.system() as work:
        for definition in (
            {"key": "region", "label": "Регион", "kind": "choice", "choices": ["Москва", "Казань"]},
            {"key": "employees", "label": "Сотрудников", "kind": "number"},
            {"key": "budget", "label": "Бюджет", "kind": "money", "currency": "RUB"},
            {"key": "since", "label": "Клиент с", "kind": "date"},
            {"key": "inn", "label": "ИНН", "kind": "text", "required": True},
            {"key": "parent", "label": "Головная", "kind": "reference", "ref_entity": "party"},
        ):
            work.custom_fields.define(entity="party", **definition)
    return crm


def test_values_are_validated_and_normalized(fields):
    with fields.system() as work:
        party = factories.organisation(
            work,
            custom={
                "region": "Москва",
                "employees": "1 200",
                "budget": "15000,5",
                "since": "01.03.2024",
                "inn": "7701",
            },
        )
        assert party.custom == {
            "region": "Москва",
            "employees": 1200,
            "budget": 15000.5,
            "since": "2024-03-01",
            "inn": "7701",
        }


def test_every_bad_value_is_named(fields):
    with pytest.raises(ValidationFailed) as info, fields.system() as work:
        factories.organisation(
            work,
            custom={
                "region": "Тверь",
                "employees": "many",
                "since": "32.13.2024",
                "parent": 999,
                "x": 1,
            },
        )
    errors = info.value.errors["custom"]
    assert set(errors) == {"region", "employees", "since", "parent", "x", "inn"}
    assert errors["inn"] == ["required"] and errors["x"] == ["unknown field"]
    assert errors["parent"] == ["no party 999"]


def test_filter_and_sort_on_custom_fields(fields):
    with fields.system() as work:
        small = factories.organisation(
            work, custom={"inn": "1", "employees": 9, "region": "Казань"}
        )
        big = factories.organisation(
            work, custom={"inn": "2", "employees": 100, "region": "Москва"}
        )
        mid = factories.organisation(work, custom={"inn": "3", "employees": 20, "region": "Москва"})
    with fields.system() as work:
        moscow = work.parties.list(filters={"custom.region": "Москва"})
        assert {p.id for p in moscow.items} == {big.id, mid.id}
        large = work.parties.list(where={"field": "custom.employees", "op": "gte", "value": 20})
        assert {p.id for p in large.items} == {big.id, mid.id}
        with pytest.raises(ValidationFailed, match="no custom field 'nope'"):
            work.parties.list(filters={"custom.nope": 1})
        assert small.id not in {p.id for p in large.items}


def test_update_merges_and_clears_values(fields):
    with fields.system() as work:
        party = factories.organisation(work, custom={"inn": "1", "employees": 5})
        work.parties.update(party, custom={"employees": None, "region": "Казань"})
        assert party.custom == {"inn": "1", "region": "Казань"}
        with pytest.raises(ValidationFailed, match="required"):
            work.parties.update(party, custom={"inn": None})


def test_a_number_too_large_to_keep_is_refused_naming_the_field(fields):
    # Decimal could not round 1e30 to cents (InvalidOperation: a 500), nor a float hold
    # 1e999999; the user learns which field is out of range, and nothing is written
    for employees, budget in (("1e999999", "1e30"), ("1000000000000000", "1 000 000 000 000 000")):
        with pytest.raises(ValidationFailed) as info, fields.system() as work:
            factories.organisation(
                work, custom={"inn": "7701", "employees": employees, "budget": budget}
            )
        assert info.value.errors["custom"] == {
            "employees": ["out of range (less than 10^15)"],
            "budget": ["out of range (less than 10^15)"],
        }
    with fields.system() as work:
        party = factories.organisation(
            work, custom={"inn": "7701", "employees": "999999999999999", "budget": "-1234567,89"}
        )
        assert party.custom["employees"] == 999999999999999
        assert party.custom["budget"] == -1234567.89


def test_an_over_long_help_text_is_refused_naming_it_and_no_field_is_defined(crm):
    """A field's hint is a few sentences shown under it on every form: at most 1000
    characters (its column is a Text, which both databases would keep whole)."""
    with crm.system() as work, pytest.raises(ValidationFailed) as refused:
        work.custom_fields.define(
            entity="party", key="inn", label="ИНН", kind="text", help_text="Ф" * 1001
        )
    assert refused.value.errors == {"help_text": ["Longer than maximum length 1000."]}
    with crm.system() as work:
        assert "inn" not in work.custom_fields.definitions("party")
        hinted = work.custom_fields.define(
            entity="party", key="inn", label="ИНН", kind="text", help_text="Ф" * 1000
        )
        assert hinted.help_text == "Ф" * 1000


class ReasonPlugin:
    """A deployment whose code reads a choice field of its own."""

    crmkit_plugin_name = "reasons"

    def __init__(self, choices):
        self.choices = choices

    @hookimpl
    def crmkit_register_custom_fields(self):
        return [StarterField("party", "reason", "Причина", kind="choice", choices=self.choices)]


def test_a_plugins_field_is_seeded_and_its_choices_follow_the_code(make_crm):
    crm = make_crm(plugins=[ReasonPlugin(("дорого", "другое"))])
    with crm.system() as work:
        field = work.custom_fields.definitions("party")["reason"]
        assert (field.label, field.kind, field.choices) == (
            "Причина",
            "choice",
            ["дорого", "другое"],
        )
        field.label = "Почему отказ"  # the admin renames it, and drops a choice the code needs
        field.choices = ["дорого"]
    crm.sync_access()  # the next upgrade
    with crm.system() as work:
        field = work.custom_fields.definitions("party")["reason"]
        assert (field.label, field.choices) == ("Почему отказ", ["дорого", "другое"])
        party = factories.organisation(work, custom={"reason": "другое"})
        assert party.custom == {"reason": "другое"}
    assert seed_fields_count(crm) == 0  # nothing left to change


def seed_fields_count(crm):
    with crm.session_factory.begin() as session:
        return seed_fields(session, crm.starter_fields)
