"""Built-in plugin: message templates as an entity, with who may read and edit them."""

from __future__ import annotations

from crmkit.access.rules import Permission, Scope, grant
from crmkit.entities import EntityType
from crmkit.model import MessageTemplate
from crmkit.plugins import hookimpl


@hookimpl
def crmkit_register_entities() -> list[EntityType]:
    return [
        EntityType(
            "message_template",
            MessageTemplate,
            label="Message template",
            label_plural="Message templates",
            title_attr="name",
            search_attrs=("name",),
            filter_attrs=("channel", "language"),
            sort_attrs=("name", "updated_at"),
            default_sort=("name",),
        )
    ]


@hookimpl
def crmkit_register_permissions() -> list[Permission]:
    return [
        *grant("manager", "message_template", ("read", "create", "update", "delete"), Scope.ALL),
        *grant("agent", "message_template", ("read",), Scope.ALL),
    ]
