"""The command line: a deployment from nothing, users, plugins, pipelines, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crmkit.cli import main

CRMKIT = [sys.executable, "-m", "crmkit.cli"]


def run(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CRMKIT_")}
    environment.update(env or {})
    return subprocess.run(
        [*CRMKIT, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def call(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def deployment(tmp_path, capsys):
    directory = tmp_path / "crm"
    code, out, err = call(capsys, "init", str(directory))
    assert code == 0, err
    assert "wrote" in out and (directory / "crmkit.toml").exists()
    return directory


def test_init_user_lifecycle(deployment, capsys, monkeypatch):
    config = str(deployment)
    monkeypatch.setattr(sys, "stdin", _Stdin("correct-horse-1\n"))
    code, out, err = call(
        capsys, "--config", config, "user", "add", "olga", "--role", "admin", "--password-stdin"
    )
    assert code == 0, err
    assert "added olga (admin)" in out
    code, out, _ = call(capsys, "--config", config, "user", "list")
    assert out.split() == ["olga", "admin", "active"]
    code, out, _ = call(capsys, "--config", config, "user", "block", "olga")
    assert code == 0 and "blocked olga" in out
    code, out, _ = call(capsys, "--config", config, "user", "list")
    assert out.split()[-1] == "blocked"
    assert call(capsys, "--config", config, "user", "unblock", "olga")[0] == 0
    monkeypatch.setattr(sys, "stdin", _Stdin("another-secret-2\n"))
    assert call(capsys, "--config", config, "user", "passwd", "olga", "--password-stdin")[0] == 0
    from crmkit import CRM

    crm = CRM.from_directory(deployment)
    with crm.system() as work:
        assert work.users.authenticate("olga", "another-secret-2") is not None
        assert work.users.authenticate("olga", "correct-horse-1") is None
    crm.close()


def test_a_password_from_standard_input_loses_its_line_ending_and_is_never_empty(
    deployment, capsys, monkeypatch
):
    config = str(deployment)
    add = ("--config", config, "user", "add", "ivan", "--role", "agent", "--password-stdin")
    monkeypatch.setattr(sys, "stdin", _Stdin(""))  # nothing piped in
    code, _, err = call(capsys, *add)
    assert code == 1 and err.strip() == "error: no password given on standard input"
    monkeypatch.setattr(sys, "stdin", _Stdin("\r\n"))  # an empty Windows line
    code, _, err = call(capsys, *add)
    assert code == 1 and err.strip() == "error: no password given on standard input"
    assert "ivan" not in call(capsys, "--config", config, "user", "list")[1]  # not created
    monkeypatch.setattr(sys, "stdin", _Stdin("correct-horse-1\r\n"))
    assert call(capsys, *add)[0] == 0
    monkeypatch.setattr(sys, "stdin", _Stdin(""))
    passwd = ("--config", config, "user", "passwd", "ivan", "--password-stdin")
    code, _, err = call(capsys, *passwd)
    assert code == 1 and err.strip() == "error: no password given on standard input"
    monkeypatch.setattr(sys, "stdin", _Stdin("another-horse-2\r\n"))
    assert call(capsys, *passwd)[0] == 0
    from crmkit import CRM

    crm = CRM.from_directory(deployment)
    with crm.system() as work:
        assert work.users.authenticate("ivan", "another-horse-2") is not None
    crm.close()


def test_db_current_after_init(deployment, capsys):
    code, out, _ = call(capsys, "--config", str(deployment), "db", "current")
    assert code == 0
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert lines["crmkit"].endswith("(head)")  # installed plugins' branches are listed too


def test_plugins_lists_builtins_with_hooks(deployment, capsys):
    code, out, _ = call(capsys, "--config", str(deployment), "plugins")
    assert code == 0
    assert "crmkit.builtins.core 0.1.0 (built-in)" in out
    assert "    crmkit_register_entities" in out


def test_pipeline_show_text_and_mermaid(deployment, capsys):
    code, out, _ = call(capsys, "--config", str(deployment), "pipeline", "show", "sales")
    assert code == 0 and "new -> qualified" in out
    code, out, _ = call(
        capsys, "--config", str(deployment), "pipeline", "show", "sales", "--format", "mermaid"
    )
    assert out.startswith("stateDiagram-v2") and "new --> qualified" in out


def test_pipeline_move_out_of_a_removed_stage(deployment, capsys):
    import sqlalchemy as sa

    from crmkit import CRM
    from crmkit.model import Deal
    from crmkit.testing import factories

    crm = CRM.from_directory(deployment)
    with crm.system() as work:
        ready = factories.deal(work, amount=5000)
        empty = factories.deal(work)
        kept = factories.deal(work)
        work.session.execute(
            sa.update(Deal).where(Deal.id.in_([ready.id, empty.id])).values(stage="talks")
        )
    crm.close()
    code, out, err = call(
        capsys, "--config", str(deployment), "pipeline", "move-out", "sales", "talks",
        "--to", "proposal", "--comment", "stage removed",
    )  # fmt: skip
    assert code == 1
    assert out.strip() == "moved 1 record(s) from talks to proposal"
    assert err.strip() == f"refused {empty.id}: fill in: amount"
    crm = CRM.from_directory(deployment)
    with crm.system() as work:
        stages = {d.id: d.stage for d in work.session.scalars(sa.select(Deal))}
        assert stages == {ready.id: "proposal", empty.id: "talks", kept.id: "new"}
        assert work.moves.history(ready.id, entity="deal")[-1].comment == "stage removed"
    crm.close()


def test_demo_data(deployment, capsys):
    code, out, err = call(capsys, "--config", str(deployment), "demo", "basic", "--size", "12")
    assert code == 0, err
    assert out.startswith("demo basic: 12 clients")
    code, out, _ = call(capsys, "--config", str(deployment), "user", "list")
    assert "agent1" in out


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_missing_config_is_one_line(tmp_path):
    line = _one_line_error(run("--config", str(tmp_path), "user", "list"))
    assert line.startswith(f"error: no crmkit.toml at {tmp_path}; create a deployment with")


def test_a_config_path_that_does_not_exist_is_named_with_its_option(tmp_path):
    missing = tmp_path / "none"
    line = _one_line_error(run("--config", str(missing), "user", "list"))
    assert line == f"error: --config {missing}: no such file or directory"
    line = _one_line_error(run("user", "list", env={"CRMKIT_CONFIG": str(missing)}))
    assert line == f"error: CRMKIT_CONFIG {missing}: no such file or directory"


def test_wrong_database_url_is_one_line(tmp_path):
    (tmp_path / "crmkit.toml").write_text(
        'secret_key = "x"\n[database]\nurl = "postgresql+psycopg://nobody@127.0.0.1:1/none"\n'
    )
    line = _one_line_error(run("--config", str(tmp_path), "user", "list"))
    assert line.startswith("error: cannot connect to database postgresql+psycopg://nobody@")


def test_malformed_database_url_is_one_line(tmp_path):
    (tmp_path / "crmkit.toml").write_text('[database]\nurl = "not a url"\n')
    line = _one_line_error(run("--config", str(tmp_path), "user", "list"))
    assert "is not a valid database URL" in line


def test_unknown_plugin_in_allow_list_is_one_line(tmp_path):
    (tmp_path / "crmkit.toml").write_text('[plugins]\nallow = ["nonexistent_plugin"]\n')
    line = _one_line_error(run("--config", str(tmp_path), "plugins"))
    assert line.startswith("error: plugin 'nonexistent_plugin': named in plugins.allow but not")


def test_debug_shows_the_traceback(tmp_path):
    result = run("--debug", "--config", str(tmp_path / "none"), "user", "list")
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_unknown_user_is_one_line(deployment):
    line = _one_line_error(run("--config", str(deployment), "user", "block", "ghost"))
    assert line == "error: user ghost not found"


def test_init_writes_the_plugins_to_load(tmp_path, capsys):
    from crmkit.config import Config

    target = tmp_path / "dealers"
    assert call(capsys, "init", str(target), "--no-migrate", "--plugin", "finance")[0] == 0
    assert Config.load(target)["plugins.allow"] == ["finance"]


def test_init_refuses_to_overwrite(deployment):
    line = _one_line_error(run("init", str(deployment)))
    assert "exists already" in line


def test_a_failed_init_leaves_nothing_behind(empty_database, tmp_path, capsys, monkeypatch):
    """A failure after the tables were created (seeding the roles, here) leaves no
    directory, no crmkit.toml, no database file and no tables: the next init succeeds."""
    from crmkit.app import CRM
    from crmkit.errors import ConfigError

    url_option, tables = empty_database
    directory = tmp_path / "new" / "crm"

    def failing(self, connection=None):
        raise ConfigError("seeding failed")

    with monkeypatch.context() as patched:
        patched.setattr(CRM, "sync_access", failing)
        code, out, err = call(capsys, "init", str(directory), *url_option)
    assert (code, err) == (1, "error: seeding failed\n")
    assert out == ""
    assert list(tmp_path.iterdir()) == []
    if tables:
        assert tables() == []
    code, out, err = call(capsys, "init", str(directory), *url_option)
    assert code == 0, err
    assert (directory / "crmkit.toml").exists()
    if tables:
        assert "party" in tables()


def test_a_failed_seeding_leaves_the_database_as_it_was(empty_database, tmp_path, capsys):
    """`db upgrade` migrates and seeds in one transaction: seeding that fails leaves no
    table and no applied revision, and the next upgrade starts from the same place."""
    import sqlalchemy as sa

    from crmkit.app import CRM
    from crmkit.errors import ConfigError

    url_option, _ = empty_database
    directory = tmp_path / "crm"
    code, _, err = call(capsys, "init", str(directory), "--no-migrate", *url_option)
    assert code == 0, err
    url = url_option[1] if url_option else f"sqlite:///{directory / 'crmkit.sqlite3'}"

    def database() -> tuple[list[str], int]:
        """The database's tables, and its seeded roles (0 when there is no role table)."""
        engine = sa.create_engine(url)
        try:
            names = sorted(sa.inspect(engine).get_table_names())
            if "role" not in names:
                return names, 0
            with engine.connect() as connection:
                return names, connection.scalar(sa.text("SELECT count(*) FROM role"))
        finally:
            engine.dispose()

    def failing(self, connection=None):
        raise ConfigError("seeding failed")

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(CRM, "sync_access", failing)
        code, out, err = call(capsys, "--config", str(directory), "db", "upgrade")
    assert (code, out, err) == (1, "", "error: seeding failed\n")
    assert database() == ([], 0)
    code, out, err = call(capsys, "--config", str(directory), "db", "upgrade")
    assert code == 0, err
    assert "crmkit: " in out and "not applied" not in out
    tables, roles = database()
    assert "party" in tables and roles > 0


