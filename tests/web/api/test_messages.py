"""Sending a message through a channel over the API: queued with its timeline entry,
delivered by the outbox, refused by name with nothing written."""

from __future__ import annotations

from sqlalchemy import func, select

from crmkit.jobs.delivery import deliver_due
from crmkit.model import Activity, OutboxItem
from crmkit.testing import add_user
from tests.web.api.conftest import problem
from tests.web.conftest import CopiesChannel


def deliver(crm):
    with crm.system() as work:
        ids = list(work.session.scalars(select(OutboxItem.id)))
    return deliver_due(crm, ids)


def test_a_message_from_a_template_to_the_clients_address(make_crm, client_for_crm):
    peer = CopiesChannel()
    crm = make_crm(plugins=[peer])
    manager = add_user(crm, "mia", ["manager"])
    api = client_for_crm(crm, manager)
    party = api.post(
        "party",
        json={"name": "ООО «Ромашка»", "contact_points": [
            {"kind": "phone", "value": "+7 916 000-00-00"},
            {"kind": "email", "value": "boss@romashka.ru"},
        ]},
    ).json()  # fmt: skip
    with crm.acting_as(manager) as work:
        template = work.message_templates.create(
            {"name": "offer", "channel": "letters", "subject": "Предложение для {{ party.name }}",
             "body": "Здравствуйте, {{ party.name }}!"}
        )  # fmt: skip
        template_id = template.id

    sent = api.post(
        "messages",
        json={"channel": "letters", "party_id": party["id"], "template_id": template_id,
              "cc": ["director@romashka.ru"]},
    )  # fmt: skip

    assert sent.status_code == 201, sent.text
    entry = sent.json()
    assert sent.headers["location"] == f"/api/v1/activity/{entry['id']}"
    assert (entry["status"], entry["direction"], entry["party_id"]) == (
        "queued",
        "out",
        party["id"],
    )
    assert entry["subject"] == "Предложение для ООО «Ромашка»"
    assert peer.sent == []  # nothing leaves before a worker delivers it
    deliver(crm)
    (message,) = peer.sent
    assert (message.to, message.cc, message.body) == (
        "boss@romashka.ru",
        ("director@romashka.ru",),
        "Здравствуйте, ООО «Ромашка»!",
    )
    assert api.get(f"activity/{entry['id']}").json()["status"] == "sent"


def test_a_message_refused_by_name_writes_nothing(make_crm, client_for_crm):
    crm = make_crm(plugins=[CopiesChannel()])
    agent = add_user(crm, "ann", ["agent"])
    other = add_user(crm, "bob", ["agent"])
    api = client_for_crm(crm, agent)
    party_id = api.post("party", json={"name": "Без адреса"}).json()["id"]

    unknown = problem(api.post("messages", json={"channel": "fax", "to": "x", "body": "x"}), 422)
    assert "no channel 'fax' (registered: letters)" in str(unknown["errors"]["channel"])
    nobody = problem(api.post("messages", json={"channel": "letters", "party_id": party_id,
                                                 "body": "x"}), 422)  # fmt: skip
    assert "no recipient" in str(nobody["errors"]["to"])
    copied = {"channel": "letters", "to": "a@b.ru", "body": "x", "cc": ["бухгалтерия"]}
    bad_copy = problem(api.post("messages", json=copied), 422)
    assert bad_copy["errors"]["cc"] == ["'бухгалтерия' is not a valid email address"]
    problem(api.post("messages", json={"channel": "letters", "body": "x", "fax": 1}), 422)
    # a client, a record, a file or a template the user may not see is named, as missing
    other_api = client_for_crm(crm, other)
    base = {"channel": "letters", "to": "a@b.ru", "body": "x"}
    deal_id = api.post("deal", json={"title": "Поставка", "party_id": party_id}).json()["id"]
    file_id = api.post(
        "attachment",
        data={"party_id": party_id},
        files={"file": ("счёт.pdf", b"%PDF", "application/pdf")},
    ).json()["id"]
    with crm.system() as work:
        template_id = work.message_templates.create(
            {"name": "t", "channel": "letters", "body": "x"}
        ).id
    for link, field in [
        ({"party_id": party_id}, "party_id"),
        ({"record_entity": "deal", "record_id": deal_id}, "record_id"),
        ({"attachment_ids": [file_id]}, "attachment_ids"),
        ({"template_id": template_id + 1000}, "template_id"),
    ]:
        hidden = problem(other_api.post("messages", json={**base, **link}), 422)
        assert list(hidden["errors"]) == [field], hidden
        assert "not found" in hidden["errors"][field][0]
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(OutboxItem)) == 0
        assert (
            work.session.scalar(
                select(func.count()).select_from(Activity).where(Activity.direction == "out")
            )
            == 0
        )
