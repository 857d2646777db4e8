"""The mail screens: mailboxes (admins), mass mailings with a per-recipient preview and a
report, and each recipient written to in their own language."""

from __future__ import annotations

import contextlib
import html
from pathlib import Path

import crmkit_mail
import pytest
from crmkit_mail import mail
from crmkit_mail import plugin as mail_plugin
from crmkit_mail.imap import ImapMailbox
from crmkit_mail.model import MailAccount, MailCampaign
from crmkit_mail.parsing import parse_message
from crmkit_mail.testing import dovecot_server
from sqlalchemy import select

from crmkit.errors import ValidationFailed
from crmkit.jobs.delivery import deliver_due
from crmkit.testing import add_user, free_port
from crmkit.testing.catalogs import package_messages
from crmkit.testing.web import WebClient, multipart

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def signed_in(crm, username, roles, locale="en"):
    add_user(crm, username, roles, locale=locale)
    client = WebClient.for_crm(crm)
    assert (await client.login(username)).status_code == 303
    return client


def smtp_mailbox(crm, smtp, name="sales"):
    with crm.system() as work:
        return mail(work).accounts.create(
            name=name, address="sales@example.test", display_name="Отдел продаж",
            smtp_host=smtp.host, smtp_port=smtp.port, smtp_security="starttls",
            smtp_username="crm@example.test", smtp_password=smtp.users["crm@example.test"],
        ).id  # fmt: skip


# -- mailboxes ----------------------------------------------------------------------------


async def test_only_admins_see_and_open_the_mailbox_screens(mail_crm):
    with mail_crm.system() as work:
        account = mail(work).accounts.create(name="sales", address="sales@example.test")
    manager = await signed_in(mail_crm, "manager", ["manager"])
    home = await manager.get("/mail/mailings")
    assert home.status_code == 200 and 'href="/mail/mailboxes"' not in home.text
    for path in ("/mail/mailboxes", "/mail/mailboxes/new", f"/mail/mailboxes/{account.id}"):
        assert (await manager.get(path)).status_code == 404, path
    refused = await manager.post(f"/mail/mailboxes/{account.id}", {"name": "stolen"})
    assert refused.status_code == 404
    agent = await signed_in(mail_crm, "agent", ["agent"])
    page = await agent.get("/profile")
    assert 'href="/mail/mailboxes"' not in page.text and 'href="/mail/mailings"' not in page.text
    assert (await agent.get("/mail/mailings")).status_code == 404
    admin = await signed_in(mail_crm, "admin", ["admin"])
    listed = await admin.get("/mail/mailboxes")
    assert listed.status_code == 200 and 'href="/mail/mailboxes"' in listed.text
    assert 'data-mailbox="sales"' in listed.text
    with mail_crm.system() as work:
        assert mail(work).accounts.get(account.id).name == "sales"


async def test_an_admin_adds_and_edits_a_mailbox_and_the_password_is_never_shown(mail_crm):
    admin = await signed_in(mail_crm, "admin", ["admin"])
    form = {
        "name": "support", "address": "Support@Example.test", "display_name": "Поддержка",
        "active": "1", "imap_host": "imap.example.test", "imap_port": "993",
        "imap_security": "tls", "imap_username": "support", "imap_password": "s3cret-imap",
        "imap_folder": "INBOX", "smtp_host": "smtp.example.test", "smtp_port": "587",
        "smtp_security": "starttls", "smtp_username": "support", "smtp_password": "s3cret-smtp",
    }  # fmt: skip
    created = await admin.post("/mail/mailboxes/new", form)
    assert created.status_code == 303, created.text
    with mail_crm.system() as work:
        account = mail(work).accounts.by_name("support")
        assert account.address == "support@example.test"
        sealed = account.imap_password_sealed
        assert "s3cret" not in sealed and mail_crm.sealing.open(sealed) == "s3cret-imap"
    page = await admin.get(created.headers["location"])
    assert page.status_code == 200 and "imap.example.test" in page.text
    assert "s3cret" not in page.text and sealed not in page.text
    # saving with empty password fields keeps the stored passwords
    changed = await admin.post(
        f"/mail/mailboxes/{account.id}",
        {**form, "imap_password": "", "smtp_password": "", "imap_host": "mail.example.test",
         "sent_folder": " Sent "},
    )  # fmt: skip
    assert changed.status_code == 303, changed.text
    with mail_crm.system() as work:
        account = mail(work).accounts.get(account.id)
        assert account.imap_host == "mail.example.test" and account.sent_folder == "Sent"
        assert mail_crm.sealing.open(account.imap_password_sealed) == "s3cret-imap"
        assert mail_crm.sealing.open(account.smtp_password_sealed) == "s3cret-smtp"
    # a refused form shows the error but never the password typed into it
    bad = await admin.post(
        f"/mail/mailboxes/{account.id}", {**form, "imap_port": "99x", "imap_password": "new-pw"}
    )
    assert bad.status_code == 422
    assert "imap_port: Not a valid integer." in bad.text and "new-pw" not in bad.text
    same = await admin.post(f"/mail/mailboxes/{account.id}", {**form, "sent_folder": "INBOX"})
    assert same.status_code == 422
    assert "sent_folder: &#39;INBOX&#39; is the folder mail is read from" in same.text


async def test_the_generic_list_and_record_page_never_show_sealed_passwords(mail_crm):
    with mail_crm.system() as work:
        account = mail(work).accounts.create(
            name="sales", address="sales@example.test", imap_password="s3cret-imap",
            smtp_password="s3cret-smtp",
        )  # fmt: skip
        sealed = [account.imap_password_sealed, account.smtp_password_sealed]
    agent = await signed_in(mail_crm, "agent", ["agent"])  # may read every mailbox
    for url in (
        "/lists/mail_account?cols=name,imap_password_sealed,smtp_password_sealed",
        "/lists/mail_account",
        f"/records/mail_account/{account.id}",
    ):
        page = await agent.get(url)
        assert page.status_code == 200 and ">sales<" in page.text, url
        assert not any(secret in page.text for secret in sealed), url
        assert 'value="imap_password_sealed" data-column' not in page.text, url
    refused = await agent.get("/lists/mail_account?f.imap_password_sealed__startswith=g")
    assert refused.status_code == 422


