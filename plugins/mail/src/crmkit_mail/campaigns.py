"""Mass mailings: one template rendered for each recipient of a group or a filter.

``mail(work).campaigns.create(...)`` stores the mailing; ``start`` fixes its recipients (a
row each, in one statement) and queues the ``mail.campaign`` job through the outbox, so the
mailing starts only if the transaction commits.  The job (:func:`send_campaign`) sends the
pending rows over one SMTP connection, rendering each in Jinja's sandbox with the
recipient's party, at most ``rate_per_minute`` (0: no limit), and marks each row ``sent``
(with its Message-ID) or ``failed`` chunk by chunk, so a stopped job resumes where it was.

Every mail carries an unsubscribe link (and ``List-Unsubscribe`` headers, RFC 8058); an
address that used it is left out of this and every later mailing (``unsubscribed``).
Bounces read from the mailbox mark their row ``bounced`` (see :mod:`crmkit_mail.sync`).
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from itsdangerous import BadSignature, Signer
from sqlalchemy import func, insert, select, update

from crmkit.channels import PermanentFailure
from crmkit.clock import utcnow
from crmkit.errors import NotFound, ValidationFailed
from crmkit.model import ContactPoint, GroupMembership, Party
from crmkit_mail.accounts import MailAccounts, smtp_settings
from crmkit_mail.model import MailAccount, MailCampaign, MailCampaignRecipient, MailUnsubscribe
from crmkit_mail.smtp import SmtpTransport, compose, make_message_id

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.services.unit import UnitOfWork

CHUNK = 100
STATUSES = ("pending", "sent", "failed", "bounced", "unsubscribed", "skipped")


def _signer(crm: CRM) -> Signer:
    return Signer(crm.config["secret_key"], salt="crmkit-mail-unsubscribe")


def unsubscribe_token(crm: CRM, address: str, campaign_id: int | None = None) -> str:
    """The signed token of an address's unsubscribe link (naming the mailing it came in)."""
    return _signer(crm).sign(f"{address.lower()}|{campaign_id or ''}".encode()).decode()


def unsubscribe_url(crm: CRM, address: str, campaign_id: int | None = None) -> str:
    """The unsubscribe link put in every mailing to ``address``."""
    base = (crm.config["web.base_url"] or "http://127.0.0.1:8000").rstrip("/")
    return f"{base}/mail/unsubscribe/{unsubscribe_token(crm, address, campaign_id)}"


def address_of_token(crm: CRM, token: str) -> tuple[str, int | None] | None:
    """The address (and mailing) a token was made for, or ``None`` when it is forged."""
    try:
        value = _signer(crm).unsign(token.encode()).decode()
    except BadSignature:
        return None
    address, _, campaign = value.partition("|")
    return address, int(campaign) if campaign.isdigit() else None


