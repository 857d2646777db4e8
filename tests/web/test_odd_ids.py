"""Ids read from forms and queries: "²" (a digit to ``str.isdigit`` that ``int`` refuses)
and a number past what an id column holds (2^63-1) are refused naming the field, never a
500, and nothing is written."""

from __future__ import annotations

import html

import pytest

from crmkit.model import ImportRun, OutboxItem
from crmkit.testing import factories
from crmkit.testing.web import id_paths, int_paths

pytestmark = pytest.mark.anyio

ODD = ["²", "9" * 25]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _refused(response, field: str) -> bool:
    text = html.unescape(response.text)
    return f"{field}: not an id (1 to 2^63-1)" in text


@pytest.mark.parametrize("odd", ODD)
async def test_bulk_actions_refuse_odd_row_ids_and_tag_nobody(web, crm, odd):
    manager = await web("manager", locale="en")
    with crm.acting_as(manager.user) as work:
        party = factories.organisation(work, name="ООО «Альфа»")
    for form in (
        {"ids": [str(party.id), odd], "action": "tag", "tag": "vip"},
        {"ids": [str(party.id)], "action": "assign", "owner_id": odd},
        {"ids": [str(party.id)], "action": "group", "group_id": odd},
    ):
        refused = await manager.post("/lists/party/bulk", form)
        field = next(k for k, v in form.items() if v == odd or odd in v)
        assert refused.status_code == 422 and _refused(refused, field), form
    with crm.system() as work:
        found = work.parties.get(party.id)
        assert not work.records("party").tags_of(found) and found.owner_id == manager.user.id


@pytest.mark.parametrize("odd", ODD)
async def test_dead_letters_refuse_odd_ids_and_retry_nothing(web, crm, odd):
    with crm.system() as work:
        item_id = work.outbox.add("webhook", {"url": "ftp://nowhere/1"}).id
    admin = await web("admin", locale="en")
    refused = await admin.post(
        "/admin/dead-letters", {"ids": [str(item_id), odd], "action": "discard"}
    )
    assert refused.status_code == 422 and _refused(refused, "ids")
    with crm.system() as work:
        assert work.session.get(OutboxItem, item_id).status == "pending"


@pytest.mark.parametrize("odd", ODD)
async def test_a_merge_refuses_an_odd_kept_side_and_merges_nothing(web, crm, odd):
    admin = await web("admin", locale="en")
    with crm.acting_as(admin.user) as work:
        keep = work.parties.create(name="ООО «Вектор»")
        dupe = work.parties.create(name="Вектор", confirm_duplicates=True)
    page = await admin.post(f"/clients/{keep.id}/merge", {"with": str(dupe.id), "keep.name": odd})
    assert page.status_code in (200, 422) and _refused(page, "keep.name")
    with crm.system() as work:
        assert work.parties.get(keep.id).name == "ООО «Вектор»"
        assert work.parties.get(dupe.id).merged_into_id is None


@pytest.mark.parametrize("odd", ODD)
async def test_an_import_refuses_an_odd_row_choice_and_keeps_its_settings(web, crm, odd):
    manager = await web("manager", locale="en")
    data = "Компания;Тел.\nООО Альфа;+7 916 111-22-33\n".encode("cp1251")
    uploaded = await manager.client.post(
        "/import",
        data={"csrf_token": manager.csrf, "on_duplicate": "skip"},
        files={"file": ("leads.csv", data, "text/csv")},
    )
    run_url = uploaded.headers["location"]
    run_id = int(run_url.rsplit("/", 1)[1])
    with crm.system() as work:
        before = dict(work.session.get(ImportRun, run_id).options)
    page = await manager.post(
        run_url, {"map.Компания": "phone", f"choice.{odd}": "create", "on_duplicate": "update"}
    )
    assert page.status_code in (200, 422) and _refused(page, f"choice.{odd}")
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert run.options == before and run.status == "new"


@pytest.mark.parametrize("odd", ODD)
async def test_a_list_filtered_by_an_odd_group_is_refused(web, crm, odd):
    agent = await web("agent", locale="en")
    refused = await agent.get("/lists/party", params={"f.group": odd})
    assert refused.status_code == 422 and "not a group id" in html.unescape(refused.text)


async def test_a_path_id_past_an_id_column_is_a_404_on_every_page(web, crm):
    """Every route taking a record's id uses the ``id`` convertor: a 25-digit id, which
    Starlette's ``int`` let through to an ``OverflowError`` in the database, is a 404."""
    admin = await web("admin", locale="en")
    assert not int_paths(admin.app)
    paths = id_paths(admin.app)
    assert ("GET", "/clients/" + "9" * 25) in paths and len(paths) > 30
    for method, path in paths:
        if method == "GET":
            answer = await admin.get(path)
        else:
            answer = await admin.post(path, {"body": "x"})
        assert answer.status_code == 404, (method, path)
    for odd in ("0", "007", "9223372036854775808"):
        assert (await admin.get(f"/clients/{odd}")).status_code == 404, odd
    assert (await admin.get("/clients/9223372036854775807")).status_code == 404
    with crm.acting_as(admin.user) as work:
        party = factories.organisation(work, name="ООО «Альфа»")
    assert (await admin.get(f"/clients/{party.id}")).status_code == 200