async def test_bad_mailbox_input_names_the_field_and_writes_nothing(mail_crm):
    admin = await signed_in(mail_crm, "admin", ["admin"])
    missing = await admin.post("/mail/mailboxes/new", {"name": "x", "imap_port": "993"})
    assert missing.status_code == 422
    assert "address: Missing data for required field." in missing.text
    wrong_port = await admin.post(
        "/mail/mailboxes/new", {"name": "x", "address": "x@example.test", "smtp_port": "70000"}
    )
    assert wrong_port.status_code == 422 and "smtp_port:" in wrong_port.text
    assert 'value="x@example.test"' in wrong_port.text  # what was typed is kept
    russian = await signed_in(mail_crm, "admin-ru", ["admin"], locale="ru")
    page = await russian.post(
        "/mail/mailboxes/new", {"name": "x", "address": "x@example.test", "imap_port": "-1"}
    )
    assert page.status_code == 422 and "Порт IMAP" in page.text
    listed = await russian.get("/mail/mailboxes")
    assert "Почтовые ящики" in listed.text and "Добавить ящик" in listed.text
    assert "Рассылки" in listed.text  # the menu
    with mail_crm.system() as work:
        assert work.session.scalars(select(MailAccount)).all() == []


async def test_check_connection_says_what_works_and_why_not(
    mail_crm, dovecot, imap_user, smtp, certificate, tmp_path
):
    # A refused login makes Dovecot delay later logins from this address for a while
    # (its auth penalty): the wrong password goes to a private server, not the shared one.
    private = contextlib.ExitStack()
    lonely = private.enter_context(
        dovecot_server(tmp_path / "dovecot", {"lonely@example.test": "pw"}, certificate)
    )
    with mail_crm.system() as work:
        good = mail(work).accounts.create(
            name="good", address=imap_user,
            imap_host=dovecot.host, imap_port=dovecot.tls_port, imap_security="tls",
            imap_username=imap_user, imap_password=dovecot.users[imap_user],
            smtp_host=smtp.host, smtp_port=smtp.port, smtp_security="starttls",
            smtp_username="crm@example.test", smtp_password=smtp.users["crm@example.test"],
        ).id  # fmt: skip
        wrong = mail(work).accounts.create(
            name="wrong", address=imap_user,
            imap_host="127.0.0.1", imap_port=free_port(), imap_security="tls",
            smtp_host=smtp.host, smtp_port=smtp.port, smtp_security="tls",  # STARTTLS port
            smtp_username="crm@example.test", smtp_password="not-the-password",
        ).id  # fmt: skip
        login = mail(work).accounts.create(
            name="login", address="lonely@example.test",
            imap_host=lonely.host, imap_port=lonely.tls_port, imap_security="tls",
            imap_username="lonely@example.test", imap_password="wrong-password",
        ).id  # fmt: skip
    admin = await signed_in(mail_crm, "admin", ["admin"])
    works = await admin.post(f"/mail/mailboxes/{good}/check")
    assert works.status_code == 200, works.text
    assert works.text.count('data-ok="yes"') == 2 and "UIDVALIDITY" in works.text
    with mail_crm.system() as work:
        mail(work).accounts.update(good, sent_folder="Отправленные")
    missing = await admin.post(f"/mail/mailboxes/{good}/check")
    assert "Отправленные is created with the first sent mail" in missing.text
    with ImapMailbox(dovecot.settings(imap_user)) as box:  # as a mail program names it
        box.conn.create("&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-")
    found = await admin.post(f"/mail/mailboxes/{good}/check")
    assert "copies of sent mail go to Отправленные" in found.text
    broken = await admin.post(f"/mail/mailboxes/{wrong}/check")
    assert broken.status_code == 422
    assert "connection refused: nothing listens on this port" in broken.text
    assert (
        "TLS failed" in broken.text and "is the security (tls, starttls, none) right" in broken.text
    )
    with private:
        refused = await admin.post(f"/mail/mailboxes/{login}/check")
    assert refused.status_code == 422 and "IMAP LOGIN as " in refused.text


async def test_switching_off_and_removing_mailboxes(mail_crm, smtp):
    used = smtp_mailbox(mail_crm, smtp, "used")
    spare = smtp_mailbox(mail_crm, smtp, "spare")
    with mail_crm.system() as work:
        group = work.groups.create(name="Все").id
        mail(work).campaigns.create("r", subject="s", body="b", group_id=group, account="used")
    admin = await signed_in(mail_crm, "admin", ["admin"])
    off = await admin.post(f"/mail/mailboxes/{used}/active", {"active": "0"})
    assert off.status_code == 303
    kept = await admin.post(f"/mail/mailboxes/{used}/delete")
    assert kept.status_code == 303
    flash = await admin.get("/mail/mailboxes")
    assert "switch it off instead" in flash.text and "Switch on" in flash.text
    assert (await admin.post(f"/mail/mailboxes/{spare}/delete")).status_code == 303
    with mail_crm.system() as work:
        names = {a.name: a.active for a in mail(work).accounts.list()}
    assert names == {"used": False}


# -- mailings -----------------------------------------------------------------------------


