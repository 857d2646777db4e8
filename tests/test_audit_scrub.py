"""``crmkit audit scrub-private``: private values that audit rows written before the audit
log masked them still hold are masked with the rule new rows follow; nothing else moves,
the log stays append-only, a second run changes nothing."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from crmkit.cli import Env, audit
from crmkit.model import AuditEntry
from crmkit.testing import add_user, factories
from tests.plain_plugin import plugin as plain

OLD_ROWS = [  # as work.audit wrote them before private columns were masked
    ("plain_visit", "create", {"door_code": [None, "1234#"], "outcome": [None, ""]}),
    ("plain_visit", "update", {"door_code": ["1234#", "9876#"], "outcome": ["", "met"]}),
    ("plain_visit", "update", {"door_code": ["9876#", ""]}),
    ("user", "update", {"password_hash": ["$argon2id$old", "$argon2id$new"]}),
    ("user", "update", {"display_name": ["Оля", "Ольга"]}),  # nothing private
    ("party", "update", {"name": ["Ромашка", "ООО «Ромашка»"]}),  # no private columns
]


def _write_old_rows(crm, record_id):
    with crm.engine.begin() as connection:
        for entity, action, changes in OLD_ROWS:
            connection.execute(
                sa.insert(AuditEntry.__table__).values(
                    actor_id=None,
                    actor_label="system",
                    entity=entity,
                    record_id=record_id,
                    action=action,
                    changes=changes,
                )
            )


def _rows(crm):
    with crm.engine.connect() as connection:
        table = AuditEntry.__table__
        return connection.execute(
            sa.select(table.c.id, table.c.entity, table.c.changes).order_by(table.c.id)
        ).all()


def test_scrub_private_masks_old_audit_rows_once(make_crm):
    crm = make_crm(plugins=[plain])
    agent = add_user(crm, "agent1", ["agent"])
    with crm.acting_as(agent) as work:
        party = factories.organisation(work)
        visit = work.records("plain_visit").create(
            party_id=party.id, visited_at="2026-11-20T10:00:00+03:00", door_code="5555#"
        )
    before = {row.id: row.changes for row in _rows(crm)}  # written masked already
    _write_old_rows(crm, visit.id)
    env = Env(None, debug=False)
    env._crm = crm

    run = CliRunner().invoke(audit, ["scrub-private", "--batch-size", "2"], obj=env)

    assert run.exit_code == 0, run.output
    old = [row for row in _rows(crm) if row.id not in before]
    assert re.search(r"^\d+ audit rows checked, 4 changed$", run.stdout, re.M), run.stdout
    assert [row.changes for row in old] == [
        {"door_code": [None, "***"], "outcome": [None, ""]},
        {"door_code": ["***", "***"], "outcome": ["", "met"]},
        {"door_code": ["***", ""]},
        {"password_hash": ["***", "***"]},
        {"display_name": ["Оля", "Ольга"]},
        {"name": ["Ромашка", "ООО «Ромашка»"]},
    ]
    stored = json.dumps([row.changes for row in _rows(crm)])
    assert not any(secret in stored for secret in ("1234#", "9876#", "5555#", "$argon2id"))
    assert {row.id: row.changes for row in _rows(crm) if row.id in before} == before
    # the log is append-only again once the command is done
    with pytest.raises(sa.exc.DatabaseError), crm.engine.begin() as connection:
        connection.execute(sa.update(AuditEntry.__table__).values(action="x"))
    again = CliRunner().invoke(audit, ["scrub-private"], obj=env)
    assert again.exit_code == 0, again.output
    assert "4 changed" not in again.stdout and ", 0 changed" in again.stdout


def test_a_scrub_that_fails_mid_batch_keeps_the_log_append_only_and_the_batch_whole(
    make_crm,
):
    """A failure inside a batch, after its trigger was dropped and its rows rewritten, rolls
    the whole batch back: the log still refuses updates (on SQLite the driver used to
    commit the DROP TRIGGER by itself), no row of the batch is masked, the batches before
    it stay masked, and a rerun finishes the job."""
    crm = make_crm(plugins=[plain])
    agent = add_user(crm, "agent1", ["agent"])
    with crm.acting_as(agent) as work:
        party = factories.organisation(work)
        visit = work.records("plain_visit").create(
            party_id=party.id, visited_at="2026-11-20T10:00:00+03:00", door_code="5555#"
        )
    before = {row.id for row in _rows(crm)}
    _write_old_rows(crm, visit.id)
    written = {row.id: row.changes for row in _rows(crm) if row.id not in before}
    updates = []

    def fail_the_second_batch(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE AUDIT_LOG"):
            updates.append(statement)
            if len(updates) == 2:  # the rows are rewritten, the trigger not yet back
                raise RuntimeError("disk I/O error, injected")

    sa.event.listen(crm.engine, "after_cursor_execute", fail_the_second_batch)
    env = Env(None, debug=False)
    env._crm = crm
    try:
        run = CliRunner().invoke(audit, ["scrub-private", "--batch-size", "2"], obj=env)
    finally:
        sa.event.remove(crm.engine, "after_cursor_execute", fail_the_second_batch)

    assert run.exit_code != 0 and "injected" in str(run.exception), run.output
    assert len(updates) == 2
    # the audit log refuses an update again, on a row of the failed batch as on any other
    for row_id in written:
        with pytest.raises(sa.exc.DatabaseError), crm.engine.begin() as connection:
            connection.execute(
                sa.update(AuditEntry.__table__)
                .where(AuditEntry.__table__.c.id == row_id)
                .values(changes={"door_code": ["***", "***"]})
            )
    masked = [
        {"door_code": [None, "***"], "outcome": [None, ""]},
        {"door_code": ["***", "***"], "outcome": ["", "met"]},
        {"door_code": ["***", ""]},
        {"password_hash": ["***", "***"]},
    ]
    now = [row.changes for row in _rows(crm) if row.id in written]
    # each row is either as written or fully masked, masked ones first (committed batches)
    done = [changes == mask for changes, mask in zip(now, masked, strict=False)]
    kept = [changes == old for changes, old in zip(now, written.values(), strict=True)]
    assert all(d or k for d, k in zip(done, kept, strict=False)), now
    assert 0 < sum(done) < 4 and done == sorted(done, reverse=True), now
    assert now[4:] == list(written.values())[4:]

    again = CliRunner().invoke(audit, ["scrub-private", "--batch-size", "2"], obj=env)
    assert again.exit_code == 0, again.output
    assert f", {4 - sum(done)} changed" in again.stdout
    assert [row.changes for row in _rows(crm) if row.id in written][:4] == masked
