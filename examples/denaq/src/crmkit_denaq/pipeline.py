"""The dealer pipeline: Lead → Firm → Account → Client, with the refused firms' dead end.

- A **Lead** is a company someone found; it becomes a **Firm** once it has a contact person
  and is being worked.  Every way into Firm (from a lead, back from an account, a refused
  firm reopened) checks for that person.
- A Firm may refuse (the dead end **Refused firm**), keep thinking (stays) or agree: it becomes an
  **Account** once the signed papers are attached.
- An Account resells the product: it becomes a **Client**, or gives up and goes back to the
  refused firms (a backward move, with the reason).
- Every way into the refused firms asks why: a reason from :data:`REFUSAL_REASONS` (the
  custom field ``refusal_reason``, audited as any edit), and a comment for "другое".  A
  refused firm reopened no longer holds a reason: the next refusal asks again.
"""

from __future__ import annotations

from sqlalchemy import func

from crmkit import GuardResult, MoveContext, Pipeline, Stage, StageKind, Transition
from crmkit.i18n import message
from crmkit.model import Party
from crmkit.services.custom_fields import StarterField

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


#: Why a firm refuses: the choices of the move into the refused firms, in the order the
#: form offers them.  The deployment's list, in its agents' language (the values are stored
#: and counted as they are written here); change it here only.
REFUSAL_REASONS = (
    "уже работает с конкурентом",
    "не интересно",
    "дорого",
    "нет потребности",
    "не дозвонились",
    "закрылась",
    "другое",
)
#: The reason that says nothing by itself: the refusal's comment has to.
OTHER_REASON = "другое"
#: The custom field of dealers holding the reason of their refusal.
REASON_FIELD = "refusal_reason"
REFUSAL_FIELD = StarterField(
    "party", REASON_FIELD, "Причина отказа", kind="choice", choices=REFUSAL_REASONS
)


def other_reason_explained(move: MoveContext) -> GuardResult | None:
    """The reason "другое" is refused without a comment saying what it is."""
    reason = (move.record.custom or {}).get(REASON_FIELD)
    if reason == OTHER_REASON and not (move.comment or "").strip():
        return GuardResult.refuse(
            message("the refusal reason “{reason}” needs a comment", reason=reason)
        )
    return None


#: Guards of every transition into ``refused``.
REFUSAL_GUARDS = (other_reason_explained,)

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
        Stage(
            "refused",
            "Refused firm",
            kind=StageKind.DEAD_END,
            color="#b04848",
            requires_fields=(f"custom.{REASON_FIELD}",),
        ),
    ],
    transitions=[
        Transition("lead", "firm", guards=FIRM_GUARDS),
        Transition("firm", "account"),
        Transition("account", "client"),
        Transition(("lead", "firm"), "refused", label="refused", guards=REFUSAL_GUARDS),
        Transition("account", "refused", label="gave up", backward=True, guards=REFUSAL_GUARDS),
        Transition("firm", "lead", label="back", backward=True),
        Transition("account", "firm", label="back", backward=True, guards=FIRM_GUARDS),
        Transition("client", "account", label="stopped reselling", backward=True),
        Transition("refused", "firm", label="reopen", backward=True, guards=FIRM_GUARDS),
    ],
)
