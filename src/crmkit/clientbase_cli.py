"""``crmkit duplicates ...``, ``crmkit screening ...`` and ``crmkit import``: client-base work
from the command line."""

from __future__ import annotations

import sys
from typing import Any

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


@click.group()
def screening() -> None:
    """Duplicate screening: its stored name keys."""


@screening.command("rebuild")
@click.option(
    "--batch-size",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Clients read and written per transaction.",
)
@pass_env
def screening_rebuild(env: Env, batch_size: int) -> None:
    """Recompute every client's stored name keys with the current rules (safe to rerun)."""
    from sqlalchemy import func, select

    from crmkit.model import Party
    from crmkit.services.screening import rebuild_keys

    crm = env.crm
    with crm.system() as work:
        total = work.session.scalar(select(func.count()).select_from(Party)) or 0
    with click.progressbar(length=max(total, 1), label="rebuilding", file=sys.stderr) as bar:
        shown = [0]

        def progress(done: Any) -> None:
            bar.update(done.parties - shown[0])
            shown[0] = done.parties

        done = rebuild_keys(crm, batch_size=batch_size, progress=progress)
    click.echo(
        f"{done.parties} clients checked, keys changed for {done.changed}: "
        f"{done.name_keys} name keys rewritten, {done.added} blocking keys added, "
        f"{done.removed} removed"
    )


@click.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option(
    "--as", "username", help="User the clients are imported as (not with --resume: its own)."
)
@click.option("--source", default="", help="Where the file comes from (its mapping is kept).")
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="COLUMN=FIELD",
    help="Map a column to a field (name, phone, email, custom.inn...); repeatable.",
)
@click.option(
    "--on-duplicate",
    type=click.Choice(["skip", "update", "create"]),
    default="skip",
    show_default=True,
)
@click.option("--dry-run", is_flag=True, help="Check every row; write nothing.")
@click.option(
    "--resume",
    "resume_id",
    type=int,
    default=None,
    help="Resume import run ID, with its own file and user (PATH and --as not needed).",
)
@click.pass_context
@pass_env
def import_(
    env: Env,
    context: click.Context,
    path: str | None,
    username: str | None,
    source: str,
    mappings: tuple[str, ...],
    on_duplicate: str,
    dry_run: bool,
    resume_id: int | None,
) -> None:
    """Import clients from a CSV or XLSX file, with a progress bar."""
    from pathlib import Path

    from crmkit.services.imports import run_import

    # a new run needs its file and its user; a resumed one has its own
    if resume_id is None and path is None:
        raise click.MissingParameter(ctx=context, param_type="argument", param_hint="'PATH'")
    if resume_id is None and username is None:
        raise click.MissingParameter(ctx=context, param_type="option", param_hint="'--as'")
    crm = env.crm
    if resume_id is None and path is not None:
        mapping = None
        if mappings:
            mapping = {}
            for item in mappings:
                column, _, field = item.partition("=")
                mapping[column] = field
        with crm.acting_as(username) as work:
            run = work.imports.start(
                Path(path).name,
                Path(path).read_bytes(),
                source=source,
                mapping=mapping,
                on_duplicate=on_duplicate,
                dry_run=dry_run,
            )
            work.imports.check_mapping(run.mapping)  # the name is mapped: guessed or --map
            work.imports.remember(run)
            run_id, total = run.id, run.total_rows
    else:
        from crmkit.errors import NotFound
        from crmkit.model import ImportRun

        with crm.system() as work:
            resumed = work.session.get(ImportRun, resume_id)
            if resumed is None:
                raise NotFound("import", resume_id)
            run_id, total = resume_id, int(resumed.total_rows)
    click.echo(f"import {run_id}: {total} rows", err=True)
    with click.progressbar(length=max(total, 1), label="importing", file=sys.stderr) as bar:
        shown = [0]

        def progress(done: int, whole: int) -> None:
            if whole and bar.length != whole:
                bar.length = whole
            bar.update(done - shown[0])
            shown[0] = done

        run_import(crm, run_id, progress=progress)
    with crm.system() as work:
        from crmkit.model import ImportRun

        run = work.session.get(ImportRun, run_id)
        click.echo(
            f"{run.status}: {run.created} created, {run.updated} updated, {run.skipped} skipped, "
            f"{len(run.row_errors)} errors, {run.possible_duplicate_count} possible duplicates"
        )
        for error in [*run.row_errors[:20], *run.possible_duplicates[:20]]:
            click.echo(f"  row {error['row']}, {error['column']}: {error['reason']}")


@click.command("export")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--as", "username", required=True, help="User whose access rules apply.")
@click.option("--group", "group_id", type=int, default=None, help="Only the members of a group.")
@click.option("--search", default=None, help="Only clients matching a search text.")
@pass_env
def export(env: Env, path: str, username: str, group_id: int | None, search: str | None) -> None:
    """Export clients to PATH (.csv or .xlsx) as a user sees them."""
    from pathlib import Path

    from crmkit.services.imports import export_parties

    fmt = "xlsx" if path.lower().endswith(".xlsx") else "csv"
    with env.crm.acting_as(username) as work:
        where = work.groups.condition(group_id) if group_id else None
        Path(path).write_bytes(export_parties(work, fmt, where=where, search=search))
    click.echo(f"written {path}")
