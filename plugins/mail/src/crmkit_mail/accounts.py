"""Mailboxes: adding, changing and reading them, with passwords sealed at rest.

``mail(work).accounts.create(name="sales", address="sales@firm.ru", imap_host=...,
imap_password="...")`` stores the passwords encrypted with ``crm.sealing``; the clear
passwords exist only in memory, while a connection is being made.
"""

from __future__ import annotations

import fnmatch
import smtplib
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select

from crmkit.channels import PermanentFailure
from crmkit.errors import Conflict, NotFound, ValidationFailed
from crmkit.schemas import MAX_ID
from crmkit.services.records import EntityService
from crmkit_mail.imap import ImapError, ImapMailbox, ImapSettings
from crmkit_mail.model import MailAccount, MailCampaign
from crmkit_mail.smtp import SECURITY_CHOICES, SmtpSettings, SmtpTransport

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
    owner_id = fields.Integer(
        allow_none=True, validate=validate.Range(min=1, max=MAX_ID, error="not an id (1 to 2^63-1)")
    )
    active = fields.Boolean()
    imap_host = fields.String(validate=validate.Length(max=255))
    imap_port = fields.Integer(validate=validate.Range(1, 65535))
    imap_security = fields.String(validate=validate.OneOf(SECURITY_CHOICES))
    imap_username = fields.String(validate=validate.Length(max=320))
    imap_password = fields.String(load_only=True)
    imap_folder = fields.String(validate=validate.Length(min=1, max=200))
    import_days = fields.Integer(allow_none=True, validate=validate.Range(1, 36500))
    ignore_senders = fields.String(validate=validate.Length(max=20000))
    sent_folder = fields.String(validate=validate.Length(max=200))
    smtp_host = fields.String(validate=validate.Length(max=255))
    smtp_port = fields.Integer(validate=validate.Range(1, 65535))
    smtp_security = fields.String(validate=validate.OneOf(SECURITY_CHOICES))
    smtp_username = fields.String(validate=validate.Length(max=320))
    smtp_password = fields.String(load_only=True)


def sender_patterns(text: str) -> list[str]:
    """The rules of a mailbox's ``ignore_senders`` text, one a line, lower-case, in order.

    A line is an address (``noreply@bank.ru``), a domain (``github.com``, also written
    ``@github.com``: every address there and at its subdomains), an address with ``*``
    and ``?`` wildcards (``noreply@*``, ``*-bounces@*.org``) or a name followed by ``@``
    (``mailer-daemon@``: at any domain).  Raises :class:`ValueError` naming the first line
    that is none of these, or that would leave out every sender.
    """
    patterns: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        rule = line.strip().lower()
        if not rule:
            continue
        if rule.endswith("@"):
            rule += "*"
        rule = rule.removeprefix("@")
        local, at, domain = rule.rpartition("@")
        if not (local + domain).strip("*?."):
            raise ValueError(f"line {number}: {line.strip()!r} would leave out every sender")
        wrong = not local or not domain or "@" in local if at else not domain.strip("*?.")
        if wrong or any(c.isspace() or c in ',;<>"' for c in rule):
            raise ValueError(
                f"line {number}: {line.strip()!r} is not an address, a domain or a pattern"
            )
        if rule not in patterns:
            patterns.append(rule)
    return patterns


def sender_filter(text: str) -> Callable[[str], bool] | None:
    """Whether a sender's address matches one of the ``ignore_senders`` rules (see
    :func:`sender_patterns`); ``None`` when there are none."""
    patterns = sender_patterns(text)
    if not patterns:
        return None
    addresses = [p for p in patterns if "@" in p]
    domains = [p for p in patterns if "@" not in p]

    def ignored(address: str) -> bool:
        address = address.strip().lower()
        domain = address.rpartition("@")[2]
        return any(fnmatch.fnmatchcase(address, p) for p in addresses) or any(
            fnmatch.fnmatchcase(domain, p) or domain.endswith("." + p) for p in domains
        )

    return ignored