def mixed_clients(crm):
    """A group of a Russian-, an English- and a German-speaking client, one without an email."""
    with crm.system() as work:
        templates = work.message_templates
        ru = templates.create(
            name="Зимние шины", language="ru",
            subject="{{ party.name }}: шины со скидкой", body="Здравствуйте, {{ party.name }}!",
        )  # fmt: skip
        templates.create(
            name="Зимние шины", language="en",
            subject="{{ party.name }}: winter tyres on sale", body="Hello, {{ party.name }}!",
        )  # fmt: skip
        group = work.groups.create(name="Клиенты")
        people = [
            ("Иван", "ru", "ivan@example.ru"),
            ("John", "en", "john@example.com"),
            ("Hans", "de", "hans@example.de"),
            ("Nobody", "en", None),
        ]
        ids = {}
        for name, language, email in people:
            points = [{"kind": "email", "value": email}] if email else []
            ids[name] = work.parties.create(
                {"name": name, "kind": "person", "language": language, "contact_points": points}
            ).id
        work.groups.add_members(group.id, list(ids.values()))
        return ru.id, group.id, ids


async def test_a_mixed_language_mailing_writes_to_each_client_in_their_language(mail_crm, smtp):
    smtp_mailbox(mail_crm, smtp)
    template, group, _ids = mixed_clients(mail_crm)
    with mail_crm.system() as work:
        campaign = mail(work).campaigns.create(
            "Шины", template_id=template, group_id=group, rate_per_minute=0
        )
        assert set(campaign.versions) == {"ru", "en"}
        assert mail(work).campaigns.start(campaign.id) == 3
    deliver_due(mail_crm)
    sent = {r.recipients[0]: parse_message(r.raw) for r in smtp.received}
    assert sent["john@example.com"].subject == "John: winter tyres on sale"
    assert sent["john@example.com"].text.startswith("Hello, John!")
    assert sent["ivan@example.ru"].subject == "Иван: шины со скидкой"
    assert sent["ivan@example.ru"].text.startswith("Здравствуйте, Иван!")
    # no German version: the deployment's language (ru)
    assert sent["hans@example.de"].subject == "Hans: шины со скидкой"
    assert "Unsubscribe" in sent["john@example.com"].text  # the link is always added


async def test_the_mailing_screens_from_draft_to_report(mail_crm, smtp):
    smtp_mailbox(mail_crm, smtp)
    template, group, ids = mixed_clients(mail_crm)
    manager = await signed_in(mail_crm, "manager", ["manager"])
    menu = await manager.get("/mail/mailings")
    assert menu.status_code == 200 and 'href="/mail/mailings"' in menu.text
    form = await manager.get("/mail/mailings/new")
    assert form.status_code == 200 and "Зимние шины" in form.text and "Клиенты" in form.text
    assert form.text.count(">Зимние шины</option>") == 1  # one entry for both versions
    created = await manager.post(
        "/mail/mailings/new",
        {"name": "Шины", "template": str(template), "audience": "group",
         "group_id": str(group), "rate_per_minute": "0"},
    )  # fmt: skip
    assert created.status_code == 303, created.text
    path = created.headers["location"]
    draft = await manager.get(path)
    assert draft.status_code == 200 and 'id="mailing-start"' in draft.text
    english = await manager.get(path, params={"party": ids["John"]})
    assert "John: winter tyres on sale" in english.text and "Hello, John!" in english.text
    russian = await manager.get(path, params={"party": ids["Иван"]})
    assert "Иван: шины со скидкой" in russian.text
    smtp.refuse["hans@"] = "550 5.1.1 no such user"
    started = await manager.post(f"{path}/start")
    assert started.status_code == 303
    assert "Mailing started: 3 to send." in (await manager.get(path)).text
    deliver_due(mail_crm)
    report = await manager.get(path)
    assert 'data-count="sent">sent: 2<' in report.text
    assert 'data-count="failed">failed: 1<' in report.text
    assert 'data-count="skipped">skipped: 1<' in report.text
    failed = await manager.get(path, params={"status": "failed"})
    assert "hans@example.de" in failed.text and "550" in failed.text
    assert "john@example.com" not in failed.text
    listed = await manager.get("/mail/mailings")
    assert '<td data-count="sent">2</td>' in listed.text
    assert '<td data-count="failed">1</td>' in listed.text
    again = await manager.post(f"{path}/start")
    assert again.status_code == 303
    assert "the mailing is done already" in (await manager.get(path)).text


async def test_mails_maybe_sent_are_shown_and_sent_again_on_an_admins_word(mail_crm, smtp):
    from crmkit_mail.campaigns import send_campaign
    from crmkit_mail.model import MailCampaignRecipient
    from sqlalchemy import update

    smtp_mailbox(mail_crm, smtp)
    template, group, ids = mixed_clients(mail_crm)
    with mail_crm.system() as work:
        campaign = mail(work).campaigns.create(
            "Шины", template_id=template, group_id=group, rate_per_minute=0
        )
        mail(work).campaigns.start(campaign.id)
        # a worker was killed while John's mail was at the server
        work.session.execute(
            update(MailCampaignRecipient)
            .where(MailCampaignRecipient.party_id == ids["John"])
            .values(status="sending")
        )
    send_campaign(mail_crm, campaign.id)  # the job's retry
    assert sorted(r.recipients[0] for r in smtp.received) == ["hans@example.de", "ivan@example.ru"]
    manager = await signed_in(mail_crm, "manager", ["manager"])
    path = f"/mail/mailings/{campaign.id}"
    report = await manager.get(path)
    assert 'data-count="unknown">unknown, maybe sent: 1<' in report.text
    assert 'id="mailing-retry-unknown"' in report.text
    retried = await manager.post(f"{path}/retry-unknown")
    assert retried.status_code == 303
    assert "Sending again: 1." in (await manager.get(path)).text
    deliver_due(mail_crm)
    assert [r.recipients[0] for r in smtp.received][2:] == ["john@example.com"]
    report = await manager.get(path)
    assert 'data-count="sent">sent: 3<' in report.text
    assert "mailing-retry-unknown" not in report.text


