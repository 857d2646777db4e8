"""The access page's supervisor example (docs/concepts/access.md) works as written: a role
of the deployment's own that creates records straight in a later stage."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

from crmkit.errors import ValidationFailed
from crmkit.testing import add_user

PAGE = Path(__file__).resolve().parents[2] / "docs" / "concepts" / "access.md"


def test_the_supervisor_example_places_records(make_crm):
    text = PAGE.read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "supervisor" in b]
    module = types.ModuleType("supervisor_sample")
    exec(compile(block, str(PAGE), "exec"), module.__dict__)
    crm = make_crm(plugins=[module])
    supervisor = add_user(crm, "sveta", ["supervisor"])
    manager = add_user(crm, "maria", ["manager"])
    with crm.acting_as(supervisor) as work:
        client = work.parties.create(name="Vesna LLC", kind="organisation")
        deal = work.deals.create(title="Carried over", party_id=client.id, amount="100",
                                 stage="proposal")  # fmt: skip
        assert deal.stage == "proposal"
    with crm.acting_as(manager) as work, pytest.raises(ValidationFailed, match="stage"):
        work.deals.create(title="Skipping", party_id=client.id, amount="100", stage="proposal")
