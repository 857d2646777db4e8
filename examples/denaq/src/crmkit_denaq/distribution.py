"""The admin gives leads to agents and takes firms from one agent to give them to another.

Everything goes through the core's ``assign`` (access-checked, audited, ``owner.changed``
events, the new owner notified) in the caller's unit of work: a refused id changes nothing.
Reach it with ``distribution(work)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import func, or_, select

from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.model import (
    CalendarEvent,
    Conversation,
    Party,
    Reminder,
    ReminderRecipient,
    Task,
)
from crmkit_denaq.pipeline import NAME

if TYPE_CHECKING:
    from crmkit.model import User
    from crmkit.services.unit import UnitOfWork

AGENT = "agent"
#: Stages an agent is still working on (the load round-robin balances).
OPEN_STAGES = ("lead", "firm", "account")


@attrs.frozen
class Dealt:
    """What dealing leads did: leads given to each agent (agent id -> count), and the chosen
    records left alone because they were no longer waiting for an agent."""

    given: dict[int, int]
    taken: list[Party] = attrs.field(factory=list)

    @property
    def count(self) -> int:
        """Leads given in all."""
        return sum(self.given.values())


def distribution(work: UnitOfWork) -> Distribution:
    """The distribution service of this unit of work."""
    return work.service("denaq.distribution", Distribution)


class Distribution:
    """Leads to agents (by hand, in bulk, round-robin) and firms from agent to agent."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    def agents(self) -> list[User]:
        """Agents who may receive leads (blocked ones excluded), by name."""
        return sorted(
            self.work.users.list(role=AGENT, include_blocked=False),
            key=lambda u: (u.display_name or u.username).casefold(),
        )

    def _agent_ids(self) -> list[int]:
        return [u.id for u in self.agents()]

    def _waiting(self) -> Any:
        """Leads no agent has yet (still with their creator, or with nobody)."""
        agents = self._agent_ids()
        return self.work.parties.query("assign").where(
            Party.pipeline == NAME,
            Party.stage == "lead",
            or_(Party.owner_id.is_(None), Party.owner_id.not_in(agents or [-1])),
        )

    def unassigned(self, limit: int = 200) -> list[Party]:
        """Leads no agent has yet (still with their creator, or with nobody), oldest first."""
        return list(
            self.work.session.scalars(
                self._waiting().order_by(Party.created_at, Party.id).limit(limit)
            )
        )

    def _still_waiting(self, lead_ids: Iterable[int]) -> tuple[list[int], list[Party]]:
        """The chosen ids that are still unassigned leads (in the order given, locked until
        the end of the transaction so two admins cannot both deal one), and the chosen
        records that are not (another agent has them, or they moved on meanwhile)."""
        wanted = list(dict.fromkeys(int(i) for i in lead_ids))
        if not wanted:
            return [], []
        found = set(
            self.work.session.scalars(
                self._waiting()
                .with_only_columns(Party.id)
                .where(Party.id.in_(wanted))
                .with_for_update(of=Party)
            )
        )
        rest = [i for i in wanted if i not in found]
        taken = (
            list(
                self.work.session.scalars(
                    self.work.parties.query().where(Party.id.in_(rest)).order_by(Party.name)
                )
            )
            if rest
            else []
        )
        return [i for i in wanted if i in found], taken

    def load(self) -> dict[int, int]:
        """Records each agent is working on now (leads, firms, accounts)."""
        rows = self.work.session.execute(
            self.work.parties.query()
            .with_only_columns(Party.owner_id, func.count())
            .where(Party.pipeline == NAME, Party.stage.in_(OPEN_STAGES))
            .group_by(Party.owner_id)
        )
        found = {owner: int(count) for owner, count in rows}
        return {agent: found.get(agent, 0) for agent in self._agent_ids()}

    def assign(self, lead_ids: Iterable[int], agent_id: int) -> Dealt:
        """Give leads to one agent (by hand or in bulk).

        Only leads no agent has yet are given; the others chosen (on a page shown before
        someone dealt them) are left alone and named in ``Dealt.taken``.
        """
        if agent_id not in self._agent_ids():
            raise ValidationFailed({"agent_id": [f"user {agent_id} is not an active agent"]})
        ids, taken = self._still_waiting(lead_ids)
        given = self.work.parties.assign(ids, agent_id) if ids else 0
        return Dealt({agent_id: given} if given else {}, taken)

    def round_robin(self, lead_ids: Sequence[int] | None = None) -> Dealt:
        """Deal leads to the agents in turn, the least loaded first.

        Without ``lead_ids`` every unassigned lead is dealt; of those listed, only the ones
        no agent has yet (the others are named in ``Dealt.taken``).
        """
        load = self.load()
        if not load:
            raise ValidationFailed({"agent_id": ["there is no active agent to give leads to"]})
        chosen = lead_ids if lead_ids is not None else [p.id for p in self.unassigned(10_000)]
        ids, taken = self._still_waiting(chosen)
        order = sorted(load, key=lambda agent: (load[agent], agent))
        shares: dict[int, list[int]] = {agent: [] for agent in order}
        for index, lead_id in enumerate(ids):
            shares[order[index % len(order)]].append(lead_id)
        for agent, share in shares.items():
            if share:
                self.work.parties.assign(share, agent)
        return Dealt({agent: len(share) for agent, share in shares.items() if share}, taken)

    def reassign(
        self, from_agent: int, to_agent: int, party_ids: Iterable[int] | None = None
    ) -> int:
        """Give an agent's firms (all of them, or those listed) to another agent.

        Their contact people, the old agent's open tasks, pending reminders, conversations
        and meetings not yet over about them move too, so the old agent loses sight of them
        at once.  Returns the firms moved.
        """
        if from_agent == to_agent:
            raise ValidationFailed({"to_agent": ["choose another agent"]})
        if to_agent not in self._agent_ids():
            raise ValidationFailed({"to_agent": [f"user {to_agent} is not an active agent"]})
        query = self.work.parties.query("assign").where(
            Party.pipeline == NAME, Party.owner_id == from_agent
        )
        if party_ids is not None:
            wanted = [int(i) for i in party_ids]
            query = query.where(Party.id.in_(wanted or [-1]))
        firms = [p.id for p in self.work.session.scalars(query)]
        if not firms:
            return 0
        people = list(
            self.work.session.scalars(
                select(Party.id).where(
                    Party.organisation_id.in_(firms), Party.owner_id == from_agent
                )
            )
        )
        moved = self.work.parties.assign([*firms, *people], to_agent)
        self._move_work(from_agent, to_agent, [*firms, *people])
        return min(moved, len(firms))

    def _move_work(self, from_agent: int, to_agent: int, party_ids: list[int]) -> None:
        """The old agent's open tasks, reminders, conversations and current or coming
        meetings about ``party_ids`` become the new agent's."""
        tasks = self.work.tasks.query().where(
            Task.party_id.in_(party_ids),
            Task.assignee_id == from_agent,
            Task.status.not_in(("done", "cancelled")),
        )
        for task in list(self.work.session.scalars(tasks)):
            self.work.tasks.update(task, {"assignee_id": to_agent})
        events = self.work.calendar.query().where(
            CalendarEvent.party_id.in_(party_ids),
            CalendarEvent.owner_id == from_agent,
            CalendarEvent.ends_at > utcnow(),  # coming, or still going on
        )
        for event in list(self.work.session.scalars(events)):
            self.work.calendar.update(event, {"owner_id": to_agent})
        self._move_reminders(from_agent, to_agent, party_ids)
        self._move_conversations(from_agent, to_agent, party_ids)

    def _move_reminders(self, from_agent: int, to_agent: int, party_ids: list[int]) -> None:
        # The core has no service call to change a reminder's recipients: the rows are
        # changed here, in the caller's unit of work, and audited like an update.
        session = self.work.session
        rows = session.scalars(
            select(ReminderRecipient)
            .join(Reminder, Reminder.id == ReminderRecipient.reminder_id)
            .where(
                Reminder.party_id.in_(party_ids),
                Reminder.status != "done",
                ReminderRecipient.user_id == from_agent,
                ReminderRecipient.done_at.is_(None),
            )
        )
        for row in list(rows):
            already = session.scalar(
                select(ReminderRecipient.id).where(
                    ReminderRecipient.reminder_id == row.reminder_id,
                    ReminderRecipient.user_id == to_agent,
                )
            )
            if already is None:
                row.user_id = to_agent
            else:
                session.delete(row)
            self.work.audit(
                "reminder", row.reminder_id, "update", {"recipients": [from_agent, to_agent]}
            )
        self.work.flush()

    def _move_conversations(self, from_agent: int, to_agent: int, party_ids: list[int]) -> None:
        # the new agent sees the firms handed over in this transaction: assign checks it
        # here, tells them and refreshes the open contact centers
        found = self.work.session.scalars(
            select(Conversation.id).where(
                Conversation.party_id.in_(party_ids), Conversation.assignee_id == from_agent
            )
        ).all()
        for conversation_id in found:
            self.work.conversations.assign(conversation_id, to_agent)


def summary(work: UnitOfWork) -> list[dict[str, Any]]:
    """Per agent: how many leads, firms, accounts, clients and refusals they hold now."""
    rows = work.session.execute(
        work.parties.query()
        .with_only_columns(Party.owner_id, Party.stage, func.count())
        .where(Party.pipeline == NAME)
        .group_by(Party.owner_id, Party.stage)
    )
    counts: dict[int | None, dict[str, int]] = {}
    for owner, stage, count in rows:
        counts.setdefault(owner, {})[stage] = int(count)
    return [
        {"agent": agent, **{s: counts.get(agent.id, {}).get(s, 0) for s in _STAGES}}
        for agent in distribution(work).agents()
    ]


_STAGES = ("lead", "firm", "account", "client", "refused")