def test_init_refuses_a_database_that_holds_tables(empty_database, tmp_path, capsys):
    """A database already in use (another deployment's) is named and left alone; no
    crmkit.toml is written."""
    url_option, tables = empty_database
    first = tmp_path / "first"
    assert call(capsys, "init", str(first), *url_option)[0] == 0
    second = tmp_path / "second"
    if not url_option:  # the same SQLite file, named by its path
        url_option = ("--database-url", f"sqlite:///{first / 'crmkit.sqlite3'}")
    before = tables() if tables else (first / "crmkit.sqlite3").read_bytes()
    code, _, err = call(capsys, "init", str(second), *url_option)
    assert code == 1
    assert err.startswith("error: database ") and err.endswith(
        " tables: init needs an empty one (--no-migrate writes only crmkit.toml, for a "
        "database in use)\n"
    )
    assert not second.exists()
    assert (tables() if tables else (first / "crmkit.sqlite3").read_bytes()) == before


def test_init_checks_plugins_and_database_before_writing(tmp_path, capsys):
    target = tmp_path / "crm"
    code, _, err = call(capsys, "init", str(target), "--plugin", "nonexistent_plugin")
    assert code == 1 and "nonexistent_plugin" in err
    assert not target.exists()
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    code, _, err = call(capsys, "init", str(target), "--database-url", unreachable)
    assert code == 1 and err.startswith("error: cannot connect to database")
    assert not target.exists()
    target.mkdir()
    code, _, err = call(capsys, "init", str(target), "--plugin", "nonexistent_plugin")
    assert code == 1
    assert list(target.iterdir()) == []
    assert call(capsys, "init", str(target))[0] == 0


