"""The pipeline concept page's examples (docs/concepts/pipelines.md) run as written: the
dealers pipeline is declared by its block, and its "Moving" block moves a firm on."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

from crmkit import hookimpl
from crmkit.errors import MoveRefused
from crmkit.testing import add_user

PAGE = Path(__file__).resolve().parents[2] / "docs" / "concepts" / "pipelines.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)


@pytest.fixture
def dealers():
    """The page's first block, as the module of a plugin registering its pipeline."""
    module = types.ModuleType("dealers_sample")
    exec(compile(blocks()[0], str(PAGE), "exec"), module.__dict__)

    class Plugin:
        crmkit_plugin_name = "dealers_sample"

        @hookimpl
        def crmkit_register_pipelines(self):
            return [module.DEALERS]

    return Plugin()


def test_the_dealers_pipeline_and_the_moving_example(make_crm, dealers):
    crm = make_crm(plugins=[dealers])
    [moving] = [b for b in blocks() if "work.moves.move(firm" in b]
    user = add_user(crm, "maria", ["manager"])
    with crm.system() as work:  # an admin's field
        work.custom_fields.define(entity="party", key="inn", label="ИНН", kind="text")
    with crm.acting_as(user) as work:
        firm = work.parties.create(name="Vesna LLC", kind="organisation")
        assert (firm.pipeline, firm.stage) == ("dealer", "lead")
        with pytest.raises(MoveRefused, match="add a contact person first"):
            work.moves.move(firm, "firm")  # the guard of the page's block
        work.parties.create(name="Ivan Petrov", kind="person", organisation_id=firm.id)
        work.moves.move(firm, "firm")
        with pytest.raises(MoveRefused) as refused:  # the "Moving" block without its file
            work.moves.move(firm, "account", comment="papers signed",
                            fields={"custom": {"inn": "7701234567"}})  # fmt: skip
        assert refused.value.missing_documents == ["contract"]
        firm_id = firm.id
    with crm.acting_as(user) as work:
        firm = work.parties.get(firm_id)
        exec(compile(moving, str(PAGE), "exec"), {"crm": crm, "user": user, "firm": firm,
                                                  "pdf_bytes": b"%PDF-1.4"})  # fmt: skip
    with crm.acting_as(user) as work:
        firm = work.parties.get(firm_id)
        assert (firm.stage, firm.custom["inn"]) == ("account", "7701234567")
