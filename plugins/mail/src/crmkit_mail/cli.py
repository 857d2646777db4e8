"""``crmkit mail ...`` commands: list mailboxes, sync them once, watch them with IDLE."""

from __future__ import annotations

import signal
import threading

import click

from crmkit.cli import Env, pass_env
from crmkit.errors import ConfigError


@click.group("mail")
def mail_group() -> None:
    """Mailboxes and mailings (the mail plugin)."""


@mail_group.command("accounts")
@pass_env
def accounts_command(env: Env) -> None:
    """List the mailboxes, their sync state and last error."""
    from crmkit_mail import mail

    with env.crm.system() as work:
        accounts = mail(work).accounts.list()
        if not accounts:
            click.echo(NO_MAILBOXES)
        for account in accounts:
            state = f"uidvalidity={account.uidvalidity} last_uid={account.last_uid}"
            error = f" error: {account.last_error}" if account.last_error else ""
            flag = "" if account.active else " (inactive)"
            click.echo(f"{account.name}\t{account.address}\t{state}{flag}{error}")


#: what `mail accounts` says on a deployment with no mailbox yet, rather than nothing
NO_MAILBOXES = "no mailboxes: add one on the Mailboxes screen (/mail/mailboxes)"


@mail_group.command("sync")
@click.option("--account", "name", help="Only this mailbox (by name).")
@pass_env
def sync_command(env: Env, name: str | None) -> None:
    """Record the new mail of every active mailbox (or one) once; exit 1 if any failed."""
    from crmkit_mail import mail
    from crmkit_mail.sync import sync_account, sync_all

    if name:
        with env.crm.system() as work:
            account_id = mail(work).accounts.by_name(name).id
        reports = [sync_account(env.crm, account_id)]
    else:
        reports = sync_all(env.crm)
        if not reports:
            click.echo("no active mailboxes: nothing to sync")
    for r in reports:
        if r.error:
            click.echo(f"{r.account}: failed: {r.error}", err=True)
        else:
            click.echo(
                f"{r.account}: {r.recorded} recorded, {r.duplicates} already known, "
                f"{r.bounces} bounces"
                + (f", {r.passed_over} older than the import window" if r.passed_over else "")
                + (f", {r.ignored} from ignored senders" if r.ignored else "")
                + (f", {r.sent_recorded} sent from mail programs" if r.sent_recorded else "")
                + (f", {r.internal} between colleagues" if r.internal else "")
                + f" (uid {r.last_uid})"
            )
    if any(r.error for r in reports):
        raise SystemExit(1)  # a failed mailbox fails the command (cron and scripts see it)


@mail_group.command("watch")
@click.option("--account", "name", required=True, help="The mailbox to keep in sync.")
@pass_env
def watch_command(env: Env, name: str) -> None:
    """Keep one mailbox in sync with IMAP IDLE (polling if the server lacks it) until stopped."""
    from crmkit_mail import mail
    from crmkit_mail.sync import watch

    with env.crm.system() as work:
        try:
            account_id = mail(work).accounts.by_name(name).id
        except Exception as exc:
            raise ConfigError(f"--account {name}: {exc}") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        watch(
            env.crm,
            account_id,
            stop=stop,
            on_sync=lambda r: r.recorded and click.echo(f"{r.account}: {r.recorded} recorded"),
        )
    except KeyboardInterrupt:
        stop.set()
