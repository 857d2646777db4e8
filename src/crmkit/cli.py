"""The ``crmkit`` command line (click).  Plugins add commands via ``crmkit_register_commands``.

Errors a user can fix (a wrong database URL, a missing config file, an unknown plugin or
user) print one line and exit with status 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import code
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from crmkit.config import CONFIG_FILENAME, Config, new_config_text
from crmkit.errors import ConfigError, CrmkitError, PluginError


class Env:
    """What every command shares: where the deployment is, and its application (lazily)."""

    def __init__(
        self, config_path: str | None, debug: bool, config_option: str = "--config"
    ) -> None:
        self.config_path = config_path
        self.debug = debug
        #: where ``config_path`` came from: ``--config`` or ``CRMKIT_CONFIG``
        self.config_option = config_option
        self._crm: Any = None

    def config(self) -> Config:
        """The deployment's settings."""
        if self.config_path and not Path(self.config_path).exists():
            raise ConfigError(f"{self.config_option} {self.config_path}: no such file or directory")
        return Config.load(self.config_path)

    @property
    def crm(self) -> Any:
        """The deployment's application, built on first use."""
        if self._crm is None:
            from crmkit.app import CRM
            from crmkit.db import check_connection

            self._crm = CRM(self.config())
            check_connection(self._crm.engine)
        return self._crm

    def close(self) -> None:
        """Release the application's connections (when the command ends)."""
        if self._crm is not None:
            self._crm.close()
            self._crm = None


pass_env = click.make_pass_decorator(Env)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="CRMKIT_CONFIG",
    metavar="PATH",
    help="Deployment directory or its crmkit.toml (default: current directory).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="crmkit")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, debug: bool) -> None:
    """crmkit: build and run CRMs."""
    source = ctx.get_parameter_source("config_path")
    named_by = "CRMKIT_CONFIG" if source is click.core.ParameterSource.ENVIRONMENT else "--config"
    ctx.obj = Env(config_path, debug, named_by)
    ctx.call_on_close(ctx.obj.close)


# -- init --------------------------------------------------------------------------------


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--database-url", help="Database URL (default: a SQLite file in DIRECTORY).")
@click.option("--no-migrate", is_flag=True, help="Only write crmkit.toml; create no tables.")
@click.option(
    "--plugin",
    "plugins",
    multiple=True,
    help="Load only these installed plugins (plugins.allow); repeat for several.",
)
@pass_env
def init(
    env: Env, directory: Path, database_url: str | None, no_migrate: bool, plugins: tuple[str, ...]
) -> None:
    """Create a deployment in DIRECTORY: crmkit.toml with a new secret, and its database.

    Everything is checked before crmkit.toml is written, last: the plugins, the settings,
    the database (reachable and empty). The tables are created and seeded in one
    transaction, committed after the file is written; a failure anywhere leaves nothing
    new behind (the directories, the SQLite file, the file, the tables).
    """
    import tomllib

    from crmkit.app import CRM
    from crmkit.db import check_connection

    target = directory / CONFIG_FILENAME
    if target.exists():
        raise ConfigError(f"{target} exists already; refusing to overwrite it")
    text = new_config_text(database_url, plugins)
    config = Config.from_mapping(tomllib.loads(text), root=directory, source=target)
    new_paths = _new_paths(directory, config)

    def write_config(connection: Any = None) -> None:
        if connection is not None:
            crm.sync_access(connection)
        with target.open("x", encoding="utf-8") as file:  # "x": never over a file made meanwhile
            file.write(text)

    try:
        directory.mkdir(parents=True, exist_ok=True)
        crm = env._crm = CRM(config)  # an unknown plugin or a wrong setting stops here
        if no_migrate:
            write_config()
        else:
            check_connection(crm.engine)
            _refuse_a_used_database(crm.engine)
            crm.migrations.upgrade(then=write_config)
    except BaseException:
        env.close()
        _remove(new_paths)
        raise
    click.echo(f"wrote {target}")
    if not no_migrate:
        click.echo(
            "database ready; add an admin with: "
            f"crmkit --config {directory} user add admin --role admin"
        )


def _new_paths(directory: Path, config: Config) -> list[Path]:
    """What ``init`` may create that does not exist yet: the deployment's directory (and
    its missing parents), crmkit.toml, a SQLite database file, its side files and its
    missing parent directories; outermost directories last."""
    paths = [directory / CONFIG_FILENAME]
    url = config.database_url
    if url.startswith("sqlite:///") and ":memory:" not in url:
        database = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        paths += [database.with_name(database.name + end) for end in ("", "-wal", "-shm")]
        paths += [database.with_name(database.name + "-journal")]
        paths += [folder for folder in database.parents if not folder.exists()]
    paths += [folder for folder in (directory, *directory.parents) if not folder.exists()]
    return [path for path in paths if not path.exists()]


