"""An agent writes to a client from a template on the card; the worker delivers it to aiosmtpd.

The deployment loads the mail plugin: without a mailbox the card says so, with one the mail
is rendered for this client, editable, queued through the outbox with its timeline entry,
and a failed delivery stays in the outbox to be retried.
"""

from __future__ import annotations

import html
import re

import pytest
from crmkit_denaq import plugin as denaq_plugin
from crmkit_mail import mail
from crmkit_mail import plugin as mail_plugin
from crmkit_mail.parsing import parse_message
from crmkit_mail.testing import smtp_server
from denaq_fixtures import add_person, new_lead
from denaq_web import Client
from sqlalchemy import select, update

from crmkit.clock import utcnow
from crmkit.jobs.delivery import deliver_due
from crmkit.model import Activity, MessageTemplate, OutboxItem
from crmkit.testing import add_user
from crmkit.web.app import create_app

FIRM = "ООО «Шинторг»"
ADDRESS = "director@shintorg.ru"


@pytest.fixture
def crm(make_crm):
    crm = make_crm(plugins=[denaq_plugin, mail_plugin])
    crm.anna = add_user(crm, "anna", ["agent"], display_name="Анна Петрова")
    add_user(crm, "igor", ["agent"], display_name="Игорь")
    return crm


@pytest.fixture
def smtp(tmp_path):
    with smtp_server(tmp_path / "smtp", security="none", users={}) as server:
        yield server


def _firm(crm):
    return new_lead(crm, crm.anna, name=FIRM, contact_points=[{"kind": "email", "value": ADDRESS}])


def _offer_id(crm):
    with crm.system() as work:
        return work.session.scalar(
            select(MessageTemplate.id).where(MessageTemplate.name == "Лид: первое предложение")
        )


def _outbox(crm):
    with crm.system() as work:
        return list(
            work.session.scalars(select(OutboxItem).where(OutboxItem.kind == "channel.send"))
        )


def test_an_agent_mails_a_template_from_the_card_and_the_worker_delivers_it(crm, smtp):
    firm = _firm(crm)
    app = create_app(crm)
    anna = Client(app, "anna")
    card = anna.get(f"/clients/{firm}").text
    assert "mail-no-mailbox" in card and "Почтовый ящик не настроен" in card  # said, in Russian

    with crm.system() as work:
        mail(work).accounts.create(
            name="sales", address="sales@denaq.test", smtp_host=smtp.host, smtp_port=smtp.port,
            smtp_security="none",
        )  # fmt: skip
    card = anna.get(f"/clients/{firm}").text
    assert 'id="mail-compose-start"' in card and "Лид: первое предложение" in card

    offer = _offer_id(crm)
    page = anna.get(f"/mail/compose/{firm}?template={offer}&to={ADDRESS}")
    assert page.status_code == 200
    assert f"Предложение о сотрудничестве для {FIRM}" in page.text
    assert "Меня зовут Анна Петрова" in page.text

    igor = Client(app, "igor")  # another agent: the firm is not his
    assert igor.get(f"/mail/compose/{firm}?template={offer}").status_code == 404
    sent_by_igor = igor.post(
        f"/mail/compose/{firm}/send", {"to": ADDRESS, "subject": "x", "body": "x"}
    )
    assert sent_by_igor.status_code == 404
    # an address that is not the client's is refused, nothing queued
    wrong = anna.post(
        f"/mail/compose/{firm}/send", {"to": "someone@else.ru", "subject": "x", "body": "x"}
    )
    assert wrong.status_code == 422 and "mail-compose-error" in wrong.text
    assert _outbox(crm) == []

    # what the page shows, as the agent would send it after adding a line
    subject = html.unescape(re.search(r'name="subject" value="([^"]*)"', page.text).group(1))
    body = html.unescape(re.search(r'name="body"[^>]*>([^<]*)</textarea>', page.text).group(1))
    assert subject == f"Предложение о сотрудничестве для {FIRM}"
    assert f"обсудить условия для {FIRM}" in body
    body += "\nP.S. Каталог во вложении пришлю после звонка."
    sent = anna.post(
        f"/mail/compose/{firm}/send",
        {"to": ADDRESS, "subject": subject, "body": body, "template": str(offer)},
    )
    assert sent.status_code == 303 and sent.headers["location"] == f"/clients/{firm}"

    (item,) = _outbox(crm)
    with crm.system() as work:
        (entry,) = work.session.scalars(
            select(Activity).where(Activity.party_id == firm, Activity.kind == "mail")
        )
        assert (entry.direction, entry.subject) == ("out", subject)
    assert subject in anna.get(f"/clients/{firm}").text  # on the client's timeline
    assert smtp.received == []  # nothing leaves before the worker delivers it

    assert deliver_due(crm, [item.id]) == {"delivered": 1}
    (received,) = smtp.received
    assert received.recipients == [ADDRESS]
    message = parse_message(received.raw)
    assert message.subject == subject
    assert f"обсудить условия для {FIRM}" in message.text
    assert "P.S. Каталог во вложении" in message.text  # the agent's edit went out


