"""A plugin whose input schema uses plain marshmallow fields, as the tutorial once showed:
no length on its texts, any moment with an offset, any whole number.  The record service
must still keep each value to what its column holds, the same way on both databases."""

from __future__ import annotations

import datetime as dt

from marshmallow import fields
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from crmkit import EntityType, grant, hookimpl
from crmkit.model import Base, IdMixin, party_fk, user_fk
from crmkit.schemas import StrictSchema

crmkit_plugin_name = "plainfields"


class PlainFieldsVisit(IdMixin, Base):
    __tablename__ = "plainfields_visit"

    party_id: Mapped[int] = party_fk(nullable=False)
    agent_id: Mapped[int | None] = user_fk()
    visited_at: Mapped[dt.datetime]
    outcome: Mapped[str] = mapped_column(String(200), default="")
    people: Mapped[int] = mapped_column(default=1)  # INTEGER: 32 bits on PostgreSQL
    follow_up_at: Mapped[dt.datetime | None]


class PlainFieldsVisitSchema(StrictSchema):
    party_id = fields.Integer(required=True)
    agent_id = fields.Integer(allow_none=True)
    visited_at = fields.AwareDateTime(required=True)
    outcome = fields.String()
    people = fields.Integer()
    follow_up_at = fields.DateTime(allow_none=True)  # takes a time without its offset too


@hookimpl
def crmkit_register_entities():
    return [
        EntityType(
            "plainfields_visit",
            PlainFieldsVisit,
            label="Visit",
            schema=PlainFieldsVisitSchema,
            owner_attrs=("agent_id",),
            party_attr="party_id",
            scope_through_party=True,
        )
    ]


@hookimpl
def crmkit_register_permissions():
    return [*grant("agent", "plainfields_visit", ("read", "create", "update"), "own")]