async def test_a_mailing_does_not_start_without_the_crms_public_address(
    make_crm, certificate, smtp
):
    # web.base_url left empty, as in a new deployment: an unsubscribe link would lead nowhere
    crm = make_crm(plugins=[mail_plugin], settings={"mail.ca_file": str(certificate[0])})
    smtp_mailbox(crm, smtp)
    template, group, _ids = mixed_clients(crm)
    manager = await signed_in(crm, "manager", ["manager"])
    created = await manager.post(
        "/mail/mailings/new",
        {"name": "Шины", "template": str(template), "audience": "group",
         "group_id": str(group), "rate_per_minute": "0"},
    )  # fmt: skip
    assert created.status_code == 303  # a draft can be written and previewed
    path = created.headers["location"]
    missing = "web.base_url: set web.base_url to the CRM&#39;s public address"
    draft = await manager.get(path)
    assert f'id="preview-error">{missing}' in draft.text
    assert (await manager.post(f"{path}/start")).status_code == 303
    refused = await manager.get(path)
    assert f'role="status">{missing}' in refused.text and "Mailing started" not in refused.text
    campaign_id = int(path.rsplit("/", 1)[1])
    with crm.system() as work:
        campaigns = mail(work).campaigns
        assert (
            campaigns.get(campaign_id).status == "draft" and campaigns.recipients(campaign_id) == []
        )
        with pytest.raises(ValidationFailed, match="web.base_url: set web.base_url"):
            campaigns.start(campaign_id)
    deliver_due(crm)
    assert smtp.received == []


async def test_a_mailing_to_a_saved_filter(mail_crm, smtp):
    smtp_mailbox(mail_crm, smtp)
    template, _group, _ids = mixed_clients(mail_crm)
    manager = await signed_in(mail_crm, "manager", ["manager"])
    with mail_crm.acting_as("manager") as work:
        view = work.saved_views.save("party", "English speakers", {"q": "o", "f.kind": "person"})
        view_id = view.id
    created = await manager.post(
        "/mail/mailings/new",
        {"name": "Tyres", "template": str(template), "audience": "view",
         "view_id": str(view_id), "rate_per_minute": "0"},
    )  # fmt: skip
    assert created.status_code == 303, created.text
    started = await manager.post(created.headers["location"] + "/start")
    assert started.status_code == 303
    deliver_due(mail_crm)
    # "o" finds John and Nobody (no email: skipped); Иван and Hans are not in the view
    assert [r.recipients[0] for r in smtp.received] == ["john@example.com"]


async def test_bad_mailing_input_is_named_and_nothing_is_saved(mail_crm, smtp):
    smtp_mailbox(mail_crm, smtp)
    template, group, _ids = mixed_clients(mail_crm)
    manager = await signed_in(mail_crm, "manager", ["manager"])
    no_name = await manager.post(
        "/mail/mailings/new", {"name": " ", "template": str(template), "group_id": str(group)}
    )
    assert no_name.status_code == 422 and "name: the mailing needs a name" in no_name.text
    no_template = await manager.post("/mail/mailings/new", {"name": "x", "group_id": str(group)})
    assert no_template.status_code == 422 and "template: choose a template" in no_template.text
    no_view = await manager.post(
        "/mail/mailings/new", {"name": "x", "template": str(template), "audience": "view"}
    )
    assert no_view.status_code == 422 and "choose a saved view of clients" in no_view.text
    bad_rate = await manager.post(
        "/mail/mailings/new",
        {"name": "x", "template": str(template), "group_id": str(group), "rate_per_minute": "-5"},
    )
    assert bad_rate.status_code == 422 and "rate_per_minute:" in bad_rate.text
    assert 'value="x"' in bad_rate.text  # the form keeps what was typed
    agent = await signed_in(mail_crm, "agent", ["agent"])
    assert (await agent.get("/mail/mailings/new")).status_code == 404
    assert (await agent.post("/mail/mailings/new", {"name": "x"})).status_code == 404
    with mail_crm.system() as work:
        assert work.session.scalars(select(MailCampaign)).all() == []


async def test_writing_from_the_card_uses_the_clients_language(mail_crm, smtp):
    smtp_mailbox(mail_crm, smtp)
    template, _group, ids = mixed_clients(mail_crm)
    agent = add_user(mail_crm, "agent", ["agent"], locale="en")
    with mail_crm.system() as work:
        for party_id in ids.values():
            work.parties.update(party_id, {"owner_id": agent.id})
    web = WebClient.for_crm(mail_crm)
    assert (await web.login("agent")).status_code == 303
    card = await web.get(f"/clients/{ids['John']}")
    assert card.text.count(">Зимние шины</option>") == 1  # one entry for both versions
    page = await web.get(f"/mail/compose/{ids['John']}", params={"template": str(template)})
    assert page.status_code == 200, page.text
    assert 'value="John: winter tyres on sale"' in page.text and "Hello, John!" in page.text
    assert "Version used: English" in page.text
    russian = await web.get(f"/mail/compose/{ids['Иван']}", params={"template": str(template)})
    assert 'value="Иван: шины со скидкой"' in russian.text
    assert f'<option value="{template}" selected>' in russian.text