class _Stdin:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)

    def readline(self) -> str:
        return self.lines.pop(0) if self.lines else ""

    def isatty(self) -> bool:
        return False


def test_module_entry_point_matches_console_script():
    assert Path(sys.executable).parent.joinpath("crmkit").exists()


def test_migrations_of_a_removed_plugin_are_named_in_one_line(tmp_path, capsys):
    directory = tmp_path / "crm"
    assert call(capsys, "init", str(directory), "--plugin", "finance")[0] == 0
    settings = directory / "crmkit.toml"
    settings.write_text(settings.read_text().replace('allow = ["finance"]', 'allow = ["mail"]'))
    revision = ["db", "revision", "--plugin", "crmkit", "-m", "x"]
    for command in (["db", "current"], ["db", "upgrade"], revision):
        code, _, err = call(capsys, "--config", str(directory), *command)
        assert code == 1
        assert err.strip().splitlines() == [
            "error: revision finance_0007_performer_chosen is applied but belongs to no loaded "
            "plugin: reinstall the plugin (or downgrade its branch before removing it)"
        ]


def test_alembic_refusals_are_one_line(tmp_path, capsys):
    directory = tmp_path / "crm"
    assert call(capsys, "init", str(directory), "--no-migrate")[0] == 0
    revision = ["db", "revision", "--plugin", "crmkit", "-m", "x"]
    code, _, err = call(capsys, "--config", str(directory), *revision)
    assert (code, err) == (1, "error: migrations: Target database is not up to date.\n")
    code, _, err = call(capsys, "--config", str(directory), "db", "upgrade", "--target", "nosuch")
    assert code == 1
    assert err == "error: migrations: Can't locate revision identified by 'nosuch'\n"


