"""A client the reader may not read is named nowhere a list shows rows: an agent who holds
a person working at a colleague's organisation, a deal or a task given to him with a
colleague's client, finds neither the client's name nor a link to its card (whose address
tells its id) in the lists, their search, the task screen or an export; the cell is blank,
as the API gives ``null``, not a mark telling that a client is hidden there."""

from __future__ import annotations

import html
import re

import pytest

from crmkit.testing import add_user, factories
from tests.web.api.conftest import (
    colleague_at,
    hidden_organisation,
    his_organisation,
    person_at,
)


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _given_to(crm, anna, boris):
    """Anna's organisation «Тайна»; a person at it, a deal and a task on it, all given to
    Boris by an admin; Boris's own organisation with a person of his at it."""
    hidden = hidden_organisation(crm, anna)
    person = person_at(crm, hidden, boris)
    with crm.system() as work:
        deal = factories.deal(work, party_id=hidden, title="Поставка втайне", owner_id=boris.id).id
        task = work.tasks.create(
            {"title": "Позвонить втайне", "party_id": hidden, "assignee_id": boris.id}
        ).id
    his = his_organisation(crm, boris)
    return {
        "hidden": hidden,
        "his": his,
        "person": person,
        "colleague": colleague_at(crm, his, boris),
        "deal": deal,
        "task": task,
    }


def _row(page_text: str, record_url: str) -> str:
    """The table row of the record at ``record_url``, its cells as text."""
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page_text, re.S):
        if f'href="{record_url}"' in row:
            return row
    raise AssertionError(f"no row for {record_url}")


def _cells(row: str) -> list[str]:
    return [
        html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]


def _names_nothing_hidden(text: str, ids: dict) -> None:
    shown = html.unescape(text)
    assert "Тайна" not in shown
    assert f'/clients/{ids["hidden"]}"' not in text and f"/clients/{ids['hidden']}?" not in text


@pytest.mark.anyio
async def test_the_lists_leave_a_hidden_client_blank(crm, web):
    """Boris's lists of clients (with the organisation column), deals and tasks show his
    person, deal and task with the client cell blank: no «Тайна», no link to its card, and
    no "—" telling that there is one he may not see. His own person names his."""
    anna = add_user(crm, "anna", ["agent"])
    browser = await web("agent", username="boris")
    ids = _given_to(crm, anna, browser.user)

    persons = await browser.get("/lists/party?cols=name,organisation_id")
    assert persons.status_code == 200, persons.text
    _names_nothing_hidden(persons.text, ids)
    assert _cells(_row(persons.text, f"/clients/{ids['person']}"))[-2:] == ["Пётр Тайнов", ""]
    own = _cells(_row(persons.text, f"/clients/{ids['colleague']}"))[-2:]
    assert own == ["Борис Свой", "ИП Борисов"]  # his own person names their organisation

    for url, record in (
        ("/lists/deal", f"/records/deal/{ids['deal']}"),
        ("/lists/task", f"/records/task/{ids['task']}"),
    ):
        page = await browser.get(url)
        assert page.status_code == 200, (url, page.text)
        _names_nothing_hidden(page.text, ids)
        cells = _cells(_row(page.text, record))
        assert "—" not in cells, (url, cells)

    # a saved view showing the column, and an admin's shared one filtering by it
    from crmkit.web.screens.lists import view_url

    with crm.acting_as(browser.user) as work:
        mine = work.saved_views.save("party", "Люди", {"cols": "name,organisation_id"})
    with crm.acting_as(add_user(crm, "chief", ["admin"])) as work:
        shared = work.saved_views.save(
            "party",
            "Чужие люди",
            {"cols": "name,organisation_id", "f.organisation_id": str(ids["hidden"])},
            shared=True,
        )
    viewed = await browser.get(view_url("party", mine))
    _names_nothing_hidden(viewed.text, ids)
    assert _cells(_row(viewed.text, f"/clients/{ids['person']}"))[-2:] == ["Пётр Тайнов", ""]
    viewed = await browser.get(view_url("party", shared))
    assert viewed.status_code == 200 and "Пётр Тайнов" not in html.unescape(viewed.text)

    # the global search box is the clients' list searched
    found = await browser.get("/lists/party?q=Пётр&cols=name,organisation_id")
    assert "Пётр Тайнов" in html.unescape(found.text)
    _names_nothing_hidden(found.text, ids)
    # the organisation's id filtered for finds nothing rather than the person
    filtered = await browser.get(f"/lists/party?f.organisation_id={ids['hidden']}")
    assert filtered.status_code == 200 and "Пётр Тайнов" not in html.unescape(filtered.text)

    tasks = await browser.get("/tasks")
    assert tasks.status_code == 200 and "Позвонить втайне" in html.unescape(tasks.text)
    _names_nothing_hidden(tasks.text, ids)


