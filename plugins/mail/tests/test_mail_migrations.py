"""The mail branch: applied after the core's, equal to the models."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from crmkit_mail import plugin as mail_plugin

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
        schema, drop = new_postgres_schema("crmkit_mail")
        engine = postgres_engine_for(schema)
    config = Config.from_mapping({"database.url": str(engine.url)}, root=tmp_path, environ={})
    crm = CRM(config, engine=engine, plugins=[mail_plugin], load_entry_points=False)
    crm.migrations.upgrade()
    yield crm
    engine.dispose()
    if drop:
        drop()


def test_mail_branch_matches_the_models(migrated):
    assert set(migrated.migrations.current()) == {"crmkit", "mail"}
    assert migrated.migrations.current() == migrated.migrations.heads()
    with migrated.engine.connect() as connection:
        assert schema_differences(migrated, connection) == []


def test_recipients_doubled_by_a_double_start_are_merged_by_mail_0007(migrated):
    from alembic import command
    from crmkit_mail.model import MailAccount, MailCampaign, MailCampaignRecipient

    with migrated.system() as work:
        ids = [work.parties.create({"kind": "person", "name": n}).id for n in ("Иван", "Анна")]
        account = MailAccount(name="sales", address="sales@example.test")
        work.session.add(account)
        work.flush()
        campaign = MailCampaign(name="Шины", account_id=account.id, subject="s", body="b")
        work.session.add(campaign)
        work.flush()
        campaign_id = campaign.id
    config = migrated.migrations.config()
    with migrated.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "mail_0006_sent_reading")
    # the table as it was then (the model has columns of later revisions)
    then = sa.table(
        "mail_campaign_recipient", *map(sa.column, ("campaign_id", "party_id", "address", "status"))
    )
    with migrated.engine.begin() as connection:  # a mailing started twice, before the index
        rows = [{"campaign_id": campaign_id, "party_id": i, "address": "x"} for i in ids] * 2
        rows.append({"campaign_id": campaign_id, "party_id": None, "address": "y"})
        rows.append({"campaign_id": campaign_id, "party_id": None, "address": "z"})
        rows = [{**row, "status": "pending"} for row in rows]
        connection.execute(sa.insert(then), rows)
    migrated.migrations.upgrade()
    with migrated.engine.connect() as connection:
        kept = connection.execute(
            sa.select(MailCampaignRecipient.party_id).order_by(MailCampaignRecipient.id)
        ).scalars()
        assert list(kept) == [*ids, None, None]  # each client once, the earliest row
        with pytest.raises(sa.exc.IntegrityError):
            connection.execute(sa.insert(MailCampaignRecipient), rows[0])