async def test_a_new_mailbox_proposes_a_month_of_mail_and_takes_any_window(mail_crm):
    admin = await signed_in(mail_crm, "admin", ["admin"])
    blank = await admin.get("/mail/mailboxes/new")
    assert 'name="import_days" type="number" value="30"' in blank.text
    form = {"name": "sales", "address": "sales@example.test", "import_days": "14"}
    assert (await admin.post("/mail/mailboxes/new", form)).status_code == 303
    with mail_crm.system() as work:
        account = mail(work).accounts.by_name("sales")
        assert account.import_days == 14
    refused = await admin.post(f"/mail/mailboxes/{account.id}", {**form, "import_days": "0"})
    assert refused.status_code == 422 and "import_days:" in refused.text
    emptied = await admin.post(f"/mail/mailboxes/{account.id}", {**form, "import_days": ""})
    assert emptied.status_code == 303
    with mail_crm.system() as work:
        assert mail(work).accounts.get(account.id).import_days is None  # all the mail
    russian = await signed_in(mail_crm, "admin-ru", ["admin"], locale="ru")
    page = await russian.get(f"/mail/mailboxes/{account.id}")
    assert "Загружать почту за последние N дней" in page.text


async def test_the_ignored_senders_are_checked_line_by_line(mail_crm):
    admin = await signed_in(mail_crm, "admin", ["admin"])
    form = {"name": "sales", "address": "sales@example.test"}
    bad = await admin.post(
        "/mail/mailboxes/new", {**form, "ignore_senders": "github.com\nIvan Petrov <i@x.ru>"}
    )
    assert bad.status_code == 422
    assert "ignore_senders: line 2: &#39;Ivan Petrov &lt;i@x.ru&gt;&#39; is not an address" in (
        bad.text
    )
    assert "Ivan Petrov &lt;i@x.ru&gt;</textarea>" in bad.text  # what was typed is kept
    everyone = await admin.post("/mail/mailboxes/new", {**form, "ignore_senders": "*@*"})
    assert everyone.status_code == 422 and "would leave out every sender" in everyone.text
    with mail_crm.system() as work:
        assert work.session.scalars(select(MailAccount)).all() == []
    good = await admin.post(
        "/mail/mailboxes/new", {**form, "ignore_senders": " @Ozon.ru \r\nnoreply@bank.ru\r\n"}
    )
    assert good.status_code == 303
    page = await admin.get(good.headers["location"])
    assert ">ozon.ru\nnoreply@bank.ru</textarea>" in page.text


async def test_a_user_keeps_a_signature_and_sees_it_when_writing(mail_crm, smtp):
    smtp_mailbox(mail_crm, smtp)
    agent = await signed_in(mail_crm, "agent", ["agent"], locale="ru")
    with mail_crm.system() as work:
        client = work.parties.create(
            name="ООО «Ромашка»", owner_id=work.users.get("agent").id,
            contact_points=[{"kind": "email", "value": "a@romashka.ru"}],
        )  # fmt: skip
    compose = await agent.get(f"/mail/compose/{client.id}")
    assert 'href="/mail/signature"' in compose.text and "Моя подпись" in compose.text  # menu
    assert "Добавить подпись" in compose.text
    saved = await agent.post("/mail/signature", {"signature": "Иван Петров\nменеджер"})
    assert saved.status_code == 303
    page = await agent.get("/mail/signature")
    assert ">Иван Петров\nменеджер</textarea>" in page.text
    compose = await agent.get(f"/mail/compose/{client.id}")
    assert "Под текстом будет ваша подпись:" in compose.text and "Иван Петров" in compose.text
    too_long = await agent.post("/mail/signature", {"signature": "х" * 2001})
    assert too_long.status_code == 422 and "signature" in too_long.text
    with mail_crm.system() as work:
        user = work.users.get("agent")
        assert mail(work).signatures.get(user.id) == "Иван Петров\nменеджер"


async def test_a_mail_written_on_the_compose_page_carries_files(mail_crm, smtp):
    from crmkit.model import Attachment, OutboxItem

    smtp_mailbox(mail_crm, smtp)
    agent = await signed_in(mail_crm, "agent", ["agent"])
    with mail_crm.system() as work:
        owner = work.users.get("agent").id
        client = work.parties.create(
            name="ООО «Ромашка»", owner_id=owner,
            contact_points=[{"kind": "email", "value": "boss@romashka.ru"}],
        )  # fmt: skip
        other = work.parties.create(name="Чужой клиент", owner_id=owner)
        price = work.attachments.add("Прайс 2025.pdf", b"%PDF price", party_id=client.id)
        foreign = work.attachments.add("Чужой.pdf", b"%PDF other", party_id=other.id)
        client_id, price_id, foreign_id = client.id, price.id, foreign.id
    page = await agent.get(f"/mail/compose/{client_id}")
    assert 'enctype="multipart/form-data"' in page.text and "Прайс 2025.pdf" in page.text

    def form(**extra):
        fields = {"to": "boss@romashka.ru", "subject": "Счёт", "body": "Счёт и прайс во вложении",
                  "csrf_token": agent.csrf, **extra}  # fmt: skip
        upload = [("files", ("Счёт №17.pdf", b"%PDF invoice", "application/pdf"))]
        return agent.client.post(f"/mail/compose/{client_id}/send", data=fields, files=upload)

    refused = await form(attach=str(foreign_id))
    assert refused.status_code == 422 and "choose among the client" in refused.text
    with mail_crm.system() as work:  # the upload was not kept, nothing queued
        assert work.session.scalars(select(OutboxItem)).all() == []
        assert {a.filename for a in work.session.scalars(select(Attachment))} == {
            "Прайс 2025.pdf", "Чужой.pdf"
        }  # fmt: skip

    sent = await form(attach=str(price_id))
    assert sent.status_code == 303
    (item,) = deliver_items(mail_crm)
    assert item == {"delivered": 1}
    (received,) = smtp.received
    files = {a.filename: a.data for a in parse_message(received.raw).attachments}
    assert files == {"Прайс 2025.pdf": b"%PDF price", "Счёт №17.pdf": b"%PDF invoice"}
    with mail_crm.system() as work:  # the uploaded file is kept on the client's card
        kept = work.attachments.for_party(client_id)
        assert {a.filename for a in kept} == {"Прайс 2025.pdf", "Счёт №17.pdf"}


