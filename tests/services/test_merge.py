"""Merging duplicates: fields chosen, every linked row moved, audit, timeline, old id resolves."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from crmkit import hookimpl
from crmkit.errors import (
    Conflict,
    MergedAway,
    NotFound,
    PermissionDenied,
    PluginError,
    ValidationFailed,
)
from crmkit.model import Activity, AuditEntry, ContactPoint, Deal, GroupMembership, Party
from crmkit.testing import add_user


@pytest.fixture
def pair(crm):
    """Two records of one company, each with its own history."""
    with crm.system() as work:
        group = work.groups.create("Дилеры")
        survivor = work.parties.create(
            name="ООО «Ромашка»",
            contact_points=[{"kind": "phone", "value": "8 916 123-45-67"}],
            tags=["vip"],
        )
        merged = work.parties.create(
            name="Ромашка",
            position=None,
            source="выставка",
            contact_points=[
                {"kind": "phone", "value": "+7 916 1234567"},
                {"kind": "email", "value": "boss@romashka.ru"},
            ],
            tags=["vip", "опт"],
            confirm_duplicates=True,
        )
        person = work.parties.create(
            kind="person", first_name="Анна", last_name="Смирнова", organisation_id=merged.id
        )
        work.groups.add_members(group.id, [survivor.id, merged.id])
        note = work.timeline.add_note(party_id=merged.id, body="звонили в понедельник")
        deal = work.deals.create(title="Поставка", party_id=merged.id)
        task = work.tasks.create(
            title="Перезвонить", party_id=merged.id, assignee_id=work.actor.user_id
        )
        file = work.attachments.add("contract.pdf", b"%PDF", party_id=merged.id)
        return {
            "survivor": survivor.id,
            "merged": merged.id,
            "person": person.id,
            "group": group.id,
            "note": note.id,
            "deal": deal.id,
            "task": task.id,
            "file": file.id,
        }


def test_merge_moves_everything_and_keeps_chosen_fields(crm, pair):
    s, m = pair["survivor"], pair["merged"]
    with crm.system() as work:
        work.merges.merge(s, m, keep={"name": m})
    with crm.system() as work:
        survivor = work.parties.get(s)
        assert survivor.name == "Ромашка"  # chosen from the merged record
        assert survivor.source == "выставка"  # empty on the survivor: filled in
        points = sorted((c.kind, c.key) for c in survivor.contact_points)
        assert points == [("email", "boss@romashka.ru"), ("phone", "+79161234567")]
        assert work.parties.tags_of(survivor) == ["vip", "опт"]
        assert work.deals.get(pair["deal"]).party_id == s
        assert work.tasks.get(pair["task"]).party_id == s
        assert work.records("attachment").get(pair["file"]).party_id == s
        assert work.parties.get(pair["person"]).organisation_id == s
        bodies = [a.body for a in work.timeline.list(s)]
        assert "звонили в понедельник" in bodies
        assert any(a.kind == "merge" for a in work.timeline.list(s))
        members = work.session.scalars(
            select(GroupMembership.party_id).where(GroupMembership.group_id == pair["group"])
        ).all()
        assert members == [s]
        # the merged-away id resolves to the survivor, lists and screening forget it
        assert work.parties.get(m).id == s
        assert m not in {p.id for p in work.parties.list(limit=100).items}
        assert [c.id for c in work.screening.candidates("Ромашка")] == [s]
        assert work.session.get(Party, m).merged_into_id == s
        actions = work.session.scalars(
            select(AuditEntry.action).where(
                AuditEntry.entity == "party", AuditEntry.record_id.in_([s, m])
            )
        ).all()
        assert "merge" in actions and "merged_into" in actions
        orphans = work.session.scalar(
            select(func.count()).select_from(ContactPoint).where(ContactPoint.party_id == m)
        )
        assert orphans == 0


def test_a_merged_away_id_reads_and_writes_the_survivors_records(crm, pair):
    """The old id resolves to the survivor everywhere a party is named, not only in get()."""
    s, m = pair["survivor"], pair["merged"]
    with crm.system() as work:
        work.timeline.add_note(party_id=m, body="закреплено", pinned=True)
        work.merges.merge(s, m)
    with crm.system() as work:
        timeline = [a.id for a in work.timeline.list(m)]
        assert timeline == [a.id for a in work.timeline.list(s)] and pair["note"] in timeline
        assert [a.body for a in work.timeline.pinned(m)] == ["закреплено"]
        assert [f.id for f in work.attachments.for_party(m)] == [pair["file"]]
        assert [g.id for g in work.groups.groups_of(m)] == [pair["group"]]
        note = work.timeline.add_note(party_id=m, body="после слияния")
        file = work.attachments.add("act.pdf", b"%PDF", party_id=m)
        assert note.party_id == s and file.party_id == s


def test_a_merged_away_id_never_changes_or_deletes_the_survivor(crm, pair):
    """Deleting a stale duplicate by its old id must not delete the client it became."""
    s, m = pair["survivor"], pair["merged"]
    keeper = add_user(crm, "keeper", ["agent"])
    with crm.system() as work:
        work.merges.merge(s, m)
        other = work.parties.create(name="Третья фирма", confirm_duplicates=True).id
    attempts = {
        "delete": lambda work: work.parties.delete(m),
        "delete the old row": lambda work: work.parties.delete(work.session.get(Party, m)),
        "update": lambda work: work.parties.update(m, {"source": "через старый id"}),
        "tags": lambda work: work.parties.update(m, {"tags": []}),
        "contact": lambda work: work.parties.add_contact(m, "phone", "+7 495 000-00-00"),
        "move": lambda work: work.moves.move(m, "won", entity="party"),
        "assign": lambda work: work.parties.assign([s, m], keeper.id),
        "merged away again": lambda work: work.merges.merge(other, m),
    }
    for name, attempt in attempts.items():
        refused = pytest.raises(MergedAway, match=f"party {m} was merged into party {s}")
        with refused, crm.system() as work:
            attempt(work)
        with crm.system() as work:
            survivor = work.parties.get(s)
            assert survivor.merged_into_id is None, name
            assert survivor.source == "выставка" and work.parties.tags_of(survivor) == [
                "vip",
                "опт",
            ], name
            assert len(survivor.contact_points) == 2, name
            assert survivor.owner_id is None, name  # never given to anyone
    with crm.system() as work:
        assert work.parties.get(m).id == s  # reading the old id still shows the survivor
        # what is added through the old id lands on the survivor, never on the old row
        task = work.tasks.create(title="Позвонить", party_id=m)
        deal = work.deals.create(title="Ещё поставка", party_id=m)
        person = work.parties.create(
            kind="person", first_name="Иван", last_name="Петров", organisation_id=m
        )
        assert (task.party_id, deal.party_id, person.organisation_id) == (s, s, s)
        work.tasks.update(task, {"party_id": m})
        assert task.party_id == s
        # an old id of the survivor is where another party may still be merged into
        work.merges.merge(m, other)
        assert work.session.get(Party, other).merged_into_id == s


def test_merge_needs_rights_and_sane_input(crm, pair):
    agent = add_user(crm, "agent", ["agent"])
    with pytest.raises(NotFound), crm.acting_as(agent) as work:
        work.merges.merge(pair["survivor"], pair["merged"])
    with pytest.raises(ValidationFailed, match="itself"), crm.system() as work:
        work.merges.merge(pair["survivor"], pair["survivor"])
    with pytest.raises(ValidationFailed, match="shoe_size"), crm.system() as work:
        work.merges.merge(pair["survivor"], pair["merged"], keep={"shoe_size": pair["merged"]})
    with crm.system() as work:  # nothing moved
        assert work.deals.get(pair["deal"]).party_id == pair["merged"]
    viewer = add_user(crm, "viewer", ["agent"])
    with crm.system() as work:
        work.parties.assign([pair["survivor"], pair["merged"]], viewer.id)
    with crm.acting_as(viewer) as work:
        rights = work.access.can("party", "delete")
    if not rights:
        with pytest.raises(PermissionDenied), crm.acting_as(viewer) as work:
            work.merges.merge(pair["survivor"], pair["merged"])


class DealsMovedByHand:
    """A plugin that merges the deals' party column itself."""

    def __init__(self):
        self.seen = []

    @hookimpl
    def crmkit_register_party_merge_columns(self):
        return [Deal.party_id]

    @hookimpl
    def crmkit_party_merged(self, work, survivor, merged):
        deals = work.session.scalars(select(Deal).where(Deal.party_id == merged.id)).all()
        self.seen.append([d.title for d in deals])
        for deal in deals:
            deal.party_id = survivor.id


