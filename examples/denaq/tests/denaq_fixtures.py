"""Helpers of denaq's tests: its people, leads, contact people and papers made quickly, and
where the browser tests put their screenshots."""

from __future__ import annotations

from pathlib import Path

import attrs

#: Where the browser tests leave their screenshots (the repository's test-artifacts).
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


@attrs.frozen
class Staff:
    """The people of a small dealer-acquisition team."""

    admin: object
    finder: object
    anna: object
    igor: object


def new_lead(crm, who, name="ООО «Автомир»", **values):
    """A lead entered by ``who`` (similar names allowed: screening is tested elsewhere)."""
    with crm.acting_as(who) as work:
        return work.parties.create(name=name, confirm_duplicates=True, **values).id


def add_person(crm, who, organisation_id, name="Ольга Кедрова"):
    first, last = name.split()
    with crm.acting_as(who) as work:
        return work.parties.create(
            kind="person",
            first_name=first,
            last_name=last,
            organisation_id=organisation_id,
            confirm_duplicates=True,
        ).id


def attach(crm, who, party_id, *documents):
    with crm.acting_as(who) as work:
        for document in documents:
            work.attachments.add(
                f"{document}.pdf", b"%PDF-1.4", party_id=party_id, document_type=document
            )


def refuse(work, party_id, reason, comment=None):
    """Move a dealer to the refused firms for ``reason`` (one of the deployment's list)."""
    return work.moves.move(
        party_id,
        "refused",
        entity="party",
        comment=comment,
        fields={"custom": {"refusal_reason": reason}},
    )
