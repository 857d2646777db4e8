"""Client base screens: duplicate screening as one types, the client form's inline candidates."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crmkit.model import Party
from tests.web.conftest import statements

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
    assert f'data-party="{party.id}"' not in theirs.text and f'data-party="{party.id}"' in mine.text
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


async def test_a_refused_duplicate_the_user_may_not_open_sends_them_to_an_administrator(web, crm):
    """The refusal's advice matches what the user can do: "open the existing card" only when
    they may open one; a client in another manager's hands sends them to an administrator."""
    owner = await web("agent", username="olga")
    other = await web("agent", username="petr")
    with crm.acting_as(owner.user) as work:
        work.parties.create(name="ЗАО «Альфа-Строй»")
    form = {"kind": "organisation", "name": "Альфастрой", "phone": "", "email": ""}
    theirs = await other.post("/clients/new", form)
    assert theirs.status_code == 409
    assert "обратитесь к администратору" in theirs.text
    assert "Откройте существующую карточку" not in theirs.text
    mine = await owner.post("/clients/new", form)
    assert mine.status_code == 409
    assert "Откройте существующую карточку" in mine.text
    assert "обратитесь к администратору" not in mine.text


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


async def test_stale_forms_of_a_merged_away_client_change_nothing(web, crm):
    """An edit form, tags or a duplicate report's merge link of a client merged meanwhile:
    refused, the survivor left as it was, and its card says why."""
    admin = await web("admin", locale="en")
    with crm.acting_as(admin.user) as work:
        keep = work.parties.create(name="ООО «Вектор»", source="сайт", tags=["vip"])
        dupe = work.parties.create(name="Вектор", confirm_duplicates=True)
        third = work.parties.create(name="Вектор-2", confirm_duplicates=True)
        keep, dupe, third = keep.id, dupe.id, third.id
        work.merges.merge(keep, dupe)
    stale = {
        f"/clients/{dupe}/edit": {"name": "Переименовали", "kind": "organisation"},
        f"/clients/{dupe}/tags": {"tags": ""},
        f"/clients/{third}/merge": {"with": str(dupe)},  # the report's stale link
    }
    for url, form in stale.items():
        refused = await admin.post(url, form)
        assert refused.status_code == 303, url
        assert refused.headers["location"] == f"/clients/{keep}", url
        card = await admin.get(refused.headers["location"])
        assert "was merged into this one; nothing was changed" in card.text, url
    edit = await admin.get(f"/clients/{dupe}/edit")
    assert edit.status_code == 303 and edit.headers["location"] == f"/clients/{keep}"
    with crm.system() as work:
        survivor = work.parties.get(keep)
        assert survivor.merged_into_id is None and survivor.name == "ООО «Вектор»"
        assert work.parties.tags_of(survivor) == ["vip"]
        assert work.parties.get(third).id == third  # not merged either


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


async def test_duplicate_report_names_only_the_clients_the_reader_may_see(web, crm):
    """The report covers the whole base; an admin whose role reads own clients only (a
    deployment's narrowing) sees their own clients linked, a colleague's client in the same
    group only counted (no name, id or link), and a group of the colleague's clients not
    at all (an admin who reads every client sees every group as before: the test above)."""
    with crm.system() as work:
        work.permissions.set("admin", "*", "*", "own")
    ann, bob = await web("admin", locale="en"), await web("admin", locale="en")
    with crm.acting_as(ann.user) as work:
        zenit = work.parties.create(name="ООО «Зенит»").id
        omega = [
            work.parties.create(name=n, confirm_duplicates=True).id for n in ("Омега", "Омега LLC")
        ]
    with crm.acting_as(bob.user) as work:
        own_zenit = work.parties.create(name="Зенит LLC", confirm_duplicates=True).id
        vector = [
            work.parties.create(name=n, confirm_duplicates=True).id
            for n in ("Вектор", "ООО Вектор")
        ]
    assert (await ann.post("/admin/duplicates", {"now": "1"})).status_code == 303
    page = await bob.get("/admin/duplicates")
    assert page.status_code == 200
    assert f"/clients/{vector[0]}/merge?with={vector[1]}" in page.text
    assert f'<a href="/clients/{own_zenit}">Зенит LLC</a>' in page.text
    assert page.text.count("clients you may not see: 1") == 1
    assert "«Зенит»" not in page.text and "Омега" not in page.text
    assert not any(f"/clients/{i}" in page.text or f"#{i})" in page.text for i in (zenit, *omega))


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
    assert broken.status_code == 422 and "0x98" in broken.text and "строка 2" in broken.text
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
    assert refused.status_code == 422 and "сопоставьте столбец с названием" in refused.text
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