def test_columns_a_plugin_merges_itself_are_left_to_its_hook(make_crm):
    plugin = DealsMovedByHand()
    crm = make_crm(plugins=[plugin])
    with crm.system() as work:
        survivor = work.parties.create(name="Альфа")
        merged = work.parties.create(name="Альфа-2", confirm_duplicates=True)
        deal = work.deals.create(title="Поставка", party_id=merged.id)
        task = work.tasks.create(title="Позвонить", party_id=merged.id)
    with crm.system() as work:
        work.merges.merge(survivor.id, merged.id)
    assert plugin.seen == [["Поставка"]]  # still the merged party's when the hook ran
    with crm.system() as work:
        assert work.deals.get(deal.id).party_id == survivor.id
        assert work.tasks.get(task.id).party_id == survivor.id


class KeepsActivityLinks:
    """A plugin whose history keeps its loose links to a party (as an append-only ledger)."""

    @hookimpl
    def crmkit_register_party_merge_columns(self):
        return [Activity.record_id]


def test_loose_links_a_plugin_names_are_kept_by_a_merge(make_crm):
    crm = make_crm(plugins=[KeepsActivityLinks()])
    with crm.system() as work:
        survivor = work.parties.create(name="Альфа")
        merged = work.parties.create(name="Альфа-2", confirm_duplicates=True)
        note = work.timeline.add_note(party_id=merged.id, body="о клиенте")
        note.record_entity, note.record_id = "party", merged.id
    with crm.system() as work:
        work.merges.merge(survivor.id, merged.id)
    with crm.system() as work:
        kept = work.session.get(Activity, note.id)
        # the row's party column moves; the link it names itself is left alone
        assert (kept.party_id, kept.record_entity, kept.record_id) == (
            survivor.id,
            "party",
            merged.id,
        )