async def test_a_board_move_refuses_an_odd_card_id_naming_it(web, crm):
    agent = await web("agent", locale="en")
    with crm.acting_as(agent.user) as work:
        deal = factories.deal(work)
    for odd in ("abc", "1.5", "", " ", "²", "-1", "0", "9" * 25, 10**25, 1.5, True, None, [1]):
        moved = await agent.post_json("/boards/sales/move", {"id": odd, "to": "proposal"})
        assert moved.status_code == 422, odd
        assert moved.json()["reasons"] == ["id: not an id (1 to 2^63-1)"], odd
    moved = await agent.post_json("/boards/sales/move", {"id": str(deal.id), "to": "qualified"})
    assert moved.status_code == 200 and moved.json()["moved"]


BAD = ["abc", "1.5", "²", "-1", "9" * 25]


@pytest.mark.parametrize("odd", BAD)
async def test_the_card_forms_refuse_odd_ids_naming_the_field(web, crm, odd):
    """The card's edit, task, reminder and group forms: an id that is none is a 422 naming
    the field, never a 500 (an ``OverflowError`` in the database for 25 digits)."""
    manager = await web("manager", locale="en")
    with crm.acting_as(manager.user) as work:
        party = factories.organisation(work, name="ООО «Альфа»")
        party_id, version = party.id, party.version
    card = f"/clients/{party_id}"
    for url, form, field in (
        (f"{card}/edit", {"name": "ООО «Бета»", "version": version, "organisation_id": odd},
         "organisation_id"),
        (f"{card}/tasks", {"title": "Позвонить", "assignee_id": odd}, "assignee_id"),
        (f"{card}/reminders",
         {"text": "Позвонить", "remind_at": "2030-01-01T10:00",
          "recipients": [str(manager.user.id), odd]}, "recipients"),
        (f"{card}/groups", {"group_id": odd}, "group_id"),
        ("/tasks/new", {"title": "Позвонить", "assignee_id": odd}, "assignee_id"),
    ):  # fmt: skip
        refused = await manager.post(url, form)
        assert refused.status_code == 422 and _refused(refused, field), (url, field)
    with crm.system() as work:
        assert work.parties.get(party_id).name == "ООО «Альфа»"
        assert not work.tasks.list() and not work.reminders.list()


@pytest.mark.parametrize("odd", BAD)
async def test_the_client_base_forms_refuse_odd_ids_naming_the_field(web, crm, odd):
    admin = await web("admin", locale="en")
    with crm.acting_as(admin.user) as work:
        keep = factories.organisation(work, name="ООО «Вектор»")
        group = work.groups.create(name="Клиенты")
        work.groups.add_members(group.id, [keep.id])
        group_id = group.id
    merge = await admin.get(f"/clients/{keep.id}/merge", params={"with": odd})
    assert merge.status_code == 422 and _refused(merge, "with")
    merge = await admin.post(f"/clients/{keep.id}/merge", {"with": odd})
    assert merge.status_code == 422 and _refused(merge, "with")
    created = await admin.post("/groups", {"name": "Подгруппа", "parent_id": odd})
    assert created.status_code == 422 and _refused(created, "parent_id")
    for form, field in (
        ({"action": "copy", "to_group": odd}, "to_group"),
        ({"action": "move", "to_group": odd}, "to_group"),
        ({"action": "assign", "owner_id": odd}, "owner_id"),
    ):
        refused = await admin.post(f"/groups/{group_id}/action", form)
        assert refused.status_code == 422 and _refused(refused, field), form
    with crm.system() as work:
        assert [g.name for g in work.groups.tree()] == ["Клиенты"]
        assert work.groups.member_ids(group_id) == [keep.id]
        assert work.parties.get(keep.id).owner_id == admin.user.id


@pytest.mark.parametrize("odd", BAD)
async def test_the_admin_forms_refuse_odd_ids_naming_the_field(web, crm, odd):
    admin = await web("admin", locale="en")
    page = f"/admin/users/{admin.user.id}"
    revoked = await admin.post(page, {"action": "revoke_token", "token_id": odd})
    assert revoked.status_code == 422 and _refused(revoked, "token_id")
    for form, field in (
        ({"name": "Продажи", "members": [str(admin.user.id), odd]}, "members"),
        ({"team_id": odd, "members": [str(admin.user.id)]}, "team_id"),
    ):
        refused = await admin.post("/admin/teams", form)
        assert refused.status_code == 422 and _refused(refused, field), form
    for params, field in (({"actor_id": odd}, "actor_id"), ({"before": odd}, "before")):
        refused = await admin.get("/admin/audit", params=params)
        assert refused.status_code == 422 and _refused(refused, field), params
    with crm.system() as work:
        assert work.users.teams() == []


@pytest.mark.parametrize("odd", BAD)
async def test_notifications_and_templates_refuse_odd_ids(web, crm, odd):
    agent = await web("agent", locale="en")
    read = await agent.post("/notifications/read", {"id": odd})
    assert read.status_code == 422 and _refused(read, "id")
    preview = await agent.post("/templates/preview", {"body": "Здравствуйте", "party_id": odd})
    assert preview.status_code == 200 and _refused(preview, "party_id")
    manager = await web("manager", locale="en")
    assert (await manager.get(f"/templates/{odd}")).status_code == 404