async def _upload(browser, body, name="leads.csv"):
    uploaded = await browser.client.post(
        "/import",
        data={"csrf_token": browser.csrf, "on_duplicate": "skip"},
        files={"file": (name, body.encode(), "text/csv")},
    )
    assert uploaded.status_code == 303, uploaded.text
    return uploaded.headers["location"]


async def test_import_preview_names_only_the_clients_the_importer_may_see(web, crm):
    """A manager whose role reads own clients only previews a file matching a colleague's
    client: the page says a client they may not see matches, without its name, id or link;
    their own look-alike client is linked as before."""
    from crmkit.services.imports import run_import

    with crm.system() as work:
        work.permissions.set("manager", "party", "read", "own")
    ann, bob = await web("manager", locale="en"), await web("manager", locale="en")
    with crm.acting_as(ann.user) as work:
        romashka = work.parties.create(name="«Ромашка»").id
    with crm.acting_as(bob.user) as work:
        vector = work.parties.create(name="ООО Вектор Трейд").id
    run_url = await _upload(bob, 'Название\nООО "Рамашка"\nВекторр Трейд\n')
    page = await bob.get(run_url)
    assert page.status_code == 200
    assert page.text.count("a client you may not see") == 1
    assert "«Ромашка»" not in page.text and f"/clients/{romashka}" not in page.text
    assert f'<a href="/clients/{vector}">ООО Вектор Трейд</a>' in page.text
    # the run's report, downloaded, says the same
    started = await bob.post(run_url, {"map.Название": "name", "start": "1"})
    assert started.status_code == 303
    run_import(crm, int(run_url.rsplit("/", 1)[1]))
    report = (await bob.get(f"{run_url}/errors.csv")).content.decode("utf-8-sig")
    assert "«Ромашка»" not in report and f"#{romashka} " not in report
    assert "2;Название;possible duplicate of a client you may not see" in report
    assert f"3;Название;possible duplicate of client #{vector} 'ООО Вектор Трейд'" in report


async def test_import_report_and_preview_reach_a_russian_user_translated(web, crm):
    """The error report and the preview pass their messages through the user's catalog
    (an entry put in the catalog here, as the lead's translation will be): a Russian user
    reads them in Russian, with their parameters filled in."""
    from crmkit.services.imports import run_import

    with crm.system() as work:
        work.permissions.set("manager", "party", "read", "own")
    russian = await web("manager", locale="ru")
    other = await web("manager")
    with crm.acting_as(other.user) as work:
        work.parties.create(name="«Ромашка»")
    catalog = web.app.state.catalogs["ru"]._catalog
    catalog["possible duplicate of a client you may not see (similar name, {score}%): {done}"] = (
        "возможный дубль клиента, которого вы не видите (похожее название, {score}%): {done}"
    )
    catalog["no user {user}"] = "нет пользователя {user}"
    body = 'Название;Ответственный\nООО "Рамашка";\nБета;никто\n'
    run_url = await _upload(russian, body)
    page = await russian.get(run_url)
    assert "нет пользователя" in page.text and "no user" not in page.text
    started = await russian.post(
        run_url, {"map.Название": "name", "map.Ответственный": "owner", "start": "1"}
    )
    assert started.status_code == 303
    run_import(crm, int(run_url.rsplit("/", 1)[1]))
    report = (await russian.get(f"{run_url}/errors.csv")).content.decode("utf-8-sig")
    lines = report.splitlines()
    assert lines[0].endswith(";причина")  # "row" and "column" wait for the catalog
    assert "3;Ответственный;нет пользователя 'никто'" in lines
    assert any(
        line.startswith("2;Название;возможный дубль клиента, которого вы не видите")
        and line.endswith("%): создано")
        for line in lines
    ), lines