def test_a_revision_without_plugin_is_refused_naming_the_branches(tmp_path, capsys):
    """Never a default branch: the core's own versions folder is inside the crmkit package."""
    from crmkit.db import CORE_MIGRATIONS

    directory = tmp_path / "crm"
    assert call(capsys, "init", str(directory), "--plugin", "finance")[0] == 0
    core_versions = sorted((CORE_MIGRATIONS / "versions").iterdir())
    code, out, err = call(capsys, "--config", str(directory), "db", "revision", "-m", "x")
    assert (code, out) == (1, "")
    assert err.strip().splitlines() == [
        "error: db revision needs --plugin NAME, the branch to write into (finance)"
    ]
    assert sorted((CORE_MIGRATIONS / "versions").iterdir()) == core_versions


def test_serve_without_a_secret_key_is_one_line_before_any_worker_starts(
    deployment, capsys, monkeypatch
):
    import crmkit.web.server

    started = []
    monkeypatch.setattr(crmkit.web.server, "run", lambda *a, **k: started.append(a))
    settings = deployment / "crmkit.toml"
    text = settings.read_text()
    settings.write_text(text.replace(text.splitlines()[2], 'secret_key = ""'))
    code, _, err = call(capsys, "--config", str(deployment), "serve", "--workers", "2")
    assert (code, started) == (1, [])
    assert err == (
        f"error: setting 'secret_key' from {settings} is empty: the web UI cannot sign its "
        "cookies; create the deployment with `crmkit init` or set CRMKIT_SECRET_KEY\n"
    )


def test_the_web_app_refuses_an_empty_secret_key_naming_the_setting(deployment):
    from crmkit.app import CRM
    from crmkit.config import Config
    from crmkit.errors import ConfigError
    from crmkit.web.app import create_app

    crm = CRM(Config.load(deployment, environ={"CRMKIT_SECRET_KEY": " "}))
    try:
        with pytest.raises(ConfigError, match="setting 'secret_key' from .* is empty"):
            create_app(crm)
    finally:
        crm.close()


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--port", "99999", "99999 is not in the range 0<=x<=65535"),
        ("--port", "-1", "-1 is not in the range 0<=x<=65535"),
        ("--workers", "0", "0 is not in the range x>=1"),
        ("--workers", "-1", "-1 is not in the range x>=1"),
    ],
)
def test_serve_refuses_a_port_or_worker_count_out_of_range(
    deployment, capsys, monkeypatch, option, value, says
):
    import crmkit.web.server

    started = []
    monkeypatch.setattr(crmkit.web.server, "run", lambda *a, **k: started.append(a))
    code, _, err = call(capsys, "--config", str(deployment), "serve", option, value)
    assert (code, started) == (2, [])
    assert f"Invalid value for '{option}': {says}" in err


def test_export_to_a_missing_directory_is_one_line_naming_the_path(deployment, capsys):
    assert (
        call(
            capsys,
            "--config",
            str(deployment),
            "user",
            "add",
            "boss",
            "--role",
            "admin",
            "--no-password",
        )[0]
        == 0
    )
    target = deployment / "no" / "such" / "out.csv"
    code, _, err = call(capsys, "--config", str(deployment), "export", str(target), "--as", "boss")
    assert (code, err) == (1, f"error: {target}: No such file or directory\n")
    assert not target.parent.exists()


