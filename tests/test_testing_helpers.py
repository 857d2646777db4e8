"""The helpers of ``crmkit.testing`` that tests of plugins build on."""

from __future__ import annotations

import socket
import threading

import pytest

from crmkit.testing import free_port, listening, wait_until


def test_listening_tells_a_port_with_a_server_from_one_without():
    port = free_port()
    assert not listening(port)
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert listening(port)
    assert not listening(port)


def test_wait_until_sees_a_server_that_starts_later():
    port = free_port()
    ready = threading.Event()

    def serve() -> None:
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen()
            ready.wait(5)

    thread = threading.Timer(0.3, serve)
    thread.start()
    try:
        assert not listening(port)
        assert wait_until(lambda: listening(port), timeout=5)
    finally:
        ready.set()
        thread.join()
    assert not wait_until(lambda: listening(port), timeout=0.2)


def _with_a_user(crm):
    from crmkit.testing import add_user

    return add_user(crm, "kept", ["agent"]).id


def test_module_crm_builds_once_and_again_after_the_database_was_emptied(
    module_crm, make_crm, db_backend
):
    first, user_id = module_crm(_with_a_user)
    assert module_crm(_with_a_user) == (first, user_id)

    make_crm()  # a fresh application: on PostgreSQL it empties this process's schema

    again, again_id = module_crm(_with_a_user)
    assert (again is first) == (db_backend == "sqlite")
    with again.system() as work:
        assert work.users.get(again_id).username == "kept"


def _row_counts(crm):
    import sqlalchemy as sa

    from crmkit.model import metadata

    with crm.engine.connect() as connection:
        return {
            table.name: connection.scalar(sa.select(sa.func.count()).select_from(table))
            for table in metadata.sorted_tables
        }


@pytest.mark.parametrize("grown", [False, True], ids=["small", "grown"])
def test_a_new_application_holds_only_its_seeds_and_numbers_rows_from_1(
    make_crm, monkeypatch, grown
):
    """Whatever the previous application wrote (a plugin's table too, rows deleted since),
    the next one starts from empty tables and ids from 1 (on PostgreSQL, in the same schema)."""
    import crmkit.testing
    from crmkit.testing import add_user, factories
    from tests.sample_plugin import plugin as sample

    if grown:  # tables big enough to be truncated rather than emptied row by row
        monkeypatch.setattr(crmkit.testing, "_TRUNCATE_ABOVE_BYTES", 0)
    seeds = _row_counts(make_crm(plugins=[sample]))

    used = make_crm(plugins=[sample])
    boss = add_user(used, "boss", ["manager", "admin"])
    with used.acting_as(boss) as work:
        client = factories.organisation(work)
        work.session.add_all(
            [sample.SampleVisit(party_id=client.id, owner_id=boss.id) for _ in range(3)]
        )
        gone = factories.deal(work, party_id=client.id)
    with used.acting_as(boss) as work:
        work.deals.delete(gone.id)  # the deal table is empty again, its ids went on
    written = _row_counts(used)
    assert written["sample_visit"] == 3 and written["party"] == 1 and written["deal"] == 0
    assert written["audit_log"] > 0  # append-only: its rows cannot be deleted one by one

    fresh = make_crm(plugins=[sample])
    assert _row_counts(fresh) == seeds
    assert not {name for name, count in seeds.items() if count} & {
        "sample_visit",
        "party",
        "deal",
        "user",
        "audit_log",
    }
    boss = add_user(fresh, "boss", ["manager", "admin"])
    with fresh.acting_as(boss) as work:
        client = factories.organisation(work)
        visit = sample.SampleVisit(party_id=client.id, owner_id=boss.id)
        work.session.add(visit)
        deal = factories.deal(work, party_id=client.id)
        work.session.flush()
        assert (boss.id, client.id, visit.id, deal.id) == (1, 1, 1, 1)


@pytest.mark.sqlite_only
def test_a_new_sqlite_application_has_the_schema_create_schema_makes(make_crm, tmp_path):
    from crmkit.db import make_engine
    from crmkit.model import metadata
    from tests.sample_plugin import plugin as sample

    made = make_crm(plugins=[sample])
    expected = make_engine(f"sqlite:///{tmp_path / 'expected.sqlite3'}")
    metadata.create_all(expected)

    def schema(engine):
        with engine.connect() as connection:
            return (
                connection.exec_driver_sql("PRAGMA journal_mode").scalar(),
                connection.exec_driver_sql(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
                ).all(),
            )

    assert schema(made.engine) == schema(expected)
    assert len(schema(made.engine)[1]) > len(metadata.tables)
    expected.dispose()