async def test_groups_screen_counts_every_group_in_a_fixed_number_of_queries(web, crm):
    """Static groups (with their subgroups' members) and smart groups: the counts are right
    and the page takes as many statements with eight groups of each as with one."""
    admin = await web("admin")
    agent = await web("agent")

    def add_groups(work, n):
        made = []
        for i in range(n):
            parent = work.groups.create(f"Город {n}-{i}")
            child = work.groups.create(f"Район {n}-{i}", parent.id)
            mine = work.parties.create(name=f"Своя {n}-{i}", owner_id=agent.user.id)
            other = work.parties.create(name=f"Чужая {n}-{i}", owner_id=admin.user.id)
            work.groups.add_members(parent.id, [mine.id])
            work.groups.add_members(child.id, [mine.id, other.id])
            smart = work.groups.create(
                f"Умная {n}-{i}", rules={"field": "name", "op": "contains", "value": f"{n}-{i}"}
            )
            made.append((parent.id, child.id, smart.id))
        return made

    with crm.acting_as(admin.user) as work:
        small = add_groups(work, 1)
    with statements(crm.engine) as few:
        page = await agent.get("/groups")
    parent, child, smart = small[0]
    for group_id, count in ((parent, 1), (child, 1), (smart, 1)):  # the agent sees own ones
        row = page.text.split(f'href="/groups/{group_id}"', 1)[1]
        assert f'data-count="{count}"' in row.split("</li>", 1)[0]
    whole = (await admin.get("/groups")).text.split(f'href="/groups/{parent}"', 1)[1]
    assert 'data-count="2"' in whole.split("</li>", 1)[0]  # the child's members count too
    with crm.acting_as(admin.user) as work:
        add_groups(work, 8)
    with statements(crm.engine) as many:
        page = await agent.get("/groups")
    assert page.status_code == 200
    assert len(many) == len(few)


async def test_client_export_loads_contacts_per_batch_not_per_client(web, crm):
    admin = await web("admin")

    def add_clients(n, start):
        with crm.acting_as(admin.user) as work:
            for i in range(start, start + n):
                work.parties.create(
                    name=f"Фирма {i}",
                    contact_points=[
                        {"kind": "phone", "value": f"+7 916 555-{i:02d}-00"},
                        {"kind": "email", "value": f"f{i}@example.ru"},
                    ],
                )

    add_clients(3, 0)
    with statements(crm.engine) as few:
        sheet = await admin.get("/lists/party/export.csv")
    add_clients(12, 3)
    with statements(crm.engine) as many:
        sheet = await admin.get("/lists/party/export.csv")
    lines = sheet.content.decode("utf-8-sig").splitlines()
    assert len(lines) == 1 + 15
    row = next(line for line in lines if "Фирма 7;" in line)
    assert "+7 916 555-07-00;f7@example.ru;" in row
    assert len(many) == len(few)


async def test_the_core_new_client_form_has_no_save_and_add_another(web, crm):
    """The button is a deployment's choice (``card.new(another=True)``, denaq's new lead):
    the core's form is headed "New client", has one Save, and a stray ``another`` opens the
    new client's card as ever."""
    agent = await web("agent", locale="en")
    form = await agent.get("/clients/new")
    assert "<h1>New client</h1>" in form.text and 'name="another"' not in form.text
    created = await agent.post(
        "/clients/new", {"kind": "organisation", "name": "ООО «Бета»", "another": "1"}
    )
    assert created.status_code == 303 and created.headers["location"].startswith("/clients/")
    card = await agent.get(created.headers["location"])
    assert "Client created." in card.text or "Клиент создан" in card.text
