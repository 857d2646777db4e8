"""The dealers' board: each card says when the next task is due (overdue ones marked) and
when the dealer was last called or written to, read for all the cards in a few queries."""

from __future__ import annotations

import contextlib
import datetime as dt
import re

import sqlalchemy as sa
from denaq_fixtures import new_lead
from denaq_web import Client

from crmkit.clock import utcnow
from crmkit.web.app import create_app


@contextlib.contextmanager
def statements(engine):
    """The SQL statements ``engine`` runs inside the block."""
    seen: list[str] = []

    def record(connection, cursor, statement, *args):
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _card(board: str, party_id: int) -> str:
    found = re.search(rf'<li class="kcard" data-id="{party_id}".*?</li>', board, re.S)
    assert found, f"no card of {party_id}"
    return found.group(0)


def _times(card: str) -> dict[str, tuple[str, bool]]:
    """The card's dates by class (next-task, last-contact): (ISO moment, overdue)."""
    return {
        classes.split()[0]: (moment, "overdue" in classes.split())
        for classes, moment in re.findall(r'<time class="([^"]+)" datetime="([^"]+)"', card)
    }


def _dealer(crm, agent, name, *, due=(), calls=(), mails=(), notes=()):
    party = new_lead(crm, agent, name=name)
    with crm.acting_as(agent) as work:
        for n, deadline in enumerate(due):
            work.tasks.create(title=f"Задача {n}", party_id=party, deadline=deadline)
        for kind, moments in (("call", calls), ("mail", mails), ("note", notes)):
            for moment in moments:
                work.timeline.add(kind, party_id=party, subject=kind, occurred_at=moment)
    return party


def test_each_card_shows_the_next_task_and_the_last_contact(denaq, staff):
    now = utcnow().replace(microsecond=0)
    day = dt.timedelta(days=1)
    late = _dealer(
        denaq,
        staff.anna,
        "ООО «Опоздали»",
        due=[now - 2 * day, now + 3 * day],
        calls=[now - 5 * day, now - 9 * day],
        mails=[now - 4 * day],
        notes=[now - day],  # a note is no contact with the dealer
    )
    soon = _dealer(denaq, staff.anna, "ООО «Скоро»", due=[now + 7 * day, now + 2 * day])
    quiet = _dealer(denaq, staff.anna, "ООО «Тишина»", notes=[now - day])
    with denaq.acting_as(staff.anna) as work:  # a task done is no next task
        done = work.tasks.create(title="Было", party_id=quiet, deadline=now - day)
        work.tasks.complete(done)
    anna = Client(create_app(denaq), "anna")
    board = anna.get("/boards/dealer").text
    assert _times(_card(board, late)) == {
        "next-task": ((now - 2 * day).isoformat(), True),
        "last-contact": ((now - 4 * day).isoformat(), False),
    }
    assert _times(_card(board, soon)) == {"next-task": ((now + 2 * day).isoformat(), False)}
    assert _times(_card(board, quiet)) == {}


def test_the_board_reads_the_tasks_and_contacts_of_all_cards_in_a_few_queries(denaq, staff):
    now = utcnow()
    day = dt.timedelta(days=1)

    def add(n):
        _dealer(
            denaq,
            staff.anna,
            f"ООО «Фирма {n}»",
            due=[now + n * day],
            calls=[now - n * day],
            mails=[now - 2 * n * day],
        )

    add(1)
    anna = Client(create_app(denaq), "anna")
    anna.get("/boards/dealer")  # the first page warms what it caches
    with statements(denaq.engine) as few:
        page = anna.get("/boards/dealer").text
    assert len(re.findall(r'<time class="next-task', page)) == 1
    for n in range(2, 9):
        add(n)
    with statements(denaq.engine) as many:
        page = anna.get("/boards/dealer").text
    assert len(re.findall(r'<time class="next-task', page)) == 8
    assert len(re.findall(r'<time class="last-contact', page)) == 8
    assert len(many) == len(few), "a query per card"