class IgnoredSenders:
    """The mail channel's :class:`crmkit.channels.SenderRules`: the contact center's "Not a
    client" adds the sender (or their domain) to the receiving mailbox's ``ignore_senders``;
    only those who may change mailboxes (admins) may."""

    def may_ignore(self, work: UnitOfWork, account: str | None) -> bool:
        """Whether the actor may change the rules of the mailbox called ``account``."""
        if not account or not work.access.can("mail_account", "update"):
            return False
        return (
            work.session.scalar(select(MailAccount.id).where(MailAccount.name == account))
            is not None
        )

    def ignore(self, work: UnitOfWork, account: str | None, rule: str) -> None:
        """Add ``rule`` (an address or a domain) to the mailbox's ``ignore_senders``."""
        accounts = MailAccounts(work)
        mailbox = accounts.by_name(account or "")
        rules = sender_patterns(mailbox.ignore_senders or "")
        if rule.strip().lower() not in rules:
            accounts.update(mailbox.id, ignore_senders="\n".join([*rules, rule]))


def _check_sent_folder(folder: str, imap_host: str, imap_folder: str) -> None:
    problem = None
    if folder and not imap_host.strip():
        problem = "copies of sent mail need an IMAP server (imap_host)"
    elif folder and folder == imap_folder:
        problem = f"{folder!r} is the folder mail is read from (imap_folder)"
    if problem:
        raise ValidationFailed({"sent_folder": [problem]}, entity="mail_account")


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
        if "sent_folder" in loaded:
            loaded["sent_folder"] = loaded["sent_folder"].strip()
        if "ignore_senders" in loaded:
            try:
                loaded["ignore_senders"] = "\n".join(sender_patterns(loaded["ignore_senders"]))
            except ValueError as exc:
                failed = {"ignore_senders": [str(exc)]}
                raise ValidationFailed(failed, entity="mail_account") from None
        sealing = self.work.crm.sealing
        for name in PASSWORD_FIELDS:
            if name in loaded:
                loaded[f"{name}_sealed"] = sealing.seal(loaded.pop(name))
        if loaded.get("owner_id") is not None:
            try:
                self.work.users.get(loaded["owner_id"])
            except NotFound:
                failed = {"owner_id": [f"no user {loaded['owner_id']}"]}
                raise ValidationFailed(failed, entity="mail_account") from None
        return loaded

    def create(self, data: Mapping[str, Any] | None = None, **values: Any) -> MailAccount:
        """A new mailbox; its name must be unused."""
        self.work.access.require("mail_account", "create")
        loaded = self._load({**(data or {}), **values}, partial=False)
        if self.work.session.scalar(
            select(MailAccount.id).where(MailAccount.name == loaded["name"])
        ):
            raise ValidationFailed({"name": [f"a mailbox called {loaded['name']!r} exists"]})
        _check_sent_folder(
            loaded.get("sent_folder", ""),
            loaded.get("imap_host", ""),
            loaded.get("imap_folder", "INBOX"),
        )
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
        _check_sent_folder(
            loaded.get("sent_folder", account.sent_folder),
            loaded.get("imap_host", account.imap_host),
            loaded.get("imap_folder", account.imap_folder),
        )
        changes = {}
        for key, value in loaded.items():
            if getattr(account, key) != value:
                # the audit entry masks the sealed passwords (private columns) itself
                changes[key] = [getattr(account, key), value]
                setattr(account, key, value)
        if {"imap_host", "imap_username", "imap_folder"} & changes.keys():
            account.uidvalidity, account.last_uid, account.import_until_uid = None, 0, None
        if {"imap_host", "imap_username", "sent_folder"} & changes.keys():
            account.sent_uidvalidity, account.sent_last_uid = None, 0  # read from its end
        if changes:
            self.work.flush()
            self.work.audit("mail_account", account.id, "update", changes)
        return account

    def delete(self, account_id: int) -> None:
        """Remove a mailbox; one that mailings were sent from can only be switched off."""
        self.work.access.require("mail_account", "delete")
        account = self.get(account_id)
        used = self.work.session.scalar(
            select(MailCampaign.id).where(MailCampaign.account_id == account.id).limit(1)
        )
        if used is not None:
            raise ValidationFailed(
                {"_schema": [f"mailings went out from {account.name!r}: switch it off instead"]}
            )
        self.work.session.delete(account)
        self.work.flush()
        self.work.audit("mail_account", account_id, "delete", {"name": [account.name, None]})

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

    def may_send_from(self, account: MailAccount) -> bool:
        """Whether the actor may send from ``account``: a shared mailbox, their own, or any
        for those who manage mailboxes (and the system, delivering what was queued)."""
        actor = self.work.actor
        return (
            actor.system
            or account.owner_id is None
            or account.owner_id == actor.user_id
            or self.work.access.can("mail_account", "update")
        )

    def sending_account(self, *, name: str | None, user_id: int | None) -> MailAccount:
        """The mailbox a message goes out from: the named one, the sender's own, or a shared one.

        A colleague's own mailbox is refused (naming ``account``): mail from it would go out
        under their address and login, and its answers land in their mailbox.
        """
        if name:
            account = self.by_name(name)
            if not self.may_send_from(account):
                owned = f"{account.name} is a colleague's own mailbox"
                raise ValidationFailed({"account": [owned]})
            return account
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


