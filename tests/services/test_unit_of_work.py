"""The unit of work: all or nothing, events before commit, callbacks after."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crmkit import hookimpl
from crmkit.model import Attachment, AuditEntry, Party


def test_exception_rolls_everything_back_files_included(crm):
    with pytest.raises(RuntimeError), crm.system() as work:
        party = work.parties.create(name="Temp")
        attachment = work.attachments.add("a.txt", b"hello", party_id=party.id)
        path_key = attachment.storage_key
        raise RuntimeError("boom")
    with crm.system() as work:
        assert work.session.scalar(select(func.count()).select_from(Party)) == 0
        assert work.session.scalar(select(func.count()).select_from(Attachment)) == 0
        assert work.session.scalar(select(func.count()).select_from(AuditEntry)) == 0
    with pytest.raises(FileNotFoundError):
        crm.storage.open(path_key)


def test_event_handlers_write_in_the_same_transaction(crm):
    class Greeter:
        @hookimpl
        def crmkit_handle_event(self, event, work):
            if event.name == "record.created" and event.entity == "party":
                work.timeline.add_note(party_id=event.record_id, body="welcome")

    class Failing:
        @hookimpl
        def crmkit_handle_event(self, event, work):
            if event.name == "record.created" and event.entity == "deal":
                raise RuntimeError("handler failed")

    crm.pm.register(Greeter())
    crm.pm.register(Failing())
    with crm.system() as work:
        party = work.parties.create(name="A")
    with crm.system() as work:
        assert [a.body for a in work.timeline.list(party.id).items] == ["welcome"]
    with pytest.raises(RuntimeError, match="handler failed"), crm.system() as work:
        work.parties.create(name="B")
        work.deals.create(title="D")
    with crm.system() as work:
        assert work.parties.count(search="B") == 0  # the party went with the failed deal


def test_after_commit_runs_only_after_success(crm):
    calls = []
    with crm.system() as work:
        work.after_commit(lambda: calls.append("committed"))
        work.parties.create(name="A")
        assert calls == []
    assert calls == ["committed"]
    with pytest.raises(ValueError), crm.system() as work:
        work.after_commit(lambda: calls.append("never"))
        raise ValueError
    assert calls == ["committed"]


def test_runaway_event_loop_is_stopped(crm):
    class Echo:
        @hookimpl
        def crmkit_handle_event(self, event, work):
            work.emit("echo", "party", event.record_id)

    crm.pm.register(Echo())
    with pytest.raises(Exception, match="loop"), crm.system() as work:
        work.parties.create(name="A")


def test_savepoint_undoes_only_its_block(crm):
    with crm.system() as work:
        work.parties.create(name="kept")
        with pytest.raises(ValueError), work.savepoint():
            work.parties.create(name="dropped")
            raise ValueError
    with crm.system() as work:
        assert [p.name for p in work.parties.list().items] == ["kept"]


def test_audit_rows_cannot_be_changed(crm):
    import sqlalchemy as sa

    with crm.system() as work:
        work.parties.create(name="A")
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), crm.engine.begin() as c:
        c.execute(sa.text("DELETE FROM audit_log"))


def test_core_reads_and_a_later_session_share_one_transaction(crm):
    """A unit that starts with a Core statement and then writes through the ORM commits
    both, or rolls both back: one transaction."""
    from sqlalchemy import insert

    table = Party.__table__
    with crm.system() as work:
        before = work.connection().execute(select(func.count()).select_from(table)).scalar()
        work.connection().execute(insert(table).values(kind="person", name="Core row"))
        party = work.parties.create(name="ORM row")  # the session is made here
        # the session sees the Core row: the same transaction
        assert work.session.scalar(select(func.count()).select_from(Party)) == before + 2
        assert (
            work.connection().execute(select(table.c.name).where(table.c.id == party.id)).scalar()
            == "ORM row"
        )
    with crm.system() as work:
        names = set(work.session.scalars(select(Party.name)))
    assert {"Core row", "ORM row"} <= names

    with pytest.raises(RuntimeError), crm.system() as work:
        work.connection().execute(insert(table).values(kind="person", name="Core gone"))
        work.parties.create(name="ORM gone")
        raise RuntimeError("boom")
    with crm.system() as work:
        names = set(work.session.scalars(select(Party.name)))
    assert not {"Core gone", "ORM gone"} & names


def test_a_unit_is_usable_only_inside_its_with_block(crm):
    work = crm.system()
    with pytest.raises(RuntimeError, match="context manager"):
        work.connection()
    with work:
        work.connection()
    with pytest.raises(RuntimeError, match="context manager"):
        work.session  # noqa: B018 - the property is the check


def test_list_rows_see_the_units_own_writes_and_read_alone_outside_a_transaction(crm):
    with crm.system() as work:
        work.parties.create(name="Committed")
    with crm.system() as work:
        reader = work.read_connection()
        assert [r.name for r in work.parties.list_rows(["name"]).items] == ["Committed"]
        if crm.engine.dialect.name == "postgresql":
            import psycopg

            # a one-query unit pays no BEGIN/COMMIT round trips
            status = reader.connection.driver_connection.info.transaction_status
            assert status == psycopg.pq.TransactionStatus.IDLE
        work.parties.create(name="Uncommitted")  # the session begins the unit's transaction
        names = sorted(r.name for r in work.parties.list_rows(["name"]).items)
        assert names == ["Committed", "Uncommitted"]  # read inside it, own write included
        assert work.read_connection() is not reader


def test_the_audit_of_a_deleted_record_keeps_no_private_column(crm):
    with crm.system() as work:
        party = work.parties.create(name="Temp")
        attachment = work.attachments.add("a.txt", b"hello", party_id=party.id)
        key = attachment.storage_key
    with crm.system() as work:
        work.records("attachment").delete(attachment.id)
    with crm.system() as work:
        [entry] = work.session.scalars(
            select(AuditEntry).where(
                AuditEntry.entity == "attachment",
                AuditEntry.record_id == attachment.id,
                AuditEntry.action == "delete",
            )
        ).all()
    assert entry.changes["filename"] == ["a.txt", None]
    assert "storage_key" not in entry.changes and key not in str(entry.changes)


def _count(crm, model) -> int:
    with crm.system() as work:
        return work.session.scalar(select(func.count()).select_from(model))


def test_one_transaction_joins_every_unit_and_keeps_all_or_nothing(crm):
    """Inside ``crm.one_transaction()`` each unit (any actor) sees the ones before it; a
    failing unit undoes only itself; after-commit callbacks wait for the block's commit,
    and a block that raises keeps no row and no file, whatever its units committed."""
    from crmkit.testing import add_user

    calls = []
    with crm.one_transaction():
        user = add_user(crm, "olga", ["agent"])  # a unit, committed to a savepoint
        with crm.acting_as(user.id) as work:  # loads the actor inside the transaction
            party = work.parties.create(name="Ромашка")
            work.after_commit(lambda: calls.append("committed"))
        with pytest.raises(RuntimeError), crm.system() as work:
            work.parties.create(name="Вектор")
            raise RuntimeError("only this unit")
        with crm.system() as work:
            assert [p.name for p in work.parties.list().items] == ["Ромашка"]
        assert calls == []  # the data is not committed yet
    assert calls == ["committed"]
    assert _count(crm, Party) == 1
    with crm.system() as work:
        assert work.parties.get(party.id).owner_id == user.id

    before = {model: _count(crm, model) for model in (Party, Attachment, AuditEntry)}
    with pytest.raises(ValueError), crm.one_transaction():
        add_user(crm, "igor", ["agent"])
        with crm.system() as work:
            other = work.parties.create(name="Лазурь")
            key = work.attachments.add("a.txt", b"hello", party_id=other.id).storage_key
            work.after_commit(lambda: calls.append("never"))
        with crm.storage.open(key) as stored:  # stored, and kept while the block runs
            assert stored.read() == b"hello"
        raise ValueError("the block fails after its units committed")
    assert {model: _count(crm, model) for model in before} == before
    with crm.system() as work:
        assert [u.username for u in work.users.list()] == ["olga"]
    with pytest.raises(FileNotFoundError):
        crm.storage.open(key)
    assert calls == ["committed"]
