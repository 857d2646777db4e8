"""Outbound mail: composing a MIME message and handing it to an SMTP server.

``compose`` builds the message (UTF-8 text, an optional HTML alternative, attachments with
RFC 2231 file names, Message-ID, In-Reply-To and References so replies thread);
``SmtpTransport`` opens one connection (implicit TLS, STARTTLS or plain, with login when a
username is set) and may send many messages over it (mass mailing).  SMTP answers are
sorted into :class:`~crmkit.channels.PermanentFailure` (5xx: retrying cannot help) and
ordinary exceptions (4xx, network: the outbox retries).
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from collections.abc import Iterable, Sequence
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import attrs

from crmkit.channels import PermanentFailure
from crmkit.clock import utcnow

SECURITY_CHOICES = ("tls", "starttls", "none")


def ascii_domain(address: str) -> str:
    """``address`` with its domain in the ASCII form every server takes (IDNA:
    ``info@магазин.рф`` -> ``info@xn--80aa0aebnilejl.xn--p1ai``); a name in non-Latin letters
    before the ``@`` stays as it is (it needs a server with SMTPUTF8)."""
    user, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{user}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return address  # not a domain IDNA can spell: the server answers for it


def make_message_id(idempotency_key: str, address: str) -> str:
    """The Message-ID of the mail sent for ``idempotency_key``: the same on every retry."""
    domain = ascii_domain(address).rpartition("@")[2] or "crmkit.invalid"
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<crmkit.{digest}@{domain}>"


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The TLS context for mail servers: system CAs, plus ``mail.ca_file`` when set."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def _address(address: str, name: str | None) -> Address:
    user, _, domain = ascii_domain(address).rpartition("@")
    return Address(display_name=name or "", username=user, domain=domain)


@attrs.frozen
class FileToSend:
    """An attachment's bytes and names."""

    filename: str
    content_type: str
    data: bytes


def _message_id(value: str | None) -> bool:
    """Whether ``value`` is a Message-ID (``<left@right>``), not an id made up without one."""
    return bool(
        value
        and len(value) > 2
        and value.startswith("<")
        and value.endswith(">")
        and not any(c.isspace() for c in value)
    )


def compose(
    *,
    sender: str,
    sender_name: str | None,
    to: Sequence[str],
    cc: Sequence[str] = (),
    subject: str,
    body: str,
    html: str | None = None,
    message_id: str,
    in_reply_to: str | None = None,
    references: Iterable[str] = (),
    attachments: Iterable[FileToSend] = (),
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """A MIME message ready for SMTP (UTF-8, headers encoded as RFC 2047 where needed)."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = _address(sender, sender_name)
    message["To"] = ", ".join(ascii_domain(a) for a in to)
    if cc:
        message["Cc"] = ", ".join(ascii_domain(a) for a in cc)
    message["Subject"] = subject or ""
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = message_id
    # only real message ids thread a reply: a mail without one was recorded under a made-up
    # ``sha256:...`` id, which no mail program knows (and which is not a header's syntax)
    refs = [r for r in references if _message_id(r)]
    if not _message_id(in_reply_to):
        in_reply_to = None
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        if in_reply_to not in refs:
            refs.append(in_reply_to)
    if refs:
        message["References"] = " ".join(refs)
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body or "", charset="utf-8", cte="quoted-printable")
    if html:
        message.add_alternative(html, subtype="html", charset="utf-8")
    for item in attachments:
        maintype, _, subtype = (item.content_type or "application/octet-stream").partition("/")
        message.add_attachment(
            item.data, maintype=maintype, subtype=subtype or "octet-stream", filename=item.filename
        )
    return message


@attrs.frozen
class SmtpSettings:
    """Where and how to connect; ``password`` is already unsealed."""

    host: str
    port: int
    security: str = "starttls"
    username: str = ""
    password: str = ""
    timeout: float = 30.0
    ca_file: str | None = None


class SmtpTransport:
    """One SMTP connection; use as a context manager, call :meth:`send` for each message."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.client: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpTransport:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Connect, secure the connection and log in (errors as described in the module)."""
        s = self.settings
        if s.security not in SECURITY_CHOICES:
            raise PermanentFailure(f"smtp security {s.security!r}: use one of {SECURITY_CHOICES}")
        context = tls_context(s.ca_file)
        try:
            if s.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=context
                )
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
                if s.security == "starttls":
                    client.starttls(context=context)
            if s.username:
                client.login(s.username, s.password)
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentFailure(f"{s.host}:{s.port}: {exc}") from exc
        self.client = client

    def close(self) -> None:
        """Say QUIT (or just drop the connection if the server is gone)."""
        if self.client is None:
            return
        try:
            self.client.quit()
        except (smtplib.SMTPException, OSError):
            self.client.close()
        self.client = None

    def send(self, message: EmailMessage, sender: str, recipients: Sequence[str]) -> dict[str, str]:
        """Hand one message over; raises PermanentFailure when every recipient is refused.

        Returns the recipients the server refused while taking the message for others
        (``{address: "550 ..."}``), empty when it took it for everyone.
        """
        if self.client is None:
            self.open()
        assert self.client is not None
        envelope = [ascii_domain(a) for a in recipients]
        try:
            refused = self.client.send_message(
                message, from_addr=ascii_domain(sender), to_addrs=envelope
            )
        except smtplib.SMTPNotSupportedError as exc:
            # an address in non-Latin letters before the @, and a server without SMTPUTF8
            raise PermanentFailure(
                f"{self.settings.host} does not take addresses in non-Latin letters "
                f"(SMTPUTF8): {', '.join(recipients)}"
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(
                f"{addr}: {code} {text.decode('utf-8', 'replace')}"
                for addr, (code, text) in exc.recipients.items()
            )
            if all(code >= 500 for code in codes):
                raise PermanentFailure(f"refused: {detail}") from exc
            raise
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500 and not isinstance(exc, smtplib.SMTPAuthenticationError):
                text = exc.smtp_error.decode("utf-8", "replace")
                raise PermanentFailure(f"{exc.smtp_code} {text}") from exc
            raise
        answers = {
            address: f"{code} {text.decode('utf-8', 'replace')}"
            for address, (code, text) in (refused or {}).items()
        }
        if answers and len(answers) == len(recipients):
            raise PermanentFailure(f"refused: {answers}")
        return answers
