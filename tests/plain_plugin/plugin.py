"""A plugin as the tutorial writes one: an entity on a pipeline that declares no
``filter_attrs`` (its users filter on nothing), with a private column.  The core's own
queries (a client's card, the board) and its audit log and events must cope with it."""

from __future__ import annotations

import datetime as dt

from marshmallow import fields
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from crmkit import EntityType, GuardResult, Pipeline, Stage, StageKind, Transition, grant, hookimpl
from crmkit.model import Base, IdMixin, PipelineMixin, party_fk, user_fk
from crmkit.schemas import StrictSchema

crmkit_plugin_name = "plain"


class PlainVisit(IdMixin, PipelineMixin, Base):
    __tablename__ = "plain_visit"

    party_id: Mapped[int] = party_fk(nullable=False)
    agent_id: Mapped[int | None] = user_fk()
    visited_at: Mapped[dt.datetime]
    outcome: Mapped[str] = mapped_column(String(200), default="")
    door_code: Mapped[str] = mapped_column(String(200), default="", info={"private": True})


class PlainVisitSchema(StrictSchema):
    party_id = fields.Integer(required=True)
    agent_id = fields.Integer(allow_none=True)
    visited_at = fields.AwareDateTime(required=True)
    outcome = fields.String()
    door_code = fields.String()


#: what the guard of planned -> done does (tests set it): None approves
GUARD: dict[str, object] = {"behaviour": None}


def outcome_written(move):
    behaviour = GUARD["behaviour"]
    if behaviour == "raise":
        raise RuntimeError("the guard's own bug")
    if behaviour == "wrong type":
        return 42
    if not move.record.outcome:
        return GuardResult.refuse("write the outcome first")
    return None


PLAIN = Pipeline(
    "plain_visit",
    entity="plain_visit",
    label="Plain visits",
    default=True,
    stages=[
        Stage("planned", "Planned"),
        Stage("done", "Done", kind=StageKind.SUCCESS),
        Stage("cancelled", "Cancelled", kind=StageKind.DEAD_END),
    ],
    transitions=[
        Transition("planned", "done", guards=(outcome_written,)),
        Transition("planned", "cancelled"),
    ],
)


@hookimpl
def crmkit_register_entities():
    return [
        EntityType(
            "plain_visit",
            PlainVisit,
            label="Plain visit",
            schema=PlainVisitSchema,
            owner_attrs=("agent_id",),
            party_attr="party_id",
            scope_through_party=True,
        )
    ]


@hookimpl
def crmkit_register_pipelines():
    return [PLAIN]


@hookimpl
def crmkit_register_permissions():
    return [
        *grant("agent", "plain_visit", ("read", "create", "update", "move"), "own"),
        *grant("manager", "plain_visit", ("read", "create", "update", "delete", "move"), "all"),
    ]
