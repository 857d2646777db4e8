"""Nested groups, tags, and the user administration."""

from __future__ import annotations

import pytest

from crmkit.errors import NotFound, PermissionDenied, ValidationFailed
from crmkit.testing import add_user, factories


def test_nested_groups_move_with_their_subtree(crm):
    with crm.system() as work:
        dealers = work.groups.create("Дилеры")
        moscow = work.groups.create("Москва", parent_id=dealers.id)
        center = work.groups.create("Центр", parent_id=moscow.id)
        archive = work.groups.create("Архив")
        assert center.path == f"/{dealers.id}/{moscow.id}/{center.id}/"
        work.groups.move(moscow.id, archive.id)
        assert work.groups.get(center.id).path == f"/{archive.id}/{moscow.id}/{center.id}/"
        assert sorted(work.groups.subtree_ids(archive.id)) == sorted(
            [archive.id, moscow.id, center.id]
        )
        with pytest.raises(ValidationFailed, match="inside itself"):
            work.groups.move(archive.id, center.id)


def test_a_group_is_not_moved_under_a_smart_group(crm):
    """create() refuses a smart parent; moving under one is refused the same way."""
    with crm.system() as work:
        smart = work.groups.create("Крупные", rules={"field": "source", "op": "eq", "value": "x"})
        plain = work.groups.create("Дилеры")
        with pytest.raises(ValidationFailed, match="a smart group cannot hold subgroups"):
            work.groups.move(plain.id, smart.id)
        assert work.groups.get(plain.id).parent_id is None
        assert work.groups.get(plain.id).path == f"/{plain.id}/"


def test_a_group_name_or_price_level_too_long_is_refused_naming_it(crm):
    """PostgreSQL refused them without naming the field (a server error on the groups
    page), SQLite kept them whole: both now refuse them, and nothing is written."""
    with crm.system() as work:
        group = work.groups.create("Дилеры").id
    for call, field, limit in [
        (lambda w: w.groups.create("Д" * 201), "name", 200),
        (lambda w: w.groups.create("Опт", price_level="о" * 65), "price_level", 64),
        (lambda w: w.groups.update(group, name="Д" * 201), "name", 200),
        (lambda w: w.groups.update(group, price_level="о" * 65), "price_level", 64),
    ]:
        with pytest.raises(ValidationFailed) as refused, crm.system() as work:
            call(work)
        assert [str(m) for m in refused.value.errors[field]] == [f"longer than {limit} characters"]
    with crm.system() as work:
        assert [(g.name, g.price_level) for g in work.groups.tree()] == [("Дилеры", None)]


def test_members_in_several_groups(crm):
    with crm.system() as work:
        a, b = work.groups.create("A"), work.groups.create("B")
        client = factories.organisation(work)
        assert work.groups.add_members(a.id, [client.id]) == 1
        assert work.groups.add_members(a.id, [client.id]) == 0
        work.groups.add_members(b.id, [client.id])
        assert [g.name for g in work.groups.groups_of(client.id)] == ["A", "B"]
        assert work.groups.remove_members(a.id, [client.id]) == 1
        with pytest.raises(NotFound):
            work.groups.add_members(b.id, [987654])


def test_members_are_not_moved_to_their_own_group(crm):
    with crm.system() as work:
        group = work.groups.create("Дилеры")
        clients = [factories.organisation(work).id for _ in range(2)]
        work.groups.add_members(group.id, clients)
        with pytest.raises(ValidationFailed, match="in this group already"):
            work.groups.move_members(group.id, group.id)
        assert work.groups.count(group.id) == 2


