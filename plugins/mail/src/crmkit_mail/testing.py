"""Real mail servers for tests and benchmarks: Dovecot (IMAP) and aiosmtpd (SMTP) on loopback.

``dovecot_server(directory)`` starts Debian's ``dovecot`` with a configuration of its own in
``directory`` (no system service, no system config): a passwd-file of test users, Maildirs in
the directory, plain IMAP and IMAPS on free loopback ports with a self-signed certificate.
``smtp_server(directory)`` starts an aiosmtpd controller that keeps what it receives, with
STARTTLS or implicit TLS, optional login and scripted refusals.  Both are context managers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import grp
import ipaddress
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import attrs

from crmkit.testing import free_port, listening, wait_until

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def dovecot_available() -> bool:
    """Whether the Dovecot binary is installed (Debian ``dovecot-imapd``)."""
    return os.path.exists(DOVECOT)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key, written to ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@attrs.frozen
class Dovecot:
    """A running Dovecot: ports, the CA file to trust, and its users' passwords."""

    host: str
    port: int
    tls_port: int
    ca_file: str
    directory: Path
    users: dict[str, str]

    def settings(self, user: str, *, tls: bool = False, folder: str = "INBOX") -> Any:
        """:class:`~crmkit_mail.imap.ImapSettings` for ``user``."""
        from crmkit_mail.imap import ImapSettings

        return ImapSettings(
            host=self.host,
            port=self.tls_port if tls else self.port,
            security="tls" if tls else "none",
            username=user,
            password=self.users[user],
            folder=folder,
            ca_file=self.ca_file,
        )


_DOVECOT_CONF = """\
base_dir = {run}
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
instance_name = crmkit-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = 0
mail_location = maildir:{run}/mail/%u
mail_uid = {mail_user}
mail_gid = {mail_group}
mail_privileged_group =
protocol imap {{
  mail_max_userip_connections = 100
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
  process_min_avail = 1
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {run}/users
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={run}/home/%u
}}
"""


@contextlib.contextmanager
def dovecot_server(
    directory: Path,
    users: dict[str, str] | None = None,
    certificate: tuple[Path, Path] | None = None,
) -> Iterator[Dovecot]:
    """Run Dovecot in the foreground with its own config under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    users = users or {"crm@example.test": "imap-secret-1"}
    (directory / "state").mkdir(exist_ok=True)
    # sockets live in a short path (the 108-byte limit) that Dovecot's unprivileged login
    # processes can reach even when the test directory is private
    run = Path(tempfile.mkdtemp(prefix="crmkit-dovecot-"))
    run.chmod(0o755)
    cert, key = certificate or self_signed_certificate(directory)
    (run / "users").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in users.items()))
    port, tls_port = free_port(), free_port()
    (run / "users").chmod(0o644)
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    # as root, Dovecot's own unprivileged users (made by the Debian package) run the logins
    root = os.getuid() == 0
    mail_user, mail_group = ("dovecot", "dovecot") if root else (user, group)
    for sub in ("mail", "home"):
        (run / sub).mkdir()
        if root:
            shutil.chown(run / sub, mail_user, mail_group)
    config = directory / "dovecot.conf"
    config.write_text(
        _DOVECOT_CONF.format(
            dir=directory,
            run=run,
            cert=cert,
            key=key,
            port=port,
            tls_port=tls_port,
            user=user,
            group=group,
            internal="dovecot" if root else user,
            internal_group="dovecot" if root else group,
            login="dovenull" if root else user,
            mail_user=mail_user,
            mail_group=mail_group,
        )
    )
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, process, directory / "dovecot.log")
        yield Dovecot("127.0.0.1", port, tls_port, str(cert), directory, dict(users))
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
        shutil.rmtree(run, ignore_errors=True)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    wait_until(lambda: process.poll() is not None or listening(port), timeout=20)
    if process.poll() is not None:
        output = process.stdout.read().decode() if process.stdout else ""
        detail = log.read_text() if log.exists() else ""
        raise RuntimeError(f"dovecot exited: {output}\n{detail}")
    if not listening(port):
        raise RuntimeError(f"dovecot did not listen on {port}")


# -- SMTP -----------------------------------------------------------------------------------


@attrs.define
class ReceivedMail:
    """One message an SMTP test server accepted."""

    sender: str
    recipients: list[str]
    raw: bytes

    @property
    def message(self) -> Any:
        """The parsed message (``email.message.EmailMessage``)."""
        return message_from_bytes(self.raw, policy=policy.default)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, smtp: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        for fragment, answer in self.server.refuse.items():
            if fragment in address:
                return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        if self.server.fail_data:
            return self.server.fail_data
        with self.server.lock:
            self.server.received.append(
                ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 Message accepted"


class _Authenticator:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode()
            if self.users.get(user) == auth_data.password.decode():
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@attrs.define
class SmtpServer:
    """A running aiosmtpd: where it listens, what it accepted, what it should refuse.

    ``refuse`` maps a fragment of a recipient address to an SMTP answer (``"550 no such
    user"``); ``fail_data`` makes every DATA fail with that answer (``"451 try later"``).
    """

    host: str
    port: int
    security: str
    ca_file: str
    users: dict[str, str]
    received: list[ReceivedMail] = attrs.field(factory=list)
    refuse: dict[str, str] = attrs.field(factory=dict)
    fail_data: str | None = None
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def settings(self, user: str | None = None) -> Any:
        """:class:`~crmkit_mail.smtp.SmtpSettings` to reach this server."""
        from crmkit_mail.smtp import SmtpSettings

        return SmtpSettings(
            host=self.host,
            port=self.port,
            security=self.security,
            username=user or "",
            password=self.users.get(user or "", ""),
            ca_file=self.ca_file,
        )


@contextlib.contextmanager
def smtp_server(
    directory: Path,
    *,
    security: str = "starttls",
    users: dict[str, str] | None = None,
    certificate: tuple[Path, Path] | None = None,
) -> Iterator[SmtpServer]:
    """Run aiosmtpd on a free loopback port (``security``: ``starttls``, ``tls`` or ``none``)."""
    import logging
    import ssl

    from aiosmtpd.controller import Controller

    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's chatter per AUTH
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = certificate or self_signed_certificate(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    users = users if users is not None else {"crm@example.test": "smtp-secret-1"}
    server = SmtpServer("127.0.0.1", free_port(), security, str(cert), users)
    options: dict[str, Any] = {
        "authenticator": _Authenticator(users),
        # aiosmtpd only counts STARTTLS as TLS; an implicit-TLS socket is encrypted already
        "auth_require_tls": security == "starttls",
        "auth_required": bool(users) and security == "starttls",
        "data_size_limit": 50 * 1024 * 1024,
    }
    if security == "starttls":
        options["tls_context"] = context
        options["require_starttls"] = True
    controller = Controller(
        _Handler(server),
        hostname="127.0.0.1",
        port=server.port,
        ssl_context=context if security == "tls" else None,
        server_hostname="localhost",
        **options,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
