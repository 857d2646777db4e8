"""The automation tests' application: a rules plugin (``plugin``) with a mail channel that
keeps what it sends and a rule in code, and an application with it (``app``)."""

from __future__ import annotations

import pytest

from crmkit import AddressKind, Capability, Channel, DeliveryReceipt, hookimpl
from crmkit.automation import Action, Rule, Trigger


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
