"""Client base screens: duplicate screening as one types, the client form's inline candidates."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crmkit.model import Party

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_screening_shows_candidates_with_owner_only_when_visible(web, crm):
    owner = await web("agent", username="olga")
    other = await web("agent", username="petr")
    with crm.acting_as(owner.user) as work:
        party = work.parties.create(
            name="ООО «Ромашка»", contact_points=[{"kind": "phone", "value": "8 916 123-45-67"}]
        )
    page = await owner.get("/screening")
    assert page.status_code == 200 and 'hx-get="/screening/candidates"' in page.text

    mine = await owner.get("/screening/candidates", params={"q": "Romashka"})
    assert f'href="/clients/{party.id}"' in mine.text and "olga" in mine.text

    theirs = await other.get("/screening/candidates", params={"q": "+7 (916) 1234567"})
    assert "ООО «Ромашка»" in theirs.text
    assert f"/clients/{party.id}" not in theirs.text and "olga" not in theirs.text
    assert "another manager" in theirs.text or "другой менеджер" in theirs.text

    nothing = await other.get("/screening/candidates", params={"q": "Совсем другая фирма"})
    assert "candidate" not in nothing.text


async def test_new_client_form_shows_duplicates_and_creates_only_when_confirmed(web, crm):
    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        work.parties.create(name="ЗАО «Альфа-Строй»")
    form = {"kind": "organisation", "name": "Альфастрой", "phone": "", "email": ""}
    refused = await agent.post("/clients/new", form)
    assert refused.status_code == 409
    assert "ЗАО «Альфа-Строй»" in refused.text and 'name="confirm_duplicates"' in refused.text
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(Party)) == 1
    created = await agent.post("/clients/new", {**form, "confirm_duplicates": "1"})
    assert created.status_code in (302, 303)
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(Party)) == 2


async def test_merge_from_the_card_and_the_old_id_redirects(web, crm):
    admin = await web("admin")
    with crm.acting_as(admin.user) as work:
        keep = work.parties.create(name="ООО «Вектор»", source="сайт")
        dupe = work.parties.create(
            name="Вектор",
            contact_points=[{"kind": "email", "value": "a@vektor.ru"}],
            confirm_duplicates=True,
        )
        work.timeline.add_note(party_id=dupe.id, body="старая заметка")
    card = await admin.get(f"/clients/{keep.id}")
    assert f"/clients/{keep.id}/merge" in card.text
    choose = await admin.get(f"/clients/{keep.id}/merge")
    assert f"merge?with={dupe.id}" in choose.text
    compare = await admin.get(f"/clients/{keep.id}/merge", params={"with": dupe.id})
    assert 'name="keep.name"' in compare.text
    done = await admin.post(
        f"/clients/{keep.id}/merge", {"with": str(dupe.id), "keep.name": str(dupe.id)}
    )
    assert done.status_code == 303 and done.headers["location"].startswith(f"/clients/{keep.id}")
    old = await admin.get(f"/clients/{dupe.id}")
    assert old.status_code == 303 and old.headers["location"] == f"/clients/{keep.id}"
    page = await admin.get(f"/clients/{keep.id}")
    assert "старая заметка" in page.text and "a@vektor.ru" in page.text
    with crm.system() as work:
        assert work.parties.get(keep.id).name == "Вектор"


async def test_admin_duplicate_report_screen(web, crm):
    admin = await web("admin")
    agent = await web("agent")
    with crm.system() as work:
        first = work.parties.create(name="ООО «Зенит»")
        second = work.parties.create(name="Зенит LLC", confirm_duplicates=True)
    assert (await agent.get("/admin/duplicates")).status_code == 404
    ran = await admin.post("/admin/duplicates", {"now": "1"})
    assert ran.status_code == 303
    page = await admin.get("/admin/duplicates")
    assert f"/clients/{first.id}/merge?with={second.id}" in page.text


async def test_groups_screen_counts_acts_and_exports(web, crm):
    admin = await web("admin")
    with crm.acting_as(admin.user) as work:
        vip = [work.parties.create(name=f"Клиент {i}", tags=["vip"]).id for i in range(3)]
        work.parties.create(name="Обычный клиент")
        target = work.groups.create("Рассылка")
    created = await admin.post(
        "/groups",
        {"name": "VIP", "rules": '{"field": "tag", "op": "has", "value": "vip"}', "parent_id": ""},
    )
    assert created.status_code == 303
    group_url = created.headers["location"].split("?")[0]
    page = await admin.get(group_url)
    assert '<span class="chip" id="group-count">3</span>' in page.text
    copied = await admin.post(f"{group_url}/action", {"action": "copy", "to_group": target.id})
    assert copied.status_code == 303
    with crm.system() as work:
        assert work.groups.count(target.id) == 3
    tree = await admin.get("/groups")
    assert 'data-count="3"' in tree.text
    sheet = await admin.get(f"{group_url}/export.csv")
    text = sheet.content.decode("utf-8-sig")
    assert all(f"Клиент {i}" in text for i in range(3)) and "Обычный" not in text
    bad = await admin.post("/groups", {"name": "X", "rules": '{"field": "nope"}'})
    assert bad.status_code == 422
    assert vip


async def test_exports_need_the_export_permission(web, crm):
    """A user who may see clients but not export them gets no export links, and a 403
    from the export addresses."""
    with crm.system() as work:
        work.permissions.set("agent", "party", "export", "none")
        group = work.groups.create(
            "Все", rules={"field": "kind", "op": "eq", "value": "organisation"}
        )
    agent = await web("agent")
    with crm.acting_as(agent.user) as work:
        work.parties.create(name="Моя фирма")
    page = await agent.get(f"/groups/{group.id}")
    assert "Моя фирма" in page.text and "export.csv" not in page.text
    assert "export.xlsx" not in (await agent.get("/lists/party")).text
    for url in (f"/groups/{group.id}/export.csv", "/lists/party/export.xlsx"):
        response = await agent.get(url)
        assert response.status_code == 403 and "Моя фирма" not in response.text


async def test_import_screen_upload_map_preview_and_progress(web, crm):
    from crmkit.model import ImportRun
    from crmkit.services.imports import run_import

    manager = await web("manager")
    broken = await manager.client.post(
        "/import",
        data={"csrf_token": manager.csrf, "on_duplicate": "skip"},
        files={"file": ("leads.csv", "Компания\nАльфа".encode("cp1251") + b"\x98\n", "text/csv")},
    )
    assert broken.status_code == 422 and "0x98" in broken.text and "line 2" in broken.text
    data = "Компания;Тел.\nООО Альфа;+7 916 111-22-33\n;+7 916 111-22-34\n".encode("cp1251")
    uploaded = await manager.client.post(
        "/import",
        data={"csrf_token": manager.csrf, "source": "выставка", "on_duplicate": "skip"},
        files={"file": ("leads.csv", data, "text/csv")},
    )
    assert uploaded.status_code == 303
    run_url = uploaded.headers["location"]
    page = await manager.get(run_url)
    assert 'name="map.Компания"' in page.text
    mapped = await manager.post(
        run_url, {"map.Компания": "name", "map.Тел.": "phone", "on_duplicate": "skip", "start": "1"}
    )
    assert mapped.status_code == 303
    run_id = int(run_url.rsplit("/", 1)[1])
    run_import(crm, run_id)
    progress = await manager.get(f"{run_url}/progress")
    assert "hx-trigger" not in progress.text and "2 / 2" in progress.text
    errors = await manager.get(f"{run_url}/errors.csv")
    assert errors.content.decode("utf-8-sig").splitlines()[1].startswith("3;")  # line 3
    with crm.system() as work:
        assert work.session.get(ImportRun, run_id).created == 1
    # a name column the import cannot guess is mapped on the next page
    unknown = "Контрагент;Тел.\nООО Бета;+7 916 111-22-35\n".encode("cp1251")
    uploaded = await manager.client.post(
        "/import",
        data={"csrf_token": manager.csrf, "on_duplicate": "skip"},
        files={"file": ("other.csv", unknown, "text/csv")},
    )
    assert uploaded.status_code == 303
    run_url = uploaded.headers["location"]
    refused = await manager.post(run_url, {"map.Контрагент": "", "start": "1"})
    assert refused.status_code == 422 and "map a column to the name" in refused.text
    mapped = await manager.post(run_url, {"map.Контрагент": "name", "start": "1"})
    assert mapped.status_code == 303
    run_id = int(run_url.rsplit("/", 1)[1])
    run_import(crm, run_id)
    with crm.system() as work:
        assert work.session.get(ImportRun, run_id).created == 1


async def test_import_screen_runs_for_real_after_a_dry_run(web, crm):
    """After a dry run the page shows its results and the form again; unticking "dry run"
    and starting writes the clients and counts them afresh."""
    from crmkit.model import ImportRun
    from crmkit.services.imports import run_import

    manager = await web("manager")
    data = "Компания;Тел.\nООО Альфа;+7 916 111-22-33\nООО Бета;\n".encode("cp1251")
    uploaded = await manager.client.post(
        "/import",
        data={"csrf_token": manager.csrf, "on_duplicate": "skip", "dry_run": "1"},
        files={"file": ("leads.csv", data, "text/csv")},
    )
    run_url = uploaded.headers["location"]
    run_id = int(run_url.rsplit("/", 1)[1])
    started = await manager.post(run_url, {"map.Компания": "name", "dry_run": "1", "start": "1"})
    assert started.status_code == 303
    run_import(crm, run_id)
    page = await manager.get(run_url)
    assert "2 / 2" in page.text and 'name="start"' in page.text
    started = await manager.post(run_url, {"map.Компания": "name", "start": "1"})
    assert started.status_code == 303
    run_import(crm, run_id)
    with crm.system() as work:
        run = work.session.get(ImportRun, run_id)
        assert (run.status, run.dry_run, run.created) == ("done", False, 2)
        assert work.session.scalar(select(func.count()).select_from(Party)) == 2