def test_only_members_one_may_edit_are_taken_out_of_a_group(crm):
    from sqlalchemy import select

    from crmkit.model import AuditEntry

    owner = add_user(crm, "owner", ["agent"])
    other = add_user(crm, "other", ["agent"])
    with crm.system() as work:
        group = work.groups.create("Дилеры")
        theirs = factories.organisation(work, owner_id=other.id)
        mine = factories.organisation(work, owner_id=owner.id)
        outsider = factories.organisation(work, owner_id=owner.id)
        work.groups.add_members(group.id, [theirs.id, mine.id])
    with crm.acting_as(owner) as work:
        with pytest.raises(NotFound):  # another agent's client: as if it did not exist
            work.groups.remove_members(group.id, [mine.id, theirs.id])
        with pytest.raises(ValidationFailed, match=f"not in the group Дилеры: {outsider.id}"):
            work.groups.remove_members(group.id, [mine.id, outsider.id])
    with crm.system() as work:
        assert sorted(work.groups.member_ids(group.id)) == sorted([theirs.id, mine.id])
        ungrouped = work.session.scalars(
            select(AuditEntry.record_id).where(AuditEntry.action == "ungroup")
        ).all()
        assert ungrouped == []
    with crm.acting_as(owner) as work:
        assert work.groups.remove_members(group.id, [mine.id]) == 1
    with crm.system() as work:
        assert work.groups.member_ids(group.id) == [theirs.id]
        ungrouped = work.session.scalars(
            select(AuditEntry.record_id).where(AuditEntry.action == "ungroup")
        ).all()
        assert ungrouped == [mine.id]


def test_bulk_tagging(crm):
    with crm.system() as work:
        clients = [factories.organisation(work) for _ in range(3)]
        assert work.parties.add_tags(clients, ["vip", "2026"]) == 6
        assert work.parties.add_tags(clients[:1], ["vip"]) == 0
        assert work.parties.tags_of(clients[0]) == ["2026", "vip"]
        assert work.parties.count(where={"field": "tag", "op": "has", "value": "vip"}) == 3


def test_users_of_a_role_or_a_team_by_name_active_ones_or_all(crm):
    anna = add_user(crm, "anna", ["manager"])
    vera = add_user(crm, "vera", ["manager"])
    boris = add_user(crm, "boris", ["manager"])
    ivan = add_user(crm, "ivan", ["agent"])
    with crm.system() as work:
        work.users.create_team("Продажи", members=[vera.id, anna.id, ivan.id])
        work.users.create_team("Склад", members=[boris.id])
        work.users.block(anna.id)
    with crm.acting_as(ivan) as work:
        names = lambda **kw: [u.username for u in work.users.list(**kw)]  # noqa: E731
        assert names(team="Продажи") == ["anna", "ivan", "vera"]
        assert names(team="Продажи", include_blocked=False) == ["ivan", "vera"]
        assert names(role="manager", include_blocked=False) == ["boris", "vera"]
        assert names(role="manager", team="Продажи") == ["anna", "vera"]
        assert names(team="Нет такой") == []


def test_roles_change_ends_sessions_and_unknown_roles_are_refused(crm):
    ivan = add_user(crm, "ivan", ["agent"])
    with crm.system() as work:
        epoch = work.users.get("ivan").session_epoch
        work.users.update("ivan", roles=["manager"])
        assert work.users.get("ivan").session_epoch == epoch + 1
        with pytest.raises(ValidationFailed, match="unknown role 'pilot'"):
            work.users.update("ivan", roles=["pilot"])
    with crm.acting_as(ivan.id) as work:
        assert work.actor.roles == {"manager"}


def test_users_edit_their_own_profile_only(crm):
    ivan = add_user(crm, "ivan", ["agent"])
    add_user(crm, "maria", ["agent"])
    with crm.acting_as(ivan) as work:
        work.users.update("ivan", display_name="Иван Петров", locale="en")
        with pytest.raises(PermissionDenied):
            work.users.update("ivan", roles=["admin"])
        with pytest.raises(PermissionDenied):
            work.users.update("maria", display_name="hacked")


def test_blocked_user_cannot_act_or_sign_in(crm):
    add_user(crm, "ivan", ["agent"], password="secret-pass-1")
    with crm.system() as work:
        assert work.users.authenticate("ivan", "secret-pass-1") is not None
        assert work.users.authenticate("ivan", "wrong") is None
        assert work.users.authenticate("nobody", "secret-pass-1") is None
        work.users.block("ivan", reason="left the company")
        assert work.users.authenticate("ivan", "secret-pass-1") is None
    with pytest.raises(PermissionDenied, match="blocked"):
        crm.acting_as("ivan")
