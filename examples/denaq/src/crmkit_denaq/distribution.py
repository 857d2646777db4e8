"""The admin gives leads to agents and takes firms from one agent to give them to another.

Everything goes through the core's ``assign`` (access-checked, audited, ``owner.changed``
events, the new owner notified) in the caller's unit of work: a refused id changes nothing.
Reach it with ``distribution(work)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import aliased

from crmkit.clock import utcnow
from crmkit.errors import ValidationFailed
from crmkit.i18n import Message, message
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
#: Ids per statement when many records are dealt or handed over at once.
CHUNK = 500


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

    def holders(self) -> list[User]:
        """Agents whose firms may be handed over: the active ones, and blocked ones (who
        left) as long as they still hold dealer records, by name."""
        holding = set(
            self.work.session.scalars(
                self.work.parties.query()
                .with_only_columns(Party.owner_id)
                .where(Party.pipeline == NAME, Party.owner_id.is_not(None))
                .distinct()
            )
        )
        return sorted(
            (u for u in self.work.users.list(role=AGENT) if not u.blocked or u.id in holding),
            key=lambda u: (u.display_name or u.username).casefold(),
        )

    def require_holder(self, user_id: int, field: str = "from") -> None:
        """Refuse (naming ``field``) a user whose firms are not to be handed over: anyone
        but the :meth:`holders` the screen offers (a lead creator's leads are dealt from the
        pool, not handed over; a blocked agent holding nothing has nothing to give)."""
        if user_id not in {u.id for u in self.holders()}:
            raise ValidationFailed({field: [_not_a_holder(user_id)]})

    def _agent_ids(self) -> list[int]:
        return [u.id for u in self.agents()]

    def _waiting(self, source: str | None = None) -> Any:
        """Leads no agent has yet (still with their creator, or with nobody); with
        ``source``, only those found there."""
        agents = self._agent_ids()
        query = self.work.parties.query("assign").where(
            Party.pipeline == NAME,
            Party.stage == "lead",
            or_(Party.owner_id.is_(None), Party.owner_id.not_in(agents or [-1])),
        )
        return query.where(Party.source == source) if source else query

    def unassigned(self, limit: int | None = 200, source: str | None = None) -> list[Party]:
        """Leads no agent has yet (still with their creator, or with nobody), oldest first;
        at most ``limit`` of them (``None``: all), :meth:`waiting_count` says how many;
        with ``source``, only those found there."""
        query = self._waiting(source).order_by(Party.created_at, Party.id)
        if limit is not None:
            query = query.limit(limit)
        return list(self.work.session.scalars(query))

    def waiting_count(self, source: str | None = None) -> int:
        """How many leads no agent has yet (with ``source``: found there)."""
        query = self._waiting(source).with_only_columns(func.count()).order_by(None)
        return int(self.work.session.scalar(query) or 0)

    def sources(self) -> list[str]:
        """The sources of the leads no agent has yet, to narrow the pool to one."""
        query = (
            self._waiting()
            .with_only_columns(Party.source)
            .where(Party.source.is_not(None), Party.source != "")
            .distinct()
            .order_by(Party.source)
        )
        return list(self.work.session.scalars(query))

    def people_of(self, firm_ids: Sequence[int]) -> list[int]:
        """Contact people of these firms who are with the firm's owner (the lead creator who
        entered them, the agent who works on the firm), to go wherever the firm goes.

        Read before the firms change hands; people merged away are left out, and so are
        people someone else has (they are not the firm owner's to give)."""
        firm = aliased(Party)
        found: list[int] = []
        for start in range(0, len(firm_ids), CHUNK):
            chunk = list(firm_ids[start : start + CHUNK])
            query = (
                self.work.parties.query("assign")  # merged-away parties are never in it
                .with_only_columns(Party.id)
                .join(firm, firm.id == Party.organisation_id)
                .where(
                    Party.organisation_id.in_(chunk),
                    or_(
                        Party.owner_id == firm.owner_id,
                        and_(Party.owner_id.is_(None), firm.owner_id.is_(None)),
                    ),
                )
                .order_by(Party.id)
            )
            found += self.work.session.scalars(query)
        return found

    def _give(self, lead_ids: list[int], agent_id: int) -> int:
        """Give leads, and their people the leads' owners had, to one agent: the agent
        sees the person they will call (and the lead's move to a firm counts them)."""
        people = self.people_of(lead_ids)
        given = self.work.parties.assign(lead_ids, agent_id)
        if people:
            self.work.parties.assign(people, agent_id)
        return given

    def _still_waiting(self, lead_ids: Iterable[int]) -> tuple[list[int], list[Party]]:
        """The chosen ids that are still unassigned leads (in the order given, locked until
        the end of the transaction so two admins cannot both deal one), and the chosen
        records that are not (another agent has them, or they moved on meanwhile)."""
        wanted = list(dict.fromkeys(int(i) for i in lead_ids))
        if not wanted:
            return [], []
        found: set[int] = set()
        for start in range(0, len(wanted), CHUNK):
            found.update(
                self.work.session.scalars(
                    self._waiting()
                    .with_only_columns(Party.id)
                    .where(Party.id.in_(wanted[start : start + CHUNK]))
                    .with_for_update(of=Party)
                )
            )
        rest = [i for i in wanted if i not in found]
        taken: list[Party] = []
        for start in range(0, len(rest), CHUNK):
            taken += self.work.session.scalars(
                self.work.parties.query().where(Party.id.in_(rest[start : start + CHUNK]))
            )
        taken.sort(key=lambda p: (p.name, p.id))
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
            raise ValidationFailed({"agent_id": [_not_an_agent(agent_id)]})
        ids, taken = self._still_waiting(lead_ids)
        given = self._give(ids, agent_id) if ids else 0
        return Dealt({agent_id: given} if given else {}, taken)

    def round_robin(
        self, lead_ids: Sequence[int] | None = None, source: str | None = None
    ) -> Dealt:
        """Deal leads to the agents in turn, the least loaded first.

        Without ``lead_ids`` every unassigned lead is dealt (with ``source``: every one
        found there), however many; of those listed, only the ones no agent has yet (the
        others are named in ``Dealt.taken``).
        """
        load = self.load()
        if not load:
            raise ValidationFailed({"agent_id": ["there is no active agent to give leads to"]})
        if lead_ids is None:
            everyone = self._waiting(source).with_only_columns(Party.id)
            chosen: Sequence[int] = list(
                self.work.session.scalars(everyone.order_by(Party.created_at, Party.id))
            )
        else:
            chosen = lead_ids
        ids, taken = self._still_waiting(chosen)
        order = sorted(load, key=lambda agent: (load[agent], agent))
        shares: dict[int, list[int]] = {agent: [] for agent in order}
        for index, lead_id in enumerate(ids):
            shares[order[index % len(order)]].append(lead_id)
        for agent, share in shares.items():
            if share:
                self._give(share, agent)
        return Dealt({agent: len(share) for agent, share in shares.items() if share}, taken)

    def reassign(
        self, from_agent: int, to_agent: int, party_ids: Iterable[int] | None = None
    ) -> int:
        """Give an agent's firms (all of them, or those listed) to another agent.

        Their contact people (those the old agent had), the old agent's open tasks and the
        open tasks nobody was given, pending reminders, conversations and meetings not yet
        over about them move too, so the old agent loses sight of the firms at once (what
        they created themselves stays theirs to read and edit: the core's "own" scope of
        tasks, reminders and meetings counts their creator).  Returns the firms moved.
        """
        self.require_holder(from_agent, "from_agent")
        if from_agent == to_agent:
            raise ValidationFailed({"to_agent": ["choose another agent"]})
        if to_agent not in self._agent_ids():
            raise ValidationFailed({"to_agent": [_not_an_agent(to_agent)]})
        query = self.work.parties.query("assign").where(
            Party.pipeline == NAME, Party.owner_id == from_agent
        )
        if party_ids is not None:
            wanted = [int(i) for i in party_ids]
            query = query.where(Party.id.in_(wanted or [-1]))
        firms = [p.id for p in self.work.session.scalars(query)]
        if not firms:
            return 0
        people = self.people_of(firms)
        moved = self.work.parties.assign([*firms, *people], to_agent)
        self._move_work(from_agent, to_agent, [*firms, *people])
        return min(moved, len(firms))

    def _move_work(self, from_agent: int, to_agent: int, party_ids: list[int]) -> None:
        """The old agent's open tasks (and open tasks nobody was given), reminders,
        conversations and current or coming meetings about ``party_ids`` become the new
        agent's."""
        tasks = self.work.tasks.query().where(
            Task.party_id.in_(party_ids),
            or_(Task.assignee_id == from_agent, Task.assignee_id.is_(None)),
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
        # here, tells them and refreshes the open contact centers; mail to the old agent's
        # own mailbox stays theirs (the new one may not read it)
        found = self.work.session.scalars(
            select(Conversation.id).where(
                Conversation.party_id.in_(party_ids),
                Conversation.assignee_id == from_agent,
                or_(Conversation.owner_id.is_(None), Conversation.owner_id == to_agent),
            )
        ).all()
        for conversation_id in found:
            self.work.conversations.assign(conversation_id, to_agent)


def _not_an_agent(user_id: int) -> Message:
    """The refusal of a receiver who is not an active agent (translated when shown)."""
    return message("user {user} is not an active agent", user=user_id)


def _not_a_holder(user_id: int) -> Message:
    """The refusal of a giver whose firms are not to be handed over (translated when shown)."""
    return message("user {user} is not an agent whose firms can be handed over", user=user_id)


def summary(work: UnitOfWork) -> list[dict[str, Any]]:
    """Per agent: how many leads, firms, accounts, clients and refusals they hold now (the
    active agents, and blocked ones still holding records: their firms are to be handed
    over)."""
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
        for agent in distribution(work).holders()
    ]


_STAGES = ("lead", "firm", "account", "client", "refused")
