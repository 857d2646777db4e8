"""The fast row path of lists gives exactly what the output schemas dump."""

from __future__ import annotations

import json

from crmkit.schemas.output import encoder_for, output_schema
from crmkit.testing import add_user, factories
from crmkit.web.api.responses import dumps


def test_row_encoding_matches_schema_dump_for_every_core_entity(crm):
    agent = add_user(crm, "ann", ["agent"])
    with crm.acting_as(agent) as work:
        deal = factories.deal(work, amount="1234.50", custom={})
        work.timeline.add_note(party_id=deal.party_id, body="заметка", pinned=True)
        factories.task(work, party_id=deal.party_id, deadline="2030-01-01T10:00:00+03:00")
        work.attachments.add("a.txt", b"x", party_id=deal.party_id)
    checked = 0
    with crm.system() as work:
        for entity in crm.entities:
            encoder = encoder_for(output_schema(entity), entity.model)
            assert encoder.flat, entity.name
            service = work.records(entity.name)
            records = service.list(limit=500).items
            rows = service.list_rows(encoder.columns, limit=500).items
            fast = json.loads(dumps(encoder.rows(rows)))
            slow = json.loads(json.dumps(output_schema(entity)().dump(records, many=True)))
            assert fast == slow, entity.name
            checked += bool(records)
    assert checked >= 8


def test_private_columns_never_leave(crm):
    for name, hidden in (("user", "password_hash"), ("attachment", "storage_key")):
        entity = crm.entities[name]
        assert hidden not in output_schema(entity)().fields
        assert hidden not in encoder_for(output_schema(entity), entity.model).columns
