"""Built-in plugin: the clean client base (duplicate report job, ``crmkit duplicates``,
``crmkit screening``, ``crmkit import``)."""

from __future__ import annotations

from typing import Any

from crmkit.jobs import Job
from crmkit.plugins import hookimpl


@hookimpl
def crmkit_register_jobs() -> list[Job]:
    from crmkit.services import duplicates, imports

    return [
        Job(
            imports.JOB_NAME,
            imports.run_import,
            retries=3,
            description="Import contacts from a CSV or XLSX file (resumes where it stopped).",
        ),
        Job(
            duplicates.JOB_NAME,
            duplicates.run_report,
            retries=1,
            description="Group likely duplicate clients of the whole base for an admin.",
        ),
    ]


@hookimpl
def crmkit_register_commands(cli: Any) -> None:
    from crmkit.clientbase_cli import duplicates, export, import_, screening

    cli.add_command(duplicates)
    cli.add_command(screening)
    cli.add_command(import_)
    cli.add_command(export)
