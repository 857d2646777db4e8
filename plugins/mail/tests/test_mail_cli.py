"""``crmkit mail accounts`` and ``crmkit mail sync`` on a deployment with the mail plugin."""

from __future__ import annotations

from crmkit_mail import mail

from crmkit import CRM
from crmkit.cli import main


def call(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


NOTHING_TO_SYNC = "no active mailboxes: nothing to sync\n"


def test_no_mailbox_yet_is_said_rather_than_nothing(tmp_path, capsys):
    directory = tmp_path / "crm"
    assert call(capsys, "init", str(directory), "--plugin", "mail")[0] == 0
    config = ["--config", str(directory)]
    assert call(capsys, *config, "mail", "accounts") == (
        0, "no mailboxes: add one on the Mailboxes screen (/mail/mailboxes)\n", "",
    )  # fmt: skip
    assert call(capsys, *config, "mail", "sync") == (0, NOTHING_TO_SYNC, "")

    crm = CRM.from_directory(directory)
    with crm.system() as work:
        mail(work).accounts.create(
            name="sales", address="sales@firm.test", imap_host="imap.firm.test",
            imap_username="sales@firm.test", imap_password="secret", active=False,
        )  # fmt: skip
    crm.close()
    code, out, _ = call(capsys, *config, "mail", "accounts")
    assert code == 0 and out.startswith("sales\tsales@firm.test\t") and "(inactive)" in out
    assert call(capsys, *config, "mail", "sync") == (0, NOTHING_TO_SYNC, "")
