"""Server database engines: pooled connections are pinged only after being idle."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from crmkit import testing
from crmkit.db import SPARE_CONNECTIONS, make_engine


@pytest.fixture
def pg_url():
    testing.require(testing.postgres_reachable(), f"PostgreSQL at {testing.postgres_url()}")
    return testing.postgres_url()


def _counting_pings(engine):
    pings = []
    real = engine.dialect.do_ping

    def counted(dbapi_connection):
        pings.append(1)
        return real(dbapi_connection)

    engine.dialect.do_ping = counted
    return pings


def test_a_connection_used_moments_ago_is_not_pinged(pg_url):
    engine = make_engine(pg_url, ping_idle_seconds=60, pool_size=1, max_overflow=0)
    pings = _counting_pings(engine)
    try:
        for _ in range(5):
            with engine.connect() as connection:
                assert connection.execute(sa.text("SELECT 1")).scalar() == 1
        assert pings == []  # a fresh connection, then the same one again and again
    finally:
        engine.dispose()


def test_a_dropped_idle_connection_is_replaced_before_use(pg_url):
    engine = make_engine(pg_url, ping_idle_seconds=0.2, pool_size=1, max_overflow=0)
    pings = _counting_pings(engine)
    try:
        with engine.connect() as connection:
            first = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        killer = sa.create_engine(pg_url)
        with killer.begin() as connection:  # the server (or a firewall) drops it while idle
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        killer.dispose()
        time.sleep(0.3)
        with engine.connect() as connection:  # pinged, found dead, replaced: no error here
            second = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        assert second != first
        assert pings  # the idle connection was checked
    finally:
        engine.dispose()


def test_a_deployment_keeps_database_pool_size_connections(pg_url, tmp_path):
    from crmkit.app import CRM
    from crmkit.config import Config

    (tmp_path / "crmkit.toml").write_text(
        f'secret_key = "k"\n[database]\nurl = "{pg_url}"\npool_size = 4\n', encoding="utf-8"
    )
    crm = CRM(Config.load(tmp_path), load_entry_points=False)
    try:
        assert crm.engine.pool.size() == 4
        # as many again for the web's writes, and a few for background work: all out at
        # once without waiting (pool_timeout would make the last one wait 30 s and fail)
        wanted = 4 + 4 + SPARE_CONNECTIONS
        connections = [crm.engine.connect() for _ in range(wanted)]
        try:
            assert crm.engine.pool.checkedout() == wanted
        finally:
            for connection in connections:
                connection.close()
    finally:
        crm.close()
    sqlite = make_engine(f"sqlite:///{tmp_path / 'crm.sqlite3'}", pool_size=4)  # ignored there
    sqlite.dispose()


def test_json_columns_read_back_as_fresh_values_on_either_database(crm, monkeypatch):
    """Empty objects skip the parser (psycopg hands bytes, SQLite text) but stay separate."""
    import json

    from crmkit.model import Party

    parsed = []
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda text, *a, **k: parsed.append(text) or real(text))

    with crm.system() as work:
        work.parties.create(kind="person", name="Пустой")
        work.parties.create(kind="person", name="Второй")
    with crm.engine.connect() as connection:
        rows = connection.execute(sa.select(Party.custom).order_by(Party.id)).scalars().all()
        raw = connection.execute(sa.select(sa.cast(Party.custom, sa.Text))).scalars().all()
    assert raw[:2] == ["{}", "{}"]  # the stored text the quick path recognises
    assert rows == [{}, {}]
    assert parsed == []  # list pages read one per row: no parsing for the common value
    rows[0]["added"] = 1
    assert rows[1] == {}  # not one shared dict
    with crm.engine.connect() as connection:
        again = connection.execute(sa.select(Party.custom).order_by(Party.id)).scalars().first()
    assert again == {}


@pytest.mark.parametrize("text", ['{"a": [1, 2]}', "[]", '{"big": 123456789012345678901234}'])
def test_json_loads_keeps_the_standard_librarys_reading(text):
    import json

    from crmkit.db import _json_loads

    assert _json_loads(text) == json.loads(text)
    assert _json_loads(text.encode()) == json.loads(text)
    assert _json_loads(bytearray(text.encode())) == json.loads(text)


def test_postgresql_sessions_are_in_utc_whatever_the_url_says(pg_url):
    """Timestamps come back in UTC without conversion, even where the URL sets a zone."""
    import datetime as dt

    separator = "&" if "?" in pg_url else "?"
    engine = make_engine(f"{pg_url}{separator}options=-cTimeZone%3DEurope/Moscow")
    try:
        with engine.connect() as connection:
            zone = connection.exec_driver_sql("SHOW TimeZone").scalar()
            moment = connection.execute(
                sa.select(sa.literal(dt.datetime(2026, 3, 8, 9, 30, tzinfo=dt.UTC)))
            ).scalar()
    finally:
        engine.dispose()
    assert zone == "UTC"
    assert moment.tzinfo is dt.UTC and moment.hour == 9