def _remove(paths: Sequence[Path]) -> None:
    """Remove what a failed ``init`` created among ``paths`` (files, then directories)."""
    import shutil

    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _refuse_a_used_database(engine: Any) -> None:
    """``init`` makes a new deployment's database: one that holds tables already (another
    deployment's, say, whose secrets a new ``secret_key`` could not read) is refused."""
    import sqlalchemy as sa

    with engine.connect() as connection:
        tables = sa.inspect(connection).get_table_names()
    if tables:
        safe = engine.url.render_as_string(hide_password=True)
        raise ConfigError(
            f"database {safe} already holds {len(tables)} tables: init needs an empty one "
            "(--no-migrate writes only crmkit.toml, for a database in use)"
        )


# -- db ------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database migrations (Alembic, one branch per plugin)."""


@db.command("upgrade")
@click.option("--target", default="heads", show_default=True, help="Revision to upgrade to.")
@pass_env
def db_upgrade(env: Env, target: str) -> None:
    """Apply every branch's migrations, then seed roles and permissions (one transaction:
    if seeding fails, no revision is applied)."""
    env.crm.migrations.upgrade(target, then=env.crm.sync_access)
    for label, revision in env.crm.migrations.current().items():
        click.echo(f"{label}: {revision or 'not applied'}")


@db.command("current")
@pass_env
def db_current(env: Env) -> None:
    """Show the applied revision of each branch and whether it is the newest."""
    heads = env.crm.migrations.heads()
    for label, revision in env.crm.migrations.current().items():
        state = "head" if revision and revision == heads.get(label) else "behind"
        click.echo(f"{label}: {revision or 'not applied'} ({state})")


@db.command("revision")
@click.option(
    "--plugin",
    "label",
    default=None,
    help="Branch (plugin name) the revision belongs to; required.",
)
@click.option("-m", "--message", required=True, help="What the revision changes.")
@click.option("--empty", is_flag=True, help="Write an empty revision (no autogenerate).")
@pass_env
def db_revision(env: Env, label: str | None, message: str, empty: bool) -> None:
    """Write a new migration on a plugin's branch, autogenerated from the models."""
    if label is None:
        # never a default branch: the core's is inside the crmkit package
        from crmkit.app import CRM

        crm = CRM(env.config()) if env._crm is None else env._crm
        names = [b.label for b in crm.migration_branches if b.label != "crmkit"]
        choice = ", ".join(names) or "no loaded plugin registers one"
        raise ConfigError(f"db revision needs --plugin NAME, the branch to write into ({choice})")
    path = env.crm.migrations.revision(message, label, autogenerate=not empty)
    click.echo(f"wrote {path}")


# -- users ---------------------------------------------------------------------------------


@cli.group()
def user() -> None:
    """Users: add, list, block, unblock, set passwords."""


def _stdin_password() -> str:
    """The first line of standard input without its line ending (``\n`` or ``\r\n``);
    an empty one is refused rather than taken as "no password"."""
    line = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not line:
        raise ConfigError("no password given on standard input")
    return line


def _password(prompt: str) -> str:
    if not sys.stdin.isatty():
        return _stdin_password()
    first = getpass.getpass(prompt)
    if getpass.getpass("Repeat: ") != first:
        raise ConfigError("the passwords differ")
    return first


@user.command("add")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, help="Role (repeatable).")
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--email", default=None)
@click.option("--locale", type=click.Choice(["ru", "en"]), default=None)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input instead of prompting.",
)
@click.option("--no-password", is_flag=True, help="Create without a password (cannot sign in).")
@pass_env
def user_add(
    env: Env,
    username: str,
    roles: Sequence[str],
    display_name: str,
    email: str | None,
    locale: str | None,
    password_stdin: bool,
    no_password: bool,
) -> None:
    """Add a user with one or more roles."""
    password = None
    if not no_password:
        password = _stdin_password() if password_stdin else _password(f"Password for {username}: ")
    with env.crm.system() as work:
        data: dict[str, Any] = {
            "username": username,
            "roles": list(roles),
            "display_name": display_name,
        }
        if email:
            data["email"] = email
        if locale:
            data["locale"] = locale
        if password is not None:
            data["password"] = password
        created = work.users.create(data)
    click.echo(f"added {created.username} ({', '.join(roles)})")


@user.command("list")
@pass_env
def user_list(env: Env) -> None:
    """List users with their roles and state."""
    with env.crm.system() as work:
        for row in work.users.list():
            state = "blocked" if row.blocked else "active"
            click.echo(f"{row.username:<24} {','.join(sorted(row.role_names)):<30} {state}")


