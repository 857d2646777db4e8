"""Users' signatures, put under the mail they write when it goes out.

Each user keeps one (``mail(work).signatures``; the **My signature** screen).  The mail
channel's adapter adds it to every mail a user sends, whichever way it was written (by
hand, from a template, as a reply from the inbox, through the API), below the usual
``-- `` line, in the plain text and in the HTML; the timeline entry then holds the text as
it was sent.  Mass mailings and mail the system sends on its own go without.
"""

from __future__ import annotations

import html as html_module
from typing import TYPE_CHECKING

from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit_mail.model import MailSignature

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork

#: The line above a signature (dash, dash, space: mail clients recognise and fold it).
SEPARATOR = "-- "
MAX_LENGTH = 2000


class Signatures:
    """The signatures of a unit of work's users."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def get(self, user_id: int | None = None) -> str:
        """The signature of ``user_id`` (the acting user by default); empty when none."""
        user_id = self.work.actor.user_id if user_id is None else user_id
        if user_id is None:
            return ""
        row = self.work.session.get(MailSignature, user_id)
        return row.body if row is not None else ""

    def set(self, text: str) -> str:
        """Set the acting user's own signature (empty: none); returns it as stored."""
        user_id = self.work.actor.user_id
        if user_id is None:
            raise ValidationFailed({"signature": ["only a user has a signature"]})
        lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
        body = "\n".join(lines).strip("\n")
        if len(body) > MAX_LENGTH:
            raise ValidationFailed({"signature": [f"at most {MAX_LENGTH} characters"]})
        row = self.work.session.get(MailSignature, user_id)
        if not body:
            if row is not None:
                self.work.session.delete(row)
        elif row is None:
            self.work.session.add(MailSignature(user_id=user_id, body=body, updated_at=utcnow()))
        else:
            row.body, row.updated_at = body, utcnow()
        self.work.flush()
        return body


def signed(body: str, html: str | None, signature: str) -> tuple[str, str | None]:
    """``body`` and ``html`` with ``signature`` below them (unless it is empty or there)."""
    if not signature.strip():
        return body, html
    block = f"{SEPARATOR}\n{signature}"
    if block not in body:
        body = f"{body.rstrip()}\n\n{block}" if body.strip() else block
    if html is not None:
        shown = html_module.escape(signature).replace("\n", "<br>\n")
        if shown not in html:
            addition = f'<br>\n<div class="signature">-- <br>\n{shown}</div>'
            end = html.lower().rfind("</body>")
            html = html[:end] + addition + html[end:] if end >= 0 else html + addition
    return body, html
