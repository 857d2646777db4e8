"""Fixtures shared by the core's tests: an empty database for the command-line tests, and
an application with the automation tests' rules plugin (``plugin``, ``app``)."""

from __future__ import annotations

import pytest

from crmkit import AddressKind, Capability, Channel, DeliveryReceipt, hookimpl
from crmkit.automation import Action, Rule, Trigger


@pytest.fixture
def empty_database(db_backend, tmp_path):
    """``--database-url`` of an empty database on the current backend (none: SQLite, the
    default file in the deployment's directory) and a function listing its tables."""
    import sqlalchemy as sa

    from crmkit.testing import new_postgres_schema, postgres_reachable, postgres_url, require

    if db_backend == "sqlite":
        yield (), None
        return
    require(postgres_reachable(), "PostgreSQL")
    schema, drop = new_postgres_schema()
    url = sa.engine.make_url(postgres_url()).update_query_dict(
        {"options": f"-csearch_path={schema}"}
    )
    engine = sa.create_engine(url)

    def tables() -> list[str]:
        with engine.connect() as connection:
            return sorted(sa.inspect(connection).get_table_names(schema=schema))

    yield ("--database-url", url.render_as_string(hide_password=False)), tables
    engine.dispose()
    drop()


class Mail:
    """A mail channel keeping what it sends in ``sent``."""

    def __init__(self, sent):
        self.sent = sent

    def send(self, message):
        self.sent.append(message)
        return DeliveryReceipt(f"m{len(self.sent)}")


class RulesPlugin:
    """The automation tests' plugin: a mail channel whose messages it keeps (``sent``) and a
    rule in code (a big deal qualified gets a call and tells the managers)."""

    crmkit_plugin_name = "test_rules"

    def __init__(self):
        self.sent = []

    @hookimpl
    def crmkit_register_channels(self):
        return [Channel("mail", AddressKind.EMAIL, {Capability.SEND}, lambda crm: Mail(self.sent))]

    @hookimpl
    def crmkit_register_automations(self):
        return [
            Rule(
                "qualified-big-deal",
                Trigger("stage.entered", entity="deal", stage="qualified"),
                (
                    Action(
                        "create_task", {"title": "Call {{ party.name }} about {{ record.title }}"}
                    ),
                    Action(
                        "notify", {"to": "role:manager", "text": "Big deal: {{ record.title }}"}
                    ),
                ),
                condition={"field": "amount", "op": "gte", "value": 100000},
                label="Big deals get a call",
            )
        ]


@pytest.fixture
def plugin():
    """The automation tests' :class:`RulesPlugin` (what it mailed is ``plugin.sent``)."""
    return RulesPlugin()


@pytest.fixture
def app(make_crm, plugin):
    """A fresh application with the automation tests' :class:`RulesPlugin`."""
    return make_crm(plugins=[plugin])
