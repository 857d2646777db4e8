"""A list's query string is read by one reader for the API and the HTML screens: a
parameter the API refuses, the list screen refuses with the same words, on the list page
itself (422), never a 500 nor a list that silently ignores it; the client card's timeline
reads ``kind`` as the API's timeline does.  Over real HTTP (uvicorn on a socket)."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from crmkit.testing import DEMO_PASSWORD, add_user, factories
from crmkit.testing.web import served
from crmkit.web.app import create_app

#: (API query, list-screen query, what both must say).  Each of them, before the lists
#: shared the API's reader, was a 500 on the list screen (a value the database cannot
#: take) or was silently ignored (``is_null=maybe``, a NUL in the search text).
REFUSED = [
    ("amount__gte=1e999", "f.amount__gte=1e999", "amount__gte: not a valid number"),
    (
        "created_at__gte=9999-12-31T23:59:59-05:00",
        "f.created_at__gte=9999-12-31T23:59:59-05:00",
        "created_at__gte: not a valid date and time (ISO 8601)",
    ),
    (
        "created_at__older_than_days=1e300",
        "f.created_at__older_than_days=1e300",
        "created_at__older_than_days: must be between -365000 and 365000 days",
    ),
    (
        "closed_at__is_null=maybe",
        "f.closed_at__is_null=maybe",
        "closed_at__is_null: takes no value, or true or false",
    ),
    ("title__contains=%00", "f.title__contains=%00", "title__contains: contains a NUL character"),
    ("q=a%00", "q=a%00", "q: contains a NUL character"),
    ("stage__frob=new", "f.stage__frob=new", "stage__frob: unknown operator 'frob'"),
]


def _sign_in(base: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=20)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    answer = client.post(
        "/login", data={"username": username, "password": DEMO_PASSWORD, "csrf_token": token}
    )
    assert answer.status_code == 303, answer.text
    return client


def _alert(page: httpx.Response) -> str:
    found = re.search(r'<p class="flash error" role="alert">(.*?)</p>', page.text, re.S)
    return html.unescape(found.group(1)) if found else ""


@pytest.fixture
def site(crm):
    """The web application over real HTTP, with a deal to list."""
    manager = add_user(crm, "manager_en", ("manager",), locale="en")
    add_user(crm, "manager_ru", ("manager",), locale="ru")
    add_user(crm, "admin_ru", ("admin",), locale="ru")
    with crm.acting_as(manager) as work:
        factories.deal(work, title="Поставка")
        token = work.api_tokens.create("lists").secret
    with served(create_app(crm)) as base:
        yield base, token


def test_the_list_screen_refuses_what_the_api_refuses_with_its_words(site):
    base, token = site
    api = httpx.Client(
        base_url=f"{base}/api/v1/", headers={"Authorization": f"Bearer {token}"}, timeout=20
    )
    browser = _sign_in(base, "manager_en")
    listed = browser.get("/lists/deal")
    assert listed.status_code == 200 and "Поставка" in listed.text
    for api_query, screen_query, said in REFUSED:
        answer = api.get(f"deal?{api_query}")
        assert answer.status_code == 422, api_query
        assert said in answer.json()["detail"], (api_query, answer.json())
        page = browser.get(f"/lists/deal?{screen_query}")
        assert page.status_code == 422, (screen_query, page.text[:300])
        assert _alert(page) == said, screen_query
        # the list page itself (its filter bar, to correct the filter), without rows
        assert 'id="list-form"' in page.text and "Поставка" not in page.text, screen_query
    # what the filter bar sends for a field left empty is no filter
    page = browser.get("/lists/deal?f.stage=&f.amount__gte=&q=")
    assert page.status_code == 200 and "Поставка" in page.text and not _alert(page)
    api.close()
    browser.close()


def test_the_search_reads_its_text_as_the_lists_do(site):
    """The API's search (``/search``) reads ``q`` with the lists' reader: a NUL is refused
    in the lists' words, and an empty text still asks for something to search for."""
    base, token = site
    api = httpx.Client(
        base_url=f"{base}/api/v1/", headers={"Authorization": f"Bearer {token}"}, timeout=20
    )
    listed = api.get("deal?q=a%00")
    searched = api.get("search?q=a%00")
    assert searched.status_code == listed.status_code == 422
    assert (
        searched.json()["errors"] == listed.json()["errors"] == {"q": ["contains a NUL character"]}
    )
    assert api.get("search?q=%20").json()["errors"] == {"q": ["give something to search for"]}
    assert api.get("search?q=Поставка").json()["hits"][0]["title"] == "Поставка"
    api.close()


def test_a_russian_reader_sees_the_refusal_in_russian(site):
    base, _ = site
    browser = _sign_in(base, "manager_ru")
    page = browser.get("/lists/deal?f.stage=%00")
    assert page.status_code == 422
    assert _alert(page) == "стадия: содержит символ NUL"
    page = browser.get("/lists/deal?q=%00")
    assert page.status_code == 422 and _alert(page) == "поиск: содержит символ NUL"
    browser.close()