class Campaigns:
    """Creating, starting and reporting mailings (entity ``mail_campaign``)."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def create(
        self,
        name: str,
        *,
        subject: str = "",
        body: str = "",
        template_id: int | None = None,
        account: str | None = None,
        group_id: int | None = None,
        where: Mapping[str, Any] | None = None,
        rate_per_minute: int = 60,
    ) -> MailCampaign:
        """A draft mailing to a group (and its subgroups) or to the parties a filter selects."""
        self.work.access.require("mail_campaign", "create")
        if (group_id is None) == (where is None):
            raise ValidationFailed({"audience": ["give a group or a filter"]})
        if rate_per_minute < 0:
            raise ValidationFailed({"rate_per_minute": ["0 (no limit) or more"]})
        if template_id is not None:
            template = self.work.message_templates.get(template_id)
            subject, body = subject or template.subject, body or template.body
        for field, text in (("subject", subject), ("body", body)):
            self.work.message_templates.check(field, text)
        if not body.strip():
            raise ValidationFailed({"body": ["the mailing is empty"]})
        sender = MailAccounts(self.work).sending_account(name=account, user_id=None)
        if group_id is not None:
            self.work.groups.get(group_id)
        campaign = MailCampaign(
            name=name,
            account_id=sender.id,
            subject=subject,
            body=body,
            template_id=template_id,
            audience={"group_id": group_id}
            if group_id is not None
            else {"where": dict(where or {})},
            rate_per_minute=rate_per_minute,
            created_by_id=self.work.actor.user_id,
        )
        self.work.session.add(campaign)
        self.work.flush()
        return campaign

    def get(self, campaign_id: int) -> MailCampaign:
        """One mailing."""
        self.work.access.require("mail_campaign", "read")
        campaign = self.work.session.get(MailCampaign, campaign_id)
        if campaign is None:
            raise NotFound("mail_campaign", campaign_id)
        return campaign

    def _party_ids(self, campaign: MailCampaign) -> list[int]:
        audience = campaign.audience or {}
        if audience.get("group_id") is not None:
            groups = self.work.groups.subtree_ids(int(audience["group_id"]))
            visible = select(Party.id).where(self.work.access.where("party", "read"))
            return list(
                self.work.session.scalars(
                    select(GroupMembership.party_id)
                    .where(GroupMembership.group_id.in_(groups))
                    .where(GroupMembership.party_id.in_(visible))
                    .distinct()
                    .order_by(GroupMembership.party_id)
                )
            )
        where = audience.get("where") or None
        return [p.id for p in self.work.parties.iterate(where=where)]

    def start(self, campaign_id: int) -> int:
        """Fix the recipients and queue the sending; returns how many will get a mail."""
        self.work.access.require("mail_campaign", "update")
        campaign = self.get(campaign_id)
        if campaign.status != "draft":
            raise ValidationFailed({"status": [f"the mailing is {campaign.status} already"]})
        party_ids = self._party_ids(campaign)
        emails: dict[int, str] = {}
        for start in range(0, len(party_ids), 5000):
            rows = self.work.session.execute(
                select(ContactPoint.party_id, ContactPoint.key)
                .where(
                    ContactPoint.kind == "email",
                    ContactPoint.party_id.in_(party_ids[start : start + 5000]),
                )
                .order_by(ContactPoint.party_id, ContactPoint.id)
            )
            for party_id, key in rows:
                emails.setdefault(party_id, key)
        opted_out = set(self.work.session.scalars(select(MailUnsubscribe.address)))
        rows = []
        for party_id in party_ids:
            address = emails.get(party_id, "")
            status = (
                "skipped" if not address else "unsubscribed" if address in opted_out else "pending"
            )
            rows.append(
                {
                    "campaign_id": campaign.id,
                    "party_id": party_id,
                    "address": address,
                    "status": status,
                }
            )
        if rows:
            self.work.session.execute(insert(MailCampaignRecipient), rows)
        campaign.status, campaign.started_at = "sending", utcnow()
        self.work.outbox.add(
            "job",
            {"job": "mail.campaign", "payload": {"campaign_id": campaign.id}},
            idempotency_key=f"mail.campaign:{campaign.id}",
        )
        return sum(1 for r in rows if r["status"] == "pending")

    def report(self, campaign_id: int) -> dict[str, int]:
        """How many recipients are in each state (sent, failed, bounced, unsubscribed...)."""
        campaign = self.get(campaign_id)
        counts = dict.fromkeys(STATUSES, 0)
        for status, count in self.work.session.execute(
            select(MailCampaignRecipient.status, func.count())
            .where(MailCampaignRecipient.campaign_id == campaign.id)
            .group_by(MailCampaignRecipient.status)
        ):
            counts[status] = count
        # opting out after the mail was sent counts too: it is what the report is for
        counts["unsubscribed_after"] = (
            self.work.session.scalar(
                select(func.count())
                .select_from(MailUnsubscribe)
                .where(MailUnsubscribe.campaign_id == campaign.id)
            )
            or 0
        )
        return counts

    def unsubscribe(self, address: str, campaign_id: int | None = None) -> None:
        """Record that ``address`` wants no more mailings (idempotent)."""
        key = address.strip().lower()
        if self.work.session.get(MailUnsubscribe, key) is not None:
            return
        party_id = self.work.session.scalar(
            select(ContactPoint.party_id).where(
                ContactPoint.kind == "email", ContactPoint.key == key
            )
        )
        self.work.session.add(
            MailUnsubscribe(address=key, party_id=party_id, campaign_id=campaign_id)
        )
        self.work.session.execute(
            update(MailCampaignRecipient)
            .where(MailCampaignRecipient.address == key, MailCampaignRecipient.status == "pending")
            .values(status="unsubscribed")
        )


def send_campaign(
    crm: CRM,
    campaign_id: int,
    *,
    rate_per_minute: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, int]:
    """Send a mailing's pending recipients (the ``mail.campaign`` job); returns the report."""
    with crm.system() as work:
        campaign = work.session.get(MailCampaign, campaign_id)
        if campaign is None:
            raise LookupError(f"no mailing {campaign_id}")
        account = work.session.get(MailAccount, campaign.account_id)
        assert account is not None
        settings = smtp_settings(crm, account)
        sender, sender_name = account.address, account.display_name or None
        subject, body = campaign.subject, campaign.body
        rate = campaign.rate_per_minute if rate_per_minute is None else rate_per_minute
    interval = 60.0 / rate if rate else 0.0
    transport = SmtpTransport(settings)
    next_at = clock()
    try:
        while True:
            with crm.system() as work:
                chunk = list(
                    work.session.scalars(
                        select(MailCampaignRecipient)
                        .where(
                            MailCampaignRecipient.campaign_id == campaign_id,
                            MailCampaignRecipient.status == "pending",
                        )
                        .order_by(MailCampaignRecipient.id)
                        .limit(CHUNK)
                    )
                )
                if not chunk:
                    break
                opted_out = set(
                    work.session.scalars(
                        select(MailUnsubscribe.address).where(
                            MailUnsubscribe.address.in_([r.address for r in chunk])
                        )
                    )
                )
                templates = work.message_templates
                for row in chunk:
                    if row.address in opted_out:
                        row.status = "unsubscribed"
                        continue
                    link = unsubscribe_url(crm, row.address, campaign_id)
                    variables = templates.variables(party_id=row.party_id)
                    variables["unsubscribe_url"] = link
                    try:
                        text = templates.render_text("body", body, variables)
                        if "unsubscribe_url" not in body:
                            text += f"\n\n--\nОтписаться / Unsubscribe: {link}\n"
                        mime = compose(
                            sender=sender,
                            sender_name=sender_name,
                            to=[row.address],
                            subject=templates.render_text("subject", subject, variables),
                            body=text,
                            message_id=make_message_id(f"mail.campaign:{row.id}", sender),
                            headers={
                                "List-Unsubscribe": f"<{link}>",
                                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                                "Precedence": "bulk",
                            },
                        )
                        if interval:
                            sleep(max(0.0, next_at - clock()))
                            next_at = max(next_at, clock()) + interval
                        transport.send(mime, sender, [row.address])
                    except (PermanentFailure, ValidationFailed) as exc:
                        row.status, row.error = "failed", str(exc)[:1000]
                        continue
                    except smtplib.SMTPServerDisconnected:
                        transport.close()  # the chunk is retried by the next run
                        raise
                    row.status, row.sent_at = "sent", utcnow()
                    row.message_id = str(mime["Message-ID"])
    finally:
        transport.close()
    with crm.system() as work:
        campaign = work.session.get(MailCampaign, campaign_id)
        if campaign is not None and campaign.status == "sending":
            campaign.status, campaign.finished_at = "done", utcnow()
        return Campaigns(work).report(campaign_id)


def run_campaign_job(crm: CRM, campaign_id: int, **_payload: Any) -> None:
    """The ``mail.campaign`` job."""
    send_campaign(crm, int(campaign_id))