def test_a_failed_delivery_stays_in_the_outbox_and_is_retried(crm, smtp):
    firm = _firm(crm)
    with crm.system() as work:
        mail(work).accounts.create(
            name="sales", address="sales@denaq.test", smtp_host=smtp.host, smtp_port=smtp.port,
            smtp_security="none",
        )  # fmt: skip
    anna = Client(create_app(crm), "anna")
    offer = _offer_id(crm)
    page = anna.get(f"/mail/compose/{firm}?template={offer}").text
    subject = f"Предложение о сотрудничестве для {FIRM}"
    assert subject in page
    anna.post(f"/mail/compose/{firm}/send", {"to": ADDRESS, "subject": subject, "body": "Текст"})
    (item,) = _outbox(crm)

    smtp.fail_data = "451 4.3.0 try again later"
    assert deliver_due(crm, [item.id]) == {"retry": 1}
    (waiting,) = _outbox(crm)
    assert waiting.status == "pending" and "451" in waiting.last_error
    assert smtp.received == []

    smtp.fail_data = None
    with crm.system() as work:  # the back-off has passed
        work.session.execute(update(OutboxItem).values(next_attempt_at=utcnow()))
    assert deliver_due(crm, [item.id]) == {"delivered": 1}
    assert [r.recipients for r in smtp.received] == [[ADDRESS]]


def test_the_compose_page_names_what_the_template_fills_in_nothing_for(crm):
    """The admin added "ИНН {{ party.inn }}" and "{{ party.phone }}" to the offer; for a firm
    without them the agent is told before sending, the rest of the mail is filled in."""
    firm = _firm(crm)
    offer = _offer_id(crm)
    with crm.system() as work:
        template = work.message_templates.get(offer)
        body = template.body + "\nИНН {{ party.inn }}, тел. {{ party.phone }}\n"
        work.message_templates.update(offer, {"body": body})
    anna = Client(create_app(crm), "anna")
    page = anna.get(f"/mail/compose/{firm}?template={offer}").text
    assert f"обсудить условия для {FIRM}" in html.unescape(page)
    note = page.split('id="mail-unfilled"', 1)[1].split("</p>", 1)[0]
    assert re.findall(r"<code>([^<]*)</code>", note) == ["party.inn", "party.phone"]
    with crm.system() as work:  # the firm gets a phone: only what it still lacks is named
        work.parties.add_contact(firm, "phone", "+7 495 123-45-67")
    page = anna.get(f"/mail/compose/{firm}?template={offer}").text
    note = page.split('id="mail-unfilled"', 1)[1].split("</p>", 1)[0]
    assert re.findall(r"<code>([^<]*)</code>", note) == ["party.inn"]


def _chosen(card):
    """The templates the card's mail panel lists, and the one it has chosen."""
    form = card.split('id="mail-compose-start"', 1)[1].split("</form>", 1)[0]
    select = form.split('name="template"', 1)[1].split("</select>", 1)[0]
    options = re.findall(r"<option value=\"[^\"]*\"( selected)?>([^<]*)</option>", select)
    return [name for _, name in options], [name for chosen, name in options if chosen]


def test_the_card_chooses_the_template_of_the_dealers_stage_and_offers_the_others(crm):
    firm = _firm(crm)
    with crm.system() as work:
        mail(work).accounts.create(name="sales", address="sales@denaq.test", smtp_host="x")
    anna = Client(create_app(crm), "anna")
    offered, chosen = _chosen(anna.get(f"/clients/{firm}").text)
    assert chosen == ["Лид: первое предложение"]
    assert {"Аккаунт: помощь с интеграцией", "Фирма: запрос документов"} <= set(offered)
    add_person(crm, crm.anna, firm)
    with crm.acting_as(crm.anna) as work:
        work.moves.move(firm, "firm", entity="party")
    offered, chosen = _chosen(anna.get(f"/clients/{firm}").text)
    assert chosen == ["Фирма: запрос документов"]
    assert "Лид: первое предложение" in offered  # another may still be chosen
    # the chosen one is the template of that name the admin kept: renamed, nothing is chosen
    with crm.system() as work:
        (template,) = work.session.scalars(
            select(MessageTemplate).where(MessageTemplate.name == "Фирма: запрос документов")
        )
        work.message_templates.update(template.id, {"name": "Документы"})
    offered, chosen = _chosen(anna.get(f"/clients/{firm}").text)
    assert chosen == [] and "Документы" in offered
