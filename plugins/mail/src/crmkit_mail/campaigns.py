"""Mass mailings: one template rendered for each recipient of a group or a filter.

A mailing made from a template keeps every language version of it (``versions``): each
recipient gets the version in their language (``party.language``), else the deployment's
(``locale.default``), else the oldest one (see ``choose_language`` of the core's
:mod:`crmkit.services.message_templates`).
The audience is a group, a condition, or a saved list view of clients (``view_id``).

``mail(work).campaigns.create(...)`` stores the mailing; ``start`` claims it (draft to
sending in one statement: a second start at the same time is refused), fixes its recipients
(a row each, in one statement; a client once, an address once: a second client sharing it
is ``skipped``) and queues the ``mail.campaign`` job through the outbox, so the mailing
starts only if the transaction commits.  The job (:func:`send_campaign`) sends the pending
rows over one SMTP connection, rendering each in Jinja's sandbox with the recipient's party,
a window at a time: the window's rows are marked ``sending`` and committed *before* their
mails go to the server, and their outcomes committed after, so a worker killed at any
moment never leaves a delivered mail ``pending`` (sent again); what it left ``sending`` is
``unknown`` (maybe sent) in the report, sent again only when an admin asks
(:meth:`Campaigns.retry_unknown`).  The rate limit (``rate_per_minute``, 0: none) is the
sending mailbox's: each mail takes the mailbox's next slot in the database, so mailings
sharing a mailbox share its pace, and its waits are spent outside any transaction.  The
job renews its outbox claim as it goes (:func:`crmkit.jobs.delivery.keep_claim`), so a long
mailing is never taken over and run twice by another worker.  A recipient whose mail cannot
be made (a template error or limit on their data, a header the composer refuses) is
``failed`` with the reason.  A recipient the server refuses for good (5xx) is ``failed``
with the server's answer; for now (4xx: greylisting, a full mailbox, a provider's quota) it
stays ``pending`` and is tried again later (after RETRY_FIRST_SECONDS, doubling; ``failed``
after TRIES refusals), a later run of the job being queued for then; several refusals for
now one after another stop the run (the server throttles the mailbox).  A server that
cannot be reached or goes away (421) stops the job, the window's untried rows pending
again, and the job's retry sends the rest.

Every mail carries an unsubscribe link (and ``List-Unsubscribe`` headers, RFC 8058); an
address that used it is left out of this and every later mailing (``unsubscribed``).
Bounces read from the mailbox mark their row ``bounced`` (see :mod:`crmkit_mail.sync`).
"""

from __future__ import annotations

import datetime as dt
import smtplib
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from itsdangerous import BadSignature, Signer
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import selectinload

from crmkit.channels import PermanentFailure
from crmkit.clock import utcnow
from crmkit.errors import NotFound, ValidationFailed
from crmkit.jobs.delivery import error_text, keep_claim
from crmkit.model import ContactPoint, Party
from crmkit.services.message_templates import RenderedMessage, choose_language
from crmkit_mail.accounts import MailAccounts, smtp_settings
from crmkit_mail.model import MailAccount, MailCampaign, MailCampaignRecipient, MailUnsubscribe
from crmkit_mail.smtp import SmtpTransport, compose, make_message_id

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.services.unit import UnitOfWork

#: Rows marked ``sending`` (and committed) at once before their mails go to the server: a
#: worker killed meanwhile leaves at most so many ``unknown``.  With a rate limit, fewer:
#: as many as go out in a quarter of the outbox lease.
WINDOW = 20
#: A refusal for now (4xx) is tried again this long after the first, doubling each time...
RETRY_FIRST_SECONDS = 300.0
#: ...and after so many refusals the recipient is ``failed``.
TRIES = 5
#: So many refusals for now one after another: the server throttles the mailbox (a
#: provider's quota), the run stops and the mailing goes on later, trying again first.
REFUSED_IN_A_ROW = 3
STATUSES = (
    "pending", "sending", "sent", "failed", "bounced", "unsubscribed", "skipped", "unknown"
)  # fmt: skip
#: The reason of a row left ``sending`` by a worker that stopped.
UNKNOWN_REASON = "the worker stopped while sending it: maybe sent"


