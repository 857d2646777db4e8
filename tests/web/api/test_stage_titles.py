"""The stages a record can move to, as the API lists them, titled in the caller's language.

A stage's title is looked up as the web UI looks it up: in its pipeline's message context
(``msgctxt``) first, then plainly; its ``stage`` key stays the same in every language.
"""

from __future__ import annotations

from crmkit.i18n import contexted
from crmkit.testing import add_user
from crmkit.web.i18n import catalogs_of

#: a contexted Russian title of the deals' «Qualified» (the catalog leaves it empty, so
#: the test puts one in: only the context lookup can find it)
IN_CONTEXT = "Квалифицирована (сделка)"


def _stages(api, deal_id, **headers):
    response = api.get(f"deal/{deal_id}/stages", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["vary"] == "Accept-Language"
    return {item["stage"]: item["title"] for item in response.json()["items"]}


def _a_deal(api):
    party_id = api.post("party", json={"name": "Клиент"}).json()["id"]
    return api.post("deal", json={"title": "Поставка", "party_id": party_id}).json()["id"]


def test_a_russian_user_reads_the_stages_in_russian_in_the_pipelines_context(crm, client_for):
    catalogs_of(crm)["ru"]._catalog[contexted("sales", "Qualified")] = IN_CONTEXT
    api = client_for(add_user(crm, "ann", ["agent"], locale="ru"))
    deal_id = _a_deal(api)
    # the user's own setting wins over what the client's headers ask for
    stages = _stages(api, deal_id, **{"Accept-Language": "en"})
    assert stages == {"qualified": IN_CONTEXT, "lost": "Проиграна"}


def test_an_english_user_reads_them_in_english(crm, client_for):
    api = client_for(add_user(crm, "ann", ["agent"], locale="en"))
    deal_id = _a_deal(api)
    stages = _stages(api, deal_id, **{"Accept-Language": "ru"})
    assert stages == {"qualified": "Qualified", "lost": "Lost"}


def test_without_a_language_of_their_own_accept_language_chooses(crm, client_for):
    api = client_for(add_user(crm, "ann", ["agent"]))
    deal_id = _a_deal(api)
    english = {"qualified": "Qualified", "lost": "Lost"}
    russian = {"qualified": "Квалифицирована", "lost": "Проиграна"}
    assert _stages(api, deal_id, **{"Accept-Language": "en-GB,en;q=0.9,ru;q=0.5"}) == english
    assert _stages(api, deal_id, **{"Accept-Language": "de, ru-RU;q=0.8, en;q=0.3"}) == russian
    assert _stages(api, deal_id, **{"Accept-Language": "en;q=0, ru;q=0.2"}) == russian
    # none the UI speaks, or no header: the deployment's language (``locale.default``, ru)
    assert _stages(api, deal_id, **{"Accept-Language": "de, fr;q=0.5"}) == russian
    assert _stages(api, deal_id) == russian
