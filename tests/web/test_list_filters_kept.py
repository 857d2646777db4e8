"""A list opened narrowed by a filter its filter bar has no input for (a saved view or an
address filtering deals by client, people by organisation) keeps that filter when the bar's
«Показать» is pressed to refine it, and says that the filter is on: a chip naming the field
and the record (blank wording for one the reader may not read), with a link removing it."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest

from crmkit.testing import add_user, factories
from crmkit.web import i18n
from crmkit.web.screens.lists import view_url
from tests.web.api.conftest import hidden_organisation, his_organisation

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


class _Form(HTMLParser):
    """The fields a browser sends with the form ``id="list-form"`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.action = ""
        self.fields: list[tuple[str, str]] = []
        self.select: str | None = None
        self.first_option: str | None = None
        self.chosen = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("id") == "list-form":
            self.inside = True
            self.action = a.get("action") or ""
        if not self.inside:
            return
        if tag == "input" and a.get("name"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.fields.append((a["name"], a.get("value") or ""))
        elif tag == "select":
            self.select, self.first_option, self.chosen = a.get("name"), None, False
        elif tag == "option" and self.select:
            if self.first_option is None:
                self.first_option = a.get("value") or ""
            if "selected" in a:
                self.fields.append((self.select, a.get("value") or ""))
                self.chosen = True

    def handle_endtag(self, tag):
        if tag == "select" and self.select:
            if not self.chosen:
                self.fields.append((self.select, self.first_option or ""))
            self.select = None
        elif tag == "form" and self.inside:
            self.inside = False


def _press_show(page, path: str, **typed: str) -> str:
    """The address «Показать» of ``page`` (at ``path``) opens, ``typed`` typed in its fields."""
    form = _Form()
    form.feed(page.text)
    assert form.fields, "no filter bar"
    fields = [(name, typed.pop(name, value)) for name, value in form.fields]
    assert not typed, f"no fields {list(typed)} in the filter bar"
    return f"{form.action or path}?{urlencode(fields)}"


def _listed(page, entity: str) -> set[int]:
    return {int(i) for i in re.findall(rf'<a href="/records/{entity}/(\d+)">', page.text)}


def _chips(page) -> list[tuple[str, str]]:
    """The shown filter chips: (text, address of the link removing the filter)."""
    found = []
    for chip in re.findall(r'<span class="chip filter"[^>]*>(.*?)</span>', page.text, re.S):
        remove = re.search(r'<a href="([^"]*)"', chip)
        text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", chip))).strip()
        found.append((text.rstrip("× ").strip(), html.unescape(remove.group(1)) if remove else ""))
    return found


def _russian(crm, text: str) -> str:
    return i18n.catalogs_of(crm)["ru"].gettext(text)


async def test_show_keeps_a_client_filter_the_bar_has_no_input_for(crm, web):
    """Deals of one client (``f.party_id``, from the client card or a saved view): searching
    them by the bar keeps to that client's deals; the chip names the client, and its link
    lists every deal again."""
    browser = await web("agent")
    with crm.acting_as(browser.user) as work:
        romashka = factories.organisation(work, name="ООО «Ромашка»").id
        lutik = factories.organisation(work, name="ООО «Лютик»").id
        first = factories.deal(work, party_id=romashka, title="Поставка труб").id
        second = factories.deal(work, party_id=romashka, title="Монтаж").id
        other = factories.deal(work, party_id=lutik, title="Поставка насосов").id
        view = work.saved_views.save("deal", "Ромашка", {"f.party_id": str(romashka)})

    for path, url in (
        ("/lists/deal", f"/lists/deal?f.party_id={romashka}"),
        ("/lists/deal", view_url("deal", view)),
    ):
        page = await browser.get(url)
        assert page.status_code == 200, page.text
        assert _listed(page, "deal") == {first, second}
        assert _chips(page) == [
            (f"{_russian(crm, 'party_id')}: ООО «Ромашка»", "/lists/deal"),
        ]
        refined = await browser.get(_press_show(page, path, q="Поставка"))
        assert refined.status_code == 200, refined.text
        assert _listed(refined, "deal") == {first}  # not the other client's «Поставка»
        unfiltered = await browser.get(_chips(page)[0][1])
        assert _listed(unfiltered, "deal") == {first, second, other}

    # the chip's link keeps the rest of the list's state: the search, the columns
    page = await browser.get(f"/lists/deal?q=Поставка&cols=title,amount&f.party_id={romashka}")
    assert _listed(page, "deal") == {first}
    (chip,) = _chips(page)
    removed = await browser.get(chip[1])
    assert _listed(removed, "deal") == {first, other}
    assert chip[1] == "/lists/deal?" + urlencode({"q": "Поставка", "cols": "title,amount"})


async def test_show_keeps_an_organisation_filter_and_names_no_hidden_one(crm, web):
    """People of an organisation (``f.organisation_id``): refining keeps the filter. A
    shared view narrowed to an organisation Boris may not read shows a chip in the words
    for a record one may not open, without its name, its number or a link to its card."""
    anna = add_user(crm, "anna", ["agent"])
    browser = await web("agent", username="boris")
    hidden = hidden_organisation(crm, anna)
    his = his_organisation(crm, browser.user)
    with crm.acting_as(browser.user) as work:
        ivan = work.parties.create({"kind": "person", "name": "Иван", "organisation_id": his}).id
        work.parties.create({"kind": "person", "name": "Иван Другой"})
    page = await browser.get(f"/lists/party?f.organisation_id={his}&cols=name")
    assert _chips(page) == [
        (f"{_russian(crm, 'organisation_id')}: ИП Борисов", "/lists/party?cols=name")
    ]
    refined = await browser.get(_press_show(page, "/lists/party", q="Иван"))
    shown = html.unescape(refined.text)
    assert f'href="/clients/{ivan}"' in refined.text and "Иван Другой" not in shown

    with crm.acting_as(add_user(crm, "chief", ["admin"])) as work:
        shared = work.saved_views.save(
            "party", "Чужие люди", {"f.organisation_id": str(hidden)}, shared=True
        )
    page = await browser.get(view_url("party", shared))
    assert page.status_code == 200, page.text
    label = _russian(crm, "organisation_id")
    assert _chips(page) == [(f"{label}: {_russian(crm, 'unavailable record')}", "/lists/party")]
    shown = html.unescape(page.text)
    assert "Тайна" not in shown and f"#{hidden}" not in shown
    assert f"/clients/{hidden}" not in page.text
    refined = await browser.get(_press_show(page, "/lists/party", q="Иван"))
    assert "Иван" not in html.unescape(re.sub(r"<input[^>]*>", "", refined.text))


async def test_a_comparison_typed_in_the_address_is_kept_and_worded(crm, web):
    """Deals of 500 and more (``f.amount__gte``) and tasks without a deadline
    (``f.deadline__is_null``): Show keeps each, and the chip says the comparison."""
    browser = await web("agent")
    with crm.acting_as(browser.user) as work:
        big = factories.deal(work, title="Поставка большая", amount=900).id
        factories.deal(work, title="Поставка малая", amount=100)
        factories.deal(work, title="Монтаж большой", amount=700)
        undated = factories.task(work, title="Позвонить когда-нибудь").id
        factories.task(work, title="Позвонить завтра", deadline="2030-01-01T10:00:00+00:00")

    page = await browser.get("/lists/deal?f.amount__gte=500")
    assert _chips(page) == [(f"{_russian(crm, 'amount')} ≥ 500", "/lists/deal")]
    refined = await browser.get(_press_show(page, "/lists/deal", q="Поставка"))
    assert _listed(refined, "deal") == {big}

    page = await browser.get("/lists/task?f.deadline__is_null=")
    assert _chips(page) == [
        (f"{_russian(crm, 'deadline')} {_russian(crm, 'is empty')}", "/lists/task")
    ]
    refined = await browser.get(_press_show(page, "/lists/task", q="Позвонить"))
    assert _listed(refined, "task") == {undated}


async def test_a_time_filter_chip_reads_as_the_lists_cells_do(crm, web):
    """Tasks due from a moment typed in the address (``f.deadline__gte``, ISO 8601 with
    its offset): the chip says the moment as the list's deadline cells do, in the reader's
    zone and date format, not as it was typed; a reader in another zone sees it in theirs."""
    browser = await web("agent", timezone="Europe/Moscow")
    with crm.acting_as(browser.user) as work:
        due = factories.task(work, title="Сдать отчёт", deadline="2026-11-30T06:00:00+00:00").id
        factories.task(work, title="Сдать раньше", deadline="2026-11-29T06:00:00+00:00")
    label = _russian(crm, "deadline")

    query = urlencode({"cols": "title,deadline", "f.deadline__gte": "2026-11-30T09:00:00+03:00"})
    page = await browser.get(f"/lists/task?{query}")
    assert page.status_code == 200, page.text
    assert _listed(page, "task") == {due}
    (chip,) = _chips(page)
    assert chip[0] == f"{label} ≥ 30.11.2026, 09:00"
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", page.text)
    assert "30.11.2026, 09:00" in [html.unescape(c).strip() for c in cells]  # the same words
    assert "2026-11-30" not in chip[0]
    refined = await browser.get(_press_show(page, "/lists/task", q="Сдать"))
    assert _listed(refined, "task") == {due}

    far = await web("agent", timezone="Asia/Yekaterinburg")
    (chip,) = _chips(await far.get(f"/lists/task?{query}"))
    assert chip[0] == f"{label} ≥ 30.11.2026, 11:00"


async def test_a_parent_kind_filter_chip_names_the_entity(crm, web):
    """Tasks on deals (``f.record_entity=deal``): the chip names the kind as the reader
    reads it («Сделка»), not by its code."""
    browser = await web("agent")
    page = await browser.get("/lists/task?f.record_entity=deal")
    assert page.status_code == 200, page.text
    assert _chips(page) == [(f"{_russian(crm, 'record_entity')}: Сделка", "/lists/task")]
