"""A task's parent record (``record_entity``/``record_id``, a loose link to any record) is
named in a list as any other reference is: by the record's title linked to its page when
the reader may read it, blank when not (no title, no id, no link telling there is one)."""

from __future__ import annotations

import html
import re

import pytest

from crmkit.testing import add_user, factories
from tests.web.api.conftest import hidden_organisation, his_organisation


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _cells_of(page_text: str, record_url: str) -> list[str]:
    """The cells (as text, links kept as ``text <url>``) of the row of ``record_url``."""
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page_text, re.S):
        if f'href="{record_url}"' in row:
            cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
            return [
                html.unescape(re.sub(r'<a href="([^"]*)">(.*?)</a>', r"\2 <\1>", cell).strip())
                for cell in cells[1:]  # the check box
            ]
    raise AssertionError(f"no row for {record_url}")


@pytest.mark.anyio
async def test_a_task_list_names_a_readable_parent_and_leaves_a_hidden_one_blank(crm, web):
    """Boris's tasks, one on his own deal and one on Anna's deal he may not read (given to
    him by an admin): the task list's parent column names his deal, linked to its page, and
    leaves the other cell blank: neither its title, nor its id, nor a link to it."""
    anna = add_user(crm, "anna", ["agent"])
    browser = await web("agent", username="boris")
    boris = browser.user
    hidden_client = hidden_organisation(crm, anna)
    with crm.acting_as(anna) as work:
        secret = factories.deal(work, party_id=hidden_client, title="Сделка Анны").id
    his_client = his_organisation(crm, boris)
    with crm.acting_as(boris) as work:
        own = factories.deal(work, party_id=his_client, title="Сделка Бориса").id
    with crm.system() as work:
        on_secret = work.tasks.create(
            {
                "title": "Задача по чужой сделке",
                "assignee_id": boris.id,
                "record_entity": "deal",
                "record_id": secret,
            }
        ).id
        on_own = work.tasks.create(
            {
                "title": "Задача по своей сделке",
                "assignee_id": boris.id,
                "record_entity": "deal",
                "record_id": own,
            }
        ).id

    page = await browser.get("/lists/task?cols=title,record_id")
    assert page.status_code == 200, page.text
    assert _cells_of(page.text, f"/records/task/{on_own}") == [
        f"Задача по своей сделке </records/task/{on_own}>",
        f"Сделка Бориса </records/deal/{own}>",
    ]
    assert _cells_of(page.text, f"/records/task/{on_secret}") == [
        f"Задача по чужой сделке </records/task/{on_secret}>",
        "",
    ]
    assert "Сделка Анны" not in html.unescape(page.text)
    assert f"/records/deal/{secret}" not in page.text

    # an admin, who may read both, sees both named
    chief = await web("admin", username="chief")
    seen = await chief.get("/lists/task?cols=title,record_id")
    assert _cells_of(seen.text, f"/records/task/{on_secret}")[1] == (
        f"Сделка Анны </records/deal/{secret}>"
    )

    # the tasks' own pages: the same, the hidden deal's field left out
    own_page = await browser.get(f"/records/task/{on_own}")
    assert f'<a href="/records/deal/{own}">Сделка Бориса</a>' in own_page.text
    secret_page = await browser.get(f"/records/task/{on_secret}")
    assert secret_page.status_code == 200, secret_page.text
    assert "Сделка Анны" not in html.unescape(secret_page.text)
    assert f"/records/deal/{secret}" not in secret_page.text


@pytest.mark.anyio
async def test_the_parent_kind_is_named_by_its_label_and_blank_when_the_parent_is_hidden(crm, web):
    """The kind of a task's parent (``record_entity``) reads as the entity's name in the
    reader's language («Сделка»), not its code; on a task whose parent Boris may not read
    it is blank in the list and left out of the task's page, so it tells nothing of it."""
    anna = add_user(crm, "anna", ["agent"])
    browser = await web("agent", username="boris")
    boris = browser.user
    hidden_client = hidden_organisation(crm, anna)
    with crm.acting_as(anna) as work:
        secret = factories.deal(work, party_id=hidden_client, title="Сделка Анны").id
    his_client = his_organisation(crm, boris)
    with crm.acting_as(boris) as work:
        own = factories.deal(work, party_id=his_client, title="Сделка Бориса").id
    with crm.system() as work:
        on_secret, on_own = (
            work.tasks.create(
                {"title": title, "assignee_id": boris.id, "record_entity": "deal", "record_id": i}
            ).id
            for title, i in (("Задача по чужой сделке", secret), ("Задача по своей сделке", own))
        )

    for columns in ("title,record_entity,record_id", "title,record_entity"):
        page = await browser.get(f"/lists/task?cols={columns}")
        assert page.status_code == 200, page.text
        assert _cells_of(page.text, f"/records/task/{on_own}")[1] == "Сделка"
        assert _cells_of(page.text, f"/records/task/{on_secret}")[1] == ""
        assert ">deal<" not in page.text

    chief = await web("admin", username="chief")
    seen = await chief.get("/lists/task?cols=title,record_entity")
    assert _cells_of(seen.text, f"/records/task/{on_secret}")[1] == "Сделка"

    kind = re.compile(r"<dt>тип записи</dt><dd>([^<]*)</dd>")
    own_page = await browser.get(f"/records/task/{on_own}")
    assert kind.findall(own_page.text) == ["Сделка"]
    secret_page = await browser.get(f"/records/task/{on_secret}")
    assert secret_page.status_code == 200, secret_page.text
    assert kind.findall(secret_page.text) == []
    assert "тип записи" not in secret_page.text and ">deal<" not in secret_page.text
