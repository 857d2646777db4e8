"""``crmkit demo denaq`` is one transaction: a demo that fails part-way leaves nothing."""

from __future__ import annotations

import re

from click.testing import CliRunner
from sqlalchemy import func, select

from crmkit.cli import Env, demo
from crmkit.errors import ConfigError
from crmkit.model import metadata


def row_counts(crm) -> dict[str, int]:
    """How many rows every table holds, as a unit of work reads them."""
    with crm.system() as work:
        connection = work.connection()
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in metadata.sorted_tables
        }


def stored_files(crm) -> list[str]:
    root = crm.storage.root
    return sorted(str(p) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_demo_that_fails_at_its_last_step_leaves_no_user_party_row_or_file(denaq, monkeypatch):
    """Everything is written (users, companies and their history, people, papers with
    their files, meetings, tasks, notes) before the injected failure: none of it stays,
    the command says so in one error, and a second run works on the empty database."""
    from crmkit_denaq import demo as demo_module

    real = demo_module._papers_and_plans
    written = {}

    def papers_then_failure(crm, *args, **kwargs):
        real(crm, *args, **kwargs)
        # counted inside the demo's transaction: all of it was written
        written.update(row_counts(crm), files=len(stored_files(crm)))
        raise OSError(28, "No space left on device")

    before = row_counts(denaq)
    files_before = stored_files(denaq)
    monkeypatch.setattr(demo_module, "_papers_and_plans", papers_then_failure)
    env = Env(None, debug=False)
    env._crm = denaq

    run = CliRunner().invoke(demo, ["denaq", "--size", "60", "--seed", "7"], obj=env)

    assert written["user"] == 8 and written["party"] >= 60 and written["files"] > 0
    assert written["attachment"] > 0 and written["activity"] > 0
    after = row_counts(denaq)
    assert after["user"] == after["party"] == after["audit_log"] == 0
    assert after == before
    assert stored_files(denaq) == files_before
    assert isinstance(run.exception, ConfigError), run.output
    assert re.fullmatch(
        r"demo denaq stopped: OSError: \[Errno 28\] No space left on device\. Nothing of it "
        r"was kept: the database is as it was before",
        str(run.exception),
    )
    monkeypatch.undo()
    again = CliRunner().invoke(demo, ["denaq", "--size", "60", "--seed", "7"], obj=env)
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("demo denaq: 60 companies")
    assert row_counts(denaq)["user"] == 8


def test_the_demos_contact_people_have_surnames_that_agree_with_their_names(denaq):
    """A man is "Алексей Попов" and a woman "Елена Попова": the demo wrote "Алексей Попова"
    and "Андрей Петрова" on the cards and the agent's workspace."""
    from crmkit.model import Party

    env = Env(None, debug=False)
    env._crm = denaq
    run = CliRunner().invoke(demo, ["denaq", "--size", "120", "--seed", "3"], obj=env)
    assert run.exit_code == 0, run.output
    with denaq.system() as work:
        people = work.session.execute(
            select(Party.first_name, Party.last_name).where(Party.kind == "person")
        ).all()
    assert len(people) > 10
    women = {"Елена", "Наталья", "Татьяна", "Юлия"}
    wrong = [f"{first} {last}" for first, last in people if (first in women) != last.endswith("а")]
    assert not wrong


def test_the_demos_refused_firms_each_say_why(denaq):
    """The statistics' refusals by reason have something to show in the demo: every refused
    firm holds a reason of the deployment's list, the others none."""
    from crmkit_denaq.pipeline import REFUSAL_REASONS

    from crmkit.model import Party

    env = Env(None, debug=False)
    env._crm = denaq
    run = CliRunner().invoke(demo, ["denaq", "--size", "120", "--seed", "3"], obj=env)
    assert run.exit_code == 0, run.output
    with denaq.system() as work:
        rows = work.session.execute(
            select(Party.stage, Party.custom).where(Party.kind == "organisation")
        ).all()
    reasons = [(custom or {}).get("refusal_reason") for stage, custom in rows if stage == "refused"]
    assert len(reasons) > 5 and set(reasons) <= set(REFUSAL_REASONS)
    assert len(set(reasons)) > 2
    assert not [c for stage, c in rows if stage != "refused" and (c or {}).get("refusal_reason")]
