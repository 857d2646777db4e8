"""Letters to suppliers: a purchase order sent to the supplier's email through the mail
channel (the outbox), with and without the mail plugin installed."""

from __future__ import annotations

import datetime as dt

import pytest
from crmkit_finance import finance
from crmkit_finance import plugin as finance_plugin
from finance_fixtures import build_shop
from finance_web import clients
from sqlalchemy import func, select

from crmkit.errors import ValidationFailed
from crmkit.model import Activity, OutboxItem
from crmkit.testing import require

try:
    from crmkit_mail import mail as mail_service
    from crmkit_mail import plugin as mail_plugin
    from crmkit_mail.testing import self_signed_certificate, smtp_server
except ImportError:  # the finance plugin works without the mail plugin
    mail_plugin = None


def _mail_plugin():
    require(mail_plugin is not None, "the crmkit-mail plugin")
    return mail_plugin


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """One self-signed certificate for the test SMTP servers (the apps trust it)."""
    _mail_plugin()
    return self_signed_certificate(tmp_path_factory.mktemp("cert"))


@pytest.fixture
def mail_shop(make_crm, certificate):
    """The shop on an application with the finance and the mail plugins."""
    crm = make_crm(
        plugins=[finance_plugin, _mail_plugin()],
        settings={"mail.ca_file": str(certificate[0]), "mail.timeout_seconds": 10},
    )
    return build_shop(crm)


def _purchase(shop, head, *, email):
    """A supplier (with ``email`` or none) and a purchase order of 12 l of oil from them."""
    head.submit("/finance/suppliers", {"name": "ООО «Масла и смазки»", "email": email})
    with shop.crm.acting_as(shop.warehouse) as work:
        supplier = next(iter(work.records("finance_supplier").list(limit=5)))
    head.submit(
        "/finance/purchases",
        {
            "supplier_id": supplier.id,
            "location_id": shop.branch.id,
            "expected_on": "2026-12-03",
            "item_id": [shop.oil.id, ""],
            "qty": ["12", ""],
            "unit_cost": ["410.50", ""],
        },
    )
    with shop.crm.acting_as(shop.warehouse) as work:
        purchase = next(iter(work.records("finance_purchase_order").list(limit=5)))
    return supplier, purchase


def _written(crm):
    with crm.system() as work:
        outbox = work.session.scalar(
            select(func.count()).select_from(OutboxItem).where(OutboxItem.kind == "channel.send")
        )
        letters = work.session.scalar(
            select(func.count()).select_from(Activity).where(Activity.direction == "out")
        )
    return outbox, letters


def test_send_a_purchase_order_from_the_screen(mail_shop):
    head = clients(mail_shop.crm)("warehouse")
    supplier, purchase = _purchase(mail_shop, head, email="zakaz@masla.ru")
    page = head.get("/finance/purchases")
    assert f'action="/finance/purchases/{purchase.id}/letter"' in page.text
    assert 'id="no-mail-channel"' not in page.text

    done = head.submit(f"/finance/purchases/{purchase.id}/letter")

    assert 'class="flash error"' not in done.text
    row = done.text.split(f'id="purchase-{purchase.id}"', 1)[1].split("</tr>")[0]
    assert 'class="letter letter-queued"' in row
    card = head.get(f"/clients/{supplier.party_id}")
    assert card.status_code == 200 and f"Заказ поставщику № {purchase.id}" in card.text
    record = head.get(f"/records/finance_purchase_order/{purchase.id}")
    assert record.status_code == 200 and f"Заказ поставщику № {purchase.id}" in record.text
    assert "zakaz@masla.ru" in record.text.split('id="purchase-letters"', 1)[1]
    head.post("/language", {"language": "ru", "next": "/"})
    russian = head.get("/finance/purchases").text
    assert "Отправить поставщику" in russian and "в очереди" in russian
    with mail_shop.crm.system() as work:
        (item,) = work.session.scalars(select(OutboxItem).where(OutboxItem.kind == "channel.send"))
        payload = dict(item.payload)
        (letter,) = work.session.scalars(
            select(Activity).where(Activity.party_id == supplier.party_id, Activity.kind == "mail")
        )
    assert payload["channel"] == "mail" and payload["to"] == "zakaz@masla.ru"
    assert payload["subject"] == f"Заказ поставщику № {purchase.id}"
    body = payload["body"]
    assert "Здравствуйте, ООО «Масла и смазки»!" in body
    assert "1. Motor oil 5W-30 — 12 l × 410.50 RUB = 4 926.00 RUB" in body
    assert "Ожидаемая дата поставки: 03.12.2026" in body
    assert (letter.record_entity, letter.record_id) == ("finance_purchase_order", purchase.id)
    assert letter.status == "queued" and letter.body == body
    assert payload["activity_id"] == letter.id


def test_a_supplier_without_an_email_writes_nothing(mail_shop):
    head = clients(mail_shop.crm)("warehouse")
    _, purchase = _purchase(mail_shop, head, email="")

    refused = head.submit(f"/finance/purchases/{purchase.id}/letter")

    assert 'class="flash error"' in refused.text
    assert "нет эл. почты" in refused.text  # in the warehouse head's language
    assert _written(mail_shop.crm) == (0, 0)
    with (
        mail_shop.crm.acting_as(mail_shop.warehouse) as work,
        pytest.raises(ValidationFailed) as refusal,
    ):
        finance(work).letters.send(purchase.id)
    assert list(refusal.value.errors) == ["email"]
    assert _written(mail_shop.crm) == (0, 0)


def test_without_the_mail_plugin_the_button_is_hidden(shop):
    head = clients(shop.crm)("warehouse")
    _, purchase = _purchase(shop, head, email="zakaz@masla.ru")

    page = head.get("/finance/purchases")
    assert f"/finance/purchases/{purchase.id}/letter" not in page.text
    assert "Почтовый канал не настроен" in page.text  # the default language is Russian
    refused = head.submit(f"/finance/purchases/{purchase.id}/letter")
    assert 'class="flash error"' in refused.text and "почтовый канал не настроен" in refused.text
    assert _written(shop.crm) == (0, 0)


def test_the_worker_delivers_the_letter_with_its_cyrillic_text(mail_shop, certificate, tmp_path):
    from crmkit.jobs.delivery import deliver_due

    crm = mail_shop.crm
    with smtp_server(tmp_path / "smtp", certificate=certificate) as smtp:
        purchase, letter_id = _letter_through(
            mail_shop, smtp, "АО «Фильтры»", "sales@filtry.ru", "3",
            display_name="Отдел закупок", expected_on=dt.date(2026, 12, 10),
        )  # fmt: skip

        smtp.fail_data = "451 try again later"
        assert deliver_due(crm) == {"retry": 1}
        assert smtp.received == []
        smtp.fail_data = None
        with crm.system() as work:
            work.session.execute(
                OutboxItem.__table__.update().values(
                    next_attempt_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
                )
            )
        assert deliver_due(crm) == {"delivered": 1}

    (received,) = smtp.received
    message = received.message
    assert received.recipients == ["sales@filtry.ru"]
    assert message["Subject"] == f"Заказ поставщику № {purchase.id}"
    text = message.get_body(("plain",)).get_content()
    assert text.startswith("Здравствуйте, АО «Фильтры»!")
    assert "Motor oil 5W-30 — 3 l × 400.00 RUB" in text
    assert "Ожидаемая дата поставки: 10.12.2026" in text
    with crm.system() as work:
        assert work.session.get(Activity, letter_id).status == "sent"


def _letter_through(mail_shop, smtp, supplier_name, email, qty, display_name=None, **options):
    """A mailbox on ``smtp``, a supplier at ``email``, an order of ``qty`` l of oil and its
    letter sent by the warehouse head: (the order, the letter's timeline entry id)."""
    named = {"display_name": display_name} if display_name else {}
    with mail_shop.crm.system() as work:
        mail_service(work).accounts.create(
            name="purchasing",
            address="zakupki@shop.test",
            **named,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_security="starttls",
            smtp_username="crm@example.test",
            smtp_password=smtp.users["crm@example.test"],
        )
    with mail_shop.crm.acting_as(mail_shop.warehouse) as work:
        fin = finance(work)
        party = work.parties.create(
            {
                "kind": "organisation",
                "name": supplier_name,
                "contact_points": [{"kind": "email", "value": email}],
            }
        )
        supplier = work.records("finance_supplier").create(party_id=party.id)
        purchase = fin.purchases.create_order(
            supplier.id,
            mail_shop.branch.id,
            [{"item_id": mail_shop.oil.id, "qty": qty, "unit_cost": "400"}],
            **options,
        )
        return purchase, fin.letters.send(purchase.id).id


def test_a_refused_address_is_dead_lettered_and_the_letter_marked_failed(
    mail_shop, certificate, tmp_path
):
    from crmkit.jobs.delivery import deliver_due

    crm = mail_shop.crm
    with smtp_server(tmp_path / "smtp", certificate=certificate) as smtp:
        smtp.refuse["nobody@"] = "550 no such user"
        _, letter_id = _letter_through(mail_shop, smtp, "ИП Пустой", "nobody@gone.ru", "1")
        assert deliver_due(crm) == {"dead": 1}
    with crm.system() as work:
        item = work.session.scalar(select(OutboxItem).where(OutboxItem.kind == "channel.send"))
        letter = work.session.get(Activity, letter_id)
        assert item.status == "dead" and "550" in item.last_error
        assert letter.status == "failed"
    page = clients(crm)("warehouse").get("/finance/purchases")
    assert 'class="letter letter-failed"' in page.text