def test_a_plugin_names_only_columns_referencing_parties(make_crm):
    class Confused:
        @hookimpl
        def crmkit_register_party_merge_columns(self):
            return [Party.name]

    with pytest.raises(PluginError, match="not a column referencing party.id"):
        make_crm(plugins=[Confused()])


def _three_with_a_note(crm):
    with crm.system() as work:
        a = work.parties.create(name="Первая")
        b = work.parties.create(name="Вторая")
        c = work.parties.create(name="Третья")
        note = work.timeline.add_note(party_id=b.id, body="заметка второй")
        return a.id, b.id, c.id, note.id


def test_a_party_merged_away_after_it_was_read_is_not_merged_into(crm):
    """One person merges B into A while another merges A into C: the slower one is refused."""
    a, b, c, note = _three_with_a_note(crm)
    with crm.system() as first:
        first.parties.get(a), first.parties.get(b)  # the merge screen read both
        with crm.system() as second:
            second.merges.merge(c, a)
        with pytest.raises(Conflict, match="Первая was merged into another party meanwhile"):
            first.merges.merge(a, b)
    with crm.system() as work:
        assert work.session.get(Party, b).merged_into_id is None  # nothing written
        assert work.session.get(Activity, note).party_id == b
        work.merges.merge(a, b)  # read again: A resolves to C, and B goes there
        assert work.session.get(Party, b).merged_into_id == c
        assert work.session.get(Activity, note).party_id == c


class PausedMerge:
    """Holds the first merge inside its transaction until the test lets it go."""

    def __init__(self):
        self.inside, self.go_on = threading.Event(), threading.Event()
        self.paused = True

    @hookimpl
    def crmkit_party_merged(self, work, survivor, merged):
        if self.paused:
            self.paused = False
            self.inside.set()
            assert self.go_on.wait(30)


@pytest.mark.postgres_only
def test_two_merges_sharing_a_party_at_once_run_one_after_the_other(make_crm):
    pause = PausedMerge()
    crm = make_crm(plugins=[pause])
    a, b, c, note = _three_with_a_note(crm)
    errors = []

    def run(survivor, merged):
        try:
            with crm.system() as work:
                work.merges.merge(survivor, merged)
        except Exception as exc:  # reported below
            errors.append(exc)

    first = threading.Thread(target=run, args=(a, b))  # B into A, held open
    first.start()
    assert pause.inside.wait(30)
    second = threading.Thread(target=run, args=(c, a))  # A into C meanwhile
    second.start()
    second.join(3)  # it waits for the first merge's lock on A
    still_waiting = second.is_alive()
    pause.go_on.set()
    first.join(30)
    second.join(30)
    assert errors == [] and still_waiting
    with crm.system() as work:
        merged_into = {p: work.session.get(Party, p).merged_into_id for p in (a, b, c)}
        assert merged_into == {a: c, b: a, c: None}
        # B's note reached the party that is left, not one merged away
        assert work.session.get(Activity, note).party_id == c


def test_contacts_with_an_empty_key_are_both_kept(crm):
    """`http://` and `::::` normalize to nothing: they are no repeat of each other (the
    same phone twice is), so the merged client's value is kept as typed."""
    with crm.system() as work:
        ids = [
            work.parties.create(
                name=name,
                contact_points=[
                    {"kind": "website", "value": site},
                    {"kind": "phone", "value": "+7 916 123-45-67"},
                ],
                confirm_duplicates=True,
            ).id
            for name, site in [("Альфа", "http://"), ("Альфа-2", "::::")]
        ]
    with crm.system() as work:
        survivor = work.merges.merge(*ids)
        points = sorted((c.kind, c.value) for c in survivor.contact_points)
    assert points == [("phone", "+7 916 123-45-67"), ("website", "::::"), ("website", "http://")]


@pytest.mark.parametrize("chosen", ["abc", "", 1.5, True, [1], "999999"])
def test_a_keep_naming_neither_party_is_refused_naming_the_field(crm, pair, chosen):
    """``keep`` values come from a form or a caller's JSON: one that names neither party
    (not even an id) is the user's mistake, refused on the field as a translatable message,
    never a ``ValueError`` (a 500 on a screen); ``None`` is no choice."""
    s, m = pair["survivor"], pair["merged"]
    with pytest.raises(ValidationFailed) as refused, crm.system() as work:
        work.merges.merge(s, m, keep={"source": m, "name": chosen})
    (message,) = refused.value.errors["name"]
    assert str(message) == "choose the survivor or the merged party"
    assert message.template == "choose the survivor or the merged party"  # for the catalogs
    with crm.system() as work:  # nothing written
        assert work.session.get(Party, m).merged_into_id is None
        assert work.parties.get(s).name == "ООО «Ромашка»"
        assert work.deals.get(pair["deal"]).party_id == m
