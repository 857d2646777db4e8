"""The administrator's latest changes read as sentences in the reader's language: who,
a translated action, the record by its title (linked), changed fields by their labels."""

from __future__ import annotations

import html
import re

import pytest

from crmkit.testing import add_user, factories
from crmkit.web.app import create_app
from tests.web.conftest import Browser

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


#: Russian for the texts this change adds, until the catalogs have them.
RUSSIAN = {
    "changed": "изменено",
    "deleted": "удалено",
    "signed in": "вход в систему",
}


def rows_of(page):
    """Each audit row of the page as its text, and the raw rows."""
    body = page.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    raw = re.findall(r"(?s)<tr>(.*?)</tr>", body)
    texts = [html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", r))).strip() for r in raw]
    return texts, raw


async def test_latest_changes_name_who_what_and_which_record_in_the_readers_language(crm):
    admin = add_user(crm, "anna", ["admin"], display_name="Анна Админ", locale="ru")
    with crm.acting_as(admin) as work:
        party = factories.organisation(work, name="ООО «Ромашка»")
        work.parties.update(party, {"name": "ООО «Лютик»"})
        gone = factories.organisation(work, name="ООО «Ушла»")
        work.parties.delete(gone)
    app = create_app(crm)
    app.state.catalogs["ru"]._catalog.update(RUSSIAN)
    browser = Browser(app, crm)
    assert (await browser.login("anna")).status_code == 303
    page = await browser.get("/admin")
    assert page.status_code == 200
    texts, raw = rows_of(page)
    sign_in = next(t for t in texts if "вход в систему" in t)
    assert "Анна Админ" in sign_in and "10.0.0.1" in sign_in
    assert "None" not in sign_in and "→" not in sign_in and "sign_in" not in sign_in
    assert "user #" not in sign_in
    renamed = next(i for i, t in enumerate(texts) if "изменено" in t)
    assert "ООО «Ромашка» → ООО «Лютик»" in texts[renamed], texts[renamed]
    assert "название" in texts[renamed] and "update" not in texts[renamed]
    assert f'href="/clients/{party.id}"' in raw[renamed]
    created = [t for t in texts if "создано" in t]
    assert created and all("None" not in t for t in created), created
    assert any("удалено" in t for t in texts), texts
    for english in ("sign_in", "update", "create", "delete", "None"):
        assert all(english not in t for t in texts), (english, texts)