@user.command("block")
@click.argument("username")
@click.option("--reason", default="")
@pass_env
def user_block(env: Env, username: str, reason: str) -> None:
    """Block a user: no sign-in, every open session ends."""
    with env.crm.system() as work:
        work.users.block(username, reason)
    click.echo(f"blocked {username}")


@user.command("unblock")
@click.argument("username")
@pass_env
def user_unblock(env: Env, username: str) -> None:
    """Let a blocked user sign in again."""
    with env.crm.system() as work:
        work.users.unblock(username)
    click.echo(f"unblocked {username}")


@user.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
@pass_env
def user_passwd(env: Env, username: str, password_stdin: bool) -> None:
    """Set a user's password (their other sessions end)."""
    password = _stdin_password() if password_stdin else _password(f"New password for {username}: ")
    with env.crm.system() as work:
        work.users.set_password(username, password)
    click.echo(f"password of {username} changed")


# -- API tokens -------------------------------------------------------------------------------


@cli.group()
def token() -> None:
    """Personal API tokens (bearer tokens for /api/v1/): create, list, revoke."""


@token.command("create")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for (shown in lists).")
@click.option(
    "--expires-days",
    type=click.IntRange(min=1),
    default=None,
    help="Expire after this many days (default: never).",
)
@pass_env
def token_create(env: Env, username: str, name: str, expires_days: int | None) -> None:
    """Create a token acting as USERNAME and print its secret (shown this once only)."""
    import datetime as dt

    from crmkit.clock import utcnow

    expires_at = utcnow() + dt.timedelta(days=expires_days) if expires_days else None
    with env.crm.system() as work:
        issued = work.api_tokens.create(name, user=username, expires_at=expires_at)
    click.echo(issued.secret)
    click.echo(
        f"token {issued.token.id} ({issued.token.name}) for {username}; "
        "keep the secret above: it is not stored and cannot be shown again",
        err=True,
    )


@token.command("list")
@click.argument("username")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@pass_env
def token_list(env: Env, username: str, include_revoked: bool) -> None:
    """List a user's tokens: id, prefix, name, last use, state."""
    with env.crm.system() as work:
        for row in work.api_tokens.list(user=username, include_revoked=include_revoked):
            used = row.last_used_at.strftime("%Y-%m-%d %H:%M") if row.last_used_at else "never"
            state = "revoked" if row.revoked_at else "active"
            click.echo(f"{row.id:<6} {row.prefix}…  {row.name:<30} used {used:<16} {state}")


@token.command("revoke")
@click.argument("token_id", type=int)
@pass_env
def token_revoke(env: Env, token_id: int) -> None:
    """Revoke a token by its id; requests bearing it are refused from now on."""
    with env.crm.system() as work:
        revoked = work.api_tokens.revoke(token_id)
    click.echo(f"revoked token {revoked.id} ({revoked.name})")


# -- plugins and pipelines -----------------------------------------------------------------


@cli.group()
def audit() -> None:
    """The audit log."""


@audit.command("scrub-private")
@click.option(
    "--batch-size",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Audit rows read and rewritten per transaction.",
)
@pass_env
def audit_scrub_private(env: Env, batch_size: int) -> None:
    """Mask private column values old audit rows kept in clear (safe to rerun)."""
    from crmkit.services.audit import private_entities, scrub_private

    crm = env.crm
    names = sorted(private_entities(crm))
    click.echo(f"entities with private columns: {', '.join(names) or 'none'}", err=True)
    done = scrub_private(crm, batch_size=batch_size)
    click.echo(f"{done.checked} audit rows checked, {done.changed} changed")


@cli.command()
@pass_env
def plugins(env: Env) -> None:
    """List loaded plugins, their versions and the hooks each implements."""
    from crmkit.app import CRM

    crm = CRM(env.config()) if env._crm is None else env._crm
    for info in crm.pm.describe():
        kind = "built-in" if info.builtin else (info.distribution or "local")
        click.echo(f"{info.name} {info.version or '-'} ({kind})")
        for hook in info.hooks:
            click.echo(f"    {hook}")


@cli.group()
def pipeline() -> None:
    """Pipelines: list them, show a stage graph, move records out of a removed stage."""


@pipeline.command("list")
@pass_env
def pipeline_list(env: Env) -> None:
    """List pipelines and the entity each drives."""
    from crmkit.app import CRM

    crm = CRM(env.config())
    for item in crm.pipelines.values():
        click.echo(f"{item.name:<20} {item.entity:<16} {item.title}")


@pipeline.command("show")
@click.argument("name")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "mermaid"]), default="text", show_default=True
)
@pass_env
def pipeline_show(env: Env, name: str, fmt: str) -> None:
    """Print a pipeline's stage graph as text or Mermaid."""
    from crmkit.app import CRM

    crm = CRM(env.config())
    item = crm.pipeline(name)
    click.echo(item.to_mermaid() if fmt == "mermaid" else item.to_text())


