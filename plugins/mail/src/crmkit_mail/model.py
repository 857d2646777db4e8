"""The mail plugin's tables: mailboxes with their sync bookkeeping, mailings, unsubscribes.

Passwords are stored sealed (``crm.sealing``), never in clear.  A mailbox remembers the
folder's ``UIDVALIDITY`` and the highest UID whose message is safely recorded; both move in
the same transaction as the messages they cover, so a worker stopped at any moment resumes
exactly where the database says it was.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.model import Base, IdMixin, IdType, JSONType, party_fk, user_fk


class MailAccount(IdMixin, Base):
    """A mailbox: where mail is sent from (SMTP) and read from (IMAP).

    ``owner_id`` set: a user's own mailbox (their replies go out from it); empty: a shared
    one (``sales@``).  ``security`` is ``tls`` (implicit TLS), ``starttls`` or ``none``.
    ``import_days`` set: when the folder is read from its start (the first sync, a changed
    folder, a renumbered one), only mail received in the last so many days is recorded and
    the older mail is passed over for good; empty: all of it.  ``import_until_uid`` keeps
    such a reading's extent until it is over, so that one stopped midway goes on with it.
    ``ignore_senders``: addresses, domains or patterns (one a line) whose mail is never
    recorded (see :func:`crmkit_mail.accounts.sender_filter`).  ``sent_folder`` set: a copy
    of every mail sent from the mailbox is stored in that IMAP folder (see
    :mod:`crmkit_mail.sent_copies`); empty: none.
    """

    name: Mapped[str] = mapped_column(String(64), unique=True)
    address: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    owner_id: Mapped[int | None] = user_fk()
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    imap_host: Mapped[str] = mapped_column(String(255), default="")
    imap_port: Mapped[int] = mapped_column(Integer, default=993)
    imap_security: Mapped[str] = mapped_column(String(16), default="tls")
    imap_username: Mapped[str] = mapped_column(String(320), default="")
    imap_password_sealed: Mapped[str] = mapped_column(Text, default="", info={"private": True})
    imap_folder: Mapped[str] = mapped_column(String(200), default="INBOX")
    import_days: Mapped[int | None] = mapped_column(Integer)
    #: while a reading with an import window is under way: the highest UID it applies to
    import_until_uid: Mapped[int | None] = mapped_column(BigInteger)
    ignore_senders: Mapped[str] = mapped_column(Text, default="")
    sent_folder: Mapped[str] = mapped_column(String(200), default="")
    #: the Sent folder's bookkeeping, as for the inbox (see crmkit_mail.sent_reading)
    sent_uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    sent_last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    smtp_host: Mapped[str] = mapped_column(String(255), default="")
    smtp_port: Mapped[int] = mapped_column(Integer, default=587)
    smtp_security: Mapped[str] = mapped_column(String(16), default="starttls")
    smtp_username: Mapped[str] = mapped_column(String(320), default="")
    smtp_password_sealed: Mapped[str] = mapped_column(Text, default="", info={"private": True})
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    #: when the last sync ended, whether it succeeded or failed (``last_error``)
    last_sync_at: Mapped[dt.datetime | None] = mapped_column()
    #: when the last sync that succeeded began: the mail the server had by then is recorded
    last_success_at: Mapped[dt.datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    #: when the mailbox may send its next mailing's mail (seconds since the epoch): the rate
    #: limit of mailings is the mailbox's, shared by all that send from it at once
    send_slot: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MailCampaign(IdMixin, Base):
    """A mass mailing: one template rendered for every recipient of a group or a filter.

    ``subject``/``body`` are the text in the deployment's language; ``versions`` holds every
    language version of the template it was made from, each recipient getting theirs.
    """

    name: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("mail_account.id", ondelete="RESTRICT")
    )
    subject: Mapped[str] = mapped_column(String(500), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    template_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("message_template.id", ondelete="SET NULL")
    )
    # a template's language versions when made from one: {"en": {"subject":..., "body":...}}
    versions: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    audience: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    rate_per_minute: Mapped[int] = mapped_column(Integer, default=60)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    created_by_id: Mapped[int | None] = user_fk()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()


class MailCampaignRecipient(IdMixin, Base):
    """One recipient of a mailing and what became of their mail.

    ``status``: ``pending`` (``retry_at`` set: refused for now, tried again then),
    ``sending`` (marked, and committed, before the mail went to the server), ``sent``,
    ``failed``, ``bounced``, ``unsubscribed`` (opted out before it was sent), ``skipped``
    (no address, or the address of another recipient), ``unknown`` (the worker stopped
    while sending it: maybe sent, tried again only when an admin says so).  A client is a
    mailing's recipient once.
    """

    __table_args__ = (
        Index("ix_mail_campaign_recipient_campaign_status", "campaign_id", "status"),
        Index("ix_mail_campaign_recipient_message_id", "message_id"),
        Index("ix_mail_campaign_recipient_campaign_party", "campaign_id", "party_id", unique=True),
    )

    campaign_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("mail_campaign.id", ondelete="CASCADE")
    )
    party_id: Mapped[int | None] = party_fk()
    address: Mapped[str] = mapped_column(String(320), default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    message_id: Mapped[str | None] = mapped_column(String(300))
    error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None] = mapped_column()
    #: how many times a server refused the mail for now (4xx)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retry_at: Mapped[dt.datetime | None] = mapped_column()


class MailUnsubscribe(Base):
    """An address that asked for no more mailings (honoured by every later mailing)."""

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    party_id: Mapped[int | None] = party_fk()
    campaign_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("mail_campaign.id", ondelete="SET NULL")
    )
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MailSignature(Base):
    """A user's signature, put under the mail they write (by hand, from a template, in a
    reply from the inbox) when it goes out; mailings and the system's mail go without."""

    user_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    body: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
