"""Parties: contact points, search, edits with audit, bulk path, reassignment."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crmkit.errors import ValidationFailed
from crmkit.model import AuditEntry, ContactPoint, Party, StageMove
from crmkit.testing import add_user, factories


@pytest.fixture
def agent(crm):
    return add_user(crm, "agent", ["agent"])


def test_create_normalizes_and_flags_bad_values(crm, agent):
    with crm.acting_as(agent) as work:
        party = work.parties.create(
            name=' ООО "Ромашка" ',
            contact_points=[
                {"kind": "phone", "value": "8 (916) 123-45-67"},
                {"kind": "phone", "value": "12-34"},
                {"kind": "website", "value": "https://www.romashka.ru/"},
            ],
        )
        assert party.name == 'ООО "Ромашка"' and party.name_key == "ромашка"
        assert party.owner_id == agent.id and party.created_by_id == agent.id
        points = [(c.value, c.key, c.valid) for c in party.contact_points]
    assert points == [
        ("8 (916) 123-45-67", "+79161234567", True),
        ("12-34", "+71234", False),
        ("https://www.romashka.ru/", "romashka.ru", True),
    ]


def test_person_name_from_first_and_last(crm, agent):
    with crm.acting_as(agent) as work:
        person = work.parties.create(kind="person", first_name="Анна", last_name="Смирнова")
        assert person.name == "Анна Смирнова"


def test_bad_input_names_the_field_and_writes_nothing(crm, agent):
    with pytest.raises(ValidationFailed) as info, crm.acting_as(agent) as work:
        work.parties.create(name="", contact_points=[{"kind": "fax", "value": "1"}])
    assert set(info.value.errors) == {"name", "contact_points"}
    with pytest.raises(ValidationFailed, match="shoe_size"), crm.acting_as(agent) as work:
        work.parties.create(name="X", shoe_size=42)
    # values of the wrong type are named too, before the duplicate screening looks at them
    with pytest.raises(ValidationFailed) as wrong, crm.acting_as(agent) as work:
        work.parties.create(name=["Ромашка"], first_name={"x": 1})
    assert set(wrong.value.errors) >= {"name", "first_name"}
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(Party)) == 0
        assert (
            work.session.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.entity == "party")
            )
            == 0
        )


def test_search_by_name_fragment_phone_and_email(crm, agent):
    with crm.acting_as(agent) as work:
        romashka = work.parties.create(
            name="ООО «Ромашка»",
            contact_points=[
                {"kind": "phone", "value": "+7 916 123-45-67"},
                {"kind": "email", "value": "Sales@Romashka.ru"},
            ],
        )
        work.parties.create(name="АО Вектор")
    with crm.acting_as(agent) as work:
        for text in ("ромаш", "РОМАШКА", "8 916 123 45 67", "sales@romashka.ru"):
            assert [p.id for p in work.parties.list(search=text).items] == [romashka.id], text
        assert work.parties.count(search="вектор") == 1


def test_update_audits_each_changed_field(crm, agent):
    with crm.acting_as(agent) as work:
        party = factories.organisation(work, description="old")
        work.parties.update(party, name="ООО «Новое имя»", description="new", tags=["vip"])
        assert party.name_key == "новое имя"
        assert work.parties.tags_of(party) == ["vip"]
        entries = work.audit_log.for_record("party", party.id)
    update = entries[-1]
    assert update.action == "update" and update.actor_id == agent.id
    assert update.changes["description"] == ["old", "new"]
    assert update.changes["tags"] == [[], ["vip"]]


def test_contact_points_add_remove_replace(crm, agent):
    with crm.acting_as(agent) as work:
        party = factories.organisation(work)
        phone = work.parties.add_contact(party, "phone", "+7 495 000-00-01")
        assert work.parties.by_contact("phone", "8 495 000 00 01") == [party]
        work.parties.remove_contact(party, phone.id)
        assert work.parties.by_contact("phone", "8 495 000 00 01") == []
        work.parties.update(party, contact_points=[{"kind": "email", "value": "a@b.ru"}])
        assert [c.key for c in party.contact_points] == ["a@b.ru"]


def test_bulk_create_writes_everything_the_single_path_does(crm, agent):
    rows = [
        {
            "name": f"ООО «Фирма {i}»",
            "contact_points": [
                {"kind": "phone", "value": f"8 916 000-{i:02d}-{i:02d}"},
                {"kind": "email", "value": f"F{i}@Example.RU"},
            ],
            "tags": ["import"] if i == 0 else [],
        }
        for i in range(25)
    ]
    seen = []
    from crmkit import hookimpl

    class Counter:
        @hookimpl
        def crmkit_handle_event(self, event, work):
            if event.name == "record.created":
                seen.append(event.record_id)

    crm.pm.register(Counter())
    with crm.acting_as(agent) as work:
        result = work.parties.bulk_create(rows, batch_size=10)
    assert result.count == 25 and sorted(seen) == sorted(result.ids)
    with crm.acting_as(agent) as work:
        first = work.parties.get(result.ids[0])
        assert first.name_key == "фирма 0" and first.owner_id == agent.id
        assert [c.key for c in first.contact_points] == ["+79160000000", "f0@example.ru"]
        assert work.parties.tags_of(first) == ["import"]
        assert work.parties.count() == 25
        assert work.session.scalar(select(func.count()).select_from(ContactPoint)) == 50
        assert len(work.audit_log.for_record("party", result.ids[-1])) == 1
        # the same write lock/sequence gives the next single create a fresh id
        assert factories.organisation(work).id not in result.ids


def test_bulk_create_bad_row_names_it_and_writes_nothing(crm, agent):
    rows = [{"name": "ok 1"}, {"name": "ok 2"}, {"name": "  "}]
    with pytest.raises(ValidationFailed, match="row 3: name"), crm.acting_as(agent) as work:
        work.parties.bulk_create(rows, batch_size=2)
    with crm.system() as work:
        assert work.parties.count() == 0
        assert (
            work.session.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.entity == "party")
            )
            == 0
        )


@pytest.mark.parametrize(
    ("row", "refusal"),
    [
        ({"name": "ok 3", "position": "д" * 201}, "row 3: position"),
        (
            {"name": "ok 3", "contact_points": [{"kind": "email", "value": "a" * 320 + "@x.ru"}]},
            "row 3: contact_points",
        ),
        ({"name": "ok 3", "tags": ["vip", "т" * 101]}, "row 3: tags"),
    ],
    ids=["position", "email", "tag"],
)
def test_bulk_create_refuses_a_value_too_long_for_its_column_naming_the_row(
    crm, agent, row, refusal
):
    """PostgreSQL refused such a value without naming row or field (and SQLite kept it
    whole): the call is refused naming both, and writes nothing."""
    rows = [{"name": "ok 1"}, {"name": "ok 2"}, row]
    with pytest.raises(ValidationFailed, match=refusal), crm.acting_as(agent) as work:
        work.parties.bulk_create(rows, batch_size=2)
    with crm.system() as work:
        assert work.parties.count() == 0


def test_a_contact_too_long_is_refused_naming_it(crm, agent):
    """add_contact (the card, an import's update row) with an email longer than its
    column: PostgreSQL refused it without naming it (a server error), SQLite kept it."""
    with crm.acting_as(agent) as work:
        party = factories.organisation(work, name="Альфа")
        party_id, before = party.id, sorted(c.value for c in party.contact_points)
    with pytest.raises(ValidationFailed) as refused, crm.acting_as(agent) as work:
        work.parties.add_contact(party_id, "email", "a" * 320 + "@x.ru")
    assert [str(m) for m in refused.value.errors["contact_points"]] == [
        "longer than 320 characters"
    ]
    with crm.acting_as(agent) as work:
        assert sorted(c.value for c in work.parties.get(party_id).contact_points) == before


def test_bulk_create_places_in_default_pipeline(make_crm):
    from tests.pipeline.test_engine import DealerPlugin

    crm = make_crm(plugins=[DealerPlugin()])
    with crm.system() as work:
        ids = work.parties.bulk_create(
            [{"name": "A"}, {"name": "B", "stage": "firm"}, {"kind": "person", "name": "C"}]
        ).ids
        stages = [work.parties.get(i).stage for i in ids]
        moves = work.session.scalar(select(func.count()).select_from(StageMove))
    assert stages == ["lead", "firm", None]
    assert moves == 2


def test_bulk_create_places_in_a_later_stage_only_with_place(make_crm):
    """An import places rows as create does: straight into a later stage takes `place`."""
    from tests.pipeline.test_engine import DealerPlugin

    crm = make_crm(plugins=[DealerPlugin()])
    agent = add_user(crm, "agent", ["agent"])
    rows = [{"name": "A"}, {"name": "B", "stage": "firm"}]
    with (
        pytest.raises(ValidationFailed, match="row 2: stage") as refused,
        crm.acting_as(agent) as work,
    ):
        work.parties.bulk_create(rows)
    assert "place" in str(refused.value)
    with crm.system() as work:
        assert work.parties.count() == 0
        work.permissions.set("agent", "party", "place", "all")
    with crm.acting_as(agent) as work:
        ids = work.parties.bulk_create(rows).ids
        assert [work.parties.get(i).stage for i in ids] == ["lead", "firm"]


def test_bulk_create_links_like_create(crm, agent):
    """A hidden organisation reads as a missing one, naming the row and field; a
    merged-away one lands on its survivor."""
    colleague = add_user(crm, "colleague", ["agent"])
    with crm.acting_as(colleague) as work:
        hidden = factories.organisation(work, name="Чужая").id
    with crm.acting_as(agent) as work:
        survivor = factories.organisation(work, name="Выжившая").id
        merged = factories.organisation(work, name="Слитая").id
    with crm.system() as work:
        work.merges.merge(survivor, merged)
    for missing in (hidden, 999_999):
        with (
            pytest.raises(ValidationFailed, match="row 2: organisation_id") as refused,
            crm.acting_as(agent) as work,
        ):
            work.parties.bulk_create(
                [
                    {"kind": "person", "name": "Свой"},
                    {"kind": "person", "name": "Чей-то", "organisation_id": missing},
                ]
            )
        assert f"no party {missing}" in str(refused.value)
    with crm.acting_as(agent) as work:
        [person] = work.parties.bulk_create(
            [{"kind": "person", "name": "Иван", "organisation_id": merged}]
        ).ids
        assert work.parties.get(person).organisation_id == survivor
        assert work.parties.count() == 2


def test_merged_away_id_resolves_to_survivor(crm, agent):
    with crm.acting_as(agent) as work:
        survivor = factories.organisation(work)
        merged = factories.organisation(work)
        merged.merged_into_id = survivor.id
    with crm.acting_as(agent) as work:
        assert work.parties.get(merged.id).id == survivor.id
        assert merged.id not in {p.id for p in work.parties.list().items}


def test_list_is_ordered_by_last_activity(crm, agent):
    with crm.acting_as(agent) as work:
        older = factories.organisation(work)
        newer = factories.organisation(work)
        assert [p.id for p in work.parties.list().items] == [newer.id, older.id]
        work.timeline.add_note(party_id=older.id, body="called")
    with crm.acting_as(agent) as work:
        assert [p.id for p in work.parties.list().items] == [older.id, newer.id]
        assert work.parties.get(older.id).version == 1  # activity does not bump the version
