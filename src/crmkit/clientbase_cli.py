"""``crmkit duplicates ...`` and ``crmkit import``: client-base work from the command line."""

from __future__ import annotations

import click

from crmkit.cli import Env, pass_env


@click.group()
def duplicates() -> None:
    """Duplicate clients: the whole-base report."""


@duplicates.command("report")
@click.option("--limit", default=20, show_default=True, help="Groups to print.")
@pass_env
def duplicates_report(env: Env, limit: int) -> None:
    """Build the duplicate report now (in this process) and print its best groups."""
    from crmkit.model import DuplicateReport, Party
    from crmkit.services.duplicates import run_report

    crm = env.crm
    report_id = run_report(crm)
    with crm.system() as work:
        report = work.session.get(DuplicateReport, report_id)
        click.echo(
            f"report {report.id}: {report.scanned} clients scanned, "
            f"{len(report.groups)} groups of likely duplicates"
        )
        for group in report.groups[:limit]:
            names = [work.session.get(Party, i).name for i in group["party_ids"]]
            click.echo(
                f"  {group['score']:>3}  {', '.join(group['reasons'])}: "
                + " | ".join(f"#{i} {n}" for i, n in zip(group["party_ids"], names, strict=True))
            )
