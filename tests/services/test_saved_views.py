"""A saved view selects what its list shows: its query is read by the lists' own reader."""

from __future__ import annotations

import pytest

from crmkit.errors import ValidationFailed
from crmkit.testing import add_user, factories


def _selected(work, view_id):
    entity, filters, search = work.saved_views.selection(view_id)
    service = work.records(entity)
    return sorted(r.id for r in service.list(filters=filters, search=search, limit=500).items)


#: (a view's query, the parameter its refusal names)
REFUSED = [
    # silently read before: is_null whatever its value (no client has no creation time)
    ({"f.created_at__is_null": "maybe"}, "created_at__is_null"),
    # a moment no database date holds in UTC (a 500 when counted)
    ({"f.created_at__gte": "9999-12-31T23:59:59-05:00"}, "created_at__gte"),
    ({"f.custom.staff__gte": "много"}, "custom.staff__gte"),
    ({"f.stage__frob": "new"}, "stage__frob"),
]


def _setup(crm):
    with crm.system() as work:
        work.custom_fields.define(entity="party", key="staff", label="Штат", kind="number")
        factories.organisation(work, name="ООО «Альфа»")
    return add_user(crm, "viewer", ("manager",))


@pytest.mark.parametrize(("query", "named"), REFUSED)
def test_a_kept_view_its_list_would_refuse_is_refused_naming_the_parameter(crm, query, named):
    """A view kept before its parameter was refused (or whose field changed kind) is
    refused when a mailing counts it, naming the parameter as its list does."""
    user = _setup(crm)
    with crm.acting_as(user) as work:
        view = work.saved_views.save("party", "Сломанный", {"q": "Альфа"})
        view.query = dict(query)  # as written before the reader refused it
        work.flush()
        with pytest.raises(ValidationFailed) as refused:
            _selected(work, view.id)
    assert list(refused.value.errors) == [named]


@pytest.mark.parametrize(
    ("query", "named"),
    # a NUL in the search: PostgreSQL could not even store it (a 500), SQLite found nothing
    [*REFUSED, ({"q": "Аль\x00"}, "q")],
)
def test_a_view_its_list_refuses_is_not_saved(crm, query, named):
    user = _setup(crm)
    with crm.acting_as(user) as work, pytest.raises(ValidationFailed) as refused:
        work.saved_views.save("party", "Сломанный", query)
    assert list(refused.value.errors) == [named]
    with crm.acting_as(user) as work:
        assert work.saved_views.list("party") == []


def test_a_view_selects_what_its_list_shows(crm):
    """``not_null=false`` asks for the opposite, as on the list (it selected everyone);
    the search and the filters of the query string are those of the list."""
    with crm.system() as work:
        work.custom_fields.define(entity="party", key="staff", label="Штат", kind="number")
    user = add_user(crm, "viewer", ("manager",))
    with crm.acting_as(user) as work:
        alpha = factories.organisation(work, name="ООО «Альфа»", custom={"staff": 1200}).id
        beta = factories.organisation(work, name="ООО «Бета»", custom={"staff": 15}).id
        views = {
            name: work.saved_views.save("party", name, query).id
            for name, query in (
                ("nobody", {"f.created_at__not_null": "false"}),
                ("everyone", {"f.created_at__not_null": ""}),
                ("big", {"f.custom.staff__gte": "100", "f.kind": ""}),
                ("beta", {"q": "Бета"}),
            )
        }
        assert _selected(work, views["nobody"]) == []
        assert _selected(work, views["everyone"]) == sorted([alpha, beta])
        assert _selected(work, views["big"]) == [alpha]
        assert _selected(work, views["beta"]) == [beta]