@pipeline.command("move-out")
@click.argument("name")
@click.argument("stage")
@click.option("--to", "target", required=True, help="The stage to move the records to.")
@click.option("--comment", default=None, help="Why (kept on each move's history row).")
@pass_env
def pipeline_move_out(env: Env, name: str, stage: str, target: str, comment: str | None) -> None:
    """Move every record of a pipeline in STAGE (one a release removed) to another stage."""
    with env.crm.system() as work:
        result = work.moves.move_stage_out(name, stage, target, comment=comment)
    click.echo(f"moved {len(result.moved)} record(s) from {stage} to {target}")
    for record_id, reason in result.refused.items():
        click.echo(f"refused {record_id}: {reason}", err=True)
    if result.refused:
        raise SystemExit(1)


# -- serve, shell, demo --------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Web worker processes (share nothing but the database and queue).",
)
@click.option("--reload", is_flag=True, help="Restart on code changes (development).")
@pass_env
def serve(env: Env, host: str, port: int, workers: int, reload: bool) -> None:
    """Run the web UI and API under uvicorn.

    Refuses to start, in one line, on a database not migrated to the code's revisions (run
    `crmkit db upgrade`) or a queue.url whose Redis server does not answer.
    """
    from crmkit.web.server import run

    config = env.config()
    config.require_secret_key()  # before uvicorn: workers would crash and be respawned
    # fail here, with one line, if the database (unreachable or not migrated), the queue's
    # server or a plugin is wrong, not at the first request
    env.crm.check_ready()
    run(config, host=host, port=port, workers=workers, reload=reload)


@cli.command()
@pass_env
def shell(env: Env) -> None:
    """A Python shell with `crm` (the application) ready."""
    crm = env.crm
    banner = (
        "crmkit shell: `crm` is the application; try\n"
        "  with crm.system() as work: work.parties.list()"
    )
    namespace = {"crm": crm}
    try:
        from IPython import start_ipython  # type: ignore[import-not-found]
    except ImportError:
        code.interact(banner=banner, local=namespace)
    else:
        start_ipython(argv=[], user_ns=namespace)


@cli.command()
@click.argument("name", required=False)
@click.option("--size", type=int, default=None, help="How much data (generator-specific).")
@click.option("--seed", type=int, default=1, show_default=True)
@pass_env
def demo(env: Env, name: str | None, size: int | None, seed: int) -> None:
    """Fill the database with sample data (NAME of a generator; none lists them)."""
    crm = env.crm
    if not name:
        for item in crm.demos.values():
            click.echo(f"{item.name:<16} {item.description}")
        return
    generator = crm.demos.get(name)
    if generator is None:
        raise ConfigError(f"no demo {name!r} (available: {', '.join(sorted(crm.demos))})")
    result = generator.run(crm, size=size, seed=seed)
    click.echo(f"demo {name}: {result}")


# -- entry point ----------------------------------------------------------------------------


def _early_config_path(argv: Sequence[str]) -> str | None:
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return os.environ.get("CRMKIT_CONFIG")


def _add_plugin_commands(argv: Sequence[str]) -> None:
    """Let installed plugins add their commands before click parses the command line."""
    from crmkit.plugins import make_plugin_manager

    allow: Sequence[str] = ()
    block: Sequence[str] = ()
    try:
        config = Config.load(_early_config_path(argv))
        allow, block = config["plugins.allow"], config["plugins.block"]
    except ConfigError:
        pass  # no deployment here (yet): offer every installed plugin's commands
    pm = make_plugin_manager(allow=allow, block=block)
    pm.hook.crmkit_register_commands(cli=cli)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: run the CLI, turning known errors into one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        _add_plugin_commands(args)
        cli.main(args=args, prog_name="crmkit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Abort:
        _fail("aborted")
    except (CrmkitError, PluginError) as exc:
        if debug:
            raise
        _fail(str(exc))
    except Exception as exc:  # database errors and the like: one line unless --debug
        if debug:
            raise
        from alembic.script.revision import RevisionError
        from alembic.util import CommandError
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, SQLAlchemyError):
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            _fail(f"database: {reason}")
        if isinstance(exc, (CommandError, RevisionError)):  # Alembic: a wrong revision
            _fail(f"migrations: {str(exc).strip().splitlines()[0]}")
        if isinstance(exc, OSError) and exc.filename is not None:  # a path the user gave
            _fail(f"{exc.filename}: {exc.strerror or exc}")
        raise


if __name__ == "__main__":
    # `python -m crmkit.cli`: run the imported module's CLI, whose `Env` plugins' commands use
    from crmkit.cli import main as imported_main

    imported_main()
