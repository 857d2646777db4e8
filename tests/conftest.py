"""Fixtures shared by the core's tests: an empty database for the command-line tests."""

from __future__ import annotations

import pytest


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
