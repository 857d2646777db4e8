"""``move_many`` takes records, or ids with ``entity=``: ids alone (or anything else) are
a ``TypeError`` naming the argument, before any record moves."""

from __future__ import annotations

import pytest

from crmkit.testing import add_user, factories


def test_ids_without_entity_are_a_type_error_naming_records(crm):
    admin = add_user(crm, "root", ["admin"])
    with crm.acting_as(admin) as work:
        deals = [factories.deal(work), factories.deal(work)]
        ids = [deal.id for deal in deals]
        with pytest.raises(TypeError, match=r"records holds the id \d+: pass the record itself"):
            work.moves.move_many([deals[0], ids[1]], "qualified")
        with pytest.raises(TypeError, match="records must be a list of records"):
            work.moves.move_many(ids[0], "qualified")
        with pytest.raises(TypeError, match="no record of a registered entity"):
            work.moves.move_many([object()], "qualified")
        assert {work.deals.get(i).stage for i in ids} == {"new"}  # nothing moved
        result = work.moves.move_many(ids, "qualified", entity="deal")
        assert result.moved == ids
