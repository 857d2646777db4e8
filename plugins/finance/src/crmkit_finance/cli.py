"""``crmkit finance ...`` commands: rates, reports, ledger checks and the periodic jobs."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import click

from crmkit.cli import Env, pass_env
from crmkit.errors import ConfigError, CrmkitError


@click.group("finance")
def finance_group() -> None:
    """Money, orders, stock and salary (the finance plugin)."""


@finance_group.command("rates")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_env
def rates_command(env: Env, source: Path) -> None:
    """Import exchange rates from a CSV file with columns currency,date,rate."""
    from crmkit_finance.services import finance

    count = 0
    with source.open(encoding="utf-8-sig", newline="") as handle, env.crm.system() as work:
        fin = finance(work)
        for number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                fin.rates.set(
                    row["currency"],
                    row["rate"],
                    dt.date.fromisoformat(row["date"]),
                    source=source.name,
                )
            except (KeyError, ValueError, CrmkitError) as exc:
                raise ConfigError(f"{source.name}, row {number}: {exc}") from None
            count += 1
    click.echo(f"{count} rates imported")


@finance_group.command("report")
@click.argument("name")
@click.option("--param", "-p", multiple=True, metavar="KEY=VALUE", help="A report parameter.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "xlsx", "json"]), default="table"
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File to write."
)
@pass_env
def report_command(
    env: Env, name: str, param: tuple[str, ...], fmt: str, output: Path | None
) -> None:
    """Build report NAME (finance.director, finance.revenue...) and print or export it."""
    from crmkit_finance.export import export, to_csv
    from crmkit_finance.reports import run_report

    for item in param:
        if "=" not in item:
            raise ConfigError(f"-p {item}: give a report parameter as KEY=VALUE")
    params = dict(p.split("=", 1) for p in param)
    with env.crm.system() as work:
        result = run_report(work, name, params)
    if fmt in ("csv", "xlsx"):
        content, _, extension = export(result, fmt, title=name)
        target = output or Path(f"{name}.{extension}")
        target.write_bytes(content)
        click.echo(f"wrote {target}")
        return
    if fmt == "json":
        text = json.dumps(
            {"rows": result.rows, "totals": result.totals},
            default=str,
            ensure_ascii=False,
            indent=2,
        )
    else:
        text = to_csv(result).decode("utf-8-sig")
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text)


@finance_group.command("check")
@pass_env
def check_command(env: Env) -> None:
    """Check the ledger: every transaction balances, stock and cashback agree with it."""
    from crmkit_finance.integrity import problems

    with env.crm.system() as work:
        found = problems(work)
    for problem in found:
        click.echo(problem)
    if found:
        raise SystemExit(1)
    click.echo("ledger ok")


@finance_group.command("expire-cashback")
@pass_env
def expire_cashback_command(env: Env) -> None:
    """Expire cashback lots past their date now."""
    from crmkit_finance.jobs import expire_cashback

    click.echo(expire_cashback(env.crm))


@finance_group.command("amortize")
@click.option(
    "--month",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m"]),
    help="The month to amortize, YYYY-MM or any day of it (default: last month).",
)
@pass_env
def amortize_command(env: Env, month: dt.datetime | None) -> None:
    """Book a month's amortization of equipment."""
    from crmkit_finance.jobs import amortize_last_month

    day = month.date().isoformat() if month else None
    click.echo(amortize_last_month(env.crm, month=day))
