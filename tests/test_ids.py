"""Ids are never reused: a deleted record's id does not come back (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crmkit import Pipeline, Stage, Transition, hookimpl
from crmkit.errors import MoveRefused
from crmkit.model import Deal, Party, StageMove, Tagging
from crmkit.testing import add_user, factories

CONTRACTS = Pipeline(
    "contracts",
    "deal",
    stages=[Stage("draft"), Stage("signed", requires_documents=("contract",))],
    transitions=[Transition("draft", "signed")],
)


class Contracts:
    @hookimpl
    def crmkit_register_pipelines(self):
        return [CONTRACTS]


@pytest.fixture
def crm(make_crm):
    return make_crm(plugins=[Contracts()])


def test_a_new_deal_does_not_inherit_a_deleted_deals_id_links_or_documents(crm):
    boss = add_user(crm, "boss", ["manager", "admin"])
    with crm.acting_as(boss) as work:
        client = factories.organisation(work)
        old = work.deals.create(title="Old", party_id=client.id, pipeline="contracts", tags=["hot"])
        work.attachments.add(
            "contract.pdf", b"%PDF", record=("deal", old.id), document_type="contract"
        )
        work.timeline.add("note", party_id=client.id, record=("deal", old.id), body="wants 30% off")
        work.moves.move(old, "signed")
        old_id = old.id
    with crm.acting_as(boss) as work:
        work.deals.delete(old_id)
        assert (
            work.session.scalars(
                sa.select(StageMove).where(
                    StageMove.entity == "deal", StageMove.record_id == old_id
                )
            ).all()
            == []
        )
        assert (
            work.session.scalars(
                sa.select(Tagging).where(Tagging.entity == "deal", Tagging.record_id == old_id)
            ).all()
            == []
        )
    with crm.acting_as(boss) as work:
        new = work.deals.create(title="New", party_id=client.id, pipeline="contracts")
        assert new.id > old_id
        assert [(m.from_stage, m.to_stage) for m in work.moves.history(new)] == [(None, "draft")]
        assert work.timeline.list(client.id, record=("deal", new.id)).items == []
        with pytest.raises(MoveRefused, match="attach documents: contract"):
            work.moves.move(new, "signed")


def test_ids_stay_above_rows_deleted_by_plain_sql_and_in_bulk_imports(crm):
    with crm.system() as work:
        first = factories.organisation(work)
        newest = factories.organisation(work)
        deal = factories.deal(work, party_id=first.id)
    with crm.system() as work:  # not through the service: a cascade, a script
        work.session.execute(sa.delete(Deal).where(Deal.id == deal.id))
        work.session.execute(sa.delete(Party).where(Party.id == newest.id))
    with crm.system() as work:
        result = work.parties.bulk_create([{"kind": "organisation", "name": "Imported"}])
        [imported] = result.ids
        assert imported > newest.id
        assert factories.organisation(work).id > imported
        assert factories.deal(work, party_id=first.id).id > deal.id
