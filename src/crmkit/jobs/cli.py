"""``crmkit worker`` and ``crmkit jobs ...``: running workers and the dead-letter list."""

from __future__ import annotations

import logging

import click

from crmkit.cli import Env
from crmkit.errors import ConfigError


@click.command()
@click.option(
    "--concurrency",
    "-c",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Worker threads in this process.",
)
@click.option("--verbose", "-v", is_flag=True, help="Log every delivery and schedule run.")
@click.pass_obj  # not pass_env: `python -m crmkit.cli` has its own Env class
def worker(env: Env, concurrency: int, verbose: bool) -> None:
    """Deliver the outbox and run scheduled jobs until interrupted (SIGINT/SIGTERM).

    Start several (on several machines) with a Redis queue.url to share the work. Refuses
    to start, in one line, on a database not migrated to the code's revisions (run `crmkit
    db upgrade`) or a queue.url whose Redis server does not answer.
    """
    from crmkit.jobs.worker import Worker

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    crm = env.crm
    crm.check_ready()  # a database not migrated, or a queue server down: one line, exit 1
    click.echo(f"crmkit worker: {concurrency} thread(s) on the {crm.queue.kind} queue", err=True)
    Worker(crm, concurrency=concurrency).run()


@click.group()
def jobs() -> None:
    """Background work: the dead-letter list, retries, due deliveries, schedules."""


@jobs.command("failed")
@click.option("--kind", default=None, help="Only items of this kind (channel.send, webhook...).")
@click.option("--limit", default=50, show_default=True, type=int)
@click.pass_obj  # not pass_env: `python -m crmkit.cli` has its own Env class
def jobs_failed(env: Env, kind: str | None, limit: int) -> None:
    """List dead outbox items: id, kind, attempts, when, and the last error."""
    with env.crm.system() as work:
        items = work.outbox.failed(limit=limit, kind=kind)
        for item in items:
            when = item.created_at.strftime("%Y-%m-%d %H:%M:%S")
            click.echo(f"{item.id:<8} {item.kind:<16} {item.attempts:>3} tries  {when}")
            click.echo(f"         {item.last_error or '(no error recorded)'}")
    if not items:
        click.echo("no failed deliveries")


def _ids(env: Env, ids: tuple[int, ...], every: bool) -> list[int]:
    if every:
        with env.crm.system() as work:
            return [item.id for item in work.outbox.failed(limit=1_000_000)]
    if not ids:
        raise ConfigError("name the item ids to act on, or pass --all")
    return list(ids)


@jobs.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Every dead item.")
@click.pass_obj  # not pass_env: `python -m crmkit.cli` has its own Env class
def jobs_retry(env: Env, ids: tuple[int, ...], every: bool) -> None:
    """Put dead items back in the queue with fresh attempts."""
    chosen = _ids(env, ids, every)
    with env.crm.system() as work:
        work.outbox.retry(chosen)
    click.echo(f"queued again: {len(chosen)}")


@jobs.command("discard")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Every dead item.")
@click.pass_obj  # not pass_env: `python -m crmkit.cli` has its own Env class
def jobs_discard(env: Env, ids: tuple[int, ...], every: bool) -> None:
    """Give dead items up for good (kept as discarded, with their error)."""
    chosen = _ids(env, ids, every)
    with env.crm.system() as work:
        work.outbox.discard(chosen)
    click.echo(f"discarded: {len(chosen)}")


@jobs.command("deliver")
@click.pass_obj  # not pass_env: `python -m crmkit.cli` has its own Env class
def jobs_deliver(env: Env) -> None:
    """Deliver every due outbox item now, in this process (no worker needed)."""
    from crmkit.jobs.delivery import deliver_due

    counts = deliver_due(env.crm)
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing due"
    click.echo(summary)


@jobs.command("schedules")
@click.pass_obj  # not pass_env: `python -m crmkit.cli` has its own Env class
def jobs_schedules(env: Env) -> None:
    """List periodic schedules: period, runs, last start, last error."""
    from crmkit.jobs.schedules import states

    known = {row.name: row for row in states(env.crm)}
    for name, schedule in sorted(env.crm.schedules.items()):
        period = f"every {schedule.every_seconds}s" if schedule.every_seconds else schedule.cron
        row = known.get(name)
        last = (
            row.last_started_at.strftime("%Y-%m-%d %H:%M:%S")
            if row is not None and row.last_started_at
            else "never"
        )
        runs = row.runs if row is not None else 0
        click.echo(f"{name:<40} {period:<16} runs {runs:<6} last {last}")
        if row is not None and row.last_error:
            click.echo(f"    last error: {row.last_error}")


@jobs.command("watchers")
@click.pass_obj  # not pass_env: `python -m crmkit.cli` has its own Env class
def jobs_watchers(env: Env) -> None:
    """List watched keys (mailboxes...): who runs each, since when, starts, last error."""
    from crmkit.jobs.watchers import states

    if not env.crm.watchers:
        click.echo("no watchers registered")
        return
    if not env.crm.config["queue.watchers"]:
        click.echo("watchers are off (queue.watchers = false)")
    found = states(env.crm)
    for state in found:
        since = state.started_at.strftime("%Y-%m-%d %H:%M:%S") if state.started_at else "never"
        where = f"running in {state.holder}" if state.running else "not running"
        click.echo(
            f"{state.watcher:<20} {state.key:<30} {where}, since {since}, starts {state.runs}"
        )
        if state.last_error:
            when = state.finished_at.strftime("%Y-%m-%d %H:%M:%S") if state.finished_at else ""
            click.echo(f"    last error {when}: {state.last_error}")
    if not found:
        click.echo("nothing watched yet (is a worker running?)")