def _signer(crm: CRM) -> Signer:
    return Signer(crm.config["secret_key"], salt="crmkit-mail-unsubscribe")


def unsubscribe_token(crm: CRM, address: str, campaign_id: int | None = None) -> str:
    """The signed token of an address's unsubscribe link (naming the mailing it came in)."""
    return _signer(crm).sign(f"{address.lower()}|{campaign_id or ''}".encode()).decode()


def public_address(crm: CRM) -> str:
    """The CRM's public address (``web.base_url``) that unsubscribe links start with.

    A mail is read far from any request, so there is no address to fall back on: without
    the setting a ``ValidationFailed`` names it (a made-up address would be a dead link).
    """
    base = str(crm.config["web.base_url"] or "").strip().rstrip("/")
    if not base:
        raise ValidationFailed(
            {
                "web.base_url": [
                    "set web.base_url to the CRM's public address: unsubscribe links need it"
                ]
            }
        )
    return base


def unsubscribe_url(crm: CRM, address: str, campaign_id: int | None = None) -> str:
    """The unsubscribe link put in every mailing to ``address`` (needs ``web.base_url``)."""
    token = unsubscribe_token(crm, address, campaign_id)
    return f"{public_address(crm)}/mail/unsubscribe/{token}"


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
        view_id: int | None = None,
        rate_per_minute: int = 60,
    ) -> MailCampaign:
        """A draft mailing to a group (and its subgroups), a filter or a saved client view.

        From a template (``template_id``) without a subject and body of its own, the mailing
        keeps all the template's language versions and each recipient gets theirs; given
        texts go to everyone as they are.
        """
        self.work.access.require("mail_campaign", "create")
        if not (name or "").strip():
            raise ValidationFailed({"name": ["the mailing needs a name"]})
        if len(name.strip()) > 200:
            raise ValidationFailed({"name": ["200 characters at most"]})
        if sum(x is not None for x in (group_id, where, view_id)) != 1:
            raise ValidationFailed({"audience": ["give a group, a filter or a saved view"]})
        if rate_per_minute < 0:
            raise ValidationFailed({"rate_per_minute": ["0 (no limit) or more"]})
        versions: dict[str, dict[str, str]] = {}
        if template_id is not None:
            template = self.work.message_templates.get(template_id)
            if not subject and not body:
                siblings = self.work.message_templates.versions(template.name, template.channel)
                versions = {v.language: {"subject": v.subject, "body": v.body} for v in siblings}
                chosen = choose_language(list(versions), None, self._default_language())
                subject, body = versions[chosen]["subject"], versions[chosen]["body"]  # type: ignore[index]
            subject, body = subject or template.subject, body or template.body
        for language, texts in versions.items():
            if not texts["body"].strip():
                raise ValidationFailed({"body": [f"the template's {language} version is empty"]})
        for field, text in (("subject", subject), ("body", body)):
            self.work.message_templates.check(field, text)
        if not body.strip():
            raise ValidationFailed({"body": ["the mailing is empty"]})
        sender = MailAccounts(self.work).sending_account(name=account, user_id=None)
        audience: dict[str, Any]
        if group_id is not None:
            audience = {"group_id": self.work.groups.get(group_id).id}
        elif view_id is not None:
            view = self.work.saved_views.get(view_id)
            if view.entity != "party":
                raise ValidationFailed({"view_id": ["choose a saved view of clients"]})
            audience = {"view_id": view.id, "view": view.name}
        else:
            audience = {"where": dict(where or {})}
        campaign = MailCampaign(
            name=name.strip(),
            account_id=sender.id,
            subject=subject,
            body=body,
            versions=versions,
            template_id=template_id,
            audience=audience,
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

    def _default_language(self) -> str:
        return str(self.work.crm.config["locale.default"])

    def list(self, *, limit: int = 200) -> list[tuple[MailCampaign, dict[str, int]]]:
        """The latest mailings with how many recipients are in each state."""
        self.work.access.require("mail_campaign", "read")
        campaigns = list(
            self.work.session.scalars(
                select(MailCampaign)
                .order_by(MailCampaign.created_at.desc(), MailCampaign.id.desc())
                .limit(limit)
            )
        )
        counts: dict[int, dict[str, int]] = {c.id: dict.fromkeys(STATUSES, 0) for c in campaigns}
        if campaigns:
            for campaign_id, status, count in self.work.session.execute(
                select(
                    MailCampaignRecipient.campaign_id, MailCampaignRecipient.status, func.count()
                )
                .where(MailCampaignRecipient.campaign_id.in_(list(counts)))
                .group_by(MailCampaignRecipient.campaign_id, MailCampaignRecipient.status)
            ):
                counts[campaign_id][status] = count
        return [(c, counts[c.id]) for c in campaigns]

    def recipients(
        self, campaign_id: int, *, status: str | None = None, limit: int = 500
    ) -> list[MailCampaignRecipient]:
        """A mailing's recipients (failed ones carry their ``error``), in the order sent."""
        campaign = self.get(campaign_id)
        statement = select(MailCampaignRecipient).where(
            MailCampaignRecipient.campaign_id == campaign.id
        )
        if status:
            if status not in STATUSES:
                raise ValidationFailed({"status": [f"one of {', '.join(STATUSES)}"]})
            statement = statement.where(MailCampaignRecipient.status == status)
        return list(
            self.work.session.scalars(statement.order_by(MailCampaignRecipient.id).limit(limit))
        )

    def audience_sample(self, campaign_id: int, limit: int = 50) -> list[int]:
        """Some of the parties the mailing would go to (for choosing whom to preview)."""
        return self._party_ids(self.get(campaign_id), limit)

    def preview(self, campaign_id: int, party_id: int) -> RenderedMessage:
        """The mail ``party_id`` gets from this mailing, in their language."""
        campaign = self.get(campaign_id)
        address = next(
            (
                p.key
                for p in self.work.parties.get(party_id).contact_points
                if p.kind == "email" and p.key
            ),
            "",
        )
        return render_for_recipient(
            self.work, campaign, party_id, address, self._default_language()
        )

    def _party_ids(self, campaign: MailCampaign, limit: int | None = None) -> list[int]:
        """The visible parties of the mailing's audience, by id (the first ``limit``)."""
        audience = campaign.audience or {}
        filters, search = None, None
        where = audience.get("where") or None
        if audience.get("view_id") is not None:
            try:
                _, filters, search = self.work.saved_views.selection(int(audience["view_id"]))
            except NotFound:
                raise ValidationFailed(
                    {"audience": [f"the saved view {audience.get('view', '')!r} is gone"]}
                ) from None
        elif audience.get("group_id") is not None:
            # a smart group's rules or a static group with its subgroups
            where = self.work.groups.condition(int(audience["group_id"]))
        parties = self.work.parties
        statement = (
            parties.filtered(where=where, filters=filters, search=search)
            .with_only_columns(parties.model.id)
            .order_by(parties.model.id)
        )
        if limit is not None:
            statement = statement.limit(limit)
        return list(self.work.session.scalars(statement))

    def start(self, campaign_id: int) -> int:
        """Fix the recipients and queue the sending; returns how many will get a mail.

        The mailing is claimed first (draft to sending in one statement): of two starts at
        once, the second finds it started and is refused, so nobody is mailed twice.
        """
        self.work.access.require("mail_campaign", "update")
        campaign = self.get(campaign_id)
        if campaign.status != "draft":
            raise ValidationFailed({"status": [f"the mailing is {campaign.status} already"]})
        public_address(self.work.crm)  # every mail's unsubscribe link starts with it
        claimed = self.work.session.execute(
            update(MailCampaign)
            .where(MailCampaign.id == campaign.id, MailCampaign.status == "draft")
            .values(status="sending", started_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            raise ValidationFailed({"status": ["the mailing is already started"]})
        self.work.session.expire(campaign, ["status", "started_at"])
        party_ids = list(dict.fromkeys(self._party_ids(campaign)))
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
        mailed: set[str] = set()  # an address two clients share (info@) gets one mail
        for party_id in party_ids:
            address = emails.get(party_id, "")
            error = None
            if not address:
                status = "skipped"
            elif address in mailed:
                status, error = "skipped", "the address of another recipient: mailed once"
            else:
                status = "unsubscribed" if address in opted_out else "pending"
                mailed.add(address)
            rows.append(
                {
                    "campaign_id": campaign.id,
                    "party_id": party_id,
                    "address": address,
                    "status": status,
                    "error": error,
                }
            )
        if rows:
            self.work.session.execute(insert(MailCampaignRecipient), rows)
        self.work.outbox.add(
            "job",
            {"job": "mail.campaign", "payload": {"campaign_id": campaign.id}},
            idempotency_key=f"mail.campaign:{campaign.id}",
        )
        return sum(1 for r in rows if r["status"] == "pending")

    def retry_unknown(self, campaign_id: int) -> int:
        """Send again the mails a stopped worker left ``unknown`` (maybe sent): an admin's
        decision, never taken silently; returns how many will be sent."""
        self.work.access.require("mail_campaign", "update")
        campaign = self.get(campaign_id)
        retried = self.work.session.execute(
            update(MailCampaignRecipient)
            .where(
                MailCampaignRecipient.campaign_id == campaign.id,
                MailCampaignRecipient.status == "unknown",
            )
            .values(status="pending", error=None, retry_at=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        if retried:
            if campaign.status == "done":
                campaign.status, campaign.finished_at = "sending", None
            self.work.outbox.add(
                "job",
                {"job": "mail.campaign", "payload": {"campaign_id": campaign.id}},
                idempotency_key=f"mail.campaign:{campaign.id}:unknown:{utcnow().isoformat()}",
            )
        return int(retried)

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
        """Record that ``address`` wants no more mailings (idempotent).

        ``campaign_id`` is the mailing the link came in; one deleted since is not named
        (the opt-out holds all the same).
        """
        key = address.strip().lower()
        if self.work.session.get(MailUnsubscribe, key) is not None:
            return
        if campaign_id is not None and self.work.session.get(MailCampaign, campaign_id) is None:
            campaign_id = None
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


def render_for_recipient(
    work: UnitOfWork,
    campaign: MailCampaign,
    party_id: int | None,
    address: str,
    default_language: str,
    variables: dict[str, Any] | None = None,
) -> RenderedMessage:
    """One recipient's mail: the version in their language, rendered in the sandbox.

    The body always ends with the unsubscribe link when the text does not place it itself.
    """
    templates = work.message_templates
    if variables is None:
        variables = templates.variables(party_id=party_id)
    link = unsubscribe_url(work.crm, address, campaign.id) if address else ""
    variables["unsubscribe_url"] = link
    versions = campaign.versions or {}
    language = choose_language(
        list(versions), (variables.get("party") or {}).get("language"), default_language
    )
    texts = versions.get(language) if language else None
    subject = texts["subject"] if texts else campaign.subject
    body = texts["body"] if texts else campaign.body
    text = templates.render_text("body", body, variables, template=campaign.name)
    if "unsubscribe_url" not in body:
        text += f"\n\n--\nОтписаться / Unsubscribe: {link}\n"
    return RenderedMessage(
        subject=templates.render_text("subject", subject, variables, template=campaign.name),
        body=text,
        language=language,
    )


def refused_for_now(exc: Exception) -> str | None:
    """The server's answer when it refused one recipient's mail for now (4xx: greylisting,
    a full mailbox) and keeps the connection; ``None`` for anything else (421 closes the
    connection: the whole server is unavailable, not this recipient)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        answers = exc.recipients.items()
        if any(code == 421 or not 400 <= code < 500 for _, (code, _) in answers):
            return None
        text = "; ".join(
            f"{address}: {code} {answer.decode('utf-8', 'replace')}"
            for address, (code, answer) in answers
        )
    elif isinstance(exc, smtplib.SMTPDataError) and exc.smtp_code != 421:
        if not 400 <= exc.smtp_code < 500:
            return None
        text = f"{exc.smtp_code} {exc.smtp_error.decode('utf-8', 'replace')}"
    else:
        return None
    return f"refused for now: {text}"


def _reserve_slot(crm: CRM, account_id: int, interval: float, now: float) -> float:
    """The moment (``now``'s clock) this mail may go: the mailbox's next free slot, moved
    on by ``interval`` in one conditional update, so that every mailing sending from the
    mailbox, in any process, shares its pace."""
    while True:
        with crm.system() as work:
            current = work.session.scalar(
                select(MailAccount.send_slot).where(MailAccount.id == account_id)
            )
            at = max(current or 0.0, now)
            same = (
                MailAccount.send_slot.is_(None)
                if current is None
                else MailAccount.send_slot == current
            )
            taken = work.session.execute(
                update(MailAccount)
                .where(MailAccount.id == account_id, same)
                .values(send_slot=at + interval)
                .execution_options(synchronize_session=False)
            ).rowcount
        if taken:
            return at


def _claim_window(work: UnitOfWork, campaign_id: int, size: int) -> list[MailCampaignRecipient]:
    """The next pending rows that are due, marked ``sending`` by a conditional update (so
    that two runs of one mailing never take the same row); committed with the unit."""
    while True:
        ids = list(
            work.session.scalars(
                select(MailCampaignRecipient.id)
                .where(
                    MailCampaignRecipient.campaign_id == campaign_id,
                    MailCampaignRecipient.status == "pending",
                    (MailCampaignRecipient.retry_at.is_(None))
                    | (MailCampaignRecipient.retry_at <= utcnow()),
                )
                .order_by(MailCampaignRecipient.id)
                .limit(size)
            )
        )
        if not ids:
            return []
        taken = list(
            work.session.scalars(
                update(MailCampaignRecipient)
                .where(MailCampaignRecipient.id.in_(ids), MailCampaignRecipient.status == "pending")
                .values(status="sending")
                .returning(MailCampaignRecipient.id)
                .execution_options(synchronize_session=False)
            )
        )
        if taken:  # else another run of the mailing took them all first: the next ones
            return list(
                work.session.scalars(
                    select(MailCampaignRecipient)
                    .where(MailCampaignRecipient.id.in_(taken))
                    .order_by(MailCampaignRecipient.id)
                    .execution_options(populate_existing=True)
                )
            )


def send_campaign(
    crm: CRM,
    campaign_id: int,
    *,
    rate_per_minute: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> dict[str, int]:
    """Send a mailing's pending recipients (the ``mail.campaign`` job); returns the report.

    Rows go out a window at a time: marked ``sending`` and committed, mailed outside any
    transaction, their outcomes committed.  Rows a previous run left ``sending`` (its worker
    was killed) are ``unknown`` first: maybe sent, sent again only by
    :meth:`Campaigns.retry_unknown`.  A refusal for now (4xx) keeps the row pending until
    ``retry_at`` (doubling from RETRY_FIRST_SECONDS, ``failed`` after TRIES); a later run
    of the job is queued for then.  The rate limit reserves each mail a slot of the sending
    mailbox (:func:`_reserve_slot`), so mailings sharing a mailbox share its pace.
    """
    with crm.system() as work:
        campaign = work.session.get(MailCampaign, campaign_id)
        if campaign is None:
            raise LookupError(f"no mailing {campaign_id}")
        account = work.session.get(MailAccount, campaign.account_id)
        assert account is not None
        account_id = account.id
        settings = smtp_settings(crm, account)
        sender, sender_name = account.address, account.display_name or None
        public_address(crm)  # the setting cleared since the start: nothing goes out, retried
        rate = campaign.rate_per_minute if rate_per_minute is None else rate_per_minute
        work.session.execute(
            update(MailCampaignRecipient)
            .where(
                MailCampaignRecipient.campaign_id == campaign_id,
                MailCampaignRecipient.status == "sending",
            )
            .values(status="unknown", error=UNKNOWN_REASON)
            .execution_options(synchronize_session=False)
        )
    default_language = str(crm.config["locale.default"])
    interval = 60.0 / rate if rate else 0.0
    transport = SmtpTransport(settings)
    # The job runs inside an outbox item's lease, renewed (``keep_claim``) often enough that
    # no sweeping worker takes the mailing over.  No transaction spans a mail's sending or a
    # wait of the rate limit, so a SQLite deployment's other writers (the web screens) are
    # never held up by a slow mailing.
    step = max(0.5, float(crm.config["outbox.lease_seconds"]) / 4)
    size = max(1, min(WINDOW, int(step / interval))) if interval else WINDOW
    renewed = clock()

    def hold(until: float) -> None:
        """Wait until ``until`` (the rate limit), keeping the job's claim meanwhile."""
        nonlocal renewed
        while True:
            now = clock()
            if now - renewed >= step:
                keep_claim()  # ClaimLost: another worker has it; stop sending
                renewed = now
            if now >= until:
                return
            sleep(min(until - now, step))

    stopped: Exception | None = None
    throttled = 0  # refusals for now one after another
    try:
        while stopped is None and throttled < REFUSED_IN_A_ROW:
            hold(0.0)
            ready: list[tuple[int, str, Any]] = []  # (row id, address, mail)
            with crm.system() as work:
                window = _claim_window(work, campaign_id, size)
                if not window:
                    break
                opted_out = set(
                    work.session.scalars(
                        select(MailUnsubscribe.address).where(
                            MailUnsubscribe.address.in_([r.address for r in window])
                        )
                    )
                )
                campaign = work.session.get(MailCampaign, campaign_id)
                assert campaign is not None
                # the window's clients with their contact points in two queries, so rendering
                # each one's variables below reads them from the session, not the database
                visible = work.parties.find_many(r.party_id for r in window if r.party_id)
                if visible:
                    work.session.scalars(
                        select(Party)
                        .where(Party.id.in_(list(visible)))
                        .options(selectinload(Party.contact_points))
                    ).all()
                for row in window:
                    if row.address in opted_out:
                        row.status = "unsubscribed"
                        continue
                    link = unsubscribe_url(crm, row.address, campaign_id)
                    try:  # this recipient's mail: what cannot be made fails them alone
                        variables = work.message_templates.variables(party_id=row.party_id)
                        message = render_for_recipient(
                            work, campaign, row.party_id, row.address, default_language, variables
                        )
                        mime = compose(
                            sender=sender,
                            sender_name=sender_name,
                            to=[row.address],
                            subject=message.subject,
                            body=message.body,
                            message_id=make_message_id(f"mail.campaign:{row.id}", sender),
                            headers={
                                "List-Unsubscribe": f"<{link}>",
                                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                                "Precedence": "bulk",
                            },
                        )
                    except Exception as exc:  # a template error, a header compose refuses...
                        row.status, row.error = "failed", error_text(exc)
                        continue
                    ready.append((row.id, row.address, mime))
            # the window is committed as "sending": from here a killed worker leaves it
            # "unknown", never pending (sent again silently)
            outcomes: dict[int, dict[str, Any]] = {}
            for row_id, address, mime in ready:
                if stopped is not None or throttled >= REFUSED_IN_A_ROW:
                    break
                hold(_reserve_slot(crm, account_id, interval, clock()) if interval else 0.0)
                try:
                    transport.send(mime, sender, [address])
                except PermanentFailure as exc:
                    outcomes[row_id] = {"status": "failed", "error": str(exc)[:1000]}
                except Exception as exc:
                    answer = refused_for_now(exc)
                    if answer is None:
                        # the server went away (or said 421): this row and the rest of the
                        # window go back to pending for the job's retry
                        transport.close()
                        stopped = exc
                        break
                    throttled += 1
                    outcomes[row_id] = {"status": "later", "error": answer[:1000]}
                else:
                    throttled = 0
                    outcomes[row_id] = {
                        "status": "sent",
                        "message_id": str(mime["Message-ID"]),
                        "sent_at": utcnow(),
                    }
            _record_outcomes(crm, [r for r, _, _ in ready], outcomes)
    finally:
        transport.close()
    if stopped is not None:
        raise stopped
    with crm.system() as work:
        campaign = work.session.get(MailCampaign, campaign_id)
        later = work.session.scalar(
            select(func.min(MailCampaignRecipient.retry_at)).where(
                MailCampaignRecipient.campaign_id == campaign_id,
                MailCampaignRecipient.status == "pending",
            )
        )
        if later is not None or throttled >= REFUSED_IN_A_ROW:
            # refused for now: the job comes back when the first of them is due
            due = later or utcnow() + dt.timedelta(seconds=RETRY_FIRST_SECONDS)
            work.outbox.add(
                "job",
                {"job": "mail.campaign", "payload": {"campaign_id": campaign_id}},
                idempotency_key=f"mail.campaign:{campaign_id}:at:{due.isoformat()}",
                due=due,
            )
        elif campaign is not None and campaign.status == "sending":
            campaign.status, campaign.finished_at = "done", utcnow()
        return Campaigns(work).report(campaign_id)


def _record_outcomes(
    crm: CRM, row_ids: list[int], outcomes: Mapping[int, Mapping[str, Any]]
) -> None:
    """Write a window's outcomes: sent, failed, refused for now (pending until its retry,
    or failed after TRIES), and not tried (pending again)."""
    if not row_ids:
        return
    with crm.system() as work:
        rows = work.session.scalars(
            select(MailCampaignRecipient)
            .where(
                MailCampaignRecipient.id.in_(row_ids),
                # "unknown": another run of the mailing took this run for dead meanwhile
                MailCampaignRecipient.status.in_(("sending", "unknown")),
            )
            .execution_options(populate_existing=True)
        )
        now = utcnow()
        for row in rows:
            outcome = outcomes.get(row.id)
            if outcome is None:
                row.status, row.error = "pending", None
            elif outcome["status"] == "sent":
                row.status, row.error, row.retry_at = "sent", None, None
                row.message_id, row.sent_at = outcome["message_id"], outcome["sent_at"]
            elif outcome["status"] == "failed":
                row.status, row.error = "failed", outcome["error"]
            else:  # refused for now
                row.attempts = (row.attempts or 0) + 1
                if row.attempts >= TRIES:
                    row.status, row.retry_at = "failed", None
                    row.error = f"refused for now {row.attempts} times: {outcome['error']}"
                else:
                    delay = RETRY_FIRST_SECONDS * 2 ** (row.attempts - 1)
                    row.status, row.error = "pending", outcome["error"]
                    row.retry_at = now + dt.timedelta(seconds=delay)


def run_campaign_job(crm: CRM, campaign_id: int, **_payload: Any) -> None:
    """The ``mail.campaign`` job."""
    send_campaign(crm, int(campaign_id))
