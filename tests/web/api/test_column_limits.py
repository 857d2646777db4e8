"""A plugin's input schema with plain marshmallow fields (no lengths, no ranges) still gets
each value kept to what its column holds: a 422 naming the field, the same on SQLite and
PostgreSQL, nothing written; a database refusal that gets through names its column."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy.exc import StatementError
from starlette.requests import Request

from crmkit.errors import ValidationFailed
from crmkit.testing import add_user, factories
from crmkit.web.api.responses import problem_for
from tests.plainfields_plugin import plugin as plainfields

VISIT = "plainfields_visit"
WHEN = "2026-11-20T10:00:00+03:00"

#: (what is sent, the field named); every one is refused by its column's limit
REFUSED = [
    ({"outcome": "x" * 201}, "outcome"),  # String(200): SQLite kept it, PostgreSQL said 500
    ({"visited_at": "9999-12-31T23:59:59-12:00"}, "visited_at"),  # year 10000 in UTC
    ({"visited_at": "0001-01-01T00:00:00+05:00"}, "visited_at"),  # year 0 in UTC
    ({"people": 2**31}, "people"),  # INTEGER: 32 bits on PostgreSQL, so on both
    ({"people": -(2**31) - 1}, "people"),
    ({"follow_up_at": "2026-11-21T10:00:00"}, "follow_up_at"),  # no offset: whose 10:00?
]


@pytest.fixture
def crm(make_crm):
    return make_crm(plugins=[plainfields])


@pytest.fixture
def agent(crm):
    return add_user(crm, "alice", ["agent"])


@pytest.fixture
def client_id(crm, agent):
    with crm.acting_as(agent) as work:
        return factories.organisation(work).id


def _count(crm, agent):
    with crm.acting_as(agent) as work:
        return work.records(VISIT).count()


def test_the_api_refuses_what_a_column_cannot_hold_naming_the_field(
    crm, agent, client_id, client_for_crm
):
    api = client_for_crm(crm, agent)
    for sent, field in REFUSED:
        answer = api.post(VISIT, json={"party_id": client_id, "visited_at": WHEN, **sent})
        assert answer.status_code == 422, (sent, answer.text)
        body = answer.json()
        assert list(body["errors"]) == [field], (sent, body)
        assert body["detail"].startswith(f"{field}: "), body
    assert _count(crm, agent) == 0

    # the limits themselves are accepted, and kept whole
    answer = api.post(
        VISIT,
        json={
            "party_id": client_id,
            "visited_at": "9999-12-31T11:59:59-12:00",  # 23:59:59 UTC on the last day
            "outcome": "я" * 200,
            "people": 2**31 - 1,
            "follow_up_at": "0001-01-01T05:00:00+05:00",  # midnight UTC on the first day
        },
    )
    assert answer.status_code == 201, answer.text
    read = api.get(f"{VISIT}/{answer.json()['id']}").json()
    assert (read["outcome"], read["people"]) == ("я" * 200, 2**31 - 1)
    assert dt.datetime.fromisoformat(read["visited_at"]) == dt.datetime(
        9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC
    )


def test_an_edit_beyond_a_column_changes_nothing(crm, agent, client_id, client_for_crm):
    api = client_for_crm(crm, agent)
    created = api.post(VISIT, json={"party_id": client_id, "visited_at": WHEN, "outcome": "ok"})
    assert created.status_code == 201, created.text
    url = f"{VISIT}/{created.json()['id']}"
    for sent, field in REFUSED:
        answer = api.patch(url, json={**sent, "outcome": sent.get("outcome", "changed")})
        assert answer.status_code == 422, (sent, answer.text)
        assert list(answer.json()["errors"]) == [field], answer.text
    read = api.get(url).json()
    assert (read["outcome"], read["people"], read["follow_up_at"]) == ("ok", 1, None)


def test_the_record_service_refuses_them_for_every_caller(crm, agent, client_id):
    """Forms, the CLI and imports go through the same service as the API."""
    for sent, field in REFUSED:
        with crm.acting_as(agent) as work, pytest.raises(ValidationFailed) as refused:
            work.records(VISIT).create({"party_id": client_id, "visited_at": WHEN, **sent})
        assert list(refused.value.errors) == [field]
    with crm.acting_as(agent) as work:
        [(sent, _field)] = REFUSED[:1]
        with pytest.raises(ValidationFailed, match="outcome: longer than 200 characters"):
            work.records(VISIT).create(party_id=client_id, visited_at=WHEN, **sent)
    assert _count(crm, agent) == 0


def _refused_by_the_database(crm, client_id, **values):
    """The database's (or its driver's) own refusal of a row written past the services."""
    with pytest.raises(StatementError) as raised, crm.system() as work:
        work.session.add(plainfields.PlainFieldsVisit(party_id=client_id, **values))
        work.flush()
    return raised.value


def test_a_database_refusal_that_gets_through_is_a_422_naming_the_column(
    crm, client_id, db_backend
):
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []})
    far = dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(-dt.timedelta(hours=12)))
    refusals = [(_refused_by_the_database(crm, client_id, visited_at=far), "visited_at")]
    if db_backend == "postgresql":  # SQLite keeps what PostgreSQL refuses here
        now = dt.datetime.now(dt.UTC)
        refusals += [
            (
                _refused_by_the_database(crm, client_id, visited_at=now, outcome="x" * 201),
                "outcome",
            ),
            (_refused_by_the_database(crm, client_id, visited_at=now, people=2**31), "people"),
        ]
    for error, column in refusals:
        answer = problem_for(request, error)
        assert answer.status_code == 422, answer.body
        body = json.loads(answer.body)
        assert list(body["errors"]) == [column], body
        assert body["detail"].startswith(f"{column}: "), body


def test_a_driver_overflow_nothing_names_still_says_what_is_wrong(db_backend):
    """SQLite's driver raises a bare OverflowError for an integer beyond 64 bits: no
    statement to read a column from, so the refusal is the request's, never empty."""
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []})
    answer = problem_for(request, OverflowError("Python int too large to convert to SQLite"))
    assert answer.status_code == 422
    assert json.loads(answer.body)["errors"] == {"_schema": ["a number is too large"]}
