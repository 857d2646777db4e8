"""Bulk writes: ``insert_rows`` stores what a Core ``insert()`` of the same rows stores."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select

from crmkit.model import Activity, Conversation
from crmkit.services.bulk import allocate_ids, insert_rows, one_of, uses_arrays

WHEN = dt.datetime(2025, 3, 3, 7, 0, 0, 123456, tzinfo=dt.UTC)
MSK = dt.timezone(dt.timedelta(hours=3))
NEWFOUNDLAND = dt.timezone(-dt.timedelta(hours=3, minutes=30))


def activity(**values):
    row = {
        "id": None, "party_id": None, "kind": "mail", "occurred_at": WHEN, "actor_id": None,
        "by_assistant": False, "subject": "Заявка", "body": "Текст",
        "data": {"from": "a@example.ru", "refs": [], "nested": {"ok": True}, "none": None},
        "direction": "in", "channel": "mail", "external_id": None, "status": "new",
        "pinned": True, "record_entity": None, "record_id": None, "conversation_id": None,
    }  # fmt: skip
    return {**row, **values}


def conversation(**values):
    row = {
        "id": None, "channel": "mail", "address": "a@example.ru", "address_key": "a@example.ru",
        "sender_name": None, "subject": "Заявка", "party_id": None, "assignee_id": None,
        "team_id": None, "status": "open", "snoozed_until": None, "unread": 3,
        "last_message_at": WHEN, "created_at": WHEN.replace(microsecond=0), "closed_at": None,
        "record_entity": None, "record_id": None,
    }  # fmt: skip
    return {**row, **values}


def stored(connection, table, record_id):
    """The values as the database holds them (strings of dates and JSON on SQLite)."""
    columns = [c.name for c in table.columns if c.name != "id"]
    quoted = ", ".join(f'"{c}"' for c in columns)
    found = connection.exec_driver_sql(
        f'SELECT {quoted} FROM "{table.name}" WHERE id = {int(record_id)}'
    ).one()
    return dict(zip(columns, found, strict=True))


def test_insert_rows_stores_what_core_insert_stores(make_crm):
    crm = make_crm()
    for model, make in ((Activity, activity), (Conversation, conversation)):
        table = model.__table__
        with crm.system() as work:
            connection = work.session.connection()
            ours, theirs = allocate_ids(connection, table, 2)
            extra = {"external_id": f"<{ours}@x>"} if model is Activity else {}
            insert_rows(connection, table, [make(id=ours, **extra)])
            extra = {"external_id": f"<{theirs}@x>"} if model is Activity else {}
            connection.execute(insert(table), [make(id=theirs, **extra)])
        with crm.system() as work:
            connection = work.session.connection()
            mine, core = stored(connection, table, ours), stored(connection, table, theirs)
            mine.pop("external_id", None), core.pop("external_id", None)
            assert mine == core
            loaded = work.session.scalar(select(model).where(model.id == ours))
            assert loaded.id == ours
            if model is Activity:
                assert loaded.occurred_at == WHEN and loaded.pinned is True
                assert loaded.data["nested"] == {"ok": True} and loaded.data["none"] is None
            else:
                assert loaded.last_message_at == WHEN and loaded.closed_at is None


NASTY = [
    'ООО "Ромашка"',
    "a\\b",
    "c,d",
    "{e}",
    " f ",
    "NULL",
    "",
    '"',
    '","',
    "\\",
    '\\"',
    "g'h",
]


def test_one_of_finds_exactly_the_values_asked_for(make_crm):
    """``one_of`` with many text values (on PostgreSQL one array literal the server parses):
    quotes, backslashes, commas, braces, spaces, the word NULL and an empty string are
    matched as themselves, and nothing else is."""
    crm = make_crm()
    table = Activity.__table__
    stored_ids = [*NASTY, "other", "NULL2"]
    with crm.system() as work:
        connection = work.session.connection()
        ids = allocate_ids(connection, table, len(stored_ids))
        insert_rows(
            connection,
            table,
            [activity(id=i, external_id=e) for i, e in zip(ids, stored_ids, strict=True)],
        )
    with crm.system() as work:
        connection = work.session.connection()
        arrays = uses_arrays(connection)
        asked = one_of(Activity.external_id, "ids", array=arrays)
        query = select(Activity.external_id).where(asked)
        found = connection.execute(query, {"ids": [*NASTY, "absent"]}).scalars().all()
        assert sorted(found) == sorted(NASTY)
        assert connection.execute(query, {"ids": ["other"]}).scalars().all() == ["other"]
        assert connection.execute(query, {"ids": ["absent"]}).scalars().all() == []


@given(
    when=st.datetimes(
        min_value=dt.datetime(2, 1, 1),
        max_value=dt.datetime(9998, 12, 31),
        timezones=st.sampled_from([dt.UTC, MSK, NEWFOUNDLAND]),
    )
)
def test_sqlite_timestamps_are_the_text_sqlalchemy_would_store(when):
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.dialects.sqlite.base import DATETIME

    from crmkit.model.base import UTCDateTime

    dialect = sqlite.dialect()
    column = UTCDateTime()
    quick = column.dialect_impl(dialect).bind_processor(dialect)
    general = DATETIME().bind_processor(dialect)
    assert quick(when) == general(column.process_bind_param(when, dialect))


def test_sqlite_timestamps_refuse_naive_and_other_values():
    from sqlalchemy.dialects import sqlite

    from crmkit.model.base import UTCDateTime

    dialect = sqlite.dialect()
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process(None) is None
    with pytest.raises(ValueError, match="naive datetime"):
        process(dt.datetime(2025, 3, 3))
    with pytest.raises(TypeError, match="takes a datetime"):
        process("2025-03-03")


@given(
    when=st.datetimes(
        min_value=dt.datetime(2, 1, 1),
        max_value=dt.datetime(9998, 12, 31),
        timezones=st.sampled_from([dt.UTC, MSK, NEWFOUNDLAND, None]),
    )
)
def test_server_timestamps_read_as_the_same_instant_in_utc(when):
    from sqlalchemy.dialects.postgresql import psycopg

    from crmkit.model.base import UTCDateTime

    dialect = psycopg.dialect()
    column = UTCDateTime()
    quick = column.dialect_impl(dialect).result_processor(dialect, None)
    read = quick(when)
    assert read == (when if when.tzinfo else when.replace(tzinfo=dt.UTC))  # the same instant
    assert read.tzinfo is dt.UTC
    assert quick(None) is None
