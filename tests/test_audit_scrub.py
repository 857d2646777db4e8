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
