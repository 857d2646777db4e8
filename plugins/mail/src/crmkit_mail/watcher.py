"""The ``mail.idle`` watcher: workers keep every mailbox in sync with IMAP IDLE.

Its keys are the names of the active mailboxes that have an IMAP server; a worker runs
:func:`crmkit_mail.sync.watch` for each (one worker per mailbox across all workers, see
:mod:`crmkit.jobs.watchers`), so new mail is on the timeline seconds after it arrives.
A mailbox added, switched off or deleted is picked up by the workers' next scan; a
connection that fails is opened again after a backoff; changed connection settings are
noticed by the watch itself, which connects again with them (see ``watch``).
``crmkit mail watch`` does the same for one mailbox in the foreground.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from sqlalchemy import select

from crmkit.jobs.watchers import Watcher
from crmkit_mail.model import MailAccount
from crmkit_mail.sync import reads_mail, watch

if TYPE_CHECKING:
    from crmkit.app import CRM


def mailbox_names(crm: CRM) -> list[str]:
    """Names of the mailboxes to watch: active, with an IMAP server."""
    with crm.system() as work:
        return list(
            work.session.scalars(
                select(MailAccount.name).where(reads_mail()).order_by(MailAccount.name)
            )
        )


def watch_mailbox(crm: CRM, name: str, stop: threading.Event) -> None:
    """Keep the mailbox called ``name`` in sync until ``stop`` is set."""
    with crm.system() as work:
        account_id = work.session.scalar(select(MailAccount.id).where(MailAccount.name == name))
    if account_id is None:
        raise LookupError(f"no mailbox {name!r}")
    watch(crm, account_id, stop=stop)


WATCHER = Watcher(
    "mail.idle",
    mailbox_names,
    watch_mailbox,
    description="Keep every active mailbox in sync with IMAP IDLE.",
)