class MailAccountService(EntityService):
    """The REST API's mailboxes (entity ``mail_account``): written through
    :class:`MailAccounts`, so passwords are sealed and every rule checked as on the screen."""

    def create(self, data: Mapping[str, Any] | None = None, **values: Any) -> MailAccount:
        with self.work.savepoint():
            return MailAccounts(self.work).create(data, **values)

    def update(
        self,
        record: Any,
        data: Mapping[str, Any] | None = None,
        *,
        expected_version: int | None = None,
        **values: Any,
    ) -> MailAccount:
        account = self.get(record, action="update")
        if expected_version is not None:  # mailboxes carry no version to compare
            raise Conflict(self.entity.name, account.id)
        with self.work.savepoint():
            return MailAccounts(self.work).update(account.id, data, **values)

    def delete(self, record: Any) -> None:
        account = self.get(record, action="delete")
        with self.work.savepoint():
            MailAccounts(self.work).delete(account.id)


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


@attrs.frozen
class ConnectionCheck:
    """How one server of a mailbox answered: ``ok`` and what happened, in plain words."""

    server: str  # "IMAP" or "SMTP"
    ok: bool
    detail: str


def _why(exc: BaseException, timeout: float) -> str:
    """A connection error as an admin can act on it (wrong host, port, security, login)."""
    if isinstance(exc, socket.gaierror):
        return "the host name is not known (check the server's name)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing listens on this port (check the port)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g} s (check the host, the port and the firewall)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the server's certificate is not trusted: {exc.verify_message} (see mail.ca_file)"
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS failed ({exc.reason or exc}): is the security (tls, starttls, none) right "
            "for this port?"
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"login refused: {exc.smtp_code} {exc.smtp_error.decode('utf-8', 'replace')}"
    if isinstance(exc, smtplib.SMTPException | ImapError | PermanentFailure):
        return str(exc)
    if isinstance(exc, OSError):
        return f"network error: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def _check_timeout(crm: CRM) -> float:
    # an admin waits for the answer: never the long timeout of a sync
    return float(min(int(crm.config["mail.timeout_seconds"]), 15))


def check_connection(crm: CRM, account: MailAccount) -> list[ConnectionCheck]:
    """Connect to the mailbox's IMAP and SMTP servers (those configured) and log in.

    Nothing is read or sent; each server gets a :class:`ConnectionCheck`.  Blocking (up to
    15 s, or ``mail.timeout_seconds`` if shorter, per server): call it outside the event loop.
    """
    checks = []
    if account.imap_host:
        imap = attrs.evolve(imap_settings(crm, account), timeout=_check_timeout(crm))
        try:
            with ImapMailbox(imap) as box:
                sent = ""
                if account.sent_folder:
                    sent = (
                        f"; copies of sent mail go to {account.sent_folder}"
                        if box.has_folder(account.sent_folder)
                        else f"; {account.sent_folder} is created with the first sent mail"
                    )
                checks.append(
                    ConnectionCheck(
                        "IMAP",
                        True,
                        f"{imap.host}:{imap.port}: logged in as {imap.username}, folder "
                        f"{imap.folder} (UIDVALIDITY {box.uidvalidity}){sent}",
                    )
                )
        except Exception as exc:
            checks.append(
                ConnectionCheck(
                    "IMAP", False, f"{imap.host}:{imap.port}: {_why(exc, imap.timeout)}"
                )
            )
    if account.smtp_host:
        smtp = attrs.evolve(smtp_settings(crm, account), timeout=_check_timeout(crm))
        try:
            with SmtpTransport(smtp):
                login = f"logged in as {smtp.username}" if smtp.username else "connected"
                checks.append(ConnectionCheck("SMTP", True, f"{smtp.host}:{smtp.port}: {login}"))
        except Exception as exc:
            checks.append(
                ConnectionCheck(
                    "SMTP", False, f"{smtp.host}:{smtp.port}: {_why(exc, smtp.timeout)}"
                )
            )
    return checks