def deliver_items(crm):
    from crmkit.model import OutboxItem

    with crm.system() as work:
        ids = list(work.session.scalars(select(OutboxItem.id)))
    return [deliver_due(crm, ids)]


async def test_the_compose_page_offers_uploads_only_where_they_are_kept(mail_crm, smtp):
    """Files from the computer go on the client, which takes editing it: one who reads
    every client but edits only their own writes to a colleague's client without them."""
    smtp_mailbox(mail_crm, smtp)
    with mail_crm.system() as work:
        work.permissions.set("agent", "party", "read", "all")
    owner = await signed_in(mail_crm, "owner", ["agent"])
    colleague = await signed_in(mail_crm, "colleague", ["agent"])
    with mail_crm.system() as work:
        client = work.parties.create(
            name="ООО «Ромашка»", owner_id=work.users.get("owner").id,
            contact_points=[{"kind": "email", "value": "boss@romashka.ru"}],
        )  # fmt: skip
        client_id = client.id
    mine = await owner.get(f"/mail/compose/{client_id}")
    theirs = await colleague.get(f"/mail/compose/{client_id}")
    assert mine.status_code == theirs.status_code == 200
    assert 'type="file"' in mine.text
    assert 'type="file"' not in theirs.text


async def test_the_compose_page_sends_copies_and_keeps_a_refused_list(mail_crm, smtp):
    from crmkit.model import OutboxItem

    smtp_mailbox(mail_crm, smtp)
    agent = await signed_in(mail_crm, "agent", ["agent"])
    with mail_crm.system() as work:
        client = work.parties.create(
            name="ООО «Ромашка»", owner_id=work.users.get("agent").id,
            contact_points=[{"kind": "email", "value": "boss@romashka.ru"}],
        )  # fmt: skip
        client_id = client.id
    assert 'name="cc"' in (await agent.get(f"/mail/compose/{client_id}")).text
    fields = {"to": "boss@romashka.ru", "subject": "Счёт", "body": "Счёт во вложении"}

    refused = await agent.post(
        f"/mail/compose/{client_id}/send", {**fields, "cc": "acc@romashka.ru, бухгалтер"}
    )
    assert refused.status_code == 422
    assert "&#39;бухгалтер&#39; is not a valid email address" in refused.text
    assert 'value="acc@romashka.ru, бухгалтер"' in refused.text
    with mail_crm.system() as work:
        assert work.session.scalars(select(OutboxItem)).all() == []

    smtp.refuse["director@"] = "550 5.1.1 no such user"
    sent = await agent.post(
        f"/mail/compose/{client_id}/send",
        {**fields, "cc": "Бухгалтерия <acc@romashka.ru>, director@romashka.ru"},
    )
    assert sent.status_code == 303
    deliver_items(mail_crm)
    (received,) = smtp.received
    assert received.recipients == ["boss@romashka.ru", "acc@romashka.ru"]
    assert received.message["Cc"] == "acc@romashka.ru, director@romashka.ru"
    # the card's timeline says whom it went to, that it went, and who did not get it
    card = (await agent.get(f"/clients/{client_id}")).text
    assert "Sent to: boss@romashka.ru · Copies: acc@romashka.ru, director@romashka.ru" in card
    assert '<span class="state sent">sent</span>' in card
    assert "Not delivered to: director@romashka.ru (550 5.1.1 no such user)" in card

    smtp.refuse["boss@"] = "550 5.1.1 mailbox disabled"  # the client's address itself
    await agent.post(f"/mail/compose/{client_id}/send", {**fields, "subject": "Второе"})
    deliver_items(mail_crm)
    card = (await agent.get(f"/clients/{client_id}")).text
    assert '<span class="state failed">failed</span>' in card
    assert "550 5.1.1 mailbox disabled" in card


async def test_a_nul_character_on_the_compose_page_is_refused_naming_the_field(mail_crm, smtp):
    """The compose form reads its own fields: a NUL in the text or in an uploaded file's
    name reached PostgreSQL (a 500) and was kept by SQLite; now the page says which field,
    keeps what was typed, and nothing is stored or queued."""
    from crmkit.model import Attachment, OutboxItem

    smtp_mailbox(mail_crm, smtp)
    agent = await signed_in(mail_crm, "agent", ["agent"])
    with mail_crm.system() as work:
        client = work.parties.create(
            name="ООО «Ромашка»", owner_id=work.users.get("agent").id,
            contact_points=[{"kind": "email", "value": "boss@romashka.ru"}],
        )  # fmt: skip
        client_id = client.id
    fields = {"to": "boss@romashka.ru", "subject": "Счёт", "body": "Счёт во вложении",
              "csrf_token": agent.csrf}  # fmt: skip

    def send(**extra):
        upload = [("files", ("Счёт.pdf", b"%PDF invoice", "application/pdf"))]
        return agent.client.post(
            f"/mail/compose/{client_id}/send", data={**fields, **extra}, files=upload
        )

    body = await send(body="Счёт во вложении\x00")
    assert body.status_code == 422
    assert "body: contains a NUL character" in body.text
    assert "Счёт во вложении" in body.text  # what was typed is not lost
    content, headers = multipart(fields, [("files", "Сч\x00ёт.pdf", b"%PDF invoice")])
    named = await agent.client.post(
        f"/mail/compose/{client_id}/send", content=content, headers=headers
    )
    assert named.status_code == 422
    assert "files: the file name contains a NUL character" in named.text
    with mail_crm.system() as work:
        assert work.session.scalars(select(OutboxItem)).all() == []
        assert work.session.scalars(select(Attachment)).all() == []


# -- ids typed or sent into the mail forms --------------------------------------------------

ODD_IDS = ("abc", "1.5", "²", "-1", "9" * 25)
NOT_AN_ID = "not an id (1 to 2^63-1)"


