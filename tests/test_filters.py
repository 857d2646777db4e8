"""The condition language: compiled to SQL and evaluated in memory the same way."""

from __future__ import annotations

import datetime as dt

import pytest

from crmkit.errors import ValidationFailed
from crmkit.filters import evaluate, from_simple_filters
from crmkit.testing import factories


def test_simple_filters_become_conditions():
    assert from_simple_filters({"stage": "firm", "amount__gte": 5, "kind": ["a", "b"]}) == {
        "all": [
            {"field": "stage", "op": "eq", "value": "firm"},
            {"field": "amount", "op": "gte", "value": 5},
            {"field": "kind", "op": "in", "value": ["a", "b"]},
        ]
    }


def test_evaluate_in_memory():
    values = {
        "stage": "firm",
        "amount": "120.50",
        "custom.region": "Москва",
        "tags": ["vip"],
        "last": dt.datetime.now(dt.UTC) - dt.timedelta(days=40),
    }
    assert evaluate(
        {
            "all": [
                {"field": "stage", "op": "in", "value": ["firm", "account"]},
                {"field": "amount", "op": "gt", "value": 100},
                {"field": "tag", "op": "has", "value": "vip"},
                {"field": "last", "op": "older_than_days", "value": 30},
            ]
        },
        values,
    )
    assert not evaluate(
        {
            "any": [
                {"field": "custom.region", "op": "eq", "value": "Казань"},
                {"not": {"field": "stage", "op": "eq", "value": "firm"}},
            ]
        },
        values,
    )
    with pytest.raises(ValidationFailed, match="unknown operator"):
        evaluate({"field": "stage", "op": "like", "value": "x"}, values)


def test_sql_and_memory_agree(crm):
    with crm.system() as work:
        a = factories.organisation(work, name="Альфа", source="site", tags=["vip"])
        b = factories.organisation(work, name="Бета", source="call")
        c = factories.organisation(work, name="Гамма", source=None, tags=["vip", "old"])
    condition = {
        "any": [
            {"field": "source", "op": "eq", "value": "site"},
            {
                "all": [
                    {"field": "tag", "op": "has", "value": "old"},
                    {"field": "name", "op": "contains", "value": "амм"},
                ]
            },
        ]
    }
    with crm.system() as work:
        in_sql = {p.id for p in work.parties.list(where=condition).items}
        in_memory = {
            p.id
            for p in (a, b, c)
            if evaluate(
                condition, {"source": p.source, "name": p.name, "tags": work.parties.tags_of(p)}
            )
        }
    assert in_sql == in_memory == {a.id, c.id}


def test_contains_and_startswith_ignore_case_in_any_alphabet(crm):
    """On SQLite these compile to GLOB with letter classes, not to a Python lower() per row:
    the answers must stay those of a case-insensitive substring test, wildcards literal."""
    with crm.system() as work:
        caps = factories.organisation(work, name="ООО «СТРОЙМАРКЕТ»")
        mixed = factories.organisation(work, name="Стройка и Ремонт")
        latin = factories.organisation(work, name="BuildStroy [50%] *New*")
        factories.organisation(work, name="Строительный двор")

    def names(op: str, value: str) -> set[str]:
        with crm.system() as work:
            found = work.parties.list(where={"field": "name", "op": op, "value": value})
            return {p.name for p in found.items}

    assert names("contains", "строй") == {caps.name, mixed.name}
    assert names("contains", "СтРоЙ") == {caps.name, mixed.name}
    assert names("contains", "stroy") == {latin.name}
    assert names("startswith", "стройка") == {mixed.name}
    assert names("startswith", "строй") == {mixed.name}
    assert names("contains", "[50%]") == {latin.name}
    assert names("contains", "*new*") == {latin.name}
    assert names("contains", "50_") == set()
    assert names("contains", "?") == set()
    with crm.system() as work:
        count = work.parties.count(
            where={"not": {"field": "name", "op": "contains", "value": "строй"}}
        )
    assert count == 2


def test_unknown_field_is_named(crm):
    with crm.system() as work, pytest.raises(ValidationFailed, match="password_hash"):
        work.parties.list(filters={"password_hash": "x"})


def test_group_filter_includes_subgroups(crm):
    with crm.system() as work:
        top = work.groups.create("Дилеры")
        sub = work.groups.create("Москва", parent_id=top.id)
        inside = factories.organisation(work)
        outside = factories.organisation(work)
        work.groups.add_members(sub.id, [inside.id])
        found = work.parties.list(where={"field": "group", "op": "in", "value": [top.id]})
        assert [p.id for p in found.items] == [inside.id]
        assert outside.id in {
            p.id
            for p in work.parties.list(
                where={"field": "group", "op": "not_in", "value": [top.id]}
            ).items
        }


def test_query_string_filters_take_the_fields_types(crm):
    """A list's ``f.`` parameters are text; each is read as the field it filters."""

    from crmkit.filters import filters_from_query

    with crm.system() as work:
        work.custom_fields.define(entity="party", key="staff", label="Штат", kind="number")
        work.custom_fields.define(entity="party", key="vip", label="VIP", kind="boolean")
        big = factories.organisation(work, name="Крупная", custom={"staff": 1200, "vip": True})
        factories.organisation(work, name="Малая", custom={"staff": 15, "vip": False})
        morning = work.tasks.create(
            title="утром", deadline=dt.datetime(2026, 11, 24, 7, 0, tzinfo=dt.UTC)
        )
        work.tasks.create(title="вечером", deadline=dt.datetime(2026, 11, 24, 17, 0, tzinfo=dt.UTC))
        parties, tasks = work.records("party"), work.records("task")

        def names(service, query):
            filters = filters_from_query(service.entity, query, service.custom_kinds())
            return [r.id for r in service.list(filters=filters).items]

        assert names(parties, {"f.custom.staff__gte": "1 000"}) == [big.id]
        assert names(parties, {"f.custom.vip": "да"}) == [big.id]
        # a moment with its time and offset is compared as that moment, not as midnight UTC
        assert names(tasks, {"f.deadline__lt": "2026-11-24T13:00+03:00"}) == [morning.id]
        with pytest.raises(ValidationFailed, match="custom.staff") as refused:
            names(parties, {"f.custom.staff__gte": "много"})
        assert "not a number" in str(refused.value)
