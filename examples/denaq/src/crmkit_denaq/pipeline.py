"""The dealer pipeline: Lead → Firm → Account → Client, with the refused firms' dead end.

- A **Lead** is a company someone found; it becomes a **Firm** once it has a contact person
  and is being worked.  Every way into Firm (from a lead, back from an account, a refused
  firm reopened) checks for that person.
- A Firm may refuse (the dead end **Refused firm**), keep thinking (stays) or agree: it becomes an
  **Account** once the signed papers are attached.
- An Account resells the product: it becomes a **Client**, or gives up and goes back to the
  refused firms (a backward move, with the reason).
"""

from __future__ import annotations

from sqlalchemy import func

from crmkit import GuardResult, MoveContext, Pipeline, Stage, StageKind, Transition
from crmkit.i18n import message
from crmkit.model import Party

NAME = "dealer"

#: Papers a firm sends and signs before it may resell (document type -> label).
DOCUMENTS = {
    "contract": "Signed dealer contract",
    "requisites": "Company details card",
}


def has_contact_person(move: MoveContext) -> GuardResult | None:
    """A lead becomes a firm only once someone there is known by name: a contact person
    the one who moves it can see (and call), merged-away ones left out."""
    people = move.work.session.scalar(
        move.work.parties.query()
        .where(Party.organisation_id == move.record.id)
        .with_only_columns(func.count())
    )
    if not people:
        return GuardResult.refuse(message("add a contact person first"))
    return None


#: Guards of every transition into ``firm``: a firm always has a contact person, whichever
#: way it got there (a lead refused and then reopened included).
FIRM_GUARDS = (has_contact_person,)

DEALERS = Pipeline(
    NAME,
    "party",
    label="Dealers",
    default=True,
    applies_to={"field": "kind", "op": "eq", "value": "organisation"},
    documents=DOCUMENTS,
    stages=[
        Stage("lead", "Lead", color="#8aa1b1"),
        Stage("firm", "Firm", color="#3f7cac"),
        Stage("account", "Account", requires_documents=tuple(DOCUMENTS), color="#d49a2a"),
        Stage("client", "Client", kind=StageKind.SUCCESS, color="#3c9d5d"),
        Stage("refused", "Refused firm", kind=StageKind.DEAD_END, color="#b04848"),
    ],
    transitions=[
        Transition("lead", "firm", guards=FIRM_GUARDS),
        Transition("firm", "account"),
        Transition("account", "client"),
        Transition(("lead", "firm"), "refused", label="refused", requires_comment=True),
        Transition("account", "refused", label="gave up", backward=True, requires_comment=True),
        Transition("firm", "lead", label="back", backward=True),
        Transition("account", "firm", label="back", backward=True, guards=FIRM_GUARDS),
        Transition("client", "account", label="stopped reselling", backward=True),
        Transition("refused", "firm", label="reopen", backward=True, guards=FIRM_GUARDS),
    ],
)
