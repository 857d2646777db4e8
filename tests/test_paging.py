"""Keyset pages: every row exactly once, in order, whatever the sort and the ties."""

from __future__ import annotations

import pytest

from crmkit.errors import ValidationFailed


@pytest.mark.parametrize(
    "order",
    [
        ["name"],
        ["-name"],
        ["source", "-name"],
        # a nullable key in one direction: NULLs sort last descending, first ascending
        ["-source"],
        ["source"],
        ["-source", "-name"],
        ["-created_at"],
        ["-last_activity_at"],
    ],
)
def test_pages_cover_every_row_once_in_order(crm, order):
    with crm.system() as work:
        for i in range(23):
            # equal names on purpose (ties in the order): not duplicates to screen
            work.parties.create(
                {"kind": "organisation", "name": f"Org {i % 5}", "source": ["a", None, "b"][i % 3]},
                confirm_duplicates=True,
            )
    with crm.system() as work:
        everything = [p.id for p in work.parties.list(order=order, limit=500).items]
        paged, cursor = [], None
        while True:
            page = work.parties.list(order=order, limit=4, after=cursor)
            paged += [p.id for p in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
    assert paged == everything and len(set(paged)) == 23


def test_bad_cursor_and_bad_sort_are_named(crm):
    with crm.system() as work:
        with pytest.raises(ValidationFailed, match="after"):
            work.parties.list(after="not-a-cursor")
        with pytest.raises(ValidationFailed, match="cannot sort by 'password'"):
            work.parties.list(order=["password"])


#: A reader's catalog (what the Russian one is to hold): the paging refusals translated.
_RUSSIAN = {
    "cannot sort by {field} (allowed: {allowed})": (
        "нельзя сортировать по {field} (можно: {allowed})"
    ),
    "not a valid page cursor": "неверная ссылка на страницу",
    "the page cursor does not match the sort order": "ссылка на страницу не подходит к сортировке",
}


def test_paging_refusals_are_read_in_the_readers_language(crm):
    """A bad sort or page cursor is refused with a message, translated by the reader's
    catalog (the list screens show it in Russian), not a fixed English text."""
    with crm.system() as work:
        refused = {}
        for field, call in (
            ("order", lambda: work.parties.list(order=["password"])),
            ("after", lambda: work.parties.list(after="not-a-cursor")),
            ("after", lambda: work.parties.list(order=["name"], after=_cursor([5, 1]))),
        ):
            with pytest.raises(ValidationFailed) as failed:
                call()
            [refusal] = failed.value.errors[field]
            refused.setdefault(field, []).append(
                refusal.translate(lambda text: _RUSSIAN.get(text, text))
            )
    assert refused["order"][0].startswith("нельзя сортировать по 'password' (можно: ")
    assert "name" in refused["order"][0]
    assert refused["after"] == [
        "неверная ссылка на страницу",
        "ссылка на страницу не подходит к сортировке",
    ]


def test_later_pages_reuse_one_statement_and_rows_match_records(crm):
    """The cursor's values are bound parameters: page 5 runs the statement page 2 built."""
    from crmkit.testing import add_user

    agent = add_user(crm, "pager", ["agent"])
    with crm.acting_as(crm.load_actor(agent.id)) as work:
        for i in range(30):
            work.parties.create({"kind": "organisation", "name": f"Paged firm {i}"})
    actor = crm.load_actor(agent.id)

    def statements():  # built page statements (the cache also keeps parsed sort orders)
        return len([k for k in crm.page_statements.entries if k[0] != "<order>"])

    cached = statements()
    ids, rows_ids, cursor, row_cursor, sizes = [], [], None, None, []
    for _ in range(6):
        with crm.acting_as(actor) as work:
            page = work.parties.list(limit=5, after=cursor)
            rows = work.parties.list_rows(["id", "name"], limit=5, after=row_cursor)
        ids += [p.id for p in page.items]
        rows_ids += [r.id for r in rows.items]
        cursor, row_cursor = page.next_cursor, rows.next_cursor
        sizes.append(statements())
    assert len(ids) == 30 and len(set(ids)) == 30 and ids == rows_ids
    # first pages (records, rows) and later pages (records, rows): four statements in all
    assert sizes[-1] == sizes[1] == cached + 4, sizes


def test_task_pages_by_deadline_keep_undated_tasks(crm):
    """``/lists/task?order=-deadline``: tasks without a deadline come last, on a later page."""
    import datetime as dt

    start = dt.datetime(2026, 11, 24, 9, tzinfo=dt.UTC)
    with crm.system() as work:
        for i in range(12):
            deadline = None if i % 3 == 0 else (start + dt.timedelta(days=i)).isoformat()
            work.tasks.create(title=f"Task {i}", deadline=deadline)
    with crm.system() as work:
        paged, cursor = [], None
        while True:
            page = work.tasks.list(order=["-deadline"], limit=3, after=cursor)
            paged += page.items
            cursor = page.next_cursor
            if cursor is None:
                break
    assert len({t.id for t in paged}) == 12
    assert [t.deadline is None for t in paged] == [False] * 8 + [True] * 4


def test_not_null_keys_keep_the_row_value_comparison():
    """The index-friendly ``(a, id) < (:a, :id)`` stays for NOT NULL keys, in either direction."""
    from crmkit.model import Party
    from crmkit.services.paging import after_clause, parse_order

    columns = {"created_at": Party.created_at, "source": Party.source}
    for order in (["-created_at"], ["created_at"], ["source"]):
        keys = parse_order(order, columns, Party.id)
        sql = str(after_clause(keys, ["x", 1]))
        assert sql.startswith("(party.") and " OR " not in sql, (order, sql)
    keys = parse_order(["-source"], columns, Party.id)
    assert "party.source IS NULL" in str(after_clause(keys, ["x", 1]))


def _cursor(values):
    import base64
    import json

    raw = json.dumps(values).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("entity", "order", "values"),
    [
        ("parties", ["-created_at"], [{"t": "garbage"}, 1]),
        ("parties", ["-created_at"], ["2026-11-24T10:00:00+00:00", 1]),  # untagged
        ("parties", ["-created_at"], [{"t": "2026-11-24T10:00:00"}, 1]),  # no offset
        ("parties", ["-created_at"], [{"t": "2026-11-24T10:00:00+00:00"}, "7"]),
        ("parties", ["-created_at"], [{"t": "2026-11-24T10:00:00+00:00"}, 10**30]),
        ("parties", ["-created_at"], [{"t": "2026-11-24T10:00:00+00:00"}, None]),
        ("parties", ["name"], [5, 1]),
        ("parties", ["name"], [{"n": "5"}, 1]),
        ("parties", ["name"], ["nul\x00", 1]),
        ("parties", ["name"], ["\ud800", 1]),
        ("parties", ["-source"], [True, 1]),
        ("deals", ["amount"], [{"n": "1.234"}, 1]),
        ("deals", ["amount"], [{"n": "NaN"}, 1]),
        ("deals", ["amount"], [{"n": "1e40"}, 1]),
        ("deals", ["amount"], [1.5, 1]),
        ("tasks", ["-deadline"], [{"d": "2026-11-24"}, 1]),
        ("tasks", ["priority"], [True, 1]),
    ],
)
def test_a_cursor_with_values_of_other_types_is_named(crm, entity, order, values):
    """An edited cursor, or one of another order, is a validation error, not a database one."""
    with crm.system() as work:
        service = getattr(work, entity)
        with pytest.raises(ValidationFailed) as failed:
            service.list(order=order, after=_cursor(values))
    assert [str(m) for m in failed.value.errors["after"]] == [
        "the page cursor does not match the sort order"
    ]


def test_a_cursor_with_null_where_the_order_allows_it_is_read(crm):
    with crm.system() as work:
        work.tasks.create(title="undated")
        assert work.tasks.list(order=["-deadline"], after=_cursor([None, 10**6])).items
        amount = [{"n": "12.50"}, 1]
        assert work.deals.list(order=["amount"], after=_cursor(amount)).items == []