@pytest.mark.parametrize("odd", ODD_IDS)
async def test_odd_ids_on_the_compose_page_are_named_and_send_nothing(mail_crm, smtp, odd):
    from crmkit.model import Attachment, OutboxItem

    smtp_mailbox(mail_crm, smtp)
    agent = await signed_in(mail_crm, "agent", ["agent"])
    with mail_crm.system() as work:
        client = work.parties.create(
            name="ООО «Ромашка»", owner_id=work.users.get("agent").id,
            contact_points=[{"kind": "email", "value": "boss@romashka.ru"}],
        )  # fmt: skip
        price = work.attachments.add("Прайс.pdf", b"%PDF price", party_id=client.id)
        client_id, price_id = client.id, price.id
    page = await agent.get(f"/mail/compose/{client_id}", params={"template": odd})
    assert page.status_code == 422 and f"template: {NOT_AN_ID}" in html.unescape(page.text)
    fields = {"to": "boss@romashka.ru", "subject": "Счёт", "body": "Счёт во вложении",
              "csrf_token": agent.csrf}  # fmt: skip
    upload = [("files", ("Счёт.pdf", b"%PDF invoice", "application/pdf"))]
    refused = await agent.client.post(
        f"/mail/compose/{client_id}/send",
        data={**fields, "attach": [str(price_id), odd]},
        files=upload,
    )
    assert refused.status_code == 422 and f"attach: {NOT_AN_ID}" in html.unescape(refused.text)
    with mail_crm.system() as work:  # nothing queued, the upload not kept
        assert work.session.scalars(select(OutboxItem)).all() == []
        assert [a.filename for a in work.session.scalars(select(Attachment))] == ["Прайс.pdf"]


@pytest.mark.parametrize("odd", ODD_IDS)
async def test_an_odd_mailbox_owner_is_named_and_nothing_saved(mail_crm, odd):
    admin = await signed_in(mail_crm, "admin", ["admin"])
    form = {"name": "sales", "address": "sales@example.test", "owner_id": odd}
    refused = await admin.post("/mail/mailboxes/new", form)
    assert refused.status_code == 422
    assert f"owner_id: {NOT_AN_ID}" in html.unescape(refused.text)
    assert 'value="sales@example.test"' in refused.text  # what was typed is kept
    with mail_crm.system() as work:
        assert work.session.scalars(select(MailAccount)).all() == []
        account_id = mail(work).accounts.create(name="sales", address="sales@example.test").id
    edited = await admin.post(f"/mail/mailboxes/{account_id}", {**form, "active": "1"})
    assert edited.status_code == 422
    assert f"owner_id: {NOT_AN_ID}" in html.unescape(edited.text)
    with mail_crm.system() as work:
        assert mail(work).accounts.get(account_id).owner_id is None


@pytest.mark.parametrize("odd", ODD_IDS)
async def test_odd_ids_on_the_mailing_forms_are_named_and_nothing_saved(mail_crm, smtp, odd):
    smtp_mailbox(mail_crm, smtp)
    template, group, _ids = mixed_clients(mail_crm)
    manager = await signed_in(mail_crm, "manager", ["manager"])
    form = {"name": "Шины", "template": str(template), "audience": "group",
            "group_id": str(group), "rate_per_minute": "0"}  # fmt: skip
    for field, changed in (
        ("template", {"template": odd}),
        ("group_id", {"group_id": odd}),
        ("view_id", {"audience": "view", "view_id": odd}),
    ):
        refused = await manager.post("/mail/mailings/new", {**form, **changed})
        assert refused.status_code == 422, field
        assert f"{field}: {NOT_AN_ID}" in html.unescape(refused.text), field
    with mail_crm.system() as work:
        assert work.session.scalars(select(MailCampaign)).all() == []
    created = await manager.post("/mail/mailings/new", form)
    assert created.status_code == 303
    draft = await manager.get(created.headers["location"], params={"party": odd})
    assert draft.status_code == 200 and f"party: {NOT_AN_ID}" in html.unescape(draft.text)


async def test_a_path_id_past_an_id_column_is_a_404_on_every_mail_page(mail_crm):
    from crmkit.testing.web import id_paths, int_paths

    admin = await signed_in(mail_crm, "admin", ["admin"])
    assert not int_paths(admin.app)
    paths = [(method, path) for method, path in id_paths(admin.app) if path.startswith("/mail/")]
    assert ("GET", "/mail/compose/" + "9" * 25) in paths and len(paths) >= 8
    for method, path in paths:
        answer = await (admin.get(path) if method == "GET" else admin.post(path, {}))
        assert answer.status_code == 404, (method, path)


async def test_the_compose_page_refuses_a_text_or_subject_longer_than_the_apis(mail_crm, smtp):
    """The compose page reached the sending service without the API's schema: a subject
    over its 500 characters was a database error on PostgreSQL and kept by SQLite, a text
    of any length was queued.  Both are refused naming the field, nothing queued."""
    from crmkit.model import Activity, OutboxItem

    smtp_mailbox(mail_crm, smtp)
    agent = await signed_in(mail_crm, "agent", ["agent"])
    with mail_crm.system() as work:
        client = work.parties.create(
            name="ООО «Ромашка»", owner_id=work.users.get("agent").id,
            contact_points=[{"kind": "email", "value": "boss@romashka.ru"}],
        )  # fmt: skip
        client_id = client.id
    fields = {"to": "boss@romashka.ru", "subject": "Счёт", "body": "Счёт во вложении"}

    long_text = await agent.post(
        f"/mail/compose/{client_id}/send", {**fields, "body": "x" * 200001}
    )
    assert long_text.status_code == 422
    assert "body: longer than 200000 characters" in long_text.text
    long_subject = await agent.post(
        f"/mail/compose/{client_id}/send", {**fields, "subject": "я" * 501}
    )
    assert long_subject.status_code == 422
    assert "subject: longer than 500 characters" in long_subject.text
    with mail_crm.system() as work:
        assert work.session.scalars(select(OutboxItem)).all() == []
        assert work.session.scalars(select(Activity)).all() == []

    sent = await agent.post(
        f"/mail/compose/{client_id}/send", {**fields, "subject": "я" * 500, "body": "x" * 200000}
    )
    assert sent.status_code == 303
    with mail_crm.system() as work:
        [queued] = work.session.scalars(select(Activity)).all()
        assert (len(queued.subject), len(queued.body)) == (500, 200000)