@pytest.mark.parametrize("module", ["crmkit", "crmkit.cli"])
def test_plugin_commands_run_under_python_m(tmp_path, capsys, module):
    directory = tmp_path / "crm"
    assert call(capsys, "init", str(directory), "--plugin", "finance")[0] == 0
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CRMKIT_")}
    result = subprocess.run(
        [sys.executable, "-m", module, "--config", str(directory), "finance", "check"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "ledger ok\n", "")


# -- checks before serve and worker start --------------------------------------------------


@pytest.fixture
def started(monkeypatch):
    """What `serve` and `worker` started (nothing runs: uvicorn and the worker are faked)."""
    import crmkit.jobs.worker
    import crmkit.web.server

    calls: list[str] = []
    monkeypatch.setattr(crmkit.web.server, "run", lambda *a, **k: calls.append("serve"))

    class FakeWorker:
        def __init__(self, crm, concurrency=1):
            pass

        def run(self):
            calls.append("worker")

    monkeypatch.setattr(crmkit.jobs.worker, "Worker", FakeWorker)
    return calls


def _set(directory: Path, old: str, new: str) -> None:
    settings = directory / "crmkit.toml"
    text = settings.read_text()
    assert old in text
    settings.write_text(text.replace(old, new))


def test_serve_and_worker_start_on_the_embedded_defaults_with_no_server(
    deployment, capsys, started
):
    assert call(capsys, "--config", str(deployment), "serve")[0] == 0
    assert call(capsys, "--config", str(deployment), "worker")[0] == 0
    assert started == ["serve", "worker"]


def test_serve_and_worker_refuse_a_database_never_migrated(tmp_path, capsys, started):
    directory = tmp_path / "crm"
    assert call(capsys, "init", str(directory), "--no-migrate")[0] == 0
    capsys.readouterr()
    for command in ("serve", "worker"):
        code, _, err = call(capsys, "--config", str(directory), command)
        assert code == 1
        (line,) = err.splitlines()
        assert line.startswith(f"error: database sqlite:///{directory}/crmkit.sqlite3 is not ")
        assert line.endswith("run `crmkit db upgrade` first")
    assert started == []
    assert call(capsys, "--config", str(directory), "db", "upgrade")[0] == 0
    assert call(capsys, "--config", str(directory), "serve")[0] == 0
    assert started == ["serve"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@127.0.0.1:1/0", "redis://:***@127.0.0.1:1/0"),
        ("unix:///nonexistent/redis.sock?db=0&password=hunter2", None),
    ],
)
def test_serve_and_worker_refuse_a_queue_server_that_does_not_answer(
    deployment, capsys, started, url, shown
):
    shown = shown or url.replace("hunter2", "***")
    _set(deployment, 'url = ""', f'url = "{url}"')
    for command in ("serve", "worker"):
        code, _, err = call(capsys, "--config", str(deployment), command)
        assert code == 1
        (line,) = err.splitlines()
        assert line.startswith(f"error: cannot connect to the queue {shown}: ")
        assert "hunter2" not in line
    assert started == []


def test_serve_and_worker_start_when_the_queue_server_answers(
    deployment, capsys, started, redis_url
):
    _set(deployment, 'url = ""', f'url = "{redis_url}"')
    assert call(capsys, "--config", str(deployment), "worker")[0] == 0
    assert call(capsys, "--config", str(deployment), "serve")[0] == 0
    assert started == ["worker", "serve"]


def test_a_plugin_whose_configure_fails_stops_serve_in_one_line(
    deployment, capsys, started, monkeypatch
):
    import crmkit.app
    from crmkit import hookimpl

    class Licensing:
        crmkit_plugin_name = "licensing"

        @hookimpl
        def crmkit_configure(self, crm):
            raise RuntimeError("no licence server at 10.0.0.9")

    original = crmkit.app.make_plugin_manager
    monkeypatch.setattr(
        crmkit.app,
        "make_plugin_manager",
        lambda **options: original(**{**options, "extra": [*options["extra"], Licensing()]}),
    )
    code, _, err = call(capsys, "--config", str(deployment), "serve")
    assert (code, started) == (1, [])
    assert err == (
        "error: plugin 'licensing': crmkit_configure failed: RuntimeError: no licence server "
        "at 10.0.0.9\n"
    )


def test_a_misspelled_setting_stops_every_command_in_one_line(deployment):
    settings = deployment / "crmkit.toml"
    settings.write_text(settings.read_text() + "\n[security]\nsesion_days = 0\n")
    line = _one_line_error(run("--config", str(deployment), "user", "list"))
    assert line == (
        f"error: unknown setting 'security.sesion_days' in {settings}; "
        "did you mean 'security.session_days'?"
    )
