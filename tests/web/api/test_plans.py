"""The list endpoint's query is answered by an index, in list order, on both databases.

PERFORMANCE.md: planners may pick a worse plan, so hot queries have their plans checked.
An agent's first page of clients (newest activity first) must never sort the agent's rows.
"""

from __future__ import annotations

from crmkit.schemas.output import encoder_for, output_schema
from crmkit.testing import add_user


def plan_of(crm, statement):
    dialect = crm.engine.dialect
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    with crm.engine.connect() as connection:
        if dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_sort = off")  # a sort only if unavoidable
            connection.exec_driver_sql("SET enable_seqscan = off")
            rows = connection.exec_driver_sql(f"EXPLAIN {sql}").all()
        else:
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
    return "\n".join(str(row[-1]) for row in rows)


def test_an_agents_first_page_needs_no_sort(crm):
    agent = add_user(crm, "ann", ["agent"])
    others = [add_user(crm, f"agent{i}", ["agent"]).id for i in range(20)]
    # a base the planner can weigh: many agents' clients, statistics up to date (on an
    # empty table any index without a sort is as cheap as another)
    with crm.system() as work:
        work.parties.bulk_create(
            {"kind": "organisation", "name": f"Firm {i}", "owner_id": others[i % 20]}
            for i in range(4000)
        )
    with crm.engine.begin() as connection:
        # this table only: a bare ANALYZE walks every schema of the server, where other
        # tests create and drop tables at the same time (and can deadlock with it)
        connection.exec_driver_sql("ANALYZE party")
    entity = crm.entities["party"]
    encoder = encoder_for(output_schema(entity), entity.model)
    with crm.acting_as(crm.actors.load(agent.id)) as work:
        statement, _, _, _ = work.parties._page_statement(
            None, None, None, None, None, 50, encoder.columns
        )
    plan = plan_of(crm, statement)
    assert "ix_party_owner_activity" in plan, plan
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan
