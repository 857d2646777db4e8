"""crmkit-mail: the mail channel (SMTP out, IMAP in), threads, templates and mass mailing.

Inside a unit of work, ``mail(work)`` is the plugin's service::

    from crmkit_mail import mail

    with crm.acting_as(user) as work:
        mail(work).accounts.create(name="sales", address="sales@firm.ru", ...)
        mail(work).send(to="client@example.ru", subject="Offer", body="...", party_id=7)
        mail(work).send(template=3, party_id=7, record=("deal", 12), cc=("boss@firm.ru",))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crmkit.errors import ValidationFailed
from crmkit.model import Activity
from crmkit_mail.accounts import MailAccounts
from crmkit_mail.smtp import make_message_id

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork


class MailService:
    """Mailboxes, sending (by hand or from a template) and mass mailings."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work
        self.accounts = MailAccounts(work)

    @property
    def signatures(self) -> Any:
        """Users' signatures (:class:`crmkit_mail.signatures.Signatures`)."""
        from crmkit_mail.signatures import Signatures

        return Signatures(self.work)

    @property
    def campaigns(self) -> Any:
        """Mass mailings (:class:`crmkit_mail.campaigns.Campaigns`)."""
        from crmkit_mail.campaigns import Campaigns

        return Campaigns(self.work)

    def send(
        self,
        *,
        to: str | None = None,
        subject: str | None = None,
        body: str | None = None,
        html: str | None = None,
        template: int | str | None = None,
        party_id: int | None = None,
        record: tuple[str, int] | None = None,
        reply_to: int | None = None,
        attachment_ids: tuple[int, ...] = (),
        account: str | None = None,
        cc: tuple[str, ...] = (),
        reply_all: bool = False,
    ) -> Activity:
        """Queue a mail (through the outbox); returns its timeline entry.

        ``template`` (an id of any of its language versions, or its name) fills subject and
        body for the party and record, in the version of the party's language (else the
        deployment's, else the oldest); ``reply_to`` (an
        activity id of a received mail) answers it: same party, record, thread and, unless
        given, recipient and "Re:" subject; with ``reply_all`` the others it was addressed
        to get copies too (besides ``cc``).  ``to`` defaults to the party's email.  ``cc``:
        copies (at most 20 addresses), each refused address named.
        """
        work = self.work
        in_reply_to, references = None, ()
        if reply_to is not None:
            original = work.timeline.get(reply_to)
            data = original.data or {}
            party_id = party_id or original.party_id
            if record is None and original.record_entity and original.record_id:
                record = (original.record_entity, original.record_id)
            to = to or data.get("from") or data.get("to")
            if reply_all:
                cc = (*cc, *data.get("cc", ()))
            if original.external_id and original.external_id.startswith("<"):
                in_reply_to = original.external_id
                references = (*reversed(data.get("refs", [])), original.external_id)
            if subject is None and original.subject:
                subject = (
                    original.subject
                    if original.subject.lower().startswith("re:")
                    else f"Re: {original.subject}"[: Activity.subject.type.length]
                )
        if template is not None:
            rendered = work.message_templates.render_for(template, party_id=party_id, record=record)
            subject = rendered.subject if subject is None else subject
            body = rendered.body if body is None else body
        if not to and party_id is not None:
            party = work.parties.get(party_id)
            to = next((p.value for p in party.contact_points if p.kind == "email"), None)
        if not to:
            raise ValidationFailed(
                {"to": ["no recipient: give an address or a party with an email"]}
            )
        sender = self.accounts.sending_account(name=account, user_id=work.actor.user_id)
        activity = work.channels.send(
            "mail",
            to=to,
            body=body or "",
            subject=subject,
            html=html,
            party_id=party_id,
            record=record,
            in_reply_to=in_reply_to,
            references=tuple(references),
            attachment_ids=tuple(attachment_ids),
            account=sender.name,
            cc=tuple(cc),
        )
        key = f"mail:activity:{activity.id}"
        # the Message-ID is known now (it derives from the outbox key), so replies thread
        activity.external_id = make_message_id(key, sender.address)
        return activity


def mail(work: UnitOfWork) -> MailService:
    """The mail plugin's service for this unit of work."""
    return work.service("mail", MailService)  # type: ignore[no-any-return]


__all__ = ["MailService", "mail"]
