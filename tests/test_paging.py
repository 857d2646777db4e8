"""Keyset pages: every row exactly once, in order, whatever the sort and the ties."""

from __future__ import annotations

import pytest

from crmkit.errors import ValidationFailed


@pytest.mark.parametrize(
    "order", [["name"], ["-name"], ["source", "-name"], ["-created_at"], ["-last_activity_at"]]
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
