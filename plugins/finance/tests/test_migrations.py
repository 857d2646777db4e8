"""The finance branch: applied after the core's, equal to the models, append-only triggers."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from crmkit_finance import plugin as finance_plugin

from crmkit import CRM, Config
from crmkit.testing import (
    new_postgres_schema,
    postgres_engine_for,
    postgres_reachable,
    require,
    schema_differences,
)


@pytest.fixture
def migrated(db_backend, tmp_path):
    if db_backend == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
        drop = None
    else:
        require(postgres_reachable(), "PostgreSQL")
        schema, drop = new_postgres_schema("crmkit_fin")
        engine = postgres_engine_for(schema)
    config = Config.from_mapping({"database.url": str(engine.url)}, root=tmp_path, environ={})
    crm = CRM(config, engine=engine, plugins=[finance_plugin], load_entry_points=False)
    crm.migrations.upgrade()
    yield crm
    engine.dispose()
    if drop:
        drop()


def test_finance_branch_matches_the_models(migrated):
    assert set(migrated.migrations.current()) == {"crmkit", "finance"}
    assert migrated.migrations.current() == migrated.migrations.heads()
    # the finance head stands on the core's, and each branch reports its own revision
    current = migrated.migrations.current()
    assert current["finance"] == "finance_0007_performer_chosen"
    assert current["crmkit"] != current["finance"]
    with migrated.engine.connect() as connection:
        assert schema_differences(migrated, connection) == []


def test_ledger_is_append_only_after_migration(migrated):
    from crmkit_finance import finance

    migrated.sync_access()
    with migrated.system() as work:
        fin = finance(work)
        fin.expenses.expense("expense:rent", "100.00")
    for statement in ("UPDATE finance_entry SET amount = 1", "DELETE FROM finance_transaction"):
        with (
            pytest.raises(sa.exc.DatabaseError, match="append-only"),
            migrated.engine.begin() as connection,
        ):
            connection.execute(sa.text(statement))


@pytest.fixture
def before_payment_messages(db_backend, tmp_path):
    """A deployment migrated up to the finance revision before payments' old timeline
    entries were given their messages."""
    if db_backend == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'p.sqlite3'}")
        drop = None
    else:
        require(postgres_reachable(), "PostgreSQL")
        schema, drop = new_postgres_schema("crmkit_fin")
        engine = postgres_engine_for(schema)
    settings = {
        "database.url": str(engine.url),
        "secret_key": "test-secret-payment-messages",
        "security.argon2_profile": "CHEAPEST",
    }
    config = Config.from_mapping(settings, root=tmp_path, environ={})
    crm = CRM(config, engine=engine, plugins=[finance_plugin], load_entry_points=False)
    for target in ("crmkit@head", "finance@finance_0003_form_token"):
        crm.migrations.upgrade(target)
    yield crm
    engine.dispose()
    if drop:
        drop()


def test_old_payment_entries_read_in_the_readers_language_after_the_upgrade(
    before_payment_messages,
):
    """A payment's and a refund's timeline entries written before they kept a message
    (their English text only, as the cash desk wrote it) are given the message by the
    upgrade: a Russian reader sees them in Russian, in roubles as Russians write them; an
    entry of another shape stays as it was written."""
    from finance_web import clients
    from sqlalchemy import select

    from crmkit.model import Activity
    from crmkit.testing import add_user

    crm = before_payment_messages
    with crm.system() as work:
        party_id = work.parties.create(kind="person", name="Иван Петров").id
        for subject, data in (  # as the cash desk wrote them before (a plain text subject)
            (
                "Payment: 10700.00 RUB (card)",
                {"kind": "payment", "method": "card", "amount": "10700.00", "currency": "RUB"},
            ),
            (
                "Refund: 200.00 RUB (cash)",
                {"kind": "refund", "method": "cash", "amount": "-200.00", "currency": "RUB"},
            ),
            ("Payment received by hand", {}),
        ):
            work.timeline.add("payment", party_id=party_id, subject=subject, data=data)
    crm.migrations.upgrade()
    assert crm.migrations.current()["finance"] == "finance_0007_performer_chosen"
    with crm.system() as work:
        entries = {
            a.subject: a.data
            for a in work.session.scalars(select(Activity).where(Activity.kind == "payment"))
        }
    assert entries["Payment: 10700.00 RUB (card)"]["subject_message"] == {
        "template": "Payment: {amount} ({method})",
        "params": {"amount": {"amount": "10700.00", "currency": "RUB"}, "method": "card"},
        "labels": {"amount": "amount", "method": "label"},
    }
    assert entries["Refund: 200.00 RUB (cash)"]["method"] == "cash"  # the data kept
    assert "subject_message" not in entries["Payment received by hand"]
    crm.sync_access()
    add_user(crm, "reader", ["admin"])
    page = clients(crm)("reader").get(f"/clients/{party_id}")
    assert page.status_code == 200
    timeline = page.text.split('<ol class="entries">', 1)[1].split("</ol>", 1)[0]
    assert "Оплата: 10\xa0700,00\xa0₽ (карта)" in timeline
    assert "Возврат: 200,00\xa0₽ (наличные)" in timeline
    assert "Payment received by hand" in timeline  # another shape: as it was written
    assert "Payment:" not in timeline and "Refund:" not in timeline and "RUB" not in timeline
    crm.migrations.upgrade()  # nothing more to do
    with crm.system() as work:
        assert len(work.session.scalars(select(Activity.id)).all()) == 3


def test_the_upgrade_tells_chosen_performers_as_the_reopening_did(migrated):
    """finance_0007 marks the performers of existing lines chosen by hand as the reopening
    told them before it: an open line's performer is chosen; a recognized line's is filled
    in when it equals the assignee written on the line, chosen otherwise or when the line
    has no assignee written (recognized before finance_0005); no performer, none chosen."""
    from alembic import command
    from crmkit_finance import finance
    from finance_fixtures import build_shop

    from crmkit.testing import add_user

    crm = migrated
    crm.sync_access()
    shop = build_shop(crm)
    ivan = add_user(crm, "ivan", ["agent"])
    helper = add_user(crm, "helper", ["agent"])
    with crm.acting_as(shop.manager) as work:
        orders = finance(work).orders
        open_order = shop.order(work, assignee_id=ivan.id)
        open_chosen = orders.add_line(open_order, shop.oil_change.id, performer_id=ivan.id).id
        open_empty = orders.add_line(open_order, shop.diagnostics.id).id
        done = shop.order(work, assignee_id=ivan.id)
        filled_in = orders.add_line(done, shop.oil_change.id).id
        for_another = orders.add_line(done, shop.diagnostics.id, performer_id=helper.id).id
        as_assignee = orders.add_line(done, shop.oil.id, performer_id=ivan.id).id
        orders.complete(done)
        before_0005 = shop.order(work, assignee_id=ivan.id)
        old_line = orders.add_line(before_0005, shop.oil_change.id).id
        orders.complete(before_0005)
    config = crm.migrations.config()
    with crm.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "finance_0006_order_completions")
        connection.execute(
            sa.text("UPDATE finance_order_line SET assignee_id = NULL WHERE id = :id"),
            {"id": old_line},
        )
    crm.migrations.upgrade()
    with crm.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT id, performer_chosen FROM finance_order_line"))
        chosen = {key: value for key, value in rows}
    assert {key: bool(value) for key, value in chosen.items()} == {
        open_chosen: True,
        open_empty: False,
        filled_in: False,
        for_another: True,
        as_assignee: False,  # the assumption: equal to the assignee, it was filled in
        old_line: True,  # no assignee written: it keeps its performer, as before
    }