async def test_a_russian_manager_reads_the_mailing_forms_refusals_in_russian(mail_crm, smtp):
    """The new mailing's refusals were plain English to a Russian manager ("группа: choose
    a group"): they are catalog texts now, named by the field."""
    smtp_mailbox(mail_crm, smtp)
    template, _group, _ids = mixed_clients(mail_crm)
    manager = await signed_in(mail_crm, "menedzher", ["manager"], locale="ru")
    russian = {
        "the mailing needs a name": "у рассылки должно быть название",
        "choose a group": "выберите группу",
        "choose a saved view of clients": "выберите сохранённый фильтр клиентов",
        "a whole number of mails per minute (0: no limit)": "целое число писем в минуту",
    }
    # the catalog tools find them (they were plain strings, never offered for translation)
    assert set(russian) <= package_messages(Path(crmkit_mail.__file__).parent)
    manager.app.state.catalogs["ru"]._catalog.update(russian)
    refused = await manager.post(
        "/mail/mailings/new", {"name": " ", "template": str(template), "rate_per_minute": "много"}
    )
    text = html.unescape(refused.text)
    assert refused.status_code == 422
    for english, translated in russian.items():
        if english != "choose a saved view of clients":
            assert translated in text and english not in text
    no_view = await manager.post(
        "/mail/mailings/new", {"name": "x", "template": str(template), "audience": "view"}
    )
    assert "выберите сохранённый фильтр клиентов" in html.unescape(no_view.text)


# -- the contact center's "Not a client" --------------------------------------------------


def triage_mail(crm, sender, n, account="sales"):
    from crmkit import InboundMessage
    from crmkit.model import Conversation

    with crm.system() as work:
        activity = work.channels.ingest(
            InboundMessage(
                channel="mail", external_id=f"<n{n}@shop.test>", sender=sender,
                body="Скидки недели!", subject="Акция", account=account,
            )
        )  # fmt: skip
        return work.session.get(Conversation, activity.conversation_id).id


async def test_an_admin_blocks_a_triage_sender_or_their_domain_in_one_click(mail_crm):
    from crmkit_mail.accounts import sender_filter

    from crmkit.model import Conversation

    with mail_crm.system() as work:
        account = mail(work).accounts.create(
            name="sales", address="sales@example.test", ignore_senders="github.com"
        )
    robot = triage_mail(mail_crm, "Promo@Shop.test", 1)
    newsletter = triage_mail(mail_crm, "news@letters.shop.test", 2)
    admin = await signed_in(mail_crm, "admin", ["admin"])
    page = await admin.get(f"/inbox/{robot}")
    assert 'data-action="ignore-sender"' in page.text and "Block promo@shop.test" in page.text
    assert "Block all of shop.test" in page.text

    done = await admin.post(f"/inbox/{robot}/act", {"action": "ignore", "scope": "sender"})
    assert done.status_code == 303
    shown = await admin.get(done.headers["location"])
    assert "mail from promo@shop.test will no longer be recorded" in html.unescape(shown.text)
    await admin.post(f"/inbox/{newsletter}/act", {"action": "ignore", "scope": "domain"})
    with mail_crm.system() as work:
        rules = work.session.get(MailAccount, account.id).ignore_senders
        assert rules.splitlines() == ["github.com", "promo@shop.test", "letters.shop.test"]
        assert {work.session.get(Conversation, c).status for c in (robot, newsletter)} == {"closed"}
    ignored = sender_filter(rules)
    assert ignored("promo@shop.test") and ignored("any@letters.shop.test")
    assert not ignored("boss@shop.test")
    # a closed conversation offers it no more
    assert 'data-action="ignore-sender"' not in (await admin.get(f"/inbox/{robot}")).text


async def test_only_who_manages_the_mailbox_may_block_and_never_a_public_domain(mail_crm):
    from crmkit.errors import PermissionDenied
    from crmkit.model import Conversation

    with mail_crm.system() as work:
        account = mail(work).accounts.create(name="sales", address="sales@example.test")
    conversation = triage_mail(mail_crm, "someone@gmail.com", 1)
    agent = await signed_in(mail_crm, "agent", ["agent"], locale="ru")
    page = await agent.get(f"/inbox/{conversation}")
    assert page.status_code == 200 and "data-not-a-client" not in page.text
    refused = await agent.post(f"/inbox/{conversation}/act", {"action": "ignore"})
    assert refused.status_code == 303
    with mail_crm.acting_as("agent") as work, pytest.raises(PermissionDenied):
        work.conversations.ignore_sender(conversation)
    admin = await signed_in(mail_crm, "admin", ["admin"])
    page = await admin.get(f"/inbox/{conversation}")
    # gmail.com is everyone's: only the address is offered, the domain refused
    assert 'data-action="ignore-sender"' in page.text and "ignore-domain" not in page.text
    with mail_crm.acting_as("admin") as work, pytest.raises(ValidationFailed):
        work.conversations.ignore_sender(conversation, "domain")
    with mail_crm.system() as work:
        assert work.session.get(MailAccount, account.id).ignore_senders == ""
        assert work.session.get(Conversation, conversation).status == "open"