def test_the_card_reads_timeline_kinds_as_the_api_does(crm, site):
    base, token = site
    with crm.system() as work:
        party = factories.organisation(work, name="ООО «Бета»")
        work.timeline.add_note(party_id=party.id, body="Позвонить в среду")
    api = httpx.Client(
        base_url=f"{base}/api/v1/", headers={"Authorization": f"Bearer {token}"}, timeout=20
    )
    browser = _sign_in(base, "manager_en")
    refused = api.get(f"party/{party.id}/timeline?kind=nots")
    assert refused.status_code == 422 and "kind" in refused.json()["errors"]
    said = "kind: " + refused.json()["errors"]["kind"][0]
    card = browser.get(f"/clients/{party.id}?kind=nots")
    assert card.status_code == 422 and _alert(card) == said
    assert "Позвонить в среду" not in card.text and "ООО «Бета»" in html.unescape(card.text)
    section = browser.get(f"/clients/{party.id}/timeline?kind=nots")
    assert section.status_code == 422 and _alert(section) == said
    # known kinds, as the API takes them (comma-separated), still filter
    shown = browser.get(f"/clients/{party.id}?kind=call,note")
    assert shown.status_code == 200 and "Позвонить в среду" in shown.text
    api.close()
    browser.close()


def test_other_screens_reading_a_search_or_kind_refuse_a_nul_by_its_name(site):
    """The board's search, the clients' export and the failed deliveries' ``kind`` read
    their text as the lists do: a NUL character (PostgreSQL refuses the statement: a 500
    before) is a 422 naming the parameter, in the reader's language."""
    base, _ = site
    english = _sign_in(base, "manager_en")
    assert english.get("/boards/sales?q=a").status_code == 200
    for url, said in (
        ("/boards/sales?q=a%00", "q: contains a NUL character"),
        ("/lists/party/export.xlsx?q=%00", "q: contains a NUL character"),
    ):
        page = english.get(url)
        assert page.status_code == 422 and said in html.unescape(page.text), url
    russian = _sign_in(base, "admin_ru")
    for url, said in (
        ("/boards/sales?q=a%00", "поиск: содержит символ NUL"),  # "q", labelled
        ("/admin/dead-letters?kind=%00", "вид: содержит символ NUL"),  # "kind", labelled
    ):
        page = russian.get(url)
        assert page.status_code == 422 and said in html.unescape(page.text), url
    english.close()
    russian.close()


def test_a_filter_refusal_names_the_entity_by_its_label(site):
    """A filter the entity has not is refused naming the entity as the reader knows it
    ("Deal", «Сделка» in Russian), not by its code (``deal``)."""
    base, token = site
    api = httpx.Client(
        base_url=f"{base}/api/v1/", headers={"Authorization": f"Bearer {token}"}, timeout=20
    )
    answer = api.get("deal?frobnicate=1")
    assert answer.json()["errors"] == {"frobnicate": ["Deal cannot be filtered by 'frobnicate'"]}
    english = _sign_in(base, "manager_en")
    page = english.get("/lists/deal?f.frobnicate=1")
    assert page.status_code == 422
    assert _alert(page) == "frobnicate: Deal cannot be filtered by 'frobnicate'"
    russian = _sign_in(base, "manager_ru")
    page = russian.get("/lists/deal?f.frobnicate=1")
    assert page.status_code == 422
    assert _alert(page) == "frobnicate: «Сделка» нельзя отбирать по полю 'frobnicate'"
    page = russian.get("/lists/task?f.custom.size=1")
    assert page.status_code == 422
    assert _alert(page) == "custom.size: у «Задача» нет дополнительного поля 'size'"
    for client in (api, english, russian):
        client.close()


def test_a_refused_sort_order_is_named_as_a_sort_order_whatever_order_means_elsewhere(
    crm, site, monkeypatch
):
    """``order`` is a list's sort order here and a finance order in a plugin: the list's
    refusal carries its own label ("sort order"), so a Russian reader reads the sort
    order's name even where the catalogs give the bare ``order`` the plugin's meaning."""
    from crmkit.web.i18n import catalogs_of

    base, token = site
    api = httpx.Client(
        base_url=f"{base}/api/v1/", headers={"Authorization": f"Bearer {token}"}, timeout=20
    )
    answer = api.get("deal?order=password")  # the API names the parameter itself
    assert answer.status_code == 422 and list(answer.json()["errors"]) == ["order"]
    english = _sign_in(base, "manager_en")
    page = english.get("/lists/deal?order=password")
    assert page.status_code == 422 and "Поставка" not in page.text
    assert _alert(page).startswith("sort order: cannot sort by 'password' (allowed: ")
    # the Russian catalog as the lead is to fill it, with a plugin's "order" (a finance
    # order) read first
    russian = catalogs_of(crm)["ru"]._catalog
    monkeypatch.setitem(russian, "order", "заказ")
    monkeypatch.setitem(russian, "sort order", "порядок сортировки")
    monkeypatch.setitem(
        russian,
        "cannot sort by {field} (allowed: {allowed})",
        "нельзя сортировать по {field} (можно: {allowed})",
    )
    browser = _sign_in(base, "manager_ru")
    page = browser.get("/lists/deal?order=password")
    assert page.status_code == 422
    assert _alert(page).startswith("порядок сортировки: нельзя сортировать по 'password' (можно: ")
    for client in (api, english, browser):
        client.close()
