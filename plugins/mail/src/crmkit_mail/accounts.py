"""Mailboxes: adding, changing and reading them, with passwords sealed at rest.

``mail(work).accounts.create(name="sales", address="sales@firm.ru", imap_host=...,
imap_password="...")`` stores the passwords encrypted with ``crm.sealing``; the clear
passwords exist only in memory, while a connection is being made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select

from crmkit.errors import NotFound, ValidationFailed
from crmkit_mail.imap import ImapSettings
from crmkit_mail.model import MailAccount
from crmkit_mail.smtp import SECURITY_CHOICES, SmtpSettings

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.services.unit import UnitOfWork

PASSWORD_FIELDS = ("imap_password", "smtp_password")


class MailAccountSchema(Schema):
    """A mailbox as an admin enters it (passwords in clear; they are sealed on save)."""

    class Meta:
        unknown = "raise"

    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    address = fields.Email(required=True)
    display_name = fields.String(validate=validate.Length(max=200))
    owner_id = fields.Integer(allow_none=True)
    active = fields.Boolean()
    imap_host = fields.String(validate=validate.Length(max=255))
    imap_port = fields.Integer(validate=validate.Range(1, 65535))
    imap_security = fields.String(validate=validate.OneOf(SECURITY_CHOICES))
    imap_username = fields.String(validate=validate.Length(max=320))
    imap_password = fields.String(load_only=True)
    imap_folder = fields.String(validate=validate.Length(min=1, max=200))
    smtp_host = fields.String(validate=validate.Length(max=255))
    smtp_port = fields.Integer(validate=validate.Range(1, 65535))
    smtp_security = fields.String(validate=validate.OneOf(SECURITY_CHOICES))
    smtp_username = fields.String(validate=validate.Length(max=320))
    smtp_password = fields.String(load_only=True)


class MailAccounts:
    """Mailboxes of the deployment (entity ``mail_account``; admins manage them)."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def _load(self, data: Mapping[str, Any], partial: bool) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = MailAccountSchema().load(dict(data), partial=partial)
        except ValidationError as exc:
            raise ValidationFailed(exc.messages, entity="mail_account") from None  # type: ignore[arg-type]
        if "address" in loaded:
            loaded["address"] = loaded["address"].strip().lower()
        sealing = self.work.crm.sealing
        for name in PASSWORD_FIELDS:
            if name in loaded:
                loaded[f"{name}_sealed"] = sealing.seal(loaded.pop(name))
        if loaded.get("owner_id") is not None:
            self.work.users.get(loaded["owner_id"])
        return loaded

    def create(self, data: Mapping[str, Any] | None = None, **values: Any) -> MailAccount:
        """A new mailbox; its name must be unused."""
        self.work.access.require("mail_account", "create")
        loaded = self._load({**(data or {}), **values}, partial=False)
        if self.work.session.scalar(
            select(MailAccount.id).where(MailAccount.name == loaded["name"])
        ):
            raise ValidationFailed({"name": [f"a mailbox called {loaded['name']!r} exists"]})
        account = MailAccount(**loaded)
        self.work.session.add(account)
        self.work.flush()
        self.work.audit("mail_account", account.id, "create", {"name": [None, account.name]})
        return account

    def update(
        self, account_id: int, data: Mapping[str, Any] | None = None, **values: Any
    ) -> MailAccount:
        """Change a mailbox; a changed server or folder restarts its bookkeeping."""
        self.work.access.require("mail_account", "update")
        account = self.get(account_id)
        loaded = self._load({**(data or {}), **values}, partial=True)
        changes = {}
        for key, value in loaded.items():
            if getattr(account, key) != value:
                shown = "***" if key.endswith("_sealed") else value
                changes[key] = [None if key.endswith("_sealed") else getattr(account, key), shown]
                setattr(account, key, value)
        if {"imap_host", "imap_username", "imap_folder"} & changes.keys():
            account.uidvalidity, account.last_uid = None, 0
        if changes:
            self.work.flush()
            self.work.audit("mail_account", account.id, "update", changes)
        return account

    def get(self, account_id: int) -> MailAccount:
        """One mailbox."""
        self.work.access.require("mail_account", "read")
        account = self.work.session.get(MailAccount, account_id)
        if account is None:
            raise NotFound("mail_account", account_id)
        return account

    def by_name(self, name: str) -> MailAccount:
        """The mailbox called ``name``."""
        self.work.access.require("mail_account", "read")
        account = self.work.session.scalar(select(MailAccount).where(MailAccount.name == name))
        if account is None:
            raise NotFound("mail_account", name)
        return account

    def list(self, *, active_only: bool = False) -> list[MailAccount]:
        """Mailboxes by name."""
        self.work.access.require("mail_account", "read")
        statement = select(MailAccount).order_by(MailAccount.name)
        if active_only:
            statement = statement.where(MailAccount.active.is_(True))
        return list(self.work.session.scalars(statement))

    def sending_account(self, *, name: str | None, user_id: int | None) -> MailAccount:
        """The mailbox a message goes out from: the named one, the sender's own, or a shared one."""
        if name:
            return self.by_name(name)
        statement = select(MailAccount).where(
            MailAccount.active.is_(True), MailAccount.smtp_host != ""
        )
        if user_id is not None:
            own = self.work.session.scalar(
                statement.where(MailAccount.owner_id == user_id).order_by(MailAccount.id)
            )
            if own is not None:
                return own
        shared = self.work.session.scalar(
            statement.where(MailAccount.owner_id.is_(None)).order_by(MailAccount.id)
        )
        if shared is None:
            raise NotFound("mail_account", "a shared mailbox to send from")
        return shared


def imap_settings(crm: CRM, account: MailAccount) -> ImapSettings:
    """How to reach the mailbox's IMAP server (the password unsealed)."""
    return ImapSettings(
        host=account.imap_host,
        port=account.imap_port,
        security=account.imap_security,
        username=account.imap_username or account.address,
        password=crm.sealing.open(account.imap_password_sealed)
        if account.imap_password_sealed
        else "",
        folder=account.imap_folder,
        ca_file=crm.config["mail.ca_file"] or None,
        timeout=float(crm.config["mail.timeout_seconds"]),
    )


def smtp_settings(crm: CRM, account: MailAccount) -> SmtpSettings:
    """How to reach the mailbox's SMTP server (the password unsealed)."""
    return SmtpSettings(
        host=account.smtp_host,
        port=account.smtp_port,
        security=account.smtp_security,
        username=account.smtp_username,
        password=crm.sealing.open(account.smtp_password_sealed)
        if account.smtp_password_sealed
        else "",
        ca_file=crm.config["mail.ca_file"] or None,
        timeout=float(crm.config["mail.timeout_seconds"]),
    )
