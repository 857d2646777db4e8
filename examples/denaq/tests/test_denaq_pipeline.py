"""The dealer pipeline: guards, required papers, dead end and backward moves."""

from __future__ import annotations

import pytest
from denaq_fixtures import add_person, attach, new_lead, refuse

from crmkit.errors import MoveRefused
from crmkit.i18n import translate
from crmkit.web import i18n


def test_a_new_organisation_is_a_lead_and_a_person_is_outside_the_pipeline(denaq, staff):
    lead = new_lead(denaq, staff.finder)
    person = add_person(denaq, staff.finder, lead)
    with denaq.acting_as(staff.finder) as work:
        assert (work.parties.get(lead).pipeline, work.parties.get(lead).stage) == (
            "dealer",
            "lead",
        )
        assert work.parties.get(person).pipeline is None


def test_a_lead_becomes_a_firm_only_with_a_contact_person(denaq, staff):
    lead = new_lead(denaq, staff.anna)
    with denaq.acting_as(staff.anna) as work, pytest.raises(MoveRefused) as refused:
        work.moves.move(lead, "firm", entity="party")
    assert refused.value.reasons == ["add a contact person first"]
    catalogs = i18n.load_catalogs([i18n.LOCALE_DIR, *denaq_locale()])
    assert translate(refused.value.messages[0], catalogs["ru"].gettext) == (
        "сначала добавьте контактное лицо"
    )
    add_person(denaq, staff.anna, lead)
    with denaq.acting_as(staff.anna) as work:
        assert work.moves.move(lead, "firm", entity="party").record.stage == "firm"


def test_a_lead_refused_without_people_is_not_reopened_as_a_firm_until_it_has_one(denaq, staff):
    lead = new_lead(denaq, staff.anna)
    with denaq.acting_as(staff.anna) as work:
        refuse(work, lead, "не дозвонились", comment="не отвечают")
        with pytest.raises(MoveRefused) as refused:
            work.moves.move(lead, "firm", entity="party")
        assert refused.value.reasons == ["add a contact person first"]
        assert work.parties.get(lead).stage == "refused"
    add_person(denaq, staff.anna, lead)
    with denaq.acting_as(staff.anna) as work:
        assert work.moves.move(lead, "firm", entity="party").record.stage == "firm"


def test_an_account_whose_people_are_gone_goes_back_to_firm_only_with_a_new_one(denaq, staff):
    account = _account(denaq, staff.anna)
    with denaq.acting_as(staff.admin) as work:
        for person in work.parties.contacts_of(account):
            work.parties.delete(person)
    with denaq.acting_as(staff.anna) as work, pytest.raises(MoveRefused) as refused:
        work.moves.move(account, "firm", entity="party")
    assert refused.value.reasons == ["add a contact person first"]
    add_person(denaq, staff.anna, account, name="Пётр Лесов")
    with denaq.acting_as(staff.anna) as work:
        assert work.moves.move(account, "firm", entity="party").record.stage == "firm"


def test_a_firm_becomes_an_account_only_with_its_papers_named_when_missing(denaq, staff):
    firm = _firm(denaq, staff.anna)
    with denaq.acting_as(staff.anna) as work, pytest.raises(MoveRefused) as refused:
        work.moves.move(firm, "account", entity="party")
    assert refused.value.missing_documents == ["contract", "requisites"]
    assert refused.value.reasons == [
        "attach documents: Signed dealer contract, Company details card"
    ]
    catalogs = i18n.load_catalogs([i18n.LOCALE_DIR, *denaq_locale()])
    assert translate(refused.value.messages[0], catalogs["ru"].gettext) == (
        "приложите документы: Подписанный дилерский договор, Карточка предприятия"
    )
    attach(denaq, staff.anna, firm, "contract")
    with denaq.acting_as(staff.anna) as work, pytest.raises(MoveRefused) as refused:
        work.moves.move(firm, "account", entity="party")
    assert refused.value.missing_documents == ["requisites"]
    attach(denaq, staff.anna, firm, "requisites")
    with denaq.acting_as(staff.anna) as work:
        assert work.moves.move(firm, "account", entity="party").record.stage == "account"


def test_an_account_that_gives_up_returns_to_the_refused_firms_and_may_be_reopened(denaq, staff):
    account = _account(denaq, staff.anna)
    with denaq.acting_as(staff.anna) as work:
        with pytest.raises(MoveRefused, match="fill in: Причина отказа"):
            work.moves.move(account, "refused", entity="party", comment="нет спроса")
        moved = refuse(work, account, "нет потребности", comment="нет спроса")
        assert moved.record.stage == "refused"
        last = work.moves.history(moved.record)[-1]
        assert (last.from_stage, last.to_stage, last.comment) == (
            "account",
            "refused",
            "нет спроса",
        )
        assert [o.stage.name for o in work.moves.options(moved.record)] == ["firm"]
        assert work.moves.move(account, "firm", entity="party").record.stage == "firm"


def test_an_account_that_resells_becomes_a_client(denaq, staff):
    account = _account(denaq, staff.anna)
    with denaq.acting_as(staff.anna) as work:
        assert work.moves.move(account, "client", entity="party").record.stage == "client"
        backward = {
            o.stage.name: o.transition.backward for o in work.moves.options(account, "party")
        }
        assert backward == {"account": True}


def denaq_locale():
    from pathlib import Path

    import crmkit_denaq

    return [Path(crmkit_denaq.__file__).parent / "locale"]


def _firm(crm, agent):
    lead = new_lead(crm, agent, name="ООО «Велоград»")
    add_person(crm, agent, lead)
    with crm.acting_as(agent) as work:
        work.moves.move(lead, "firm", entity="party")
    return lead


def _account(crm, agent):
    firm = _firm(crm, agent)
    attach(crm, agent, firm, "contract", "requisites")
    with crm.acting_as(agent) as work:
        work.moves.move(firm, "account", entity="party")
    return firm