@pytest.mark.anyio
async def test_an_export_and_the_search_do_not_name_a_hidden_client(crm, web, client_for):
    """Boris's export of his clients (CSV and XLSX) and the API's search name his person and
    not the organisation he may not read; searching for it finds nothing."""
    import io

    from openpyxl import load_workbook

    anna = add_user(crm, "anna", ["agent"])
    browser = await web("agent", username="boris")
    _given_to(crm, anna, browser.user)

    csv = await browser.get("/lists/party/export.csv")
    assert csv.status_code == 200, csv.text
    text = csv.content.decode("utf-8-sig")
    assert "Пётр Тайнов" in text and "Тайна" not in text.replace("Тайнов", "")
    xlsx = await browser.get("/lists/party/export.xlsx")
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    values = [str(v) for row in sheet.iter_rows(values_only=True) for v in row if v is not None]
    assert "Пётр Тайнов" in values and not [v for v in values if "Тайна" in v]

    api = client_for(browser.user)
    hits = api.get("search", params={"q": "Тай"}).json()["hits"]
    assert {(h["entity"], h["title"]) for h in hits} == {
        ("party", "Пётр Тайнов"),
        ("deal", "Поставка втайне"),
        ("task", "Позвонить втайне"),
    }
    assert api.get("search", params={"q": "ООО «Тайна»"}).json()["hits"] == []


def _shown(page) -> str:
    """What a page shows a reader: its text, without markup, scripts and addresses."""
    body = re.sub(r"(?s)<script.*?</script>", "", page.text)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


@pytest.mark.anyio
async def test_a_shared_view_filtering_by_a_hidden_client_names_it_nowhere(crm, web):
    """An admin's shared views narrowed to «Тайна» (deals by client, people by
    organisation, tasks by client), opened by Boris, who may not read it: the page names
    the view and nothing of the client, no title, no «#id», no link to its card, as a list
    leaves a hidden client's cell blank; and lists nothing, as a list filtered by a client
    its reader may not see does. The admin opening the same views sees what they select."""
    from crmkit.web.screens.lists import view_url

    anna = add_user(crm, "anna", ["agent"])
    browser = await web("agent", username="boris")
    ids = _given_to(crm, anna, browser.user)
    chief = await web("admin", username="chief")
    hidden = str(ids["hidden"])
    with crm.acting_as(chief.user) as work:
        views = {
            "deal": work.saved_views.save(
                "deal", "Сделки клиента", {"f.party_id": hidden}, shared=True
            ),
            "party": work.saved_views.save(
                "party",
                "Люди клиента",
                {"cols": "name,organisation_id", "f.organisation_id": hidden},
                shared=True,
            ),
            "task": work.saved_views.save(
                "task", "Задачи клиента", {"f.party_id": hidden}, shared=True
            ),
        }
    selected = {
        "deal": f"/records/deal/{ids['deal']}",
        "party": f"/clients/{ids['person']}",
        "task": f"/records/task/{ids['task']}",
    }
    for entity, view in views.items():
        url = view_url(entity, view)
        page = await browser.get(url)
        assert page.status_code == 200, (url, page.text)
        shown = _shown(page)
        assert view.name in shown
        _names_nothing_hidden(page.text, ids)
        assert f"#{hidden}" not in shown, (url, shown)
        assert f'href="{selected[entity]}"' not in page.text, url  # nothing listed
        assert "Ничего не найдено." in shown, (url, shown)

        seen_by_admin = await chief.get(url)
        assert seen_by_admin.status_code == 200, (url, seen_by_admin.text)
        assert f'href="{selected[entity]}"' in seen_by_admin.text, url
